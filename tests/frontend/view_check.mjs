// Driven by test_view_logic.py: the plot's scales, the size menus and the prompt hints' text helpers.
import assert from 'node:assert/strict';
import { logTicks, niceTicks, plotModel, plotSummary, tickLabel } from '../../frontend/js/plot.js';
import { completeWord, hintSummary, lengthNote, wordAt } from '../../frontend/js/prompt_hints.js';
import { nearestSize, sizeOptions, sizeWarning } from '../../frontend/js/sizes.js';

// ---- plot scales ------------------------------------------------------------------------------
assert.deepEqual(niceTicks(0.3, 0.62, 4), [0.3, 0.4, 0.5, 0.6, 0.7]);
assert.deepEqual(niceTicks(0, 30, 5), [0, 10, 20, 30]);
const flat = niceTicks(0.5, 0.5);
assert.ok(flat[0] < 0.5 && flat.at(-1) > 0.5, 'a constant series still gets an axis around it');
assert.deepEqual(logTicks(0.03, 14.6), [0.1, 1, 10]);
assert.deepEqual(logTicks(0.5, 3), [0.5, 1, 2]);
assert.equal(tickLabel(0.30000000000000004), '0.3');
assert.equal(tickLabel(0.001), '1e-3');
assert.equal(tickLabel(1000), '1e3');

const series = [];
for (let s = 1; s <= 30; s += 1) series.push({ step: s, sigma: 14.6 * 0.8 ** s, clip_score: s % 10 === 0 ? [0, 0.3, 0.4, 0.5][s / 10] : null });
const model = plotModel(series, 30);
assert.deepEqual(model.clip.points, [[10, 0.3], [20, 0.4], [30, 0.5]]);
assert.ok(model.clip.lo <= 0.3 && model.clip.hi >= 0.5);
assert.deepEqual(model.stepTicks, [0, 10, 20, 30]);
assert.ok(model.sigma.ticks.length >= 2 && model.sigma.ticks.every((t) => t >= model.sigma.lo && t <= model.sigma.hi));
assert.match(plotSummary(model, 12), /CLIP score 0\.500 at step 30.*viewing step 12 of 30/);
assert.equal(plotModel([], 0).clip, null);
assert.match(plotSummary(plotModel([], 0), null), /no CLIP score yet/);

// ---- size menus -------------------------------------------------------------------------------
const sizes = { native: 64, step: 16, min: 32, max: 256, options: [32, 48, 64, 80, 96, 128, 256] };
const opts = sizeOptions(sizes);
assert.deepEqual(opts[2], ['64', '64 (trained size)']);
assert.equal(opts[0][1], '32');
assert.equal(opts.at(-1)[1], '256 ⚠');
assert.equal(nearestSize(sizes, 8), 32);
assert.equal(nearestSize(sizes, 1024), 256);
assert.equal(nearestSize(sizes, 70), 64);
assert.equal(sizeWarning(sizes, 64, 48), '');
assert.match(sizeWarning(sizes, 128, 64), /above the 64 px this model was trained at.*2\.0× the time/);
assert.equal(sizeWarning(null, 1024, 1024), '');

// ---- prompt hints -----------------------------------------------------------------------------
assert.deepEqual(wordAt('red hea', 7), { start: 4, prefix: 'hea' });
assert.deepEqual(wordAt('red ', 4), { start: 4, prefix: '' });
assert.deepEqual(wordAt('cat:1 | do', 10), { start: 8, prefix: 'do' });
assert.deepEqual(completeWord('red hea', 7, 'heart'), { text: 'red heart ', caret: 10 });
assert.deepEqual(completeWord('red hea, flat', 7, 'heart'), { text: 'red heart , flat', caret: 10 });
assert.deepEqual(completeWord('red hea flat', 6, 'heart'), { text: 'red heart flat', caret: 10 });
const words = [
  { text: 'a', status: 'known', marked: false, pieces: ['a</w>'] },
  { text: 'Lighthouse', status: 'letters', marked: true, pieces: ['l', 'i', 'house</w>'] },
  { text: 'lighthouse', status: 'letters', marked: true, pieces: ['l', 'i', 'house</w>'] },
  { text: 'storm', status: 'split', marked: true, pieces: ['s', 'to', 'rm</w>'] },
];
assert.deepEqual(hintSummary(words).map((w) => w.text), ['Lighthouse', 'storm']);

assert.equal(lengthNote([{ text: 'a cat', tokens: 2 }], 77), '');
assert.equal(lengthNote([{ text: 'long', tokens: 80 }], 77), '“long” is 80 tokens; the model reads the first 75.');
assert.equal(lengthNote(undefined, undefined), '');

process.stdout.write(JSON.stringify({ ok: true }));
