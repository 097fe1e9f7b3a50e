// Upscale ×4: any gallery image (GAN, diffusion, or an uploaded file) through the GAN upscaler, the
// diffusion upscaler, or both side by side. The diffusion upscaler's x0 previews stream in like any
// diffusion run; each result shows its time and a before/after compare slider (the source, enlarged
// without smoothing, against the upscale). Results land in the gallery with their lineage.
import { galleryImageUrl, uploadInitImage } from './api.js';
import { el } from './controls.js';
import { $, fmtMs, showError } from './ui.js';

const MIME = { png: 'image/png', jpeg: 'image/jpeg', webp: 'image/webp' };
export const UPSCALERS = { gan: 'GAN (RRDBNet)', diffusion: 'diffusion (SD ×4 layout)' };

/** The `upscale` message params from the panel's values. */
export function upscaleParams({ source, upscaler, steps, noiseLevel, strength = 1, seed = null }) {
  const params = { source, upscaler, steps: Number(steps), noise_level: Number(noiseLevel), strength: Number(strength) };
  if (seed !== null && seed !== undefined && seed !== '') params.seed = Number(seed);
  return params;
}

/** The clip-path that shows the "after" image right of the slider at `percent` (0-100). */
export function revealClip(percent) {
  const p = Math.min(100, Math.max(0, Number(percent) || 0));
  return `inset(0 0 0 ${p}%)`;
}

/** "upscaled ×4 from image 0190a2b3 by the diffusion upscaler (20 steps, noise 20, strength 0.3)", or ''. */
export function upscaleLineageText(lineage) {
  if (!lineage?.upscaler) return '';
  const from = lineage.source_image ? `image ${String(lineage.source_image).slice(-8)}` : 'an upload';
  const part = lineage.strength !== undefined && lineage.strength < 1 ? `, strength ${lineage.strength}` : '';
  const how = lineage.upscaler === 'diffusion' ? ` (${lineage.steps} steps, noise ${lineage.noise_level}${part})` : '';
  return `upscaled ×4 from ${from} by the ${lineage.upscaler} upscaler${how}`;
}

export class UpscaleView {
  /** @param {import('./ws.js').Socket} socket */
  constructor(socket) {
    this.socket = socket;
    this.box = $('upscale-results');
    this.runs = new Map(); // run id -> {figure, img, time, upscaler}
    this.pending = new Map(); // ref -> {sourceUrl, upscalers: [...], which}
    this.sequence = 0;
    this.available = {};
    $('upscale-file-button').addEventListener('click', () => $('upscale-file').click());
    $('upscale-file').addEventListener('change', (ev) => this.#uploadAndUpscale(ev.target));
  }

  applyInfo(info) {
    this.available = info.upscalers ?? {};
    const none = !Object.keys(this.available).length;
    $('upscale-status').textContent = none ? 'no upscaler loaded (--upscaler-gan / --upscaler-diffusion)'
      : Object.entries(this.available).map(([k, v]) => `${k}: ${v}`).join(' · ');
    for (const option of $('upscaler').options) {
      option.disabled = option.value === 'both' ? Object.keys(this.available).length < 2 : !this.available[option.value];
    }
    const first = [...$('upscaler').options].find((o) => !o.disabled);
    if ($('upscaler').selectedOptions[0]?.disabled && first) $('upscaler').value = first.value;
  }

  owns(runId) {
    return this.runs.has(runId);
  }

  /** Upscale gallery image `item` with the panel's settings. */
  upscaleItem(item) {
    this.request(`gallery:${item.id}`, galleryImageUrl(item), `gallery image ${item.id.slice(-8)}`);
  }

  async #uploadAndUpscale(input) {
    const file = input.files?.[0];
    input.value = '';
    if (!file) return;
    try {
      const id = await uploadInitImage(file);
      this.request(id, URL.createObjectURL(file), file.name);
    } catch (err) {
      showError(err.message);
    }
  }

  request(source, sourceUrl, label) {
    const which = $('upscaler').value;
    const ref = `upscale-${++this.sequence}`;
    const params = upscaleParams({ source, upscaler: which, steps: $('upscale-steps').value,
                                   noiseLevel: $('upscale-noise').value, strength: $('upscale-strength').value });
    const upscalers = which === 'both' ? ['gan', 'diffusion'] : [which];
    if (!this.socket.send({ type: 'upscale', params, ref })) {
      showError('not connected: the upscale was not sent');
      return false;
    }
    this.pending.set(ref, { sourceUrl, upscalers: [...upscalers] });
    $('upscale-source').textContent = `source: ${label}`;
    this.box.replaceChildren();
    $('upscale-section').scrollIntoView({ block: 'nearest' });
    return true;
  }

  /** Whether the event belongs to an upscale this page asked for (then it is handled here). */
  onEvent(ev) {
    if (ev.type === 'queued' && ev.ref && this.pending.has(ev.ref)) {
      const pending = this.pending.get(ev.ref);
      const upscaler = pending.upscalers.shift();
      if (!pending.upscalers.length) this.pending.delete(ev.ref);
      this.runs.set(ev.run_id, this.#figure(ev.run_id, upscaler, pending.sourceUrl));
      return true;
    }
    if (ev.type === 'error' && ev.ref && this.pending.has(ev.ref)) {
      this.pending.delete(ev.ref);
      return true;
    }
    const run = this.runs.get(ev.run_id);
    if (!run) return false;
    if (ev.type === 'step') {
      run.time.textContent = `step ${ev.index}/${ev.total} · ${fmtMs(ev.elapsed_ms)}`;
    } else if (ev.type === 'done') {
      run.time.textContent = `${fmtMs(ev.elapsed_ms)}`;
      run.figure.dataset.state = 'done';
      run.cancel.hidden = true;
    } else if (ev.type === 'cancelled' || ev.type === 'error') {
      run.time.textContent = ev.type === 'cancelled' ? 'cancelled' : `error: ${ev.message}`;
      run.figure.dataset.state = ev.type;
      run.cancel.hidden = true;
    }
    return true;
  }

  onFrame(frame) {
    const run = this.runs.get(frame.meta.run_id);
    if (!run) return false;
    const url = URL.createObjectURL(new Blob([frame.image], { type: MIME[frame.meta.format] ?? 'image/png' }));
    if (run.url) URL.revokeObjectURL(run.url);
    run.url = url;
    run.after.src = url;
    run.after.width = frame.meta.width;
    run.before.width = frame.meta.width;
    return true;
  }

  #figure(runId, upscaler, sourceUrl) {
    const before = el('img', { class: 'before pixelated', src: sourceUrl, alt: 'before: the source picture, enlarged' });
    const after = el('img', { class: 'after', alt: `after: the ${upscaler} upscaler's result` });
    const slider = el('input', { type: 'range', class: 'compare-range', min: 0, max: 100, value: 50,
                                 'aria-label': `before / after divider (${upscaler})` });
    const reveal = () => { after.style.clipPath = revealClip(slider.value); };
    slider.addEventListener('input', reveal);
    reveal();
    const time = el('span', { class: 'time', text: 'queued' });
    const cancel = el('button', { type: 'button', class: 'cancel-upscale', text: 'cancel',
                                  'aria-label': `cancel the ${upscaler} upscale` });
    cancel.addEventListener('click', () => this.socket.send({ type: 'cancel', run_id: runId }));
    const figure = el('figure', { class: 'upscale-result', 'data-upscaler': upscaler, 'data-run': runId },
      el('div', { class: 'compare-slider' }, before, after),
      slider,
      el('figcaption', {}, el('strong', { text: UPSCALERS[upscaler] ?? upscaler }), ' · ', time, ' ', cancel));
    this.box.append(figure);
    return { figure, before, after, time, cancel, url: null };
  }
}
