// The Diffusion panel: controls, live image, progress, timeline scrubber with forks, plot.
import { ControlSet, el, randomSeed } from './controls.js';
import { galleryImageUrl, uploadInitImage } from './api.js';
import { oneLine } from './input.js';
import { CLIP_SCORE_TITLE, drawPlot } from './plot.js';
import { mimeFor, FrameType } from './protocol.js';
import { placeText, queueOrder, settingsKey } from './queue.js';
import { nearestSize, sizeOptions, sizeWarning } from './sizes.js';
import { DIFFUSION_GROUPS, LIVE_KEYS, PREVIEW_DECODERS, diffusionParams, loraHint } from './specs.js';
import { MaskEditor } from './inpaint.js';
import { imageAsUpload, scheduleCount, scheduleText, showNotice } from './restore.js';
import { $, clearErrors, fmtMs, fmtScore, setProgress, showError, showImage } from './ui.js';
import { STRENGTH_TITLE, restoreSeed, variationParams } from './variations.js';

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
    this.initUi = null; // the init image control's file input, preview and status
    this.maskImage = null; // the inpainting mask's upload id (white = re-generate)
    this.mask = new MaskEditor((id) => { this.maskImage = id; });
    this.schedule = []; // restored live changes that the next Generate replays
    this.pendingUpdate = {};
    this.updateTimer = null;
    this.previewTimer = null;
    this.requested = new Set();
    this.pending = new Map(); // ref of a `generate` not yet answered -> {key, prompt}
    this.refs = 0;
    this.img = $('d-image');
    this.scrub = $('d-scrub');
    this.controls = new ControlSet($('d-controls'), 'd', this.#groupsWithInitImage(), (k, v, s) => this.#changed(k, v, s));
    this.scrub.addEventListener('input', () => this.#scrubTo(Number(this.scrub.value)));
    $('d-live').addEventListener('click', () => this.#setFollow(true));
    $('d-fork').addEventListener('click', () => this.fork());
    $('d-to-init').addEventListener('click', () => {
      const shown = this.#shownImage();
      if (shown) this.useAsInit(galleryImageUrl({ id: shown.id }), shown.label);
    });
    $('d-inpaint').addEventListener('click', () => {
      const shown = this.#shownImage();
      if (shown) this.useAsInit(galleryImageUrl({ id: shown.id }), shown.label, true);
    });
    $('d-variations').addEventListener('click', () => {
      const shown = this.#shownImage();
      if (shown) this.variations({ id: shown.id, engine: 'diffusion', params: shown.params }, shown.label);
    });
    const strength = $('d-var-strength');
    strength.title = STRENGTH_TITLE;
    strength.addEventListener('input', () => { $('d-var-strength-out').textContent = this.strength.toFixed(2); });
    $('replay-clear').addEventListener('click', () => this.setSchedule([]));
    $('d-reuse-seed').addEventListener('click', () => this.reuseSeed());
    this.sizes = null; // /api/info `sizes` of the loaded model
    this.previewDecoders = ['linear', 'full']; // /api/info `preview_decoders`
    this.sizeNote = el('p', { class: 'size-warning', id: 'd-size-warning', role: 'status', hidden: true });
    this.controls.node('height')?.after(this.sizeNote);
    $('d-plot').title = CLIP_SCORE_TITLE;
    this.#setFollow(true);
  }

  /** The run on screen if it is going, else the one running, else the next waiting: what live
   *  changes, Cancel and Esc act on. */
  get activeRun() {
    const viewed = this.runs.get(this.viewed);
    if (viewed?.active) return viewed;
    return queueOrder(this.runs.list('diffusion'))[0] ?? null;
  }

  /** A `generate` was sent and not yet answered (Generate waits for it). */
  get sending() {
    return this.pending.size > 0;
  }

  /** The params a Generate would send now; prompts as one line, as the server saves them. */
  params(prompt, negative) {
    const params = diffusionParams(this.controls.values(), oneLine(prompt), oneLine(negative), this.initImage);
    if (params.init_image && this.maskImage) params.mask_image = this.maskImage;
    const schedule = this.#replayable(params);
    if (schedule.length) params.schedule = schedule;
    return params;
  }

  /** The restored schedule's entries that fall inside these params' steps. */
  #replayable(params) {
    return this.schedule.filter((e) => e.step < params.steps && e.step >= (params.skip_steps || 0));
  }

  /** Settings keys of the runs queued or running (and sent) from this page. */
  activeKeys() {
    const going = this.runs.list('diffusion').filter((r) => r.active && r.key).map((r) => r.key);
    return [...going, ...[...this.pending.values()].map((p) => p.key)];
  }

  /** What /api/info says of the loaded model; `keep`: after a model swap, the page's own settings stay. */
  applyInfo(info, { keep = false } = {}) {
    const maxBatch = info?.limits?.max_batch;
    if (maxBatch) this.controls.setRange('batch', { max: Math.min(maxBatch, 16) });
    const maxSteps = info?.limits?.max_steps;
    if (maxSteps) {
      this.controls.setRange('steps', { max: Math.min(maxSteps, 500) });
      this.controls.setRange('skip_steps', { max: Math.min(maxSteps, 500) });
    }
    const defaults = info?.defaults?.diffusion ?? info?.default_params?.diffusion ?? info?.defaults;
    if (!keep && defaults && typeof defaults === 'object') this.controls.set(defaults);
    if (Array.isArray(info?.preview_decoders)) {
      this.previewDecoders = info.preview_decoders;
      this.controls.setOptions('preview_decoder', PREVIEW_DECODERS.filter(([v]) => info.preview_decoders.includes(v)), 'linear');
    }
    if (Array.isArray(info?.loras)) this.controls.setItems('lora_weights', info.loras, loraHint(info));
    if (info?.sizes?.options?.length) {
      this.sizes = info.sizes;
      for (const key of ['width', 'height']) {
        const wanted = keep ? this.controls.get(key) : defaults?.[key] ?? info.sizes.native;
        this.controls.setOptions(key, sizeOptions(info.sizes), nearestSize(info.sizes, wanted));
      }
    }
    this.#showSizeWarning();
  }

  #showSizeWarning() {
    const text = sizeWarning(this.sizes, this.controls.get('width'), this.controls.get('height'));
    this.sizeNote.textContent = text;
    this.sizeNote.hidden = !text;
  }

  /** Send a `generate`; false when the prompt or a seed is refused, the same settings are already
   *  going (a double-click queues one run), or the socket is down. */
  generate(prompt, negative) {
    if (!oneLine(prompt)) {
      showError('Enter a prompt first.');
      return false;
    }
    const problem = this.controls.problems()[0];
    if (problem) {
      showError(problem);
      return false;
    }
    if (this.mask.uploading) {
      showError('The inpainting mask is still uploading; press Generate again in a moment.');
      return false;
    }
    const params = this.params(prompt, negative);
    const key = settingsKey(params);
    if (this.sending || this.activeKeys().includes(key)) return false;
    this.refs += 1;
    const ref = `g${this.refs}`;
    if (!this.socket.send({ type: 'generate', params, ref })) {
      showError('Not connected to the server.');
      return false;
    }
    clearErrors(); // the last action's errors are stale now
    const left = this.schedule.length - (params.schedule?.length ?? 0);
    if (left > 0) {
      showError(`${left} replayed change${left === 1 ? '' : 's'} fall outside steps ${params.skip_steps || 0}-${params.steps - 1} and were left out`);
    }
    this.pending.set(ref, { key, prompt: params.prompt, batch: params.batch ?? 1 });
    return true;
  }

  /** The variation strength the page's control is set to (0.1 to 1). */
  get strength() {
    return Number($('d-var-strength').value);
  }

  /** Queue variations of a gallery image ({id, engine, params}): one img2img batch of four from it
   *  at the chosen strength, from a new random seed; false when refused or not sent. */
  variations(item, label) {
    if (this.sending) return false;
    const panel = diffusionParams(this.controls.values(), oneLine($('prompt').value), oneLine($('negative_prompt').value), null);
    const params = variationParams({ source: item.params, engine: item.engine, panel, imageId: item.id,
                                     strength: this.strength, seed: randomSeed() });
    if (!params.prompt) {
      showError('variations: that image has no prompt; type one first.');
      return false;
    }
    this.refs += 1;
    const ref = `v${this.refs}`;
    if (!this.socket.send({ type: 'generate', params, ref })) {
      showError('Not connected to the server.');
      return false;
    }
    clearErrors();
    this.pending.set(ref, { key: settingsKey(params), prompt: params.prompt, batch: params.batch,
                            label: `variations of ${label} · strength ${this.strength}` });
    return true;
  }

  /** Stop one run; by default the one on screen. */
  cancel(runId = this.activeRun?.id) {
    if (runId) this.socket.send({ type: 'cancel', run_id: runId });
  }

  /** The socket closed: no answer will come for what was sent. */
  forgetPending() {
    this.pending.clear();
  }

  /** Show a run (from the queue list or a branch chip). */
  show(runId) {
    const run = this.runs.get(runId);
    if (!run) return;
    this.viewed = run.id;
    this.scrubStep = Math.min(this.scrubStep, run.index);
    this.#setFollow(run.active || this.follow);
    this.render();
  }

  /** Put the viewed run's seed into the seed box, so the next Generate repeats it. */
  reuseSeed() {
    const run = this.runs.get(this.viewed);
    if (run?.seed === null || run?.seed === undefined) return;
    this.controls.set({ seed: run.seed });
    this.controls.input('seed')?.dispatchEvent(new Event('input', { bubbles: true }));
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
    if (this.socket.send({ type: 'rewind', run_id: owner.id, step, params: this.#liveValues() })) clearErrors();
  }

  /** Restore the controls from recorded params (the starting values), and the schedule of live
   *  changes the next Generate replays. `withInit`: the record decides the init image too. */
  applySettings(params, seed, schedule = [], withInit = false) {
    // eta null is the sampler's own (euler_a 1, ddim 0): the same number here replays the same run
    const eta = params.eta ?? SAMPLER_ETA[params.sampler] ?? 0;
    // a record without LoRAs replays without them; a preview decoder this server lacks falls back to the map
    const decoder = this.previewDecoders.includes(params.preview_decoder) ? params.preview_decoder : 'linear';
    this.controls.set({ ...params, eta, seed: restoreSeed(params, seed), lora_weights: params.lora_weights ?? {},
                        preview_decoder: decoder });
    if (params.steps !== undefined) this.controls.setRange('skip_steps', { max: params.steps });
    this.setSchedule(schedule);
    if (withInit) {
      const fromGallery = String(params.init_image ?? '').startsWith('gallery:');
      const preview = fromGallery ? galleryImageUrl({ id: params.init_image.slice(8) }) : null;
      if (params.init_image) this.setInitImage(params.init_image, preview, `id ${params.init_image} (restored)`);
      else this.setInitImage(null);
      this.mask.restore(params.init_image ? params.mask_image ?? null : null);
    }
    this.#showSizeWarning();
  }

  /** The schedule the next Generate replays, shown above the panels with a way to drop it. */
  setSchedule(schedule) {
    this.schedule = Array.isArray(schedule) ? schedule.map((e) => ({ step: e.step, changes: { ...e.changes } })) : [];
    $('replay').hidden = this.schedule.length === 0;
    $('replay-text').textContent = this.schedule.length
      ? `${scheduleCount(this.schedule)}: ${scheduleText(this.schedule)}` : '';
  }

  /** Show `id` as the init image (null clears it); `previewUrl` may be null when only the id is known. */
  setInitImage(id, previewUrl = null, label = null) {
    const { file, preview, status, paint } = this.initUi;
    this.initImage = id;
    this.mask.close(); // a mask belongs to the image it was painted on
    file.value = '';
    if (previewUrl) preview.src = previewUrl;
    preview.hidden = !id || !previewUrl;
    paint.disabled = preview.hidden;
    status.textContent = id ? (label ?? `id ${id}`) : 'none';
  }

  /** A finished image (gallery or final) becomes the init image; a start step of 0 would drown it
   *  in noise, so it is set to half the steps then. `inpaint`: open the mask editor on it instead
   *  (the masked part is re-generated from any start step; the rest stays). */
  async useAsInit(url, label, inpaint = false) {
    try {
      const file = await imageAsUpload(url);
      const id = await uploadInitImage(file);
      const local = URL.createObjectURL(file);
      this.setInitImage(id, local, `from ${label}`);
      if (inpaint) {
        this.mask.open(local);
        this.mask.node.scrollIntoView?.({ block: 'nearest' });
        showNotice('Inpainting', [`from ${label}`], ['paint the part to re-generate, then Generate']);
        return;
      }
      const notes = [];
      if (!this.controls.get('skip_steps')) {
        const start = Math.floor(this.controls.get('steps') / 2);
        this.controls.set({ skip_steps: start });
        notes.push(`skip_steps set to ${start} of ${this.controls.get('steps')}: the higher, the more of the image stays`);
      }
      showNotice('Init image set', [`from ${label}`], notes);
    } catch (err) {
      showError(`send to init image: ${err.message}`);
    }
  }

  onEvent(ev) {
    const run = ev.run_id ? this.runs.get(ev.run_id) : null;
    switch (ev.type) {
      case 'queued': {
        // Listed, not shown: the view stays on what it shows until this run starts (or is clicked).
        const r = this.runs.add(ev.run_id, 'diffusion', { parent: ev.parent ?? null, fromStep: ev.from_step ?? 0 });
        r.status = 'queued';
        r.position = ev.position ?? null;
        const sent = this.pending.get(ev.ref);
        this.pending.delete(ev.ref);
        if (sent) Object.assign(r, { key: sent.key, prompt: sent.prompt, batch: sent.batch, label: sent.label ?? null });
        else if (r.parent) r.prompt = this.runs.get(r.parent)?.prompt ?? null;
        if (this.viewed === null) this.viewed = r.id;
        break;
      }
      case 'position':
        if (!run) return;
        run.position = ev.position;
        break;
      case 'started': {
        const r = run ?? this.runs.add(ev.run_id, 'diffusion', { parent: ev.parent ?? null, fromStep: ev.from_step ?? 0 });
        Object.assign(r, { status: 'running', total: ev.total, seed: ev.seed, width: ev.width, height: ev.height });
        r.index = ev.from_step ?? 0;
        r.position = null;
        if (ev.from_step) r.fromStep = ev.from_step;
        this.#view(r.id, true); // one run goes at a time, so the one starting is the one to watch
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
          images: ev.params?.batch ?? 1, params: ev.params ?? null, lineage: ev.lineage ?? null,
          imageIds: ev.image_ids ?? (ev.image_id ? [ev.image_id] : []), picked: 0 });
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
        this.pending.delete(ev.ref);
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
    $('d-scrub-label').textContent = run.status === 'queued' ? `waiting · ${placeText(run.position)}` : `step ${step}/${total}`;
    $('d-reuse-seed').disabled = run.seed === null || run.seed === undefined;
    $('d-stat-steps').textContent = `${run.index}/${total}`;
    $('d-stat-time').textContent = fmtMs(run.elapsedMs);
    $('d-stat-clip').textContent = fmtScore(run.clipScore);
    $('d-stat-seed').textContent = run.seed ?? '–';
    $('d-stat-div').textContent = fmtScore(run.diversity);
    setProgress($('d-progress'), run.index, total);
    $('d-fork').disabled = run.index === 0 || step > run.index || step >= total;
    $('d-to-init').disabled = !this.#shownImage();
    $('d-variations').disabled = !this.#shownImage() || this.sending;
    $('d-inpaint').disabled = $('d-to-init').disabled;

    const tiles = this.follow && run.status === 'done' && run.imageIds.length > 1;
    this.#renderTiles(tiles ? run : null);
    if (tiles) {
      this.img.hidden = true;
      $('d-placeholder').hidden = true;
      drawPlot($('d-plot'), this.runs.series(run.id), total, step);
      return;
    }
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
      $('d-placeholder').hidden = true;
    } else {
      // nothing of this run to show yet: never leave the previous run's picture beside its step count
      this.img.hidden = true;
      this.img.removeAttribute('src');
      const placeholder = $('d-placeholder');
      placeholder.textContent = run.active ? `Waiting for step 1 of ${total || '…'}…` : 'No image for this step.';
      placeholder.hidden = false;
    }
    drawPlot($('d-plot'), this.runs.series(run.id), total, step);
  }

  /** The finished image on screen (the picked one of a batch): {id, params, label}, or null. */
  #shownImage() {
    const run = this.runs.get(this.viewed);
    if (run?.status !== 'done' || !run.imageIds?.length) return null;
    const j = Math.min(run.picked ?? 0, run.imageIds.length - 1);
    const which = run.imageIds.length > 1 ? `image ${j + 1} of run #${run.number}` : `the final image of run #${run.number}`;
    return { id: run.imageIds[j], params: run.params, label: which };
  }

  /** A finished batch as a grid of its images (the server's preview grid has the same columns);
   *  clicking one picks it for "variations" and "send to init image". */
  #renderTiles(run) {
    const box = $('d-tiles');
    if (!run) {
      box.hidden = true;
      box.replaceChildren();
      box.dataset.run = '';
      return;
    }
    if (box.dataset.run !== run.id) {
      const n = run.imageIds.length;
      box.style.setProperty('--cols', String(Math.min(n, 4)));
      box.replaceChildren(...run.imageIds.map((id, j) => {
        const img = el('img', { src: galleryImageUrl({ id }), alt: `image ${j + 1} of ${n}` });
        if ((run.width || 0) < 256) img.classList.add('pixelated');
        const tile = el('button', { type: 'button', 'data-id': id,
                                    'aria-label': `pick image ${j + 1} of ${n} (seed ${run.seed + j})` }, img);
        tile.addEventListener('click', () => {
          run.picked = j;
          this.render();
        });
        return tile;
      }));
      box.dataset.run = run.id;
    }
    [...box.children].forEach((tile, j) => tile.setAttribute('aria-pressed', String(j === (run.picked ?? 0))));
    box.hidden = false;
  }

  #groupsWithInitImage() {
    const file = el('input', { type: 'file', accept: 'image/png,image/jpeg,image/webp', id: 'd-init-file',
                               title: 'img2img: start from this picture (A1111 “init image”)' });
    const preview = el('img', { class: 'init-preview', alt: 'init image', hidden: true });
    const status = el('span', { class: 'mono', id: 'd-init-status', text: 'none' });
    const paint = el('button', { type: 'button', id: 'd-paint-mask', text: 'paint mask', disabled: true,
                                 title: 'inpainting: paint the part of the init image to re-generate' });
    paint.addEventListener('click', () => this.mask.open(preview.src));
    this.initUi = { file, preview, status, paint };
    const clear = el('button', { type: 'button', text: 'clear', 'aria-label': 'clear init image' });
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
      } finally {
        this.mask.close(); // a mask belongs to the image it was painted on
        paint.disabled = !this.initImage;
      }
    });
    clear.addEventListener('click', () => this.setInitImage(null));
    const extra = el('div', { class: 'ctl' }, el('label', { class: 'head', for: 'd-init-file', text: 'init image' }), file,
      el('div', { class: 'row' }, preview, status, clear, paint), this.mask.node);
    return DIFFUSION_GROUPS.map((g) => (g.legend === 'Init image' ? { ...g, extra } : g));
  }

  #liveValues() {
    const values = this.controls.values();
    return Object.fromEntries(Object.entries(values).filter(([k]) => LIVE_KEYS.has(k)));
  }

  #changed(key, value, spec) {
    if (key === 'width' || key === 'height') this.#showSizeWarning();
    if (key === 'steps') this.controls.setRange('skip_steps', { max: value });
    // Each sampler's customary eta: ancestral Euler adds full noise, DDIM none.
    if (key === 'sampler' && value in SAMPLER_ETA) this.controls.set({ eta: SAMPLER_ETA[value] });
    if (!spec.live || !LIVE_KEYS.has(key)) return;
    const run = this.activeRun;
    if (!run) return;
    // a LoRA slider sends {name: weight}: merged, so two sliders moved within one debounce both go
    this.pendingUpdate[key] = key === 'lora_weights' ? { ...this.pendingUpdate[key], ...value } : value;
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
    const order = new Map(list.map((r) => [r.id, r.number]));
    box.replaceChildren(...list.map((r) => {
      const mark = { queued: '…', running: '▶', done: '✓', cancelled: '■', error: '!' }[r.status] || '';
      const fork = r.parent && order.has(r.parent) ? ` ↳ #${order.get(r.parent)}@${r.fromStep}` : '';
      const chip = el('button', { type: 'button', class: 'branch', text: `#${order.get(r.id)}${fork} ${mark}`,
                                  title: `run ${r.id}` });
      chip.setAttribute('aria-current', String(r.id === this.viewed));
      chip.addEventListener('click', () => this.show(r.id));
      return chip;
    }));
  }
}
