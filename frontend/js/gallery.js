// The gallery: finished images with their parameters, "use these settings", download and delete,
// a page at a time (newer / older) over the server's total, searchable by prompt.
import { deleteGalleryImage, fetchGalleryPage, galleryImageUrl } from './api.js';
import { el } from './controls.js';
import { fileActions } from './gallery_actions.js';
import { lastPageOffset, MAX_QUERY_CHARS, PAGE_SIZE, pageQuery, pagerState } from './gallery_paging.js';
import { ganCaption } from './specs.js';
import { scheduleText } from './restore.js';
import { upscaleLineageText } from './upscale.js';
import { batchText, lineageText } from './variations.js';
import { $, fmtMs, fmtScore, showError } from './ui.js';

const SEARCH_PAUSE_MS = 250; // typing: search once the keys pause

function summary(item) {
  const p = item.params || {};
  const t = item.timings || {};
  const parts = [];
  if (item.engine === 'upscale') {
    parts.push(`upscale ×4 (${p.upscaler ?? '?'})`);
  } else if (item.engine === 'gan') {
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
   * @param {(item: object, inpaint: boolean) => void} [onInit]  makes an item the init image (to paint a mask on)
   * @param {(item: object) => void} [onVariations]  queues variations of an item
   * @param {(item: object) => void} [onUpscale]  upscales an item ×4 with the Upscale panel's choice
   */
  constructor(onUse, onInit = null, onVariations = null, onUpscale = null) {
    this.onUse = onUse;
    this.onInit = onInit;
    this.onVariations = onVariations;
    this.onUpscale = onUpscale;
    this.box = $('gallery');
    this.loading = null;
    this.stale = false; // a refresh was asked for while one was loading
    this.size = PAGE_SIZE;
    this.offset = 0;
    this.total = 0;
    this.search = $('gallery-search');
    this.search.maxLength = MAX_QUERY_CHARS;
    $('gallery-refresh').addEventListener('click', () => this.refresh());
    $('gallery-newer').addEventListener('click', () => this.turn(-1));
    $('gallery-older').addEventListener('click', () => this.turn(1));
    this.#bindSearch();
  }

  /** The search text as sent (the server ignores outer spaces too). */
  get query() {
    return this.search.value.trim();
  }

  /** One page towards older (+1) or newer (-1) images. */
  async turn(direction) {
    this.offset = Math.max(0, this.offset + direction * this.size);
    await this.refresh();
    this.box.closest('section')?.scrollIntoView({ block: 'start' }); // the new page from its top
  }

  #bindSearch() {
    let timer = null;
    let sent = this.query;
    const run = () => {
      clearTimeout(timer);
      if (this.query === sent) return;
      sent = this.query;
      this.offset = 0;
      this.refresh();
    };
    this.search.addEventListener('input', () => {
      clearTimeout(timer);
      timer = setTimeout(run, SEARCH_PAUSE_MS);
    });
    this.search.addEventListener('keydown', (e) => {
      if (e.key === 'Enter') run();
      if (e.key === 'Escape' && this.search.value) {
        e.preventDefault(); // clears the search; it does not cancel the run on screen
        this.search.value = '';
        run();
      }
    });
    this.search.addEventListener('search', run); // the field's own clear button
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
          await this.#load();
        } catch (err) {
          showError(`gallery: ${err.message}`);
        }
      } while (this.stale);
      this.loading = null;
    })();
    return this.loading;
  }

  /** The current page; a page left empty (its last image deleted) falls back to the last one. */
  async #load() {
    const q = this.query;
    let { items, total } = await fetchGalleryPage(pageQuery({ offset: this.offset, size: this.size, q }));
    if (!items.length && this.offset > 0 && total > 0) {
      this.offset = lastPageOffset(total, this.size);
      ({ items, total } = await fetchGalleryPage(pageQuery({ offset: this.offset, size: this.size, q })));
    }
    this.total = total;
    this.render(items);
    const state = pagerState({ offset: this.offset, count: items.length, total, size: this.size, q });
    $('gallery-newer').disabled = !state.newer;
    $('gallery-older').disabled = !state.older;
    $('gallery-count').textContent = state.label;
  }

  async #delete(item) {
    const at = [...this.box.querySelectorAll('.card')].findIndex((card) => card.dataset.id === item.id);
    try {
      await deleteGalleryImage(item.id);
    } catch (err) {
      showError(err.message);
      if (/no such image/.test(err.message)) await this.refresh(); // another tab deleted it first
      return;
    }
    await this.refresh();
    // the keyboard stays in the gallery: on the card that took the deleted one's place
    const cards = this.box.querySelectorAll('.card');
    const next = cards[Math.min(Math.max(at, 0), cards.length - 1)];
    (next?.querySelector('button.delete') ?? $('gallery-search')).focus();
  }

  render(items) {
    if (!items.length) {
      const text = this.query ? `No images match “${this.query}”.` : 'No finished images yet.';
      this.box.replaceChildren(el('p', { class: 'empty', text }));
      return;
    }
    this.box.replaceChildren(...items.map((item, i) => this.#card(item, this.offset + i)));
  }

  #card(item, i) {
    const { line, history, perf } = summary(item);
    const prompt = item.engine === 'gan' ? ganCaption(item.params)
      : item.engine === 'upscale' ? `upscale of ${String(item.params?.source ?? '').slice(-8)}`
        : item.params?.prompt || '(no prompt)';
    const img = el('img', { src: galleryImageUrl(item), alt: prompt, loading: 'lazy', width: item.width, height: item.height });
    if (item.width && item.width < 256) img.classList.add('pixelated');
    const use = el('button', { type: 'button', text: 'use these settings',
                               'aria-label': `use these settings of image ${i + 1}: ${prompt.slice(0, 80)}` });
    use.addEventListener('click', () => this.onUse(item));
    const toInit = el('button', { type: 'button', text: 'send to init image', class: 'to-init',
                                  'aria-label': `send to init image: image ${i + 1}, ${prompt.slice(0, 80)}` });
    toInit.addEventListener('click', () => this.onInit?.(item, false));
    const inpaint = el('button', { type: 'button', text: 'inpaint', class: 'to-init',
                                   'aria-label': `inpaint: image ${i + 1}, ${prompt.slice(0, 80)}` });
    inpaint.addEventListener('click', () => this.onInit?.(item, true));
    const vary = el('button', { type: 'button', text: 'variations', class: 'vary',
                                title: 'four img2img runs from this image at the strength set under the Diffusion viewer',
                                'aria-label': `variations of image ${i + 1}: ${prompt.slice(0, 80)}` });
    vary.addEventListener('click', () => this.onVariations?.(item));
    const up = el('button', { type: 'button', text: 'upscale', class: 'upscale',
                              title: 'upscale ×4 with the upscaler chosen under Upscale (GAN, diffusion or both)',
                              'aria-label': `upscale image ${i + 1}: ${prompt.slice(0, 80)}` });
    up.addEventListener('click', () => this.onUpscale?.(item));
    const source = upscaleLineageText(item.lineage) || lineageText(item.lineage);
    const link = el('a', { href: galleryImageUrl(item), target: '_blank', rel: 'noopener' }, img);
    const card = el('article', { class: 'card', 'data-id': item.id },
      link,
      el('div', { class: 'meta' },
        el('span', { class: 'prompt', title: prompt, text: prompt }),
        el('span', { class: 'sub', text: line }),
        history ? el('span', { class: 'sub history', text: history }) : '',
        source ? el('span', { class: 'sub lineage', text: source, title: `source: gallery image ${item.lineage.source_image}` }) : '',
        el('span', { class: 'sub', text: perf })),
      el('div', { class: 'card-actions' }, use, toInit, inpaint, vary, up),
      fileActions(item, `image ${i + 1}: ${prompt.slice(0, 80)}`, (it) => this.#delete(it)));
    return card;
  }
}
