// Driven by test_queue_logic.py: queue.js and input.js without a DOM; prints JSON for Python to compare.
import assert from 'node:assert/strict';
import { SEED_RULE, oneLine, seedProblem } from '../../frontend/js/input.js';
import {
  generateState, paceText, placeText, progressTitle, queueOrder, runPace, settingsKey,
} from '../../frontend/js/queue.js';
import { RunStore } from '../../frontend/js/runs.js';

// ---- runs are numbered per engine, stably ---------------------------------------------------
const store = new RunStore();
const a = store.add('a', 'diffusion');
store.add('g', 'gan');
const b = store.add('b', 'diffusion', { parent: 'a', fromStep: 3 });
assert.deepEqual([a.number, b.number, store.get('g').number], [1, 2, 1]);
assert.equal(store.add('a', 'diffusion').number, 1, 'adding again keeps the number');

// ---- the queue's order, pace, places and the tab title --------------------------------------
const run = (over) => ({ status: 'queued', position: null, number: 1, index: 0, total: 0, elapsedMs: 0, fromStep: 0,
  get active() { return this.status === 'queued' || this.status === 'running'; }, ...over });
const order = queueOrder([run({ number: 1, status: 'done' }), run({ number: 2, position: 1 }),
  run({ number: 3, status: 'running', index: 5, total: 10 }), run({ number: 4, position: 0 })]);
assert.deepEqual(order.map((r) => r.number), [3, 4, 2]);

const going = run({ status: 'running', index: 12, total: 30, elapsedMs: 3000 });
assert.deepEqual(runPace(going), { perSec: 4, leftMs: 4500 });
assert.equal(paceText(going), '4.0 steps/s · about 5 s left');
const fork = run({ status: 'running', index: 14, total: 30, elapsedMs: 400, fromStep: 10 });
assert.equal(paceText(fork), '10 steps/s · about 2 s left', 'a fork counts the steps it ran itself');
assert.equal(paceText(run({ status: 'running', index: 1, total: 600, elapsedMs: 1000 })), '1.0 steps/s · about 9 min 59 s left');
assert.equal(runPace(run({ status: 'running', total: 30 })), null, 'no pace before the first step');
assert.equal(paceText(run({ status: 'queued' })), '');

assert.deepEqual([0, 1, 3, null].map(placeText), ['next in line', '1 run ahead', '3 runs ahead', 'waiting']);
assert.equal(progressTitle(run({ status: 'running', index: 11, total: 30 })), '36% · Noisescope');
assert.equal(progressTitle(run({ status: 'done', index: 30, total: 30 })), 'Noisescope');
assert.equal(progressTitle(undefined), 'Noisescope');

// ---- Generate: one run per settings, a deliberate second one only for other settings --------
const k1 = settingsKey({ prompt: 'a', steps: 3 });
assert.equal(k1, settingsKey({ steps: 3, prompt: 'a' }), 'key order does not matter');
assert.notEqual(k1, settingsKey({ prompt: 'a', steps: 4 }));
assert.deepEqual(generateState({ sending: false, activeKeys: [], key: k1 }), { label: 'Generate', disabled: false, hint: '' });
assert.equal(generateState({ sending: true, activeKeys: [], key: k1 }).disabled, true);
const same = generateState({ sending: false, activeKeys: [k1], key: k1 });
assert.ok(same.disabled && same.hint.includes('already queued or running'));
const other = generateState({ sending: false, activeKeys: [k1], key: 'x' });
assert.deepEqual([other.label, other.disabled], ['Add to queue', false]);

// ---- seeds are refused in words, never changed --------------------------------------------
assert.equal(seedProblem(''), null);
assert.equal(seedProblem('0'), null);
assert.equal(seedProblem('4294967295'), null);
for (const bad of ['-5', '3.7', '4294967296', 'abc']) assert.equal(seedProblem(bad), `seed: ${SEED_RULE}`, bad);
assert.equal(seedProblem('', true), `seed: ${SEED_RULE}`, 'text the browser cannot read as a number');

const lines = ['a red\nfox', ' a\r\n\r\n b \n', 'tab\there', 'x\u2028y', 'plain'];
process.stdout.write(JSON.stringify({ lines, one_line: lines.map(oneLine), seed_rule: SEED_RULE }));
