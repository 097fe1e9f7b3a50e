// Small DOM helpers shared by the panels.

export const $ = (id) => document.getElementById(id);

export function fmtMs(ms) {
  if (ms === null || ms === undefined || !Number.isFinite(ms)) return '–';
  return ms >= 1000 ? `${(ms / 1000).toFixed(2)} s` : `${Math.round(ms)} ms`;
}

export function fmtScore(score) {
  return typeof score === 'number' && Number.isFinite(score) ? score.toFixed(3) : '–';
}

const ERROR_LABELS = {
  bad_request: 'Invalid request',
  too_large: 'Too large',
  busy: 'Server busy',
  not_found: 'Not found',
  no_model: 'Model not loaded',
  internal: 'Server error',
  replica_lost: 'Engine lost',
};

/** Show a readable, dismissable error; identical consecutive messages are merged. */
export function showError(message, code = null) {
  const box = $('errors');
  const text = code ? `${ERROR_LABELS[code] || code}: ${message}` : String(message);
  const last = box.lastElementChild;
  if (last && last.dataset.text === text) {
    last.dataset.count = String(Number(last.dataset.count || 1) + 1);
    last.querySelector('span').textContent = `${text} (×${last.dataset.count})`;
    return;
  }
  const row = document.createElement('div');
  row.className = 'error';
  row.dataset.text = text;
  row.setAttribute('role', 'alert');
  const span = document.createElement('span');
  span.textContent = text;
  const close = document.createElement('button');
  close.type = 'button';
  close.textContent = '×';
  close.setAttribute('aria-label', `dismiss: ${text.slice(0, 80)}`);
  close.addEventListener('click', () => row.remove());
  row.append(span, close);
  box.append(row);
  while (box.children.length > 5) box.firstElementChild.remove();
}

/** Remove every error on show (stale after a reconnect or a new action). */
export function clearErrors() {
  $('errors').replaceChildren();
}

/** Show an image URL; tiny images are scaled up with hard pixels instead of blur. */
export function showImage(img, url, width) {
  if (!url) return;
  if (img.src !== url) img.src = url;
  img.hidden = false;
  img.classList.toggle('pixelated', (width || 0) > 0 && width < 256);
}

export function setProgress(bar, done, total) {
  bar.style.width = total > 0 ? `${Math.min(100, (100 * done) / total)}%` : '0';
}
