// The queue you can see: every waiting or running diffusion run with its place, pace and own cancel;
// Generate's state; the tab title. The functions above QueueView need no DOM (tests/frontend/logic_check.mjs).
import { el } from './controls.js';

export const TITLE = 'Noisescope';

/** Steps per second and milliseconds left of a running run, from its `step` events; null before one. */
export function runPace(run) {
  const done = run.index - (run.fromStep || 0);
  if (run.status !== 'running' || done <= 0 || !(run.elapsedMs > 0) || !run.total) return null;
  const perSec = (1000 * done) / run.elapsedMs;
  return { perSec, leftMs: (1000 * Math.max(0, run.total - run.index)) / perSec };
}

export function durationText(ms) {
  const s = Math.max(1, Math.ceil(ms / 1000));
  return s < 60 ? `${s} s` : `${Math.floor(s / 60)} min ${s % 60} s`;
}

/** "4.2 steps/s · about 3 s left", or '' before the first step. */
export function paceText(run) {
  const pace = runPace(run);
  if (!pace) return '';
  const rate = pace.perSec >= 10 ? pace.perSec.toFixed(0) : pace.perSec.toFixed(1);
  return `${rate} steps/s · about ${durationText(pace.leftMs)} left`;
}

/** A waiting run's place (0 = next), in words; the line may hold other pages' runs too. */
export function placeText(position) {
  if (!Number.isInteger(position) || position < 0) return 'waiting';
  if (position === 0) return 'next in line';
  return `${position} run${position === 1 ? '' : 's'} ahead`;
}

/** "37% · Noisescope" while `run` goes, else the plain title. */
export function progressTitle(run) {
  if (!run || run.status !== 'running' || !run.total) return TITLE;
  return `${Math.floor((100 * run.index) / run.total)}% · ${TITLE}`;
}

/** The active runs: running first, then waiting ones by place, then by number. */
export function queueOrder(runs) {
  const rank = (r) => (r.status === 'running' ? -1 : Number.isInteger(r.position) ? r.position : 1e9);
  return runs.filter((r) => r.active).sort((a, b) => rank(a) - rank(b) || a.number - b.number);
}

/** One string per set of generate params (key order does not matter). */
export function settingsKey(params) {
  return JSON.stringify(Object.keys(params).sort().map((k) => [k, params[k]]));
}

/**
 * Generate's label: a click while a run goes queues another only for settings not already going,
 * so a double-click (or twelve) queues one run.
 * @param {{sending: boolean, activeKeys: string[], key: string}} s
 */
export function generateState({ sending, activeKeys, key }) {
  if (sending) return { label: 'Generate', disabled: true, hint: 'sending…' };
  if (!activeKeys.length) return { label: 'Generate', disabled: false, hint: '' };
  if (activeKeys.includes(key)) {
    return { label: 'Generate', disabled: true,
      hint: 'These settings are already queued or running; change a setting to queue another run.' };
  }
  return { label: 'Add to queue', disabled: false, hint: 'A run is going: this queues another after it.' };
}

const short = (text, n = 40) => (text.length > n ? `${text.slice(0, n - 1)}…` : text);

export class QueueView {
  /**
   * @param {HTMLElement} section  shown only while something is queued or running
   * @param {HTMLOListElement} list
   * @param {{cancel: (id: string) => void, view: (id: string) => void}} actions
   */
  constructor(section, list, actions) {
    this.section = section;
    this.list = list;
    this.actions = actions;
    this.rows = new Map(); // run id -> {li, name, state}
  }

  /** Update in place (a row is never rebuilt under a pointer), add new rows, drop finished ones. */
  render(runs, viewedId, numberOf) {
    const order = queueOrder(runs);
    const keep = new Set(order.map((r) => r.id));
    for (const [id, row] of this.rows) if (!keep.has(id)) { row.li.remove(); this.rows.delete(id); }
    order.forEach((run, i) => {
      const row = this.rows.get(run.id) ?? this.#row(run, numberOf);
      row.li.dataset.status = run.status;
      row.li.setAttribute('aria-current', String(run.id === viewedId));
      const state = run.status === 'running'
        ? [`running · step ${run.index}/${run.total || '?'}`, paceText(run)].filter(Boolean).join(' · ')
        : `waiting · ${placeText(run.position)}`;
      if (row.state.textContent !== state) row.state.textContent = state;
      if (this.list.children[i] !== row.li) this.list.insertBefore(row.li, this.list.children[i] ?? null);
    });
    this.section.hidden = order.length === 0;
  }

  #row(run, numberOf) {
    const plain = run.parent ? `fork of #${numberOf(run.parent) ?? '?'} at step ${run.fromStep}` : `“${short(run.prompt ?? '')}”`;
    const what = `${run.label ?? plain}${run.batch > 1 ? ` ×${run.batch}` : ''}`;
    const name = el('button', { type: 'button', class: 'queue-run', text: `#${run.number} ${what}`,
                                title: 'show this run' });
    name.addEventListener('click', () => this.actions.view(run.id));
    const state = el('span', { class: 'queue-state mono' });
    const cancel = el('button', { type: 'button', class: 'queue-cancel', text: 'cancel',
                                  'aria-label': `cancel run #${run.number}` });
    cancel.addEventListener('click', () => this.actions.cancel(run.id));
    const li = el('li', { 'data-run': run.id }, name, state, cancel);
    const row = { li, name, state };
    this.rows.set(run.id, row);
    return row;
  }
}
