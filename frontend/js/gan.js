// The GAN panel: every slider change sends `generate_gan` at once (the server keeps the newest).
import { ControlSet, randomSeed } from './controls.js';
import { mimeFor } from './protocol.js';
import { GAN_GROUPS, ganParams } from './specs.js';
import { $, fmtMs, fmtScore, setProgress, showError, showImage } from './ui.js';

export class GanPanel {
  /**
   * @param {import('./ws.js').Socket} socket
   * @param {import('./runs.js').RunStore} runs
   * @param {() => string} prompt  reads the shared prompt box
   */
  constructor(socket, runs, prompt) {
    this.socket = socket;
    this.runs = runs;
    this.prompt = prompt;
    this.loaded = false;
    this.latest = null; // newest run id
    this.shownUrl = null;
    this.img = $('g-image');
    this.controls = new ControlSet($('g-controls'), 'g', GAN_GROUPS, () => this.request(1, true));
    $('g-render').addEventListener('click', () => this.request(1));
    $('g-diversity').addEventListener('click', () => this.request(8));
    this.setLoaded(false, 'waiting for server');
  }

  /** Enable or disable the panel depending on whether the server has a GAN model. */
  setLoaded(loaded, why = 'no GAN model loaded') {
    this.loaded = loaded;
    const missing = $('g-missing');
    missing.hidden = loaded;
    missing.textContent = why;
    this.controls.disable(!loaded);
    $('g-render').disabled = !loaded;
    $('g-diversity').disabled = !loaded;
    $('g-placeholder').textContent = loaded ? 'Move a slider to render.' : why;
  }

  applyInfo(info) {
    const gan = info?.gan ?? info?.models?.gan ?? null;
    this.setLoaded(Boolean(gan));
    const layers = gan?.num_ws ?? gan?.mix_layers;
    if (layers) this.controls.setRange('mix_layer', { max: layers - 1 });
    const defaults = info?.defaults?.gan ?? info?.default_params?.gan;
    if (defaults && typeof defaults === 'object') this.controls.set(defaults);
  }

  /** Send a `generate_gan`; `grid` > 1 renders consecutive seeds as one grid image. */
  request(grid = 1, quiet = false) {
    if (!this.loaded) {
      if (!quiet) showError('no GAN model loaded');
      return false;
    }
    // A fixed seed keeps a dragged slider on the same image.
    if (this.controls.get('seed') === null) this.controls.set({ seed: randomSeed() });
    const params = ganParams(this.controls.values(), this.prompt(), grid, !quiet);
    if (!this.socket.send({ type: 'generate_gan', params })) {
      if (!quiet) showError('Not connected to the server.');
      return false;
    }
    return true;
  }

  cancel() {
    for (const r of this.runs.list('gan')) if (r.active) this.socket.send({ type: 'cancel', run_id: r.id });
  }

  applySettings(params, seed) {
    this.controls.set({ ...params, seed: seed ?? params.seed ?? null });
  }

  onEvent(ev) {
    let run = ev.run_id ? this.runs.get(ev.run_id) : null;
    switch (ev.type) {
      case 'queued':
        run = this.runs.add(ev.run_id, 'gan');
        this.latest = run.id;
        break;
      case 'started':
        run = run ?? this.runs.add(ev.run_id, 'gan');
        Object.assign(run, { status: 'running', total: ev.total ?? 0, seed: ev.seed, width: ev.width, height: ev.height });
        this.latest = run.id;
        break;
      case 'step':
        if (!run) return;
        run.index = ev.index;
        run.total = ev.total ?? run.total;
        run.elapsedMs = ev.elapsed_ms ?? run.elapsedMs;
        if (ev.clip_score !== null && ev.clip_score !== undefined) run.clipScore = ev.clip_score;
        break;
      case 'done':
        if (!run) return;
        Object.assign(run, { status: 'done', imageId: ev.image_id, elapsedMs: ev.elapsed_ms,
          diversity: ev.diversity ?? null, prompt: ev.params?.prompt ?? null,
          images: ev.params?.grid ?? 1 });
        if (ev.clip_score !== null && ev.clip_score !== undefined) run.clipScore = ev.clip_score;
        run.index = run.total;
        if (ev.seed !== undefined) run.seed = ev.seed;
        break;
      case 'cancelled':
        if (run) run.status = 'cancelled';
        break;
      case 'error':
        if (run) run.status = 'error';
        break;
      default:
        return;
    }
    this.show();
  }

  onFrame(frame) {
    const { meta } = frame;
    const run = this.runs.get(meta.run_id) ?? this.runs.add(meta.run_id, 'gan');
    const url = URL.createObjectURL(new Blob([frame.image], { type: mimeFor(meta.format) }));
    this.runs.putFrame(run.id, Number.isInteger(meta.step) ? meta.step : 0, { url, meta, kind: frame.type });
    run.latestFrame = { url, meta };
    if (this.latest === null || run.id === this.latest || run.createdAt >= (this.runs.get(this.latest)?.createdAt ?? 0)) {
      this.latest = run.id;
    }
    this.show();
  }

  show() {
    const run = this.runs.get(this.latest);
    $('gan-panel').dataset.busy = String(this.runs.list('gan').some((r) => r.active));
    if (!run) return;
    $('g-stat-time').textContent = fmtMs(run.elapsedMs);
    $('g-stat-steps').textContent = run.total ? `${run.index}/${run.total}` : '–';
    $('g-stat-clip').textContent = fmtScore(run.clipScore);
    $('g-stat-seed').textContent = run.seed ?? '–';
    $('g-stat-div').textContent = fmtScore(run.diversity);
    setProgress($('g-progress'), run.total ? run.index : run.status === 'done' ? 1 : 0, run.total || 1);
    const frame = run.latestFrame ?? [...this.runs.list('gan')].reverse().find((r) => r.latestFrame)?.latestFrame;
    if (frame) {
      showImage(this.img, frame.url, frame.meta.width);
      $('g-placeholder').hidden = true;
    }
  }
}
