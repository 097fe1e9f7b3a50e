// Driven by test_model_picker.py: the model picker's DOM-free parts (models.js) under node.
import assert from 'node:assert/strict';
import { loadText, modelGroups, sizeText } from '../../frontend/js/models.js';

const models = [
  { id: 'fox-a', kind: 'diffusion', family: 'SD 1.x / 2.x', bytes: 3 * 2 ** 20, problem: null, active: true },
  { id: 'sdxl/base', kind: 'diffusion', family: 'SDXL', bytes: 6.9 * 2 ** 30, problem: null, active: false },
  { id: 'biggan', kind: 'gan', family: 'BigGAN', bytes: 2 ** 20, problem: null, active: false },
  { id: 'style.safetensors', kind: null, family: 'LoRA', bytes: 10, problem: 'a LoRA: start the studio with --lora-dir', active: false },
];
const groups = modelGroups(models);
assert.deepEqual(groups.map((g) => g.label), ['Diffusion', 'GAN', 'cannot load here']);
assert.deepEqual(groups[0].options.map((o) => [o.value, o.disabled]), [['fox-a', true], ['sdxl/base', false]]);
assert.equal(groups[0].options[0].text, 'fox-a — SD 1.x / 2.x, 3.0 MiB (loaded)');
assert.equal(groups[0].options[1].text, 'sdxl/base — SDXL, 6.9 GiB');
assert.deepEqual(groups[2].options[0], { value: 'style.safetensors', text: 'style.safetensors — LoRA',
  title: 'a LoRA: start the studio with --lora-dir', disabled: true });
assert.deepEqual(modelGroups([]), []);
assert.equal(sizeText(1536 * 2 ** 20), '1.5 GiB');

const base = { id: 'sdxl/base', stages: 4, notes: [], error: null };
assert.equal(loadText(null), '');
assert.equal(loadText({ ...base, state: 'loading', stage_words: 'reading the weights', stage_index: 0, seconds: 2.34 }),
  'loading sdxl/base: reading the weights (1/4), 2.3 s');
assert.equal(loadText({ ...base, state: 'ready', seconds: 12, notes: ['LoRAs not loaded: x'] }),
  'sdxl/base loaded in 12.0 s — LoRAs not loaded: x');
assert.equal(loadText({ ...base, state: 'ready', seconds: 0, notes: ['already loaded'] }), 'sdxl/base loaded in 0.0 s');
assert.equal(loadText({ ...base, state: 'failed', seconds: 1, error: 'broken could not be loaded (x); the loaded model stays' }),
  'broken could not be loaded (x); the loaded model stays');
console.log(JSON.stringify({ ok: true }));
