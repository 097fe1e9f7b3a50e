// The per-step plot: CLIP score (left axis) and the noise level sigma (right axis, log scale) against the
// step (bottom axis), with tick labels, a legend and a marker at the viewed step. The scales and
// ticks are pure functions (tested under node); drawPlot only paints them on a canvas.

export const CLIP_SCORE_TITLE =
  'CLIP score: cosine similarity between the loaded CLIP model\'s embeddings of the decoded image and of ' +
  'the prompt (weighted parts combined), from −1 to 1, higher is closer. The same figure in the panel, ' +
  'this plot, the Compare table and the gallery; steps are scored when they are fully decoded ' +
  '(“full decode every”) and at the end. Some tools show 100 × this.';

const COLORS = { clip: '#5fd28a', sigma: '#7aa2ff', marker: '#f0b35a', grid: '#262a32', axis: '#3a404c', text: '#8c93a1' };

/** About `count` round tick values (1, 2, 5 x 10^k) covering [lo, hi]. */
export function niceTicks(lo, hi, count = 4) {
  if (!Number.isFinite(lo) || !Number.isFinite(hi)) return [];
  if (hi < lo) [lo, hi] = [hi, lo];
  if (hi - lo < 1e-12) {
    const pad = Math.max(Math.abs(lo) * 0.05, 1e-3);
    lo -= pad;
    hi += pad;
  }
  const raw = (hi - lo) / Math.max(1, count);
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 5, 10].map((m) => m * mag).find((s) => s >= raw);
  const first = Math.floor(lo / step + 1e-9) * step;
  const ticks = [];
  for (let v = first; v <= hi + step * 0.5 && ticks.length < 50; v += step) ticks.push(Number(v.toPrecision(12)));
  if (ticks.at(-1) < hi) ticks.push(Number((ticks.at(-1) + step).toPrecision(12)));
  return ticks;
}

/** Tick values for a log axis over [lo, hi] (both > 0): powers of ten, with 2 and 5 when there are few. */
export function logTicks(lo, hi) {
  if (!(lo > 0) || !(hi > 0)) return [];
  if (hi < lo) [lo, hi] = [hi, lo];
  const e0 = Math.floor(Math.log10(lo));
  const e1 = Math.ceil(Math.log10(hi));
  const mults = e1 - e0 <= 2 ? [1, 2, 5] : [1];
  const ticks = [];
  for (let e = e0; e <= e1; e += 1) {
    for (const m of mults) {
      const v = Number((m * 10 ** e).toPrecision(6));
      if (v >= lo * 0.999 && v <= hi * 1.001) ticks.push(v);
    }
  }
  return ticks;
}

/** Tick label: short, without float noise. */
export function tickLabel(v) {
  if (v === 0) return '0';
  const a = Math.abs(v);
  if (a >= 1000 || a < 0.01) return v.toExponential(0).replace('e+', 'e');
  return String(Number(v.toPrecision(3)));
}

/** What the plot shows for a run: scales, ticks and points, independent of any canvas. */
export function plotModel(series, total) {
  const steps = Math.max(1, total || series.reduce((m, p) => Math.max(m, p.step), 0));
  const clips = series.filter((p) => typeof p.clip_score === 'number' && Number.isFinite(p.clip_score));
  const sigmas = series.filter((p) => typeof p.sigma === 'number' && p.sigma > 0);
  let clip = null;
  if (clips.length) {
    const values = clips.map((p) => p.clip_score);
    const ticks = niceTicks(Math.min(...values), Math.max(...values), 4);
    clip = { points: clips.map((p) => [p.step, p.clip_score]), ticks, lo: ticks[0], hi: ticks.at(-1),
             last: clips.at(-1) };
  }
  let sigma = null;
  if (sigmas.length) {
    const values = sigmas.map((p) => p.sigma);
    let lo = Math.min(...values);
    let hi = Math.max(...values);
    if (hi / lo < 1.01) {
      lo /= 1.5;
      hi *= 1.5;
    }
    sigma = { points: sigmas.map((p) => [p.step, p.sigma]), ticks: logTicks(lo, hi), lo, hi, last: sigmas.at(-1) };
  }
  return { steps, stepTicks: niceTicks(0, steps, 5).filter((s) => s <= steps && Number.isInteger(s)), clip, sigma };
}

/** One sentence for screen readers (the canvas's accessible name). */
export function plotSummary(model, marker) {
  const parts = [];
  if (model.clip) parts.push(`CLIP score ${model.clip.last.clip_score.toFixed(3)} at step ${model.clip.last.step}`);
  else parts.push('no CLIP score yet');
  if (model.sigma) parts.push(`noise level sigma ${tickLabel(model.sigma.hi)} down to ${tickLabel(model.sigma.lo)}`);
  if (marker !== null && marker !== undefined) parts.push(`viewing step ${marker} of ${model.steps}`);
  return `Plot per step: ${parts.join('; ')}.`;
}

/** Legend entries left to right, wrapping onto a second line on a narrow canvas. */
function legend(ctx, x, y, maxX, items) {
  let at = x;
  for (const [color, label, dot] of items) {
    const width = 18 + ctx.measureText(label).width;
    if (at > x && at + width > maxX) {
      at = x;
      y += 13;
    }
    ctx.strokeStyle = color;
    ctx.fillStyle = color;
    ctx.lineWidth = 2;
    ctx.beginPath();
    ctx.moveTo(at, y - 4);
    ctx.lineTo(at + 14, y - 4);
    ctx.stroke();
    if (dot) {
      ctx.beginPath();
      ctx.arc(at + 7, y - 4, 2.5, 0, 2 * Math.PI);
      ctx.fill();
    }
    ctx.fillStyle = COLORS.text;
    ctx.fillText(label, at + 18, y);
    at += width + 14;
  }
}

/**
 * @param {HTMLCanvasElement} canvas
 * @param {{step: number, sigma?: number, clip_score?: number|null}[]} series
 * @param {number} total  steps in the run (x axis length)
 * @param {number|null} marker  the step being viewed
 */
export function drawPlot(canvas, series, total, marker = null) {
  const model = plotModel(series, total);
  canvas.setAttribute('aria-label', plotSummary(model, marker));
  const dpr = window.devicePixelRatio || 1;
  const cssW = canvas.clientWidth || canvas.width;
  const cssH = canvas.clientHeight || canvas.height;
  if (canvas.width !== Math.round(cssW * dpr)) canvas.width = Math.round(cssW * dpr);
  if (canvas.height !== Math.round(cssH * dpr)) canvas.height = Math.round(cssH * dpr);
  const ctx = canvas.getContext('2d');
  ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
  ctx.clearRect(0, 0, cssW, cssH);
  ctx.font = '11px system-ui, sans-serif';

  const pad = { l: 42, r: 42, t: 34, b: 30 };
  const w = Math.max(10, cssW - pad.l - pad.r);
  const h = Math.max(10, cssH - pad.t - pad.b);
  const x = (step) => pad.l + (w * step) / model.steps;
  const yClip = (v) => pad.t + h * (1 - (v - model.clip.lo) / (model.clip.hi - model.clip.lo));
  const ySigma = (v) => pad.t + h * (1 - Math.log(v / model.sigma.lo) / Math.log(model.sigma.hi / model.sigma.lo));

  legend(ctx, 6, 12, cssW - 4, [[COLORS.clip, 'CLIP score (cosine, left)', true], [COLORS.sigma, 'σ noise level (log, right)', false],
    [COLORS.marker, 'viewed step', false]]);

  // axes: frame, x ticks and title
  ctx.strokeStyle = COLORS.axis;
  ctx.lineWidth = 1;
  ctx.strokeRect(pad.l + 0.5, pad.t + 0.5, w, h);
  ctx.fillStyle = COLORS.text;
  ctx.textAlign = 'center';
  for (const s of model.stepTicks) {
    ctx.beginPath();
    ctx.moveTo(x(s), pad.t + h);
    ctx.lineTo(x(s), pad.t + h + 4);
    ctx.stroke();
    ctx.fillText(String(s), x(s), pad.t + h + 15);
  }
  ctx.fillText('step', pad.l + w / 2, pad.t + h + 27);

  if (model.clip) {
    ctx.textAlign = 'right';
    for (const v of model.clip.ticks) {
      ctx.strokeStyle = COLORS.grid;
      ctx.beginPath();
      ctx.moveTo(pad.l, yClip(v));
      ctx.lineTo(pad.l + w, yClip(v));
      ctx.stroke();
      ctx.fillStyle = COLORS.clip;
      ctx.fillText(tickLabel(v), pad.l - 4, yClip(v) + 4);
    }
  }
  if (model.sigma) {
    ctx.textAlign = 'left';
    ctx.fillStyle = COLORS.sigma;
    for (const v of model.sigma.ticks) ctx.fillText(tickLabel(v), pad.l + w + 4, ySigma(v) + 4);
    ctx.strokeStyle = COLORS.sigma;
    ctx.lineWidth = 1.5;
    ctx.beginPath();
    model.sigma.points.forEach(([s, v], i) => (i ? ctx.lineTo(x(s), ySigma(v)) : ctx.moveTo(x(s), ySigma(v))));
    ctx.stroke();
  }
  if (model.clip) {
    ctx.strokeStyle = COLORS.clip;
    ctx.fillStyle = COLORS.clip;
    ctx.lineWidth = 1.5;
    ctx.beginPath();
    model.clip.points.forEach(([s, v], i) => (i ? ctx.lineTo(x(s), yClip(v)) : ctx.moveTo(x(s), yClip(v))));
    ctx.stroke();
    for (const [s, v] of model.clip.points) {
      ctx.beginPath();
      ctx.arc(x(s), yClip(v), 2.5, 0, 2 * Math.PI);
      ctx.fill();
    }
  } else {
    ctx.textAlign = 'center';
    ctx.fillStyle = COLORS.text;
    ctx.fillText('CLIP score: at the fully decoded steps and the end', pad.l + w / 2, pad.t + h / 2);
  }
  if (marker !== null && marker !== undefined && total > 0) {
    ctx.strokeStyle = COLORS.marker;
    ctx.lineWidth = 1;
    ctx.beginPath();
    ctx.moveTo(x(marker), pad.t);
    ctx.lineTo(x(marker), pad.t + h);
    ctx.stroke();
  }
  ctx.textAlign = 'start';
}
