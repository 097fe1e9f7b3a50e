// Declarative controls: a list of groups of specs becomes a form of labelled inputs whose
// values are read and restored as one plain object.
import { seedProblem } from './input.js';

const RANDOM_SEED_MAX = 2 ** 32 - 1;

export function randomSeed() {
  return Math.floor(Math.random() * RANDOM_SEED_MAX);
}

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'class') node.className = v;
    else if (k === 'text') node.textContent = v;
    else node.setAttribute(k, v === true ? '' : String(v));
  }
  node.append(...children);
  return node;
}

function decimals(step) {
  const s = String(step);
  return s.includes('.') ? s.length - s.indexOf('.') - 1 : 0;
}

/** First number of a Disco schedule such as "[12]*400+[4]*600" (for the slider position). */
export function scheduleHead(schedule) {
  const m = /\[\s*([0-9.]+)\s*\]/.exec(String(schedule));
  return m ? Number(m[1]) : NaN;
}

const SCHEDULE_RE = /^[\[\]0-9.*+ ]*$/;

/** A Disco schedule string is evaluated server-side; here only its alphabet and shape are checked. */
export function validSchedule(text) {
  return SCHEDULE_RE.test(text) && /\[[0-9. ]+\]\s*\*\s*\d+/.test(text) && text.length <= 200;
}

function headRow(spec, output) {
  const label = el('span', { text: spec.label, title: spec.title });
  if (spec.live) label.append(' ', el('span', { class: 'live-dot', title: 'changes apply to a running job', text: '●' }));
  return el('div', { class: 'head' }, label, output ?? '');
}

/** One control; returns {node, get, set, input}. */
function buildOne(spec, emit) {
  const id = `${spec.prefix}-${spec.key}`;
  switch (spec.kind) {
    case 'range': {
      const input = el('input', { type: 'range', id, name: spec.key, min: spec.min, max: spec.max, step: spec.step });
      const out = el('output', { for: id });
      const fmt = (v) => (spec.format ? spec.format(v) : Number(v).toFixed(decimals(spec.step)));
      const set = (v) => {
        const n = Number(v);
        if (n > Number(input.max)) input.max = String(n);
        if (n < Number(input.min)) input.min = String(n);
        input.value = String(n);
        out.textContent = fmt(n);
      };
      input.addEventListener('input', () => {
        out.textContent = fmt(input.value);
        emit(spec, Number(input.value));
      });
      set(spec.value);
      const node = el('label', { class: 'ctl', for: id }, headRow(spec, out), input);
      return { node, input, get: () => Number(input.value), set };
    }
    case 'check': {
      const input = el('input', { type: 'checkbox', id, name: spec.key });
      input.checked = Boolean(spec.value);
      input.addEventListener('change', () => emit(spec, input.checked));
      const node = el('label', { class: 'ctl check', for: id }, input, el('span', { text: spec.label }));
      if (spec.live) node.append(el('span', { class: 'live-dot', title: 'changes apply to a running job', text: '●' }));
      return { node, input, get: () => input.checked, set: (v) => { input.checked = Boolean(v); } };
    }
    case 'select': {
      const input = el('select', { id, name: spec.key });
      for (const [value, label] of spec.options) input.append(el('option', { value, text: label }));
      const conv = (v) => (spec.numeric ? Number(v) : v);
      input.value = String(spec.value);
      input.addEventListener('change', () => emit(spec, conv(input.value)));
      const set = (v) => {
        if (![...input.options].some((o) => o.value === String(v))) input.append(el('option', { value: v, text: v }));
        input.value = String(v);
      };
      return { node: el('label', { class: 'ctl', for: id }, headRow(spec), input), input, get: () => conv(input.value), set };
    }
    case 'schedule': {
      const slider = el('input', { type: 'range', min: spec.min, max: spec.max, step: spec.step, 'aria-label': `${spec.label} (constant)` });
      const text = el('input', { type: 'text', id, name: spec.key, spellcheck: 'false', maxlength: 200, class: 'mono' });
      const out = el('output', { for: id });
      const syncSlider = () => {
        const head = scheduleHead(text.value);
        if (Number.isFinite(head)) slider.value = String(head);
        out.textContent = Number.isFinite(head) ? String(head) : '?';
        text.setCustomValidity(validSchedule(text.value) ? '' : 'schedule like [12]*400+[4]*600');
      };
      const set = (v) => {
        text.value = String(v);
        syncSlider();
      };
      slider.addEventListener('input', () => {
        text.value = `[${slider.value}]*1000`;
        syncSlider();
        emit(spec, text.value);
      });
      text.addEventListener('change', () => {
        syncSlider();
        if (validSchedule(text.value)) emit(spec, text.value);
      });
      set(spec.value);
      const node = el('label', { class: 'ctl', for: id }, headRow(spec, out), slider, text);
      return { node, input: text, get: () => text.value, set };
    }
    case 'seed':
    case 'optint': {
      const input = el('input', { type: 'number', id, name: spec.key, min: 0, max: RANDOM_SEED_MAX, step: 1,
                                  placeholder: spec.placeholder || 'random' });
      const parts = [input];
      if (spec.kind === 'seed') {
        const dice = el('button', { type: 'button', title: 'random seed', 'aria-label': `random ${spec.label} (${spec.scope})`, text: '🎲' });
        dice.addEventListener('click', () => {
          input.value = String(randomSeed());
          check();
          emit(spec, Number(input.value));
        });
        parts.push(dice);
      }
      // A seed is never changed behind the user's back: -5 or 3.7 is refused in words, here and at the server.
      const note = el('span', { class: 'field-error', id: `${id}-problem`, hidden: true });
      const problem = () => seedProblem(input.value, input.validity.badInput, spec.label);
      const check = () => {
        const text = problem();
        note.textContent = text ?? '';
        note.hidden = !text;
        input.setAttribute('aria-invalid', String(Boolean(text)));
        input.setCustomValidity(text ?? '');
        return text;
      };
      input.setAttribute('aria-describedby', note.id);
      input.addEventListener('input', check);
      input.addEventListener('change', () => { if (!check()) emit(spec, input.value === '' ? null : Number(input.value)); });
      const set = (v) => { input.value = v === null || v === undefined ? '' : String(v); check(); };
      set(spec.value);
      const get = () => (input.value === '' ? null : Number(input.value));
      const node = el('label', { class: 'ctl', for: id }, headRow(spec), el('div', { class: 'pair' }, ...parts), note);
      return { node, input, get, set, problem: check };
    }
    case 'loras': {
      // One live weight slider per LoRA the server loaded (/api/info `loras`), built by setItems; the
      // value is {name: weight}, names the page has no slider for (a restored run's) kept as they are.
      const box = el('div', { class: 'lora-list', id });
      const note = el('p', { class: 'token-hints', id: `${id}-none`, text: spec.empty });
      const sliders = new Map();
      let extra = {};
      const fmt = (v) => Number(v).toFixed(2);
      const place = (input, out, v) => {
        const n = Number(v);
        if (n > Number(input.max)) input.max = String(n);
        if (n < Number(input.min)) input.min = String(n);
        input.value = String(n);
        out.textContent = fmt(n);
      };
      const setItems = (items, hint) => {
        sliders.clear();
        extra = {};
        box.replaceChildren(...(items || []).map(({ name, weight }, i) => {
          const sid = `${id}-${i}`;
          const input = el('input', { type: 'range', id: sid, name: `lora-${i}`, min: spec.min, max: spec.max, step: spec.step,
                                      'data-lora': name });
          const out = el('output', { for: sid });
          place(input, out, weight);
          input.addEventListener('input', () => {
            out.textContent = fmt(input.value);
            emit(spec, { [name]: Number(input.value) });
          });
          sliders.set(name, { input, out });
          return el('label', { class: 'ctl', for: sid },
            headRow({ label: name, live: true, title: `weight of LoRA “${name}” (A1111 <lora:${name}:weight>)` }, out), input);
        }));
        note.textContent = hint ?? spec.empty;
        note.hidden = !note.textContent;
      };
      const get = () => {
        const out = { ...extra };
        for (const [name, s] of sliders) out[name] = Number(s.input.value);
        return out;
      };
      // a restore: each slider to the record's weight, 0 (off) when the record does not name it
      const set = (weights) => {
        extra = {};
        for (const [name, s] of sliders) place(s.input, s.out, weights?.[name] ?? 0);
        for (const [name, w] of Object.entries(weights || {})) if (!sliders.has(name)) extra[name] = w;
      };
      const node = el('div', { class: 'ctl' }, box, note);
      return { node, input: box, get, set, setItems };
    }
    default:
      throw new Error(`unknown control kind ${spec.kind}`);
  }
}

export class ControlSet {
  /**
   * @param {HTMLFormElement} form
   * @param {string} prefix  id prefix, unique per panel
   * @param {{legend: string, controls: object[]}[]} groups
   * @param {(key: string, value: unknown, spec: object) => void} onChange
   */
  constructor(form, prefix, groups, onChange) {
    this.controls = new Map();
    form.addEventListener('submit', (e) => e.preventDefault());
    const scope = form.getAttribute('aria-label') || prefix; // names repeated buttons apart
    for (const group of groups) {
      const fs = el('fieldset', {}, el('legend', { text: group.legend }));
      for (const spec of group.controls) {
        const ctl = buildOne({ ...spec, prefix, scope }, (s, v) => onChange(s.key, v, s));
        ctl.spec = spec;
        this.controls.set(spec.key, ctl);
        fs.append(ctl.node);
      }
      if (group.extra) fs.append(group.extra);
      form.append(fs);
    }
  }

  /** All values keyed by control key. */
  values() {
    const out = {};
    for (const [key, ctl] of this.controls) out[key] = ctl.get();
    return out;
  }

  /** Restore whichever keys of `values` this set has; returns the keys it applied. */
  set(values) {
    const applied = [];
    for (const [key, value] of Object.entries(values || {})) {
      const ctl = this.controls.get(key);
      if (!ctl || value === undefined) continue;
      ctl.set(value);
      applied.push(key);
    }
    return applied;
  }

  get(key) {
    return this.controls.get(key)?.get();
  }

  /** Messages for the inputs whose text is refused (seeds), in words; [] when all are fine. */
  problems() {
    return [...this.controls.values()].map((c) => c.problem?.()).filter(Boolean);
  }

  input(key) {
    return this.controls.get(key)?.input;
  }

  setRange(key, { min, max }) {
    const input = this.input(key);
    if (!input) return;
    if (min !== undefined) input.min = String(min);
    if (max !== undefined) input.max = String(max);
  }

  /** Replace a select's options; keeps its value when still offered, else takes `fallback`. */
  setOptions(key, options, fallback) {
    const input = this.input(key);
    if (!input || input.tagName !== 'SELECT') return;
    const current = input.value;
    input.replaceChildren(...options.map(([value, label]) => el('option', { value, text: label })));
    input.value = options.some(([v]) => v === current) ? current : String(fallback);
  }

  /** Rebuild a list control's items (the LoRA sliders from /api/info). */
  setItems(key, items, hint) {
    this.controls.get(key)?.setItems?.(items, hint);
  }

  /** The labelled node of a control (to place a note beside it). */
  node(key) {
    return this.controls.get(key)?.node;
  }

  disable(disabled) {
    for (const ctl of this.controls.values()) ctl.node.querySelectorAll('input,select,button').forEach((n) => { n.disabled = disabled; });
  }
}

export { el };
