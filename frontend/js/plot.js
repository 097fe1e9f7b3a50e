// A small two-line canvas plot: CLIP score and sigma per step, with a marker at the viewed step.

const COLORS = { clip: '#5fd28a', sigma: '#7aa2ff', marker: '#f0b35a', grid: '#262a32', text: '#8c93a1' };

function extent(values) {
  let lo = Infinity;
  let hi = -Infinity;
  for (const v of values) {
    if (v < lo) lo = v;
    if (v > hi) hi = v;
  }
  if (!Number.isFinite(lo)) return null;
  if (hi - lo < 1e-9) return [lo - 1e-3, hi + 1e-3];
  return [lo, hi];
}

/**
 * @param {HTMLCanvasElement} canvas
 * @param {{step: number, sigma?: number, clip_score?: number|null}[]} series
 * @param {number} total  steps in the run (x axis length)
 * @param {number|null} marker  the step being viewed
 */
export function drawPlot(canvas, series, total, marker = null) {
  const dpr = window.devicePixelRatio || 1;
  const cssW = canvas.clientWidth || canvas.width;
  const cssH = canvas.clientHeight || canvas.height;
  if (canvas.width !== Math.round(cssW * dpr)) canvas.width = Math.round(cssW * dpr);
  if (canvas.height !== Math.round(cssH * dpr)) canvas.height = Math.round(cssH * dpr);
  const ctx = canvas.getContext('2d');
  ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
  ctx.clearRect(0, 0, cssW, cssH);

  const pad = { l: 8, r: 8, t: 16, b: 6 };
  const w = cssW - pad.l - pad.r;
  const h = cssH - pad.t - pad.b;
  const n = Math.max(1, total);
  const x = (step) => pad.l + (w * step) / n;

  ctx.strokeStyle = COLORS.grid;
  ctx.lineWidth = 1;
  for (let i = 0; i <= 4; i += 1) {
    const y = pad.t + (h * i) / 4;
    ctx.beginPath();
    ctx.moveTo(pad.l, y);
    ctx.lineTo(pad.l + w, y);
    ctx.stroke();
  }

  const sigmas = series.filter((p) => typeof p.sigma === 'number' && p.sigma > 0);
  const clips = series.filter((p) => typeof p.clip_score === 'number');
  const line = (points, value, color, range) => {
    if (!range || points.length === 0) return;
    const [lo, hi] = range;
    ctx.strokeStyle = color;
    ctx.lineWidth = 1.5;
    ctx.beginPath();
    points.forEach((p, i) => {
      const y = pad.t + h * (1 - (value(p) - lo) / (hi - lo));
      if (i === 0) ctx.moveTo(x(p.step), y);
      else ctx.lineTo(x(p.step), y);
    });
    ctx.stroke();
  };
  const logSigma = (p) => Math.log(p.sigma);
  line(sigmas, logSigma, COLORS.sigma, extent(sigmas.map(logSigma)));
  const clipRange = extent(clips.map((p) => p.clip_score));
  line(clips, (p) => p.clip_score, COLORS.clip, clipRange);

  if (marker !== null && total > 0) {
    ctx.strokeStyle = COLORS.marker;
    ctx.beginPath();
    ctx.moveTo(x(marker), pad.t);
    ctx.lineTo(x(marker), pad.t + h);
    ctx.stroke();
  }

  ctx.font = '11px system-ui, sans-serif';
  ctx.fillStyle = COLORS.sigma;
  const lastSigma = sigmas.at(-1);
  ctx.fillText(`σ (log)${lastSigma ? ` ${lastSigma.sigma.toPrecision(3)}` : ''}`, pad.l, 11);
  ctx.fillStyle = COLORS.clip;
  const lastClip = clips.at(-1);
  const clipText = clips.length ? `CLIP ${lastClip.clip_score.toFixed(3)}  [${clipRange[0].toFixed(3)}…${clipRange[1].toFixed(3)}]` : 'CLIP –';
  ctx.fillText(clipText, pad.l + 110, 11);
}
