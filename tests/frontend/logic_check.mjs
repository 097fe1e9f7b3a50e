// Driven by test_logic.py: unit checks of the page's DOM-free modules; prints JSON for Python to validate.
import assert from 'node:assert/strict';
import { RunStore } from '../../frontend/js/runs.js';
import { DIFFUSION_GROUPS, GAN_GROUPS, LIVE_KEYS, diffusionParams, ganParams } from '../../frontend/js/specs.js';

// ---- RunStore: frames by step, fork ancestry, eviction --------------------------------------
const revoked = [];
const store = new RunStore((url) => revoked.push(url));
const a = store.add('a', 'diffusion');
a.total = 10;
a.index = 10;
a.status = 'done';
for (const s of [1, 2, 4, 6]) store.putFrame('a', s, { url: `a${s}`, meta: { step: s } });
for (let s = 1; s <= 10; s += 1) a.stats.set(s, { sigma: 10 - s, clip_score: s / 10 });
const b = store.add('b', 'diffusion', { parent: 'a', fromStep: 4 });
b.total = 10;
b.index = 7;
b.status = 'running';
store.putFrame('b', 5, { url: 'b5', meta: { step: 5 } });
b.stats.set(5, { sigma: 0.5, clip_score: 0.9 });

assert.equal(store.owner('b', 4).id, 'a', 'steps up to the fork point belong to the parent');
assert.equal(store.owner('b', 5).id, 'b');
assert.equal(store.frame('b', 2).url, 'a2');
assert.equal(store.frame('b', 6), null, "the parent's step 6 is not the fork's step 6");
assert.equal(store.frame('a', 6).url, 'a6', 'the earlier branch stays viewable');
assert.equal(store.nearestFrame('b', 7).url, 'b5');
assert.equal(store.nearestFrame('b', 3).url, 'a2');
assert.equal(store.nearestFrame('a', 0), null);

const series = store.series('b');
assert.deepEqual(series.map((p) => p.step), [1, 2, 3, 4, 5]);
assert.equal(series[4].clip_score, 0.9);

store.putFrame('a', 2, { url: 'a2-again', meta: { step: 2 } });
assert.deepEqual(revoked, ['a2'], 'a replaced frame frees its URL');
assert.equal(store.putFrame('nope', 1, { url: 'orphan' }), null);
assert.ok(revoked.includes('orphan'), 'a frame for an unknown run is freed at once');

for (let i = 0; i < 20; i += 1) {
  const r = store.add(`r${i}`, 'gan');
  r.status = 'done';
}
assert.ok(store.runs.size <= 16);
assert.ok(store.get('b'), 'a running run is never evicted');
assert.ok(revoked.includes('a6'), "an evicted run's frames are freed");
assert.deepEqual(store.list('diffusion').map((r) => r.id), ['b']);

// ---- params built from control values, for Python to validate against the schemas ----------
const values = {};
for (const g of DIFFUSION_GROUPS) for (const c of g.controls) values[c.key] = c.value;
const gvalues = {};
for (const g of GAN_GROUPS) for (const c of g.controls) gvalues[c.key] = c.value;
for (const key of LIVE_KEYS) assert.ok(key in values, `live key ${key} has a control`);

process.stdout.write(JSON.stringify({
  diffusion_defaults: diffusionParams(values, 'a fox', '', null),
  diffusion_seeded: diffusionParams({ ...values, seed: 7, skip_steps: 5 }, 'a fox', 'blur', 'abc123'),
  gan_defaults: ganParams(gvalues, 'a face', 1),
  gan_grid: ganParams({ ...gvalues, seed: null, mix_seed: 3 }, '', 8),
  live_keys: [...LIVE_KEYS].sort(),
}));
