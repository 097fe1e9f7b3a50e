// The Diffusion panel: controls, live image, progress, timeline scrubber with forks, plot.
import { ControlSet, el } from './controls.js';
import { uploadInitImage } from './api.js';
import { drawPlot } from './plot.js';
import { mimeFor, FrameType } from './protocol.js';
import { DIFFUSION_GROUPS, LIVE_KEYS, diffusionParams } from './specs.js';
import { $, fmtMs, fmtScore, setProgress, showError, showImage } from './ui.js';

const UPDATE_DEBOUNCE_MS = 60;
const PREVIEW_REQUEST_DELAY_MS = 80;

const SAMPLER_ETA = { euler_a: 1, ddim: 0 };

export class DiffusionPanel {
  /**
   * @param {import('./ws.js').Socket} socket
   * @param {import('./runs.js').RunStore} runs
   */
  constructor(socket, runs) {
    this.socket = socket;
    this.runs = runs;
    this.viewed = null; // run id on screen
    this.follow = true; // show the newest step as it arrives
    this.scrubStep = 0;
    this.initImage = null;
    this.pendingUpdate = {};
    this.updateTimer = null;
    this.previewTimer = null;
    this.requested = new Set();
    this.img = $('d-image');
    this.scrub = $('d-scrub');
    this.controls = new ControlSet($('d-controls'), 'd', this.#groupsWithInitImage(), (k, v, s) => this.#changed(k, v, s));
    this.scrub.addEventListener('input', () => this.#scrubTo(Number(this.scrub.value)));
    $('d-live').addEventListener('click', () => this.#setFollow(true));
    $('d-fork').addEventListener('click', () => this.fork());
    this.#setFollow(true);
  }

  /** The run currently generating (for update / cancel), if any. */
  get activeRun() {
    return this.runs.list('diffusion').reverse().find((r) => r.active) ?? null;
  }

  applyInfo(info) {
    const maxSteps = info?.limits?.max_steps;
    if (maxSteps) {
      this.controls.setRange('steps', { max: Math.min(maxSteps, 500) });
      this.controls.setRange('skip_steps', { max: Math.min(maxSteps, 500) });
    }
    const defaults = info?.defaults?.diffusion ?? info?.default_params?.diffusion ?? info?.defaults;
    if (defaults && typeof defaults === 'object') this.controls.set(defaults);
  }

  /** Send a `generate`; false when the prompt is missing or the socket is down. */
  generate(prompt, negative) {
    if (!prompt.trim()) {
      showError('Enter a prompt first.');
      return false;
    }
    const params = diffusionParams(this.controls.values(), prompt, negative, this.initImage);
    if (!this.socket.send({ type: 'generate', params })) {
      showError('Not connected to the server.');
      return false;
    }
    this.#setFollow(true);
    return true;
  }

  cancel() {
    const run = this.activeRun;
    if (run) this.socket.send({ type: 'cancel', run_id: run.id });
  }

  /** `rewind`: a new branch continues from the viewed step of the viewed run with the current sliders. */
  fork() {
    const run = this.runs.get(this.viewed);
    if (!run) return;
    const step = this.follow ? run.index : this.scrubStep;
    if (step >= run.total) {
      showError('Pick an earlier step on the timeline to fork from.');
      return;
    }
    // A fork's early steps live in its parent's history; the fork takes the sliders as they are
    // now, and the parent's own parameters stay as they were.
    const owner = this.runs.owner(run.id, step) ?? run;
    this.socket.send({ type: 'rewind', run_id: owner.id, step, params: this.#liveValues() });
  }

  /** Restore the controls from a gallery item's params. */
  applySettings(params, seed) {
    this.controls.set({ ...params, seed: seed ?? params.seed ?? null });
  }

  onEvent(ev) {
    const run = ev.run_id ? this.runs.get(ev.run_id) : null;
    switch (ev.type) {
      case 'queued': {
        const r = this.runs.add(ev.run_id, 'diffusion', { parent: ev.parent ?? null, fromStep: ev.from_step ?? 0 });
        r.status = 'queued';
        this.#view(r.id, true);
        break;
      }
      case 'started': {
        const r = run ?? this.runs.add(ev.run_id, 'diffusion', { parent: ev.parent ?? null, fromStep: ev.from_step ?? 0 });
        Object.assign(r, { status: 'running', total: ev.total, seed: ev.seed, width: ev.width, height: ev.height });
        r.index = ev.from_step ?? 0;
        if (ev.from_step) r.fromStep = ev.from_step;
        if (this.viewed === r.id || this.follow) this.#view(r.id, true);
        break;
      }
      case 'step':
        if (!run) return;
        run.index = ev.index;
        run.total = ev.total ?? run.total;
        run.elapsedMs = ev.elapsed_ms ?? run.elapsedMs;
        if (ev.clip_score !== null && ev.clip_score !== undefined) run.clipScore = ev.clip_score;
        run.stats.set(ev.index, { sigma: ev.sigma, clip_score: ev.clip_score, elapsed_ms: ev.elapsed_ms });
        break;
      case 'done':
        if (!run) return;
        Object.assign(run, { status: 'done', imageId: ev.image_id, elapsedMs: ev.elapsed_ms,
          diversity: ev.diversity ?? null, prompt: ev.params?.prompt ?? null,
          images: ev.params?.batch ?? 1 });
        if (ev.clip_score !== null && ev.clip_score !== undefined) run.clipScore = ev.clip_score;
        run.index = run.total || run.index;
        if (ev.seed !== undefined) run.seed = ev.seed;
        run.finalUrl = ev.url;
        break;
      case 'cancelled':
        if (!run) return;
        run.status = 'cancelled';
        if (ev.index !== undefined) run.index = ev.index;
        break;
      case 'error':
        // a refused update or fork (too_large, bad_request) answers a message; the run goes on
        if (run && !['too_large', 'bad_request'].includes(ev.code)) run.status = 'error';
        break;
      default:
        return;
    }
    this.render();
  }

  onFrame(frame) {
    const { type, meta } = frame;
    const run = this.runs.get(meta.run_id) ?? this.runs.add(meta.run_id, 'diffusion');
    const step = Number.isInteger(meta.step) ? meta.step : run.index;
    const url = URL.createObjectURL(new Blob([frame.image], { type: mimeFor(meta.format) }));
    this.runs.putFrame(run.id, step, { url, meta, kind: type });
    if (type === FrameType.FINAL) run.final = { url, meta };
    this.requested.delete(`${run.id}:${step}`);
    this.render();
  }

  /** Redraw everything that depends on the viewed run. */
  render() {
    const run = this.runs.get(this.viewed);
    this.#renderBranches();
    if (!run) return;
    const total = run.total || 0;
    const step = this.follow ? run.index : Math.min(this.scrubStep, total);
    this.scrub.max = String(total);
    this.scrub.value = String(step);
    $('d-scrub-label').textContent = `step ${step}/${total}`;
    $('d-stat-steps').textContent = `${run.index}/${total}`;
    $('d-stat-time').textContent = fmtMs(run.elapsedMs);
    $('d-stat-clip').textContent = fmtScore(run.clipScore);
    $('d-stat-seed').textContent = run.seed ?? '–';
    $('d-stat-div').textContent = fmtScore(run.diversity);
    setProgress($('d-progress'), run.index, total);
    $('d-fork').disabled = run.index === 0 || step > run.index || step >= total;

    let frame;
    if (this.follow) {
      frame = run.status === 'done' && run.final ? run.final : this.runs.nearestFrame(run.id, run.index);
    } else {
      frame = this.runs.frame(run.id, step);
      if (!frame) {
        this.#requestPreview(run.id, step);
        frame = this.runs.nearestFrame(run.id, step);
      }
    }
    if (frame) {
      showImage(this.img, frame.url, frame.meta.width);
      $('d-placeholder').hidden = true;
    } else if (run.status === 'done' && run.finalUrl) {
      showImage(this.img, run.finalUrl, run.width);
    }
    drawPlot($('d-plot'), this.runs.series(run.id), total, step);
  }

  #groupsWithInitImage() {
    const file = el('input', { type: 'file', accept: 'image/png,image/jpeg,image/webp', id: 'd-init-file' });
    const preview = el('img', { class: 'init-preview', alt: 'init image', hidden: true });
    const status = el('span', { class: 'mono', text: 'none' });
    const clear = el('button', { type: 'button', text: 'clear' });
    file.addEventListener('change', async () => {
      const chosen = file.files?.[0];
      if (!chosen) return;
      status.textContent = 'uploading…';
      try {
        this.initImage = await uploadInitImage(chosen);
        preview.src = URL.createObjectURL(chosen);
        preview.hidden = false;
        status.textContent = `id ${this.initImage}`;
      } catch (err) {
        this.initImage = null;
        status.textContent = 'none';
        showError(err.message);
      }
    });
    clear.addEventListener('click', () => {
      this.initImage = null;
      file.value = '';
      preview.hidden = true;
      status.textContent = 'none';
    });
    const extra = el('div', { class: 'ctl' }, el('div', { class: 'head', text: 'init image' }), file,
      el('div', { class: 'row' }, preview, status, clear));
    return DIFFUSION_GROUPS.map((g) => (g.legend === 'Init image' ? { ...g, extra } : g));
  }

  #liveValues() {
    const values = this.controls.values();
    return Object.fromEntries(Object.entries(values).filter(([k]) => LIVE_KEYS.has(k)));
  }

  #changed(key, value, spec) {
    if (key === 'steps') this.controls.setRange('skip_steps', { max: value });
    // Each sampler's customary eta: ancestral Euler adds full noise, DDIM none.
    if (key === 'sampler' && value in SAMPLER_ETA) this.controls.set({ eta: SAMPLER_ETA[value] });
    if (!spec.live || !LIVE_KEYS.has(key)) return;
    const run = this.activeRun;
    if (!run) return;
    this.pendingUpdate[key] = value;
    clearTimeout(this.updateTimer);
    this.updateTimer = setTimeout(() => {
      const params = this.pendingUpdate;
      this.pendingUpdate = {};
      this.socket.send({ type: 'update', run_id: run.id, params });
    }, UPDATE_DEBOUNCE_MS);
  }

  #scrubTo(step) {
    this.scrubStep = step;
    this.#setFollow(false);
    this.render();
  }

  #setFollow(follow) {
    this.follow = follow;
    $('d-live').setAttribute('aria-pressed', String(follow));
    if (!follow) return;
    this.render();
  }

  #view(runId, follow) {
    this.viewed = runId;
    if (follow) this.#setFollow(true);
  }

  #requestPreview(runId, step) {
    const owner = this.runs.owner(runId, step);
    if (!owner || step < 1 || step > owner.index) return; // step 0 (pure noise) has no preview
    const key = `${owner.id}:${step}`;
    if (this.requested.has(key)) return;
    clearTimeout(this.previewTimer);
    this.previewTimer = setTimeout(() => {
      if (this.follow || this.scrubStep !== step) return;
      this.requested.add(key);
      this.socket.send({ type: 'preview', run_id: owner.id, step });
    }, PREVIEW_REQUEST_DELAY_MS);
  }

  #renderBranches() {
    const box = $('d-branches');
    const list = this.runs.list('diffusion');
    const order = new Map(list.map((r, i) => [r.id, i + 1]));
    box.replaceChildren(...list.map((r) => {
      const mark = { queued: '…', running: '▶', done: '✓', cancelled: '■', error: '!' }[r.status] || '';
      const fork = r.parent && order.has(r.parent) ? ` ↳ #${order.get(r.parent)}@${r.fromStep}` : '';
      const chip = el('button', { type: 'button', class: 'branch', text: `#${order.get(r.id)}${fork} ${mark}`,
                                  title: `run ${r.id}` });
      chip.setAttribute('aria-current', String(r.id === this.viewed));
      chip.addEventListener('click', () => {
        this.viewed = r.id;
        this.scrubStep = Math.min(this.scrubStep, r.index);
        this.#setFollow(r.active || this.follow);
        this.render();
      });
      return chip;
    }));
  }
}
