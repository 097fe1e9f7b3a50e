// Driven by test_gallery_logic.py: the gallery's page queries, pager words and download names.
import assert from 'node:assert/strict';
import { downloadName, lastPageOffset, pageQuery, pagerState } from '../../frontend/js/gallery_paging.js';

assert.equal(pageQuery(), 'limit=48&offset=0');
assert.equal(pageQuery({ offset: 48, q: '  100%_cat & dog ' }), 'limit=48&offset=48&q=100%25_cat+%26+dog');
assert.equal(pageQuery({ size: 5, q: '   ' }), 'limit=5&offset=0');

assert.equal(lastPageOffset(0), 0);
assert.equal(lastPageOffset(48), 0);
assert.equal(lastPageOffset(49), 48);
assert.equal(lastPageOffset(96, 48), 48);

let s = pagerState({ offset: 0, count: 48, total: 60 });
assert.deepEqual([s.newer, s.older, s.label, s.page, s.pages], [false, true, '1–48 of 60 images', 1, 2]);
s = pagerState({ offset: 48, count: 12, total: 60 });
assert.deepEqual([s.newer, s.older, s.label, s.page], [true, false, '49–60 of 60 images', 2]);
s = pagerState({ offset: 0, count: 1, total: 1, q: 'fox' });
assert.deepEqual([s.newer, s.older, s.label], [false, false, '1–1 of 1 image matching “fox”']);
assert.equal(pagerState({ offset: 0, count: 0, total: 0 }).label, 'no images yet');
assert.equal(pagerState({ offset: 0, count: 0, total: 0, q: 'x' }).label, 'no images match “x”');
assert.equal(pagerState({ offset: 96, count: 0, total: 60 }).newer, true);

assert.equal(downloadName({ params: { prompt: 'Red heart, flat' }, seed: 1234 }), 'noisescope-red-heart-flat-seed1234.png');
assert.equal(downloadName({ params: { prompt: 'ein Fuchs 🦊 im Schnee' }, seed: 0 }), 'noisescope-ein-fuchs-im-schnee-seed0.png');
assert.equal(downloadName({ engine: 'gan', params: { prompt: '' }, seed: 7 }), 'noisescope-gan-seed7.png');
assert.equal(downloadName({ params: { prompt: '../../etc/passwd' }, id: 'abc' }), 'noisescope-etc-passwd-abc.png');
const long = downloadName({ params: { prompt: 'word '.repeat(40) }, seed: 1 });
assert.ok(long.length < 80 && !long.includes('--'), long);

console.log(JSON.stringify({ ok: true }));
