// What the page accepts from the keyboard: one-line prompts, seeds checked in words, shortcuts.

export const MAX_SEED = 2 ** 32 - 1;
export const SEED_RULE = `must be a whole number from 0 to ${MAX_SEED}; leave it empty for a random seed`;

/** A prompt as sent: each line break (with the spaces around it) becomes one space; app/params.py does the same. */
export function oneLine(text) {
  return String(text).replace(/\s*[\r\n\v\f\u0085\u2028\u2029]\s*/g, ' ').trim();
}

/** Why a seed box's text is refused, or null. `badInput`: the browser could not read a number at all. */
export function seedProblem(text, badInput = false, label = 'seed') {
  if (badInput) return `${label}: ${SEED_RULE}`;
  const t = String(text).trim();
  if (t === '') return null;
  const n = Number(t);
  return Number.isInteger(n) && n >= 0 && n <= MAX_SEED ? null : `${label}: ${SEED_RULE}`;
}

/**
 * Enter in a prompt box generates, Shift+Enter makes a new line, Esc anywhere cancels (listed in
 * index.html's #shortcuts).
 * @param {HTMLElement[]} boxes  the prompt textareas
 * @param {{generate: () => void, cancel: () => void}} actions
 */
export function bindShortcuts(doc, boxes, actions) {
  for (const box of boxes) {
    box.addEventListener('keydown', (e) => {
      // a handler that claimed the key first (an open suggestion list) keeps it
      if (e.key !== 'Enter' || e.shiftKey || e.altKey || e.isComposing || e.defaultPrevented) return;
      e.preventDefault();
      actions.generate();
    });
  }
  doc.addEventListener('keydown', (e) => {
    if (e.key === 'Escape' && !e.defaultPrevented) actions.cancel();
  });
}
