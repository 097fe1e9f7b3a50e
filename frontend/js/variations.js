// Batches and variations as people read them. A variation run is one img2img batch of four from a
// finished image (`init_image: "gallery:<id>"`, seeds s..s+3) at a chosen strength; the server records
// the source image and the strength as the images' lineage. No DOM here (tests/frontend/variations_check.mjs).
import { DIFFUSION_GROUPS } from './specs.js';

export const VARIATIONS = 4;
export const STRENGTH_TITLE = 'how much of the image each variation re-draws: 0.1 keeps it nearly as it is, '
  + '1 draws it anew from its settings (A1111 “Denoising strength”: the share of the steps that run)';

/** The first step an img2img run at `strength` samples (0 = from noise; at least one step runs). */
export function skipForStrength(steps, strength) {
  return Math.min(steps - 1, Math.max(0, steps - Math.round(strength * steps)));
}

const KEYS = ['prompt', 'negative_prompt', ...DIFFUSION_GROUPS.flatMap((g) => g.controls.map((c) => c.key))];

/**
 * The `generate` params of variations of gallery image `imageId`: a diffusion image's own recorded
 * settings (a GAN image's prompt with the panel's settings), as one batch of four from a new seed.
 * @param {{source: object, engine: string, panel: object, imageId: string, strength: number, seed: number}} a
 */
export function variationParams({ source, engine, panel, imageId, strength, seed }) {
  const params = {};
  for (const key of KEYS) {
    const own = engine === 'diffusion' ? source?.[key] : undefined;
    params[key] = own ?? panel[key];
  }
  if (engine !== 'diffusion') params.prompt = String(source?.prompt ?? '').trim() || panel.prompt;
  params.batch = VARIATIONS;
  params.seed = seed;
  params.init_image = `gallery:${imageId}`;
  params.skip_steps = skipForStrength(params.steps, strength);
  return params;
}

/** "variation of image 0190a2b3… · strength 0.5" for a lineage with a source image, else ''. */
export function lineageText(lineage) {
  if (!lineage?.source_image) return '';
  return `variation of image ${String(lineage.source_image).slice(-8)} · strength ${lineage.strength}`;
}

/** "image 2 of 4" for one image of a batch (its seed is the batch's seed + its place), else ''. */
export function batchText(item) {
  const batch = item?.params?.batch ?? 1;
  if (item?.engine !== 'diffusion' || batch < 2 || !Number.isInteger(item.seed)) return '';
  return `image ${item.seed - item.params.seed + 1} of ${batch}`;
}

/** The seed to restore from a gallery image: a batch image replays its whole batch (the batch's seed). */
export function restoreSeed(params, seed) {
  if ((params?.batch ?? 1) > 1 && params.seed !== null && params.seed !== undefined) return params.seed;
  return seed ?? params?.seed ?? null;
}
