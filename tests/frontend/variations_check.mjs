// Driven by test_variations_logic.py: variations.js without a DOM; prints JSON for Python to compare.
import assert from 'node:assert/strict';
import { DIFFUSION_GROUPS } from '../../frontend/js/specs.js';
import {
  VARIATIONS, batchText, lineageText, restoreSeed, skipForStrength, variationParams,
} from '../../frontend/js/variations.js';

// ---- strength -> the first step sampled (at least one step always runs) ----------------------
const pairs = [[12, 0.25], [12, 0.92], [10, 0.3], [25, 0.5], [30, 1], [30, 0.1], [4, 0.05], [1, 0.5]];
const skips = pairs.map(([steps, s]) => skipForStrength(steps, s));
assert.deepEqual(skips.slice(0, 3), [9, 1, 7]);
assert.ok(pairs.every(([steps], i) => skips[i] >= 0 && skips[i] < steps));

// ---- a diffusion image's variations use its own settings; a GAN image's its prompt -----------
const panel = Object.fromEntries(DIFFUSION_GROUPS.flatMap((g) => g.controls.map((c) => [c.key, c.value])));
Object.assign(panel, { prompt: 'panel prompt', negative_prompt: '', steps: 30 });
const source = { ...panel, prompt: 'a fox', steps: 20, width: 48, batch: 2, seed: 9, init_image: 'up1', skip_steps: 3,
  cfg_scale: 7, eta: null };
const own = variationParams({ source, engine: 'diffusion', panel, imageId: '0123456789abcdef01234567', strength: 0.5, seed: 77 });
assert.equal(own.prompt, 'a fox');
assert.equal(own.cfg_scale, 7);
assert.deepEqual([own.batch, own.seed, own.init_image, own.skip_steps], [VARIATIONS, 77, 'gallery:0123456789abcdef01234567', 10]);
assert.ok(!('schedule' in own));
const gan = variationParams({ source: { prompt: ' a cat ', truncation_psi: 0.7 }, engine: 'gan', panel, imageId: 'def',
  strength: 0.3, seed: 1 });
assert.deepEqual([gan.prompt, gan.steps, gan.skip_steps, gan.width], ['a cat', 30, 21, panel.width]);
assert.ok(!('truncation_psi' in gan));
const unconditional = variationParams({ source: { prompt: '' }, engine: 'gan', panel, imageId: 'x', strength: 1, seed: 1 });
assert.equal(unconditional.prompt, 'panel prompt');

// ---- labels and the seed a batch image restores ------------------------------------------------
assert.equal(lineageText({ source_image: '0123456789abcdef01234567', strength: 0.3 }),
  'variation of image 01234567 · strength 0.3');
assert.equal(lineageText({ parent_run: 'r', from_step: 3 }), '');
assert.equal(batchText({ engine: 'diffusion', seed: 42, params: { seed: 40, batch: 4 } }), 'image 3 of 4');
assert.equal(batchText({ engine: 'diffusion', seed: 40, params: { seed: 40, batch: 1 } }), '');
assert.equal(restoreSeed({ seed: 40, batch: 4 }, 42), 40);
assert.equal(restoreSeed({ seed: 40, batch: 1 }, 40), 40);
assert.equal(restoreSeed({}, 5), 5);

console.log(JSON.stringify({ pairs, skips, variation: own }));
