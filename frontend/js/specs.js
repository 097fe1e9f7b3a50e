// What the two panels' controls are; defaults mirror app/api/schemas.py and are replaced by
// /api/info's defaults when the server sends them.

export const LIVE_KEYS = new Set([
  'cfg_scale', 'eta', 'clip_guidance_scale', 'cutn_overview', 'cutn_inner', 'cut_ic_pow', 'cut_icgray_p',
  'cut_flip', 'tv_scale', 'range_scale', 'sat_scale', 'clamp_grad', 'clamp_max', 'preview_every', 'full_decode_every',
  'preview_decoder', 'lora_weights',
]);

// What draws the preview frames between full decodes; /api/info `preview_decoders` says which this server has.
export const PREVIEW_DECODERS = [
  ['linear', 'linear map (fastest)'], ['tiny', 'tiny decoder (TAESD)'], ['full', 'full VAE (slowest)'],
];

export const SAMPLERS = ['ddpm', 'ddim', 'euler', 'euler_a', 'dpmpp_2m'];
// until /api/info names the loaded model's sizes (frontend/js/sizes.js builds the real menu)
const SIZES = [32, 48, 64, 96, 128];

const live = (spec) => ({ ...spec, live: true });
const sizeOptions = SIZES.map((s) => [String(s), String(s)]);

export const DIFFUSION_GROUPS = [
  {
    legend: 'Sampling',
    controls: [
      { key: 'seed', label: 'seed', kind: 'seed', value: null },
      { key: 'steps', label: 'steps', kind: 'range', min: 1, max: 150, step: 1, value: 30 },
      { key: 'sampler', label: 'sampler', kind: 'select', options: SAMPLERS.map((s) => [s, s]), value: 'dpmpp_2m' },
      { key: 'karras', label: 'karras sigmas', kind: 'check', value: true },
      { key: 'width', label: 'width', kind: 'select', options: sizeOptions, numeric: true, value: 64,
        title: 'image width in pixels, offered from the loaded model (A1111 “Width”, Disco “width_height”); ⚠ above its trained size' },
      { key: 'height', label: 'height', kind: 'select', options: sizeOptions, numeric: true, value: 64,
        title: 'image height in pixels, offered from the loaded model (A1111 “Height”, Disco “width_height”); ⚠ above its trained size' },
      { key: 'batch', label: 'images per run', kind: 'range', min: 1, max: 4, step: 1, value: 1,
        title: 'how many images one run makes, each from its own seed (seed, seed + 1, …), shown as a grid with how varied they are (A1111 “Batch size”)' },
      live({ key: 'cfg_scale', label: 'CFG scale', kind: 'range', min: 0, max: 30, step: 0.5, value: 5 }),
      live({ key: 'eta', label: 'eta', kind: 'range', min: 0, max: 1, step: 0.05, value: 0 }),
    ],
  },
  {
    legend: 'CLIP guidance (Disco)',
    controls: [
      live({ key: 'clip_guidance_scale', label: 'clip_guidance_scale', kind: 'range', min: 0, max: 20000, step: 50, value: 0 }),
      live({ key: 'cutn_overview', label: 'cutn_overview', kind: 'schedule', min: 0, max: 64, step: 1, value: '[4]*1000' }),
      live({ key: 'cutn_inner', label: 'cutn_inner', kind: 'schedule', min: 0, max: 64, step: 1, value: '[0]*1000' }),
      live({ key: 'cut_ic_pow', label: 'cut_ic_pow', kind: 'range', min: 0, max: 10, step: 0.1, value: 1 }),
      live({ key: 'cut_icgray_p', label: 'cut_icgray_p', kind: 'schedule', min: 0, max: 1, step: 0.05, value: '[0.2]*400+[0]*600' }),
      live({ key: 'cut_flip', label: 'flips', kind: 'check', value: true }),
      live({ key: 'tv_scale', label: 'tv_scale', kind: 'range', min: 0, max: 1000, step: 5, value: 0 }),
      live({ key: 'range_scale', label: 'range_scale', kind: 'range', min: 0, max: 1000, step: 5, value: 0 }),
      live({ key: 'sat_scale', label: 'sat_scale', kind: 'range', min: 0, max: 1000, step: 5, value: 0 }),
      live({ key: 'clamp_grad', label: 'clamp_grad', kind: 'check', value: true }),
      live({ key: 'clamp_max', label: 'clamp_max', kind: 'range', min: 0.01, max: 1, step: 0.01, value: 0.05 }),
    ],
  },
  {
    legend: 'Previews',
    controls: [
      live({ key: 'preview_every', label: 'preview_every', kind: 'range', min: 1, max: 50, step: 1, value: 1 }),
      live({ key: 'full_decode_every', label: 'full_decode_every', kind: 'range', min: 1, max: 100, step: 1, value: 10 }),
      live({ key: 'preview_decoder', label: 'preview frames', kind: 'select', options: PREVIEW_DECODERS, value: 'linear',
             title: 'what draws the previews between full decodes: the fitted linear map, the tiny decoder '
               + '(--preview-decoder, TAESD) or the full VAE on every frame' }),
    ],
  },
  {
    legend: 'LoRA',
    controls: [
      live({ key: 'lora_weights', label: 'LoRA weights', kind: 'loras', min: -2, max: 2, step: 0.05, value: {},
             empty: 'no LoRAs loaded (start the server with --lora FILE.safetensors)' }),
    ],
  },
  {
    legend: 'Init image',
    controls: [{ key: 'skip_steps', label: 'skip_steps', kind: 'range', min: 0, max: 150, step: 1, value: 0 }],
  },
];

export const GAN_GROUPS = [
  {
    legend: 'Generator',
    controls: [
      { key: 'seed', label: 'seed', kind: 'seed', value: 0 },
      { key: 'truncation_psi', label: 'truncation psi', kind: 'range', min: -1, max: 2, step: 0.05, value: 0.7 },
      { key: 'noise_mode', label: 'noise mode', kind: 'select', options: [['const', 'const'], ['random', 'random'], ['none', 'none']], value: 'const' },
      { key: 'mix_seed', label: 'style-mix seed', kind: 'optint', value: null, placeholder: 'none' },
      { key: 'mix_layer', label: 'style-mix layer', kind: 'range', min: 0, max: 16, step: 1, value: 4 },
    ],
  },
  {
    legend: 'CLIP search in w',
    controls: [
      { key: 'search_steps', label: 'search steps', kind: 'range', min: 1, max: 200, step: 1, value: 50 },
      { key: 'search_lr', label: 'search lr', kind: 'range', min: 0.005, max: 0.5, step: 0.005, value: 0.05 },
      { key: 'search_pull', label: 'pull to w_avg', kind: 'range', min: 0, max: 2, step: 0.05, value: 0.1 },
    ],
  },
];

/** The line under the LoRA sliders, from /api/info: how to load LoRAs, or name more from the server's folder. */
export function loraHint(info) {
  const tag = 'name one from the server’s --lora-dir in the prompt: <lora:name:0.8>';
  if (info?.loras?.length) return info.lora_dir ? `more: ${tag}` : '';
  return info?.lora_dir ? `no LoRAs loaded; ${tag}` : 'no LoRAs loaded (start the server with --lora FILE.safetensors)';
}

/** DiffusionParams for a `generate` message from the controls' values. */
export function diffusionParams(values, prompt, negative, initImage) {
  const params = { prompt, negative_prompt: negative };
  for (const group of DIFFUSION_GROUPS) for (const c of group.controls) params[c.key] = values[c.key];
  params.init_image = initImage || null;
  if (!params.init_image) params.skip_steps = 0;
  if (params.seed === null) delete params.seed;
  return params;
}

/** The CLIP search's own controls: they set up the search button and never send a request. */
export const SEARCH_KEYS = new Set(['search_steps', 'search_lr', 'search_pull']);

/**
 * GanParams for a `generate_gan` message; `save` = false keeps slider drags out of the gallery.
 * Only `search` = true (the search button) sends the search steps; every other request renders.
 */
export function ganParams(values, prompt, grid = 1, save = true, search = false) {
  const params = { prompt, grid, save };
  for (const group of GAN_GROUPS) for (const c of group.controls) params[c.key] = values[c.key];
  if (!search) params.search_steps = 0;
  if (params.seed === null) delete params.seed;
  if (params.mix_seed === null) delete params.mix_seed;
  return params;
}

/**
 * What a GAN image shows, for its caption: the prompt of a text-conditioned render; for an
 * unconditional generator (`condition: 'none'`, recorded by the server) that it drew the seed alone.
 */
export function ganCaption(params) {
  const prompt = String(params?.prompt ?? '').trim();
  if (params?.condition !== 'none') return prompt || '(no prompt)';
  if (!prompt) return 'unconditional sample (no prompt)';
  const used = params.search_steps ? 'steered the CLIP search' : 'only scored it';
  return `${prompt} (unconditional GAN: the prompt ${used})`;
}
