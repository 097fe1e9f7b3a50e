// The GAN panel. Generator sliders re-render at once (the server keeps the newest request); the
// CLIP search in w runs only from its own button, streams its steps and CLIP score, and has its
// own stop button. Moving a search slider only sets up that button.
import { ControlSet, el, randomSeed } from './controls.js';
import { mimeFor } from './protocol.js';
import { GAN_GROUPS, SEARCH_KEYS, TRUNCATION_LABELS, WALK_KEYS, ganOffers, ganParams } from './specs.js';
import { $, fmtMs, fmtScore, setProgress, showError, showImage } from './ui.js';

// What the loaded generator does with the prompt (/api/info gan.text).
const NOTES = {
  condition: 'Text-conditioned: the generator draws the prompt (its CLIP embedding is the input c), so it needs one, as Generate does.',
  clip_search: 'Unconditional: the generator draws the seed alone; the prompt steers only the CLIP search and the CLIP score. An empty prompt renders the unconditional sample.',
  none: 'Unconditional, and no CLIP model is loaded: the generator draws the seed alone; no CLIP search or score.',
};
// The same for a class-conditional generator (its description offers classes).
const CLASS_NOTES = {
  clip_search: 'Class-conditional: the generator draws the seed and the class picked below; the prompt steers only the CLIP search and the CLIP score.',
  none: 'Class-conditional, and no CLIP model is loaded: the generator draws the seed and the class picked below; no CLIP search or score.',
};

/** The search's line under its buttons, from its newest run (null: none yet). */
export function searchStatus(run, waiting) {
  if (waiting || run?.status === 'queued') return 'search queued';
  if (!run) return '';
  const score = run.clipScore === null ? '' : ` · CLIP ${fmtScore(run.clipScore)}`;
  const from = run.firstScore === null || run.firstScore === undefined ? '' : ` (from ${fmtScore(run.firstScore)})`;
  switch (run.status) {
    case 'running':
      return run.index ? `search step ${run.index}/${run.total}${score}${from}` : 'search starting';
    case 'done':
      return `search done: ${run.total} steps${score}${from}`;
    case 'cancelled':
      return `search stopped at step ${run.index}/${run.total}${score}`;
    default:
      return 'search failed';
  }
}

/** The walk's line beside its button, from its newest run (null: none yet). */
export function walkStatus(run, waiting) {
  if (waiting || run?.status === 'queued') return 'walk queued';
  if (!run) return '';
  switch (run.status) {
    case 'running':
      return run.index ? `walk frame ${run.index}/${run.total}` : 'walk starting';
    case 'done':
      return `walk done: ${run.total} frames`;
    case 'cancelled':
      return `walk stopped at frame ${run.index}/${run.total}`;
    default:
      return 'walk failed';
  }
}

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
    this.text = null; // 'condition' | 'clip_search' | 'none': what the generator does with the prompt
    this.offers = ganOffers(null); // what the loaded generator's controls description offers
    this.awaitingSearch = false; // a search was sent and its `queued` has not come back yet
    this.img = $('g-image');
    this.searchBtn = el('button', { type: 'button', id: 'g-search', text: 'CLIP search' });
    this.stopBtn = el('button', { type: 'button', id: 'g-search-stop', text: 'stop search', disabled: true });
    this.searchLine = el('output', { id: 'g-search-status', 'aria-live': 'polite' });
    const searchRow = el('div', { class: 'row search-actions' }, this.searchBtn, this.stopBtn, this.searchLine);
    this.awaitingWalk = false;
    this.walkBtn = el('button', { type: 'button', id: 'g-walk', text: 'walk' });
    this.walkSave = el('a', { id: 'g-walk-save', class: 'button', text: 'save walk (.webp)', hidden: true });
    this.walkLine = el('output', { id: 'g-walk-status', 'aria-live': 'polite' });
    const walkRow = el('div', { class: 'row search-actions' }, this.walkBtn, this.walkSave, this.walkLine);
    const extra = (g) => {
      if (g.controls.some((c) => SEARCH_KEYS.has(c.key))) return { ...g, extra: searchRow };
      if (g.controls.some((c) => WALK_KEYS.has(c.key))) return { ...g, extra: walkRow };
      return g;
    };
    const groups = GAN_GROUPS.map(extra);
    this.controls = new ControlSet($('g-controls'), 'g', groups, (key) => this.#changed(key));
    this.note = el('p', { id: 'g-note', class: 'gan-note' });
    this.hint = el('p', { id: 'g-hint', class: 'gan-note', role: 'status' });
    $('g-missing').after(this.note, this.hint);
    $('g-render').addEventListener('click', () => this.request(1));
    $('g-diversity').addEventListener('click', () => this.request(8));
    this.searchBtn.addEventListener('click', () => this.search());
    this.walkBtn.addEventListener('click', () => this.walk());
    this.stopBtn.addEventListener('click', () => this.stopSearch());
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
    this.note.textContent = loaded ? NOTES[this.text] ?? '' : '';
    this.#showSearch();
    this.#showWalk();
  }

  /** Draw the panel from the generator's own description (/api/info gan.controls): no family names here. */
  applyControls(controls) {
    this.offers = ganOffers(controls);
    for (const group of GAN_GROUPS) {
      for (const c of group.controls) if (c.needs) this.controls.show(c.key, this.offers.has(c.needs));
    }
    if (!controls) return;
    this.controls.relabel('truncation_psi', TRUNCATION_LABELS[controls.truncation] ?? 'truncation');
    const [min, max, value] = controls.truncation_range ?? [];
    if (Number.isFinite(min) && Number.isFinite(max)) this.controls.setRange('truncation_psi', { min, max });
    if (Number.isFinite(value)) this.controls.set({ truncation_psi: value });
    if (controls.mixing_layers > 0) this.controls.setRange('mix_layer', { max: controls.mixing_layers - 1 });
    this.controls.setChoices('class_index', controls.classes ?? []);
    this.controls.setChoices('walk_class', controls.classes ?? []);
    if (this.offers.has('classes') && this.controls.get('class_index') === null) this.controls.set({ class_index: 0 });
    if (this.loaded && this.offers.has('classes')) this.note.textContent = CLASS_NOTES[this.text] ?? this.note.textContent;
  }

  /** What /api/info says of the loaded GAN; `keep`: after a model swap, the page's own settings stay. */
  applyInfo(info, { keep = false } = {}) {
    const gan = info?.gan ?? info?.models?.gan ?? null;
    this.text = gan?.text ?? null;
    this.setLoaded(Boolean(gan));
    const layers = gan?.num_ws ?? gan?.mix_layers;
    if (layers) this.controls.setRange('mix_layer', { max: layers - 1 });
    const defaults = info?.defaults?.gan ?? info?.default_params?.gan;
    if (!keep && defaults && typeof defaults === 'object') {
      // The server's default 0 means "render, no search"; here the steps belong to the search button.
      const { search_steps: _steps, walk_frames: _frames, ...rest } = defaults;
      this.controls.set(rest);
    }
    const frames = info?.limits?.max_walk_frames;
    if (frames) this.controls.setRange('walk_frames', { max: frames });
    this.applyControls(gan?.controls ?? null);
    this.#showSearch();
  }

  #changed(key) {
    if (SEARCH_KEYS.has(key)) this.#showSearch();
    else if (WALK_KEYS.has(key)) {
      this.#showWalk();
      // The walk's end is also where the walk-position slider points: re-render when it is in use.
      if ((key === 'walk_seed' || key === 'walk_class') && this.controls.get('walk_t') > 0) this.request(1, true);
    } else this.request(1, true);
  }

  #fixSeed() {
    // A fixed seed keeps a dragged slider on the same image.
    if (this.controls.get('seed') === null) this.controls.set({ seed: randomSeed() });
  }

  /** Send a `generate_gan` render (never a search); `grid` > 1 renders consecutive seeds as one grid. */
  request(grid = 1, quiet = false) {
    if (!this.loaded) {
      if (!quiet) showError('no GAN model loaded');
      return false;
    }
    const prompt = this.prompt();
    if (this.text === 'condition' && !prompt.trim()) {
      this.hint.textContent = 'Type a prompt to render: this generator draws the prompt.';
      if (!quiet) showError('Enter a prompt first: this GAN is text-conditioned (it draws the prompt).');
      return false;
    }
    this.hint.textContent = '';
    this.#fixSeed();
    const params = ganParams(this.controls.values(), prompt, grid, !quiet, false, this.offers);
    if (!this.socket.send({ type: 'generate_gan', params })) {
      if (!quiet) showError('Not connected to the server.');
      return false;
    }
    return true;
  }

  /** The search button: a CLIP search in w from the current seed and sliders, kept in the gallery. */
  search() {
    if (!this.loaded) {
      showError('no GAN model loaded');
      return false;
    }
    if (this.text === 'none') {
      showError('The CLIP search needs a CLIP model, and none is loaded.');
      return false;
    }
    const prompt = this.prompt();
    if (!prompt.trim()) {
      showError('Enter a prompt first: the CLIP search steers the image towards it.');
      return false;
    }
    this.#fixSeed();
    const params = ganParams(this.controls.values(), prompt, 1, true, true, this.offers);
    if (!(params.search_steps > 0)) {
      showError('Set search steps above 0 first.');
      return false;
    }
    if (!this.socket.send({ type: 'generate_gan', params })) {
      showError('Not connected to the server.');
      return false;
    }
    this.hint.textContent = '';
    this.awaitingSearch = true;
    this.#showSearch();
    return true;
  }

  /** The walk button: an animation from the seed to the walk's end seed (or class), streamed frame by frame. */
  walk() {
    if (!this.loaded) {
      showError('no GAN model loaded');
      return false;
    }
    const prompt = this.prompt();
    if (this.text === 'condition' && !prompt.trim()) {
      showError('Enter a prompt first: this GAN is text-conditioned (it draws the prompt).');
      return false;
    }
    this.#fixSeed();
    const params = ganParams(this.controls.values(), prompt, 1, true, false, this.offers, true);
    if (!this.socket.send({ type: 'generate_gan', params })) {
      showError('Not connected to the server.');
      return false;
    }
    this.awaitingWalk = true;
    this.walkSave.hidden = true;
    this.#showWalk();
    return true;
  }

  #showWalk() {
    const active = this.runs.list('gan').some((r) => r.walk && r.active);
    this.walkBtn.disabled = !this.loaded || active || this.awaitingWalk;
    this.walkBtn.textContent = `walk (${this.controls.get('walk_frames')} frames)`;
    const run = this.runs.list('gan').filter((r) => r.walk).at(-1) ?? null;
    this.walkLine.textContent = walkStatus(run, this.awaitingWalk);
  }

  #activeSearch() {
    return this.runs.list('gan').filter((r) => r.search && r.active).at(-1) ?? null;
  }

  stopSearch() {
    const run = this.#activeSearch();
    if (run) this.socket.send({ type: 'cancel', run_id: run.id });
  }

  cancel() {
    for (const r of this.runs.list('gan')) if (r.active) this.socket.send({ type: 'cancel', run_id: r.id });
  }

  applySettings(params, seed) {
    const { search_steps: steps, ...rest } = params;
    this.controls.set({ ...rest, ...(steps > 0 ? { search_steps: steps } : {}), seed: seed ?? params.seed ?? null });
  }

  onEvent(ev) {
    let run = ev.run_id ? this.runs.get(ev.run_id) : null;
    switch (ev.type) {
      case 'queued':
        run = this.runs.add(ev.run_id, 'gan');
        if (this.awaitingSearch) {
          run.search = true; // one socket answers in order: this is the search just sent
          this.awaitingSearch = false;
        } else if (this.awaitingWalk) {
          run.walk = true;
          this.awaitingWalk = false;
        }
        break;
      case 'started':
        run = run ?? this.runs.add(ev.run_id, 'gan');
        Object.assign(run, { status: 'running', started: true, search: ev.task === 'search', walk: ev.task === 'walk', total: ev.total ?? 0,
          index: 0, elapsedMs: null, seed: ev.seed, width: ev.width, height: ev.height });
        break;
      case 'step':
        if (!run) return;
        run.index = ev.index;
        run.total = ev.total ?? run.total;
        run.elapsedMs = ev.elapsed_ms ?? run.elapsedMs;
        if (typeof ev.clip_score === 'number') {
          run.clipScore = ev.clip_score;
          if (run.search && run.firstScore === undefined) run.firstScore = ev.clip_score;
        }
        break;
      case 'done':
        if (!run) return;
        Object.assign(run, { status: 'done', imageId: ev.image_id, elapsedMs: ev.elapsed_ms,
          diversity: ev.diversity ?? null, prompt: ev.params?.prompt ?? null,
          images: ev.params?.grid ?? 1 });
        if (typeof ev.clip_score === 'number') run.clipScore = ev.clip_score;
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
    if (run.walk && meta.format === 'webp') {
      // The whole walk as one looping animation: shown in place and offered for download.
      this.walkSave.href = url;
      this.walkSave.download = `walk-${run.seed ?? 'seed'}-${meta.frames ?? ''}f.webp`;
      this.walkSave.hidden = false;
    }
    this.show();
  }

  /** The run the panel's figures describe: the newest that has started (a waiting one has none yet). */
  shownRun() {
    const list = this.runs.list('gan');
    return [...list].reverse().find((r) => r.started) ?? null;
  }

  #showSearch() {
    const active = this.#activeSearch();
    const steps = this.controls.get('search_steps');
    this.searchBtn.textContent = `CLIP search (${steps} steps)`;
    this.searchBtn.disabled = !this.loaded || this.text === 'none' || !this.offers.has('search') || Boolean(active)
      || this.awaitingSearch;
    this.searchBtn.title = this.text === 'none' ? 'no CLIP model is loaded' : 'optimise w towards the prompt with CLIP';
    this.stopBtn.disabled = !active;
    const last = this.runs.list('gan').filter((r) => r.search).at(-1) ?? null;
    this.searchLine.textContent = searchStatus(last, this.awaitingSearch);
  }

  show() {
    $('gan-panel').dataset.busy = String(this.runs.list('gan').some((r) => r.active));
    this.#showSearch();
    this.#showWalk();
    const run = this.shownRun();
    if (!run) return;
    $('g-stat-time').textContent = fmtMs(run.elapsedMs);
    $('g-stat-steps').textContent = run.total ? `${run.index}/${run.total}` : '–';
    $('g-stat-clip').textContent = fmtScore(run.clipScore);
    $('g-stat-seed').textContent = run.seed ?? '–';
    $('g-stat-div').textContent = fmtScore(run.diversity);
    setProgress($('g-progress'), run.index, run.total || 1);
    const frame = run.latestFrame ?? [...this.runs.list('gan')].reverse().find((r) => r.latestFrame)?.latestFrame;
    if (frame) {
      showImage(this.img, frame.url, frame.meta.width);
      $('g-placeholder').hidden = true;
    }
  }
}
