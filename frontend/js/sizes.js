// The size menus from the loaded model (/api/info `sizes`): only sizes it can draw, native marked,
// a warning above what it was trained at. Pure functions; the panel puts them in the DOM.

/** [[value, label], ...] for a width / height menu. */
export function sizeOptions(sizes) {
  return sizes.options.map((s) => [String(s), s === sizes.native ? `${s} (trained size)` : s > sizes.native ? `${s} ⚠` : String(s)]);
}

/** The size closest to `value` among the offered ones (a restored or default value the menu lacks). */
export function nearestSize(sizes, value) {
  const n = Number(value);
  if (!Number.isFinite(n)) return sizes.native;
  return sizes.options.reduce((best, s) => (Math.abs(s - n) < Math.abs(best - n) ? s : best), sizes.options[0]);
}

/** A warning for width x height above the trained size, or '' when there is none. */
export function sizeWarning(sizes, width, height) {
  if (!sizes) return '';
  const over = Math.max(width, height);
  if (over <= sizes.native) return '';
  const factor = (width * height) / (sizes.native * sizes.native);
  return `${width}×${height} is above the ${sizes.native} px this model was trained at: expect repeated or ` +
    `smeared subjects, and about ${factor.toFixed(factor < 10 ? 1 : 0)}× the time per step.`;
}
