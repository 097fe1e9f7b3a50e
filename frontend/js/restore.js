// Settings read back into the panels: from a gallery item ("use these settings"), or from a PNG
// opened or dropped on the page (Noisescope's JSON chunk or AUTOMATIC1111's `parameters`, read by
// POST /api/png-settings). Every restore says what it restored in the notice under the prompt.
import { withToken } from './api.js';
import { el } from './controls.js';
import { $, showError } from './ui.js';
import { restoreSeed } from './variations.js';

const SHORT = { cfg_scale: 'cfg', clip_guidance_scale: 'clip', eta: 'eta' };

/** "cfg 0" / "cut_flip false": one change as people read it. */
function changeText(key, value) {
  if (value && typeof value === 'object') {  // lora_weights: {name: weight}
    return Object.entries(value).map(([name, w]) => `LoRA ${name} ${w}`).join(', ');
  }
  return `${SHORT[key] ?? key} ${value}`;
}

/** "step 10: cfg 0; step 30: eta 0.5" for a schedule [{step, changes}]. */
export function scheduleText(schedule) {
  return (schedule || []).map((e) => `step ${e.step}: ${Object.entries(e.changes || {})
    .map(([k, v]) => changeText(k, v)).join(', ')}`).join('; ');
}

/** "schedule: 2 changes" (null for none). */
export function scheduleCount(schedule) {
  const n = (schedule || []).length;
  return n ? `schedule: ${n} change${n === 1 ? '' : 's'}` : null;
}

/** What a restore put back, as one line per part (shown in the notice). */
export function describeRestore(data) {
  const p = data.params || {};
  const parts = [];
  if (p.prompt) parts.push(`prompt “${p.prompt.length > 60 ? `${p.prompt.slice(0, 57)}…` : p.prompt}”`);
  if (p.negative_prompt) parts.push('negative prompt');
  const seed = data.engine === 'gan' ? data.seed : restoreSeed(p, data.seed);
  parts.push(seed === null || seed === undefined ? 'seed random' : `seed ${seed}`);
  if (data.engine === 'gan') {
    if (p.truncation_psi !== undefined) parts.push(`ψ ${p.truncation_psi}`);
    if (p.search_steps) parts.push(`search ${p.search_steps}`);
  } else {
    if (p.steps !== undefined) parts.push(`${p.steps} steps`);
    if (p.sampler) parts.push(`${p.sampler}${p.karras ? ' karras' : ''}`);
    if (p.cfg_scale !== undefined) parts.push(`CFG ${p.cfg_scale}`);
    if (p.width && p.height) parts.push(`${p.width}×${p.height}`);
  }
  const lines = [parts.join(' · ')];
  const count = scheduleCount(data.schedule);
  if (count) lines.push(`${count} (${scheduleText(data.schedule)})`);
  if (data.lineage?.parent_run) lines.push(`fork of run ${data.lineage.parent_run} at step ${data.lineage.from_step}`);
  if (data.lineage?.source_image) lines.push(`variation of gallery image ${data.lineage.source_image} at strength ${data.lineage.strength}`);
  if (data.engine !== 'gan' && (p.batch ?? 1) > 1) lines.push(`batch of ${p.batch} from seed ${p.seed} (Generate makes the whole batch again)`);
  if (data.engine !== 'gan' && p.init_image) lines.push(`init image: upload ${p.init_image}, start step ${p.skip_steps ?? 0}`);
  if (data.engine !== 'gan' && p.init_image && p.mask_image) lines.push(`inpainting mask: upload ${p.mask_image}`);
  return lines;
}

/** The notice under the prompt bar: a title, lines, and notes (what had to change). */
export function showNotice(title, lines = [], notes = []) {
  const box = $('notice');
  const close = el('button', { type: 'button', 'aria-label': 'dismiss notice', text: '×' });
  close.addEventListener('click', () => { box.hidden = true; });
  const list = el('ul', {}, ...lines.map((t) => el('li', { text: t })),
    ...notes.map((t) => el('li', { class: 'note', text: t })));
  box.replaceChildren(el('div', { class: 'notice-body' }, el('strong', { text: title }), list), close);
  box.hidden = false;
  box.classList.remove('flash');
  void box.offsetWidth; // restart the highlight for a second restore in a row
  box.classList.add('flash');
}

/** POST a file to /api/png-settings; resolves to the settings it carries. */
export async function readPngSettings(file) {
  const form = new FormData();
  form.append('file', file);
  const res = await fetch(withToken('/api/png-settings'), { method: 'POST', body: form });
  let body = null;
  try {
    body = await res.json();
  } catch {
    /* not JSON */
  }
  if (!res.ok) throw new Error(typeof body?.detail === 'string' ? body.detail : `${res.status} ${res.statusText}`);
  return body;
}

export class Restorer {
  /** @param {{diffusion: object, gan: object, onApplied?: () => void}} panels */
  constructor({ diffusion, gan, onApplied }) {
    this.diffusion = diffusion;
    this.gan = gan;
    this.onApplied = onApplied;
  }

  /** Put `data` ({engine, params, seed, schedule, lineage, notes, source}) into the controls. */
  apply(data, from) {
    const params = data.params || {};
    if (typeof params.prompt === 'string') $('prompt').value = params.prompt;
    if (data.engine === 'gan') {
      this.gan.applySettings(params, data.seed);
    } else {
      $('negative_prompt').value = params.negative_prompt ?? '';
      this.diffusion.applySettings(params, data.seed, data.schedule || [], data.source !== 'automatic1111');
    }
    const engine = data.engine === 'gan' ? 'GAN' : 'Diffusion';
    showNotice(`${engine} settings restored from ${from}`, describeRestore(data), data.notes || []);
    this.onApplied?.();
  }

  /** Read a PNG's settings and restore them; any failure is said, nothing half-applied. */
  async openFile(file) {
    if (!file) return;
    try {
      this.apply(await readPngSettings(file), file.name ? `“${file.name}”` : 'the PNG');
    } catch (err) {
      showError(`Could not read settings from ${file.name || 'that file'}: ${err.message}`);
    }
  }

  /** The file input, and drag and drop of a PNG anywhere on the page. */
  install(input, dropTarget = document.body) {
    input.addEventListener('change', async () => {
      await this.openFile(input.files?.[0]);
      input.value = '';
    });
    const hasFile = (e) => [...(e.dataTransfer?.types || [])].includes('Files');
    dropTarget.addEventListener('dragover', (e) => {
      if (!hasFile(e)) return;
      e.preventDefault();
      dropTarget.classList.add('dropping');
    });
    dropTarget.addEventListener('dragleave', () => dropTarget.classList.remove('dropping'));
    dropTarget.addEventListener('drop', (e) => {
      if (!hasFile(e)) return;
      e.preventDefault();
      dropTarget.classList.remove('dropping');
      this.openFile(e.dataTransfer.files[0]);
    });
  }
}

/** A finished image (gallery or final) as the init image: fetched here and uploaded again. */
export async function imageAsUpload(url, name = 'result.png') {
  const res = await fetch(url);
  if (!res.ok) throw new Error(`could not fetch the image (${res.status})`);
  const blob = await res.blob();
  return new File([blob], name, { type: blob.type || 'image/png' });
}
