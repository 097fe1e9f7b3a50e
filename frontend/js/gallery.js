// The gallery strip: finished images with their parameters and a "use these settings" button.
import { fetchGallery, galleryImageUrl } from './api.js';
import { el } from './controls.js';
import { ganCaption } from './specs.js';
import { scheduleText } from './restore.js';
import { batchText, lineageText } from './variations.js';
import { $, fmtMs, fmtScore, showError } from './ui.js';

function summary(item) {
  const p = item.params || {};
  const t = item.timings || {};
  const parts = [];
  if (item.engine === 'gan') {
    parts.push('GAN', `ψ ${p.truncation_psi ?? '–'}`);
    if (p.search_steps) parts.push(`search ${p.search_steps}`);
  } else {
    parts.push(`${p.sampler ?? '?'}${p.karras ? ' karras' : ''}`, `${p.steps ?? '?'} steps`, `cfg ${p.cfg_scale ?? '?'}`);
    if (p.clip_guidance_scale) parts.push(`clip ${p.clip_guidance_scale}`);
  }
  parts.push(`seed ${item.seed ?? '–'}`, `${item.width}×${item.height}`);
  if (batchText(item)) parts.push(batchText(item));
  const history = [];
  if (item.lineage?.parent_run) history.push(`fork @${item.lineage.from_step}`);
  if (item.schedule?.length) history.push(scheduleText(item.schedule));
  return { line: parts.join(' · '), history: history.join(' · '),
           perf: `${fmtMs(t.total_ms)} · ${fmtMs(t.ms_per_step)}/step · CLIP ${fmtScore(item.clip_score)}` };
}

export class GalleryView {
  /**
   * @param {(item: object) => void} onUse  restores an item's settings into the panels
   * @param {(item: object) => void} [onInit]  makes an item the init image
   * @param {(item: object) => void} [onVariations]  queues variations of an item
   */
  constructor(onUse, onInit = null, onVariations = null) {
    this.onUse = onUse;
    this.onInit = onInit;
    this.onVariations = onVariations;
    this.box = $('gallery');
    this.loading = null;
    this.stale = false; // a refresh was asked for while one was loading
    $('gallery-refresh').addEventListener('click', () => this.refresh());
  }

  /** Reload the list. A call while a load is in flight is not dropped: one more load follows it,
   *  so an image finished during the first request still appears. */
  async refresh() {
    if (this.loading) {
      this.stale = true;
      return this.loading;
    }
    this.loading = (async () => {
      do {
        this.stale = false;
        try {
          this.render(await fetchGallery());
        } catch (err) {
          showError(`gallery: ${err.message}`);
        }
      } while (this.stale);
      this.loading = null;
    })();
    return this.loading;
  }

  render(items) {
    if (!items.length) {
      this.box.replaceChildren(el('p', { class: 'empty', text: 'No finished images yet.' }));
      return;
    }
    this.box.replaceChildren(...items.map((item, i) => this.#card(item, i)));
  }

  #card(item, i) {
    const { line, history, perf } = summary(item);
    const prompt = item.engine === 'gan' ? ganCaption(item.params) : item.params?.prompt || '(no prompt)';
    const img = el('img', { src: galleryImageUrl(item), alt: prompt, loading: 'lazy', width: item.width, height: item.height });
    if (item.width && item.width < 256) img.classList.add('pixelated');
    const use = el('button', { type: 'button', text: 'use these settings',
                               'aria-label': `use these settings of image ${i + 1}: ${prompt.slice(0, 80)}` });
    use.addEventListener('click', () => this.onUse(item));
    const toInit = el('button', { type: 'button', text: 'send to init image', class: 'to-init',
                                  'aria-label': `send to init image: image ${i + 1}, ${prompt.slice(0, 80)}` });
    toInit.addEventListener('click', () => this.onInit?.(item));
    const vary = el('button', { type: 'button', text: 'variations', class: 'vary',
                                title: 'four img2img runs from this image at the strength set under the Diffusion viewer',
                                'aria-label': `variations of image ${i + 1}: ${prompt.slice(0, 80)}` });
    vary.addEventListener('click', () => this.onVariations?.(item));
    const source = lineageText(item.lineage);
    const link = el('a', { href: galleryImageUrl(item), target: '_blank', rel: 'noopener' }, img);
    const card = el('article', { class: 'card', 'data-id': item.id },
      link,
      el('div', { class: 'meta' },
        el('span', { class: 'prompt', title: prompt, text: prompt }),
        el('span', { class: 'sub', text: line }),
        history ? el('span', { class: 'sub history', text: history }) : '',
        source ? el('span', { class: 'sub lineage', text: source, title: `source: gallery image ${item.lineage.source_image}` }) : '',
        el('span', { class: 'sub', text: perf })),
      use, toInit, vary);
    return card;
  }
}
