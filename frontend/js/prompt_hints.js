// Hints under a prompt box from the loaded tokenizer: words it would split into letters or many
// pieces are marked (POST /api/tokenize), and the word being typed autocompletes from its vocabulary
// (GET /api/vocab). Suggestions are buttons right after the box, so Tab reaches them.
import { withToken } from './api.js';

const DELAY_MS = 150; // typing pause before asking the server
const MIN_PREFIX = 2;
const WORD_CHAR = /[\p{L}\p{N}'’]/u;

/** The partial word that ends at `caret` in `text`: {start, prefix}. */
export function wordAt(text, caret) {
  let start = caret;
  while (start > 0 && WORD_CHAR.test(text[start - 1])) start -= 1;
  return { start, prefix: text.slice(start, caret) };
}

/** `text` with the word ending at `caret` replaced by `word` and a space: {text, caret}. */
export function completeWord(text, caret, word) {
  const { start } = wordAt(text, caret);
  let end = caret;
  while (end < text.length && WORD_CHAR.test(text[end])) end += 1;
  const after = text.slice(end);
  const sep = after.startsWith(' ') ? '' : ' ';
  const next = `${text.slice(0, start)}${word}${sep}${after}`;
  return { text: next, caret: start + word.length + 1 };
}

/** A note for weighted parts longer than CLIP reads (it keeps max_tokens - 2 and drops the rest). */
export function lengthNote(parts, maxTokens) {
  const room = (maxTokens || 77) - 2;
  const long = (parts || []).filter((p) => p.tokens > room);
  if (!long.length) return '';
  return long.map((p) => `“${p.text}” is ${p.tokens} tokens; the model reads the first ${room}.`).join(' ');
}

/** The hint line's content: marked words, most informative first. */
export function hintSummary(words) {
  const marked = [];
  const seen = new Set();
  for (const w of words) {
    const key = w.text.toLowerCase();
    if (!w.marked || seen.has(key)) continue;
    seen.add(key);
    marked.push(w);
  }
  return marked;
}

function pieceText(pieces) {
  return pieces.map((p) => p.replace(/<\/w>$/, '')).join(' · ');
}

async function post(path, body) {
  const res = await fetch(withToken(path), { method: 'POST', headers: { 'content-type': 'application/json' },
                                             body: JSON.stringify(body) });
  if (!res.ok) throw new Error(`${path}: ${res.status}`);
  return res.json();
}

async function get(path) {
  const res = await fetch(withToken(path));
  if (!res.ok) throw new Error(`${path}: ${res.status}`);
  return res.json();
}

export class PromptHints {
  /**
   * @param {HTMLTextAreaElement} box
   * @param {string} name  for ids and accessible names ("prompt", "negative prompt")
   */
  constructor(box, name) {
    this.box = box;
    this.name = name;
    this.seq = 0;
    this.timer = null;
    this.hint = document.createElement('p');
    this.hint.className = 'token-hints';
    this.hint.id = `${box.id}-hints`;
    this.hint.setAttribute('aria-live', 'polite');
    this.suggest = document.createElement('div');
    this.suggest.className = 'suggestions';
    this.suggest.id = `${box.id}-suggestions`;
    this.suggest.setAttribute('role', 'group');
    this.suggest.setAttribute('aria-label', `completions for the ${name}`);
    this.suggest.hidden = true;
    box.setAttribute('aria-describedby', this.hint.id);
    box.after(this.suggest, this.hint);
    box.addEventListener('input', () => this.#schedule());
    box.addEventListener('keydown', (e) => {
      if (e.key === 'Escape') this.suggest.hidden = true;
    });
    this.#schedule();
  }

  #schedule() {
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.refresh(), DELAY_MS);
  }

  /** Ask the server about the current text and the word at the caret; newer answers win. */
  async refresh() {
    const seq = ++this.seq;
    const text = this.box.value;
    const { prefix } = wordAt(text, this.box.selectionStart ?? text.length);
    try {
      const [tok, voc] = await Promise.all([
        text.trim() ? post('/api/tokenize', { text }) : Promise.resolve({ words: [] }),
        prefix.length >= MIN_PREFIX && prefix.length <= 40
          ? get(`/api/vocab?prefix=${encodeURIComponent(prefix)}&limit=8`) : Promise.resolve({ words: [] }),
      ]);
      if (seq !== this.seq) return;
      this.#renderHints(tok.words || [], lengthNote(tok.parts, tok.max_tokens));
      this.#renderSuggestions(voc.words || []);
    } catch {
      if (seq === this.seq) this.hint.textContent = ''; // hints are optional: stay quiet when unavailable
    }
  }

  #renderHints(words, note) {
    const marked = hintSummary(words);
    this.hint.replaceChildren();
    this.hint.dataset.marked = String(marked.length);
    if (note) this.hint.append(note, marked.length ? ' ' : '');
    if (!marked.length) return;
    this.hint.append(`The model does not know ${marked.length === 1 ? 'this word' : 'these words'} (it reads pieces): `);
    marked.forEach((w, i) => {
      const mark = document.createElement('mark');
      mark.className = `tok-${w.status}`;
      mark.textContent = w.text;
      mark.title = `${w.text} → ${pieceText(w.pieces)} (${w.pieces.length} tokens)`;
      if (i) this.hint.append(', ');
      this.hint.append(mark, ` (${pieceText(w.pieces)})`);
    });
  }

  #renderSuggestions(words) {
    this.suggest.replaceChildren(...words.map((word) => {
      const b = document.createElement('button');
      b.type = 'button';
      b.className = 'suggestion';
      b.textContent = word;
      b.setAttribute('aria-label', `complete the ${this.name} with “${word}”`);
      b.addEventListener('click', () => this.#accept(word));
      return b;
    }));
    this.suggest.hidden = words.length === 0;
  }

  #accept(word) {
    const caret = this.box.selectionStart ?? this.box.value.length;
    const next = completeWord(this.box.value, caret, word);
    this.box.value = next.text;
    this.box.focus();
    this.box.setSelectionRange(next.caret, next.caret);
    this.suggest.hidden = true;
    this.box.dispatchEvent(new Event('input', { bubbles: true }));
  }
}
