// The side-by-side comparison under the panels: the newest finished image of each engine (time,
// CLIP score, diversity) and, when the server has them for the loaded weights, the figures that
// `python -m app evaluate` measured offline (/api/info -> measured), and the plot of the GAN's
// truncation sweep under the table. compareTable() and truncationCaption() are DOM-free.
import { fmtMs, fmtScore } from './ui.js';

const fixed = (v, digits) => (typeof v === 'number' && Number.isFinite(v) ? v.toFixed(digits) : '–');

/** "GAN 32.0× faster" from two times in ms; '' when either is missing. */
export function speedText(diffusionMs, ganMs) {
  if (!(diffusionMs > 0 && ganMs > 0)) return '';
  return ganMs <= diffusionMs
    ? `GAN ${(diffusionMs / ganMs).toFixed(1)}× faster`
    : `diffusion ${(ganMs / diffusionMs).toFixed(1)}× faster`;
}

const has = (...values) => values.some((v) => typeof v === 'number' && Number.isFinite(v));
const pair = (m, a, b) => (m && has(m[a], m[b]) ? `${fixed(m[a], 2)} / ${fixed(m[b], 2)}` : '–');

/**
 * What the truncation plot shows, with the sweep's own ends when /api/info sent them:
 * "ψ from 0 to 1.5 … R@1 0.72 → 0.60, recall 0.10 → 0.45, …".
 * @param {Array<object>|null} sweep  measured.truncation: [{psi, r_precision_top1, precision, recall, diversity,
 *   style_coverage}] in increasing psi
 */
export function truncationCaption(sweep) {
  const points = Array.isArray(sweep) ? sweep.filter((p) => Number.isFinite(p?.psi)) : [];
  const [lo, hi] = points.length ? [points[0], points[points.length - 1]] : [null, null];
  const range = lo ? `ψ from ${lo.psi} to ${hi.psi}` : 'ψ from 0 to 1.5';
  const moves = [['R@1', 'r_precision_top1', 2], ['precision', 'precision', 2], ['recall', 'recall', 2],
    ['diversity', 'diversity', 3], ['style coverage', 'style_coverage', 2]]
    .filter(([, key]) => lo && has(lo[key]) && has(hi[key]))
    .map(([name, key, digits]) => `${name} ${fixed(lo[key], digits)} → ${fixed(hi[key], digits)}`);
  return `GAN truncation sweep, ${range} (w lerped from the prompt's own centre at 0 to the unmodified w at 1, `
    + 'and beyond it above 1): fidelity (R@1, precision) against diversity (recall, pairwise distance, '
    + `style coverage).${moves.length ? ` Across the sweep: ${moves.join(', ')}.` : ''}`;
}

/**
 * Rows of [what, diffusion, GAN, note] strings, and the truncation plot ({url, caption}) when measured offers one.
 * @param {object|null} d  the newest finished diffusion run ({elapsedMs, images, clipScore, diversity, prompt})
 * @param {object|null} g  the newest finished GAN run
 * @param {object|null} measured  /api/info's `measured` block
 * @returns {{live: string[][], offline: string[][], caption: string, plot: {url: string, caption: string}|null}}
 */
export function compareTable(d, g, measured) {
  const live = [];
  if (d || g) {
    const samePrompt = d && g && d.prompt === g.prompt;
    live.push(['prompt', d?.prompt ?? '–', g?.prompt ?? '–', d && g && !samePrompt ? 'different prompts' : '']);
    const perImage = (r) => (r ? r.elapsedMs / (r.images || 1) : null); // a batch or grid shares one time
    const [dMs, gMs] = [perImage(d), perImage(g)];
    live.push(['time / image', fmtMs(dMs), fmtMs(gMs), speedText(dMs, gMs)]);
    live.push(['CLIP score', fmtScore(d?.clipScore), fmtScore(g?.clipScore), 'cosine to the prompt, higher is closer']);
    live.push(['diversity (CLIP)', fmtScore(d?.diversity), fmtScore(g?.diversity),
      'needs a batch > 1 or the GAN’s “diversity” grid']);
  }
  const offline = [];
  let caption = measured?.reason ?? '';
  let plot = null;
  if (measured?.available) {
    const md = measured.diffusion ?? null;
    const mg = measured.gan ?? null;
    const rp = (m) => (m ? `${fixed(m.r_precision_top1, 2)} / ${fixed(m.r_precision_top5, 2)}` : '–');
    const ceiling = measured.ceiling
      ? `real images: ${fixed(measured.ceiling.r_precision_top1, 2)} / ${fixed(measured.ceiling.r_precision_top5, 2)}` : '';
    offline.push(['R@1 / R@5 (judge)', rp(md), rp(mg), ceiling]);
    offline.push(['FID (judge)', fixed(md?.fid_judge, 1), fixed(mg?.fid_judge, 1), 'lower is closer to the real images']);
    offline.push(['diversity (judge)', fmtScore(md?.diversity), fmtScore(mg?.diversity), 'across seeds of a prompt']);
    offline.push(['ms / image', fmtMs(md?.ms_per_image), fmtMs(mg?.ms_per_image),
      measured.ms_ratio ? `${measured.ms_ratio.toFixed(1)}× in one run` : '']);
    // Evaluation v2's figures; an older file has none of them, and then the rows are left out.
    if (has(md?.precision, md?.recall, mg?.precision, mg?.recall)) {
      offline.push(['precision / recall (judge)', pair(md, 'precision', 'recall'), pair(mg, 'precision', 'recall'),
        'fidelity / coverage of the real images (Kynkäänniemi 2019)']);
    }
    if (has(md?.style_coverage, mg?.style_coverage)) {
      const n = md?.style_coverage_prompts ?? mg?.style_coverage_prompts;
      const judge = measured.style_classifier_accuracy_heldout;
      offline.push(['style coverage (of 4)', fixed(md?.style_coverage, 2), fixed(mg?.style_coverage, 2),
        `distinct art styles among 8 seeds of a prompt without a style word${n ? ` (${n} prompts)` : ''}`
        + (has(judge) ? `; the style classifier is ${fixed(judge, 2)} accurate on held-out images` : '')]);
    }
    const [hd, hg] = [md?.heldout?.r_precision_top1, mg?.heldout?.r_precision_top1];
    if (has(hd, hg)) {
      const trained = `${fixed(md?.r_precision_top1, 2)} / ${fixed(mg?.r_precision_top1, 2)}`;
      offline.push(['held-out concepts R@1', fixed(hd, 2), fixed(hg, 2),
        `concepts the dataset holds out of its training split (unseen only by models trained on that split); all concepts: ${trained}`]);
    }
    const [cd, cg] = [md?.compositional?.clip_r1_16, mg?.compositional?.clip_r1_16];
    if (has(cd, cg)) {
      offline.push(['compositional R@1 of 16', fixed(cd, 2), fixed(cg, 2),
        'prompts like “blue cat face”: CLIP picks the prompt among 16 (chance 0.06)']);
    }
    if (measured.truncation_plot) {
      plot = { url: measured.truncation_plot, caption: truncationCaption(measured.truncation) };
    }
    const rows = [md?.label, mg?.label].filter(Boolean).join(' · ');
    caption = `Measured offline by python -m app evaluate (${measured.source}): ${measured.prompts} prompts × `
      + `${measured.seeds} seeds on ${measured.device}; rows: ${rows}.`;
  }
  return { live, offline, caption, plot };
}

/** Renders compareTable() into the page's #compare table, #compare-caption and #compare-plot figure. */
export class CompareView {
  constructor(table, caption, figure = document.getElementById('compare-plot')) {
    this.table = table;
    this.caption = caption;
    this.figure = figure;
    this.measured = null;
    this.failedUrl = null; // a plot that did not load stays hidden rather than showing a broken image
    const img = figure?.querySelector('img');
    img?.addEventListener('error', () => { this.failedUrl = img.getAttribute('src'); this.figure.hidden = true; });
  }

  setMeasured(measured) {
    this.measured = measured ?? null;
  }

  render(diffusionRun, ganRun) {
    const { live, offline, caption, plot } = compareTable(diffusionRun, ganRun, this.measured);
    const head = ['', 'Diffusion', 'GAN', ''];
    const section = (title, rows) => (rows.length ? [[title, '', '', ''], ...rows].map((r, i) => [r, i === 0]) : []);
    const body = [...section('this page', live), ...section('measured offline', offline)];
    this.table.replaceChildren();
    const thead = this.table.createTHead().insertRow();
    for (const text of head) thead.append(Object.assign(document.createElement('th'), { textContent: text }));
    const tbody = this.table.createTBody();
    for (const [cells, isTitle] of body) {
      const tr = tbody.insertRow();
      if (isTitle) tr.className = 'group';
      cells.forEach((text, i) => { tr.insertCell().textContent = text; if (i === 3) tr.cells[i].className = 'note'; });
    }
    this.table.hidden = body.length === 0;
    this.caption.textContent = caption;
    this.renderPlot(plot);
  }

  renderPlot(plot) {
    if (!this.figure) return;
    const img = this.figure.querySelector('img');
    if (plot && img.getAttribute('src') !== plot.url) img.src = plot.url; // loaded once, not on every render
    this.figure.querySelector('figcaption').textContent = plot?.caption ?? '';
    this.figure.hidden = !plot || plot.url === this.failedUrl;
  }
}
