// Driven by test_logic.py: unit checks of the page's DOM-free modules; prints JSON for Python to validate.
import assert from 'node:assert/strict';
import { compareTable, speedText, truncationCaption } from '../../frontend/js/compare.js';
import { RunStore } from '../../frontend/js/runs.js';
import { ownerSecret } from '../../frontend/js/ws.js';
import { DIFFUSION_GROUPS, GAN_GROUPS, LIVE_KEYS, diffusionParams, ganCaption, ganOffers, ganParams } from '../../frontend/js/specs.js';

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

// ---- the comparison table: live figures of the newest runs, measured ones when available ----
assert.equal(speedText(1060, 33), 'GAN 32.1× faster');
assert.equal(speedText(10, 40), 'diffusion 4.0× faster');
assert.equal(speedText(null, 33), '');
const dRun = { prompt: 'pizza', elapsedMs: 1060, clipScore: 0.8462, diversity: null };
const gRun = { prompt: 'pizza', elapsedMs: 33, clipScore: 0.887, diversity: 0.1234 };
const none = compareTable(null, null, { available: false, reason: 'measured on other weights' });
assert.deepEqual([none.live, none.offline, none.caption], [[], [], 'measured on other weights']);
const t = compareTable(dRun, gRun, {
  available: true, source: 'eval.json', prompts: 200, seeds: 8, device: 'cpu', ms_ratio: 11.4,
  ceiling: { r_precision_top1: 0.875, r_precision_top5: 0.995 },
  diffusion: { label: 'diffusion dpmpp_2m', r_precision_top1: 0.55, r_precision_top5: 0.783, fid_judge: 69.4,
    diversity: 0.112, ms_per_image: 371.3 },
  gan: { label: 'GAN centre', r_precision_top1: 0.54, r_precision_top5: 0.805, fid_judge: 59.0, diversity: null,
    ms_per_image: 30 },
});
const row = (rows, what) => rows.find((r) => r[0] === what);
assert.deepEqual(row(t.live, 'prompt'), ['prompt', 'pizza', 'pizza', '']);
assert.deepEqual(row(t.live, 'time / image'), ['time / image', '1.06 s', '33 ms', 'GAN 32.1× faster']);
const grid = compareTable(dRun, { ...gRun, elapsedMs: 80, images: 8 }, null);
assert.deepEqual(row(grid.live, 'time / image'), ['time / image', '1.06 s', '10 ms', 'GAN 106.0× faster']);
assert.deepEqual(row(t.live, 'diversity (CLIP)').slice(1, 3), ['–', '0.123']);
assert.deepEqual(row(t.offline, 'R@1 / R@5 (judge)'), ['R@1 / R@5 (judge)', '0.55 / 0.78', '0.54 / 0.81',
  'real images: 0.88 / 0.99']);
assert.deepEqual(row(t.offline, 'FID (judge)').slice(1, 3), ['69.4', '59.0']);
assert.deepEqual(row(t.offline, 'diversity (judge)').slice(1, 3), ['0.112', '–']);
assert.equal(row(t.offline, 'ms / image')[3], '11.4× in one run');
assert.ok(t.caption.includes('200 prompts × 8 seeds on cpu') && t.caption.includes('GAN centre'));
assert.equal(row(compareTable(dRun, { ...gRun, prompt: 'cat' }, null).live, 'prompt')[3], 'different prompts');
const onlyGan = compareTable(null, gRun, { available: true, gan: { label: 'g', r_precision_top1: 0.5 } });
assert.deepEqual(row(onlyGan.offline, 'R@1 / R@5 (judge)').slice(1, 3), ['–', '0.50 / –']);
assert.equal(t.plot, null, 'no truncation plot without one in measured');
for (const what of ['precision / recall (judge)', 'style coverage (of 4)', 'held-out concepts R@1',
  'compositional R@1 of 16']) assert.equal(row(t.offline, what), undefined, `an older evaluation has no ${what} row`);

// ---- evaluation v2: precision / recall, style coverage, held-out and compositional rows, the plot --
const v2 = compareTable(dRun, gRun, {
  available: true, source: 'eval.json', prompts: 200, seeds: 8, device: 'cpu',
  style_classifier_accuracy_heldout: 0.93,
  diffusion: { label: 'd', r_precision_top1: 0.55, precision: 0.612, recall: 0.3, style_coverage: 2.5,
    style_coverage_prompts: 12, heldout: { r_precision_top1: 0.2 }, compositional: null },
  gan: { label: 'g', r_precision_top1: 0.54, precision: 0.7, recall: null, style_coverage: 1.25,
    style_coverage_prompts: 12, heldout: { r_precision_top1: 0.125 },
    compositional: { clip_r1_16: 0.375, diversity: 0.1, images: 64 } },
  truncation_plot: '/api/measured/truncation.png',
  truncation: [{ psi: 0, r_precision_top1: 0.72, precision: 0.9, recall: 0.1, diversity: 0, style_coverage: 1 },
    { psi: 1.5, r_precision_top1: 0.6, precision: 0.5, recall: 0.45, diversity: 0.09, style_coverage: null }],
});
assert.deepEqual(row(v2.offline, 'precision / recall (judge)').slice(1, 4),
  ['0.61 / 0.30', '0.70 / –', 'fidelity / coverage of the real images (Kynkäänniemi 2019)']);
const coverage = row(v2.offline, 'style coverage (of 4)');
assert.deepEqual(coverage.slice(1, 3), ['2.50', '1.25']);
assert.ok(coverage[3].includes('(12 prompts)') && coverage[3].includes('0.93'), coverage[3]);
const heldout = row(v2.offline, 'held-out concepts R@1');
assert.deepEqual(heldout.slice(1, 3), ['0.20', '0.13']);
assert.ok(heldout[3].includes('holds out of its training split') && heldout[3].includes('0.55 / 0.54'), heldout[3]);
const comp = row(v2.offline, 'compositional R@1 of 16');
assert.deepEqual(comp.slice(1, 3), ['–', '0.38']);
assert.ok(comp[3].includes('blue cat face'), comp[3]);
assert.equal(v2.plot.url, '/api/measured/truncation.png');
assert.ok(v2.plot.caption.includes('ψ from 0 to 1.5'), v2.plot.caption);
for (const moved of ['R@1 0.72 → 0.60', 'recall 0.10 → 0.45', 'diversity 0.000 → 0.090']) {
  assert.ok(v2.plot.caption.includes(moved), v2.plot.caption);
}
assert.ok(!v2.plot.caption.includes('style coverage 1'), 'a figure missing at one end is not summarised');
assert.ok(truncationCaption(null).includes('ψ from 0 to 1.5') && !truncationCaption(null).includes('Across'));
const gone = compareTable(dRun, gRun, { available: false, reason: 'other weights', truncation_plot: '/x.png' });
assert.equal(gone.plot, null, 'no plot without figures for the loaded weights');

// ---- the page's owner secret: random, kept per tab, the same across reconnects ----------------
const tab = new Map();
const storage = { getItem: (k) => tab.get(k) ?? null, setItem: (k, v) => tab.set(k, v) };
const secret = ownerSecret(storage, globalThis.crypto);
assert.match(secret, /^[0-9a-f]{64}$/);
assert.equal(ownerSecret(storage, globalThis.crypto), secret, 'a reconnect presents the same secret');
const otherTab = new Map();
const otherStorage = { getItem: (k) => otherTab.get(k) ?? null, setItem: (k, v) => otherTab.set(k, v) };
assert.notEqual(ownerSecret(otherStorage, globalThis.crypto), secret, 'another tab gets its own');

// ---- params built from control values, for Python to validate against the schemas ----------
const values = {};
for (const g of DIFFUSION_GROUPS) for (const c of g.controls) values[c.key] = c.value;
const gvalues = {};
for (const g of GAN_GROUPS) for (const c of g.controls) gvalues[c.key] = c.value;
for (const key of LIVE_KEYS) assert.ok(key in values, `live key ${key} has a control`);
assert.equal(ganParams({ ...gvalues, search_steps: 40 }, 'a face', 1, false).search_steps, 0, 'a slider render never searches');
// The panel sends only what the generator's description offers: no family names, only capabilities.
const sg3 = ganOffers({ truncation: 'w_lerp', mixing_layers: 16, noise: false, input_transform: true, condition: 'none',
  classes: [], search: 'w+', walk: ['seed'] });
assert.deepEqual([...sg3].sort(), ['mixing', 'search', 'transform', 'truncation']);
const sg3params = ganParams({ ...gvalues, rotate: 30 }, '', 1, false, false, sg3);
assert.equal(sg3params.rotate, 30);
assert.ok(!('noise_mode' in sg3params) && !('class_index' in sg3params) && !('walk_frames' in sg3params));
const classy = ganOffers({ truncation: 'truncated_normal', condition: 'class', classes: ['cat', 'dog'], walk: ['seed', 'class'] });
assert.deepEqual([...classy].sort(), ['class_walk', 'classes', 'truncation']);
assert.deepEqual([...ganOffers({ truncation: 'none', condition: 'none', classes: [] })], []);
assert.deepEqual([...ganOffers(null)].sort(), ['mixing', 'noise', 'search', 'truncation'], 'an older server: StyleGAN2');
const walk = ganParams({ ...gvalues, seed: 3, walk_seed: 9, walk_frames: 8 }, 'a face', 8, true, true, ganOffers(null), true);
assert.equal(walk.grid, 1, 'a walk is one seed path');
assert.equal(walk.search_steps, 0, 'a walk never searches');
assert.ok(!('walk_frames' in ganParams(gvalues, 'a face', 1)), 'only the walk button sends walk controls');
assert.equal(ganCaption({ prompt: '', condition: 'none' }), 'unconditional sample (no prompt)');
assert.equal(ganCaption({ prompt: 'cat', condition: 'none', search_steps: 9 }), 'cat (unconditional GAN: the prompt steered the CLIP search)');
assert.equal(ganCaption({ prompt: 'cat', condition: 'prompt' }), 'cat');
assert.equal(ganCaption({ prompt: '' }), '(no prompt)', 'an older record does not say what it drew');
assert.equal(ganCaption({ prompt: '', condition: 'class', class_index: 1, class_name: 'goldfish' }), 'goldfish');
assert.equal(ganCaption({ prompt: 'red', condition: 'class', class_index: 3, search_steps: 4 }), 'class 3 (searched towards “red”)');
{
  const ganOffersFor = (controls) => [...ganOffers(controls)].sort().join(',');
  assert.equal(ganOffersFor({ truncation: 'z_scale', walk: ['seed'], search: 'z' }), 'search,truncation');
  assert.equal(ganOffersFor({ truncation: 'truncated_normal', condition: 'class', classes: ['a', 'b'], walk: ['seed', 'class'] }),
               'class_walk,classes,truncation');
  const dcOffers = ganOffers({ truncation: 'z_scale', walk: ['seed'] });
  const values = { seed: 3, truncation_psi: 0.5, walk_seed: 8, walk_class: 1, walk_frames: 24, walk_fps: 12, walk_t: 0.2,
                   noise_mode: 'const' };
  assert.deepEqual(Object.keys(ganParams(values, '', 1, false, false, dcOffers)).sort(),
                   ['grid', 'prompt', 'save', 'search_steps', 'seed', 'truncation_psi', 'walk_seed', 'walk_t'],
                   'a render at a walk position carries the walk\'s end, no class, noise or frames');
  assert.deepEqual(Object.keys(ganParams({ ...values, walk_t: 0 }, '', 1, false, false, dcOffers)).sort(),
                   ['grid', 'prompt', 'save', 'search_steps', 'seed', 'truncation_psi'], 'no walk position: no walk keys');
  assert.ok(!('walk_t' in ganParams(values, '', 1, true, false, dcOffers, true)), 'the whole walk has no position');
}

process.stdout.write(JSON.stringify({
  diffusion_defaults: diffusionParams(values, 'a fox', '', null),
  diffusion_seeded: diffusionParams({ ...values, seed: 7, skip_steps: 5 }, 'a fox', 'blur', 'abc123'),
  gan_defaults: ganParams(gvalues, 'a face', 1),
  gan_grid: ganParams({ ...gvalues, seed: null, mix_seed: 3 }, '', 8),
  gan_search: ganParams({ ...gvalues, seed: 4 }, 'red heart', 1, true, true),
  gan_walk: walk,
  gan_sg3: sg3params,
  live_keys: [...LIVE_KEYS].sort(),
  compare_v2_rows: v2.offline.map((r) => r[0]),
  owner_secret: secret,
}));
