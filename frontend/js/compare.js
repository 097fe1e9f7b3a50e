// The side-by-side comparison under the panels: the newest finished image of each engine (time,
// CLIP score, diversity) and, when the server has them for the loaded weights, the figures that
// `python -m app evaluate` measured offline (/api/info -> measured). compareTable() is DOM-free.
import { fmtMs, fmtScore } from './ui.js';

const fixed = (v, digits) => (typeof v === 'number' && Number.isFinite(v) ? v.toFixed(digits) : '–');

/** "GAN 32.0× faster" from two times in ms; '' when either is missing. */
export function speedText(diffusionMs, ganMs) {
  if (!(diffusionMs > 0 && ganMs > 0)) return '';
  return ganMs <= diffusionMs
    ? `GAN ${(diffusionMs / ganMs).toFixed(1)}× faster`
    : `diffusion ${(ganMs / diffusionMs).toFixed(1)}× faster`;
}

/**
 * Rows of [what, diffusion, GAN, note] strings.
 * @param {object|null} d  the newest finished diffusion run ({elapsedMs, images, clipScore, diversity, prompt})
 * @param {object|null} g  the newest finished GAN run
 * @param {object|null} measured  /api/info's `measured` block
 * @returns {{live: string[][], offline: string[][], caption: string}}
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
    const rows = [md?.label, mg?.label].filter(Boolean).join(' · ');
    caption = `Measured offline by python -m app evaluate (${measured.source}): ${measured.prompts} prompts × `
      + `${measured.seeds} seeds on ${measured.device}; rows: ${rows}.`;
  }
  return { live, offline, caption };
}

/** Renders compareTable() into the page's #compare table and #compare-caption. */
export class CompareView {
  constructor(table, caption) {
    this.table = table;
    this.caption = caption;
    this.measured = null;
  }

  setMeasured(measured) {
    this.measured = measured ?? null;
  }

  render(diffusionRun, ganRun) {
    const { live, offline, caption } = compareTable(diffusionRun, ganRun, this.measured);
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
  }
}
