"""One diffusion run, start to finish, for the engine: load models, build the guided denoiser,
pick the schedule and sampler, report every step. No threads, no web code.

A run is written as a generator of its network calls (`sample_steps`): `generate` answers them one
by one for a run alone, the engine stacks the calls of many runs into one (app.engine.batcher)."""

from __future__ import annotations

import os
from collections.abc import Callable, Generator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from app.clip.backend import ClipBackend
from app.diffusion import families, previews
from app.diffusion.accel import SideStream
from app.diffusion.denoiser import (
    SteppedDenoiser,
    UNetCall,
    UNetDenoiser,
    answer,
    cfg_calls,
    unet_call,
)
from app.diffusion.families import Conditioner
from app.diffusion.families.sd import ClipConditioner
from app.diffusion.guidance import ClipTarget, GuidanceKnobs, active, clip_guided, clip_score, clip_target
from app.diffusion.inpaint import (
    INPAINT_UNET_CHANNELS,
    Inpaint,
    inpaint_conditioning,
    latent_mask,
    masked_denoiser,
    pixel_mask,
)
from app.diffusion.lora import LoraLibrary
from app.diffusion.noise import initial_noise, step_noise
from app.diffusion.previews import LatentRGBMap
from app.diffusion.prompts import parse_prompt
from app.diffusion.samplers import Denoiser, Steps, sampler_steps
from app.diffusion.sigmas import discrete_sigmas, karras_sigmas
from app.diffusion.sizes import SizeRange, model_sizes
from app.diffusion.tiny_decoder import TinyDecoder
from app.diffusion.transfer import Pending, to_host_async
from app.params import DiffusionParams, LiveParams


def default_cache_dir() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "noisescope"


@dataclass
class DiffusionModels:
    name: str
    unet: torch.nn.Module
    vae: torch.nn.Module
    text_encoder: torch.nn.Module
    tokenizer: object
    alphas_cumprod: Tensor
    prediction_type: str
    timestep_spacing: str
    steps_offset: int
    device: torch.device
    dtype: torch.dtype
    denoiser: UNetDenoiser
    rgb_map: LatentRGBMap
    clip: ClipBackend | None = None
    # prompts -> the denoiser's conditioning, the family's own (app.diffusion.families);
    # None: SD 1.x / 2.x's, from `tokenizer` and `text_encoder`
    conditioner: Conditioner | None = None
    family: Family | None = None  # None: the SD UNet family (UNetFamily); flow models: app.diffusion.flow_family
    loras: LoraLibrary | None = None  # --lora / --lora-dir (app.diffusion.lora), set by the registry
    preview_decoder: TinyDecoder | None = None  # --preview-decoder (app.diffusion.tiny_decoder)
    # the per-step CLIP score on a side CUDA stream (app.diffusion.accel); no effect on a CPU
    side_stream: bool = True

    # a diffusion upscaler (StableDiffusionUpscalePipeline): the low_res_scheduler's alphas_cumprod
    # that noise the low-resolution input, and its max_noise_level; None for a text-to-image model
    low_res_alphas: Tensor | None = None
    max_noise_level: int = 0

    def __post_init__(self) -> None:
        if self.conditioner is None:
            self.conditioner = ClipConditioner(self.tokenizer, self.text_encoder)

    @property
    def latent_channels(self) -> int:
        return int(self.vae.config.latent_channels)

    @property
    def inpaint_unet(self) -> bool:
        """A diffusers inpainting UNet: latent, mask and masked-image latent in (9 channels)."""
        return int(self.unet.config.in_channels) == INPAINT_UNET_CHANNELS

    @property
    def upscaler(self) -> bool:
        """A diffusion upscaler: latent and low-resolution RGB in (latent + 3 channels), noise level as class label."""
        return self.low_res_alphas is not None

    @property
    def vae_scale(self) -> int:
        return previews.vae_scale(self.vae)


class Family(Protocol):
    """What generate() asks of a model family: its noise levels ("sigma" in its own coordinates),
    noising, text conditioning with CFG as network calls (`UNetCall`s that its `DiffusionModels.denoiser`
    answers), its samplers as generators of their steps, and CLIP guidance's weight; calibrate and
    the studio ask for one timed call and the sizes it draws."""

    distilled_guidance: bool  # cfg_scale feeds the model (FLUX.1-dev) instead of CFG branches

    def levels(self, steps: int, karras: bool, shape: tuple[int, ...]) -> Tensor: ...
    def noised(self, x0: Tensor | None, noise: Tensor, level: float) -> Tensor: ...
    def signal(self, level: float | Tensor) -> float | Tensor: ...  # x0's coefficient at a level (inpainting)
    def calls(self, prompts: list[tuple[str, float]], negative: str, cfg: Callable[[], float],
              concat: Tensor | None = None, size: tuple[int, int] = (0, 0),
              class_labels: Tensor | None = None) -> SteppedDenoiser: ...
    def steps(self, name: str, x: Tensor, levels: Tensor, **kwargs) -> Steps: ...
    def guidance_weight(self, level: Tensor) -> Tensor: ...
    def probe(self, latent: Tensor) -> Callable[[], Tensor]: ...
    def sizes(self, max_pixels: int) -> SizeRange: ...


class UNetFamily:
    """SD 1.x / 2.x and SDXL: a UNetDenoiser in VE form x0 + sigma eps (epsilon or v), CFG, and the
    text conditioning of the pipeline's own conditioner (app.diffusion.families)."""

    steps = staticmethod(sampler_steps)
    distilled_guidance = False

    def __init__(self, models: DiffusionModels) -> None:
        self.models = models

    def levels(self, steps: int, karras: bool, shape: tuple[int, ...]) -> Tensor:
        return run_sigmas(self.models, steps, karras)

    @staticmethod
    def noised(x0: Tensor | None, noise: Tensor, sigma: float) -> Tensor:
        return noise * sigma if x0 is None else x0 + noise * sigma

    @staticmethod
    def signal(sigma: float | Tensor) -> float:
        return 1.0

    def calls(self, prompts: list[tuple[str, float]], negative: str, cfg: Callable[[], float],
              concat: Tensor | None = None, size: tuple[int, int] = (0, 0),
              class_labels: Tensor | None = None) -> SteppedDenoiser:
        """`size` (width, height in pixels) is SDXL's size conditioning (SD 1.x / 2.x ignore it);
        `concat` an inpainting UNet's mask and masked image, or with `class_labels` a diffusion
        upscaler's low-resolution image and noise level."""
        return cfg_calls(self.models.conditioner(prompts, negative, *size), cfg, concat, class_labels)

    @staticmethod
    def guidance_weight(sigma: Tensor) -> Tensor:
        return sigma**2

    def probe(self, latent: Tensor) -> Callable[[], Tensor]:
        """One unguided UNet call at sigma_max on the empty prompt; an inpainting UNet's mask and
        masked-image channels (app.diffusion.inpaint) or an upscaler's low-resolution image blank (an
        upscaler's noise level 0)."""
        m = self.models
        sigma = torch.full((latent.shape[0],), m.denoiser.sigma_max, device=latent.device)
        side = latent.shape[-1] * m.vae_scale
        context = m.conditioner([("", 1.0)], "", side, side).cond
        extra = int(m.unet.config.in_channels) - latent.shape[1]
        concat = latent.new_zeros(latent.shape[0], extra, *latent.shape[2:]) if extra else None
        labels = torch.zeros(latent.shape[0], dtype=torch.long, device=latent.device) if m.upscaler else None
        return lambda: m.denoiser(latent, sigma, context, concat=concat, class_labels=labels)

    def sizes(self, max_pixels: int) -> SizeRange:
        return model_sizes(self.models.unet, self.models.vae, self.models.vae_scale, max_pixels)


def family_of(models: DiffusionModels) -> Family:
    return models.family or UNetFamily(models)


@dataclass(frozen=True)
class StepInfo:
    index: int  # 1..total
    total: int
    sigma: float  # the noise level the model saw at this step
    sigma_next: float  # the noise level of `latent`
    latent: Tensor  # x after this step, on the CPU: what a rewind resumes from
    denoised: Tensor  # the (guided) x0 estimate at this step, on the CPU
    # a preview step: every live `preview_every`-th and the last; what gets a preview image in the
    # runner (the last step's image is the final one)
    preview: bool
    # the CLIP score (guidance.clip_score) of the x0 estimate's VAE decode, batch mean, on the steps
    # that get a full decode (`scored_step`); None on the others, and where there is no CLIP
    clip_score: float | None


def load_diffusion_models(name_or_path: str, device: torch.device, dtype: torch.dtype, clip: ClipBackend | None = None,
                          cache_dir: Path | None = None) -> DiffusionModels:
    """A diffusers pipeline folder or hub id (SD 1.x / 2.x, SDXL: app.diffusion.families; SD3 and
    FLUX.1: app.diffusion.flow_family), or a single-file checkpoint in the original layout
    (app.diffusion.single_file); HF_HUB_OFFLINE=1 keeps hub ids to the local cache, and a single
    file never needs the hub.

    The noise schedule and prediction type come from the scheduler config; the preview map is
    fitted once per VAE and cached under `cache_dir` (default ~/.cache/noisescope).
    """
    from app.diffusion import single_file
    from app.diffusion.flow_family import FLOW_PIPELINES, load_flow_models

    cache_dir = cache_dir or default_cache_dir()
    if single_file.is_single_file(name_or_path):
        pipe = single_file.load_single_file(Path(name_or_path), dtype, cache_dir / "single-file-configs")
    else:
        class_name = families.pipeline_class_name(str(name_or_path), families.hub_offline())
        if class_name in FLOW_PIPELINES:
            return load_flow_models(str(name_or_path), class_name, device, dtype, clip, cache_dir)
        pipe = families.load_pipeline(str(name_or_path), dtype)
    return models_from_pipeline(pipe, str(name_or_path), device, dtype, clip, cache_dir)


def models_from_pipeline(pipe, name: str, device: torch.device, dtype: torch.dtype, clip: ClipBackend | None = None,
                         cache_dir: Path | None = None) -> DiffusionModels:
    """DiffusionModels from an already built pipeline of a known family (its components are moved to `device`)."""
    from diffusers import DDPMScheduler

    cfg = dict(pipe.scheduler.config)
    alphas_cumprod = DDPMScheduler.from_config(cfg).alphas_cumprod.double().clamp(min=2.0**-24)
    prediction_type = cfg.get("prediction_type", "epsilon")
    family = families.pipeline_family(pipe)
    family.setup(pipe, dtype)
    conditioner = family.conditioner(pipe)
    for module in (pipe.unet, pipe.vae, *conditioner.modules):
        module.to(device).eval().requires_grad_(False)
    rgb_map = previews.load_or_fit(pipe.vae, (cache_dir or default_cache_dir()) / "previews")
    return DiffusionModels(
        name=name, unet=pipe.unet, vae=pipe.vae, text_encoder=pipe.text_encoder, tokenizer=pipe.tokenizer,
        alphas_cumprod=alphas_cumprod, prediction_type=prediction_type,
        timestep_spacing=cfg.get("timestep_spacing", "leading"), steps_offset=int(cfg.get("steps_offset", 0)),
        device=device, dtype=dtype, denoiser=UNetDenoiser(pipe.unet, alphas_cumprod, prediction_type),
        rgb_map=rgb_map, clip=clip, conditioner=conditioner,
    )


def run_sigmas(models: DiffusionModels, steps: int, karras: bool) -> Tensor:
    """Karras sigmas over the model's range, or the model's own discrete schedule; ends in 0."""
    if karras:
        return karras_sigmas(steps, models.denoiser.sigma_min, models.denoiser.sigma_max)
    return discrete_sigmas(models.alphas_cumprod, steps, models.timestep_spacing, models.steps_offset)


def pil_to_tensor(image: Image.Image, width: int, height: int) -> Tensor:
    """PIL -> [1, 3, height, width] in [-1, 1]."""
    image = image.convert("RGB").resize((width, height), Image.Resampling.LANCZOS)
    return torch.from_numpy(np.asarray(image).copy()).permute(2, 0, 1)[None].float().div(127.5).sub(1)


def _score_fn(models: DiffusionModels, target: ClipTarget | None) -> Callable[[Tensor], Tensor | None]:
    """The per-step CLIP score, left on the device: the one CLIP score (guidance.clip_score) of the
    x0 estimate's VAE decode, the same picture and formula as the finished image's score."""
    if models.clip is None or target is None:
        return lambda denoised: None

    def score(denoised: Tensor) -> Tensor:
        return clip_score(models.clip, previews.full_decode(models.vae, denoised), target).mean()

    return score


def scored_step(index: int, total: int, preview_every: int, full_decode_every: int) -> bool:
    """Whether step `index` gets a CLIP score: a preview step that is also fully decoded, and the last."""
    return index == total or (index % preview_every == 0 and index % full_decode_every == 0)


RunSteps = Generator[UNetCall | None, Tensor | None, Tensor]  # a run's network calls (None: a step it computes itself)


def own_or_batched(calls: SteppedDenoiser, guided: Denoiser, knobs: Callable[[], GuidanceKnobs],
                   clip) -> Callable[[Tensor, Tensor], RunSteps]:
    """D(x, sigma) as network calls: a plain step yields its UNet call (the engine may stack it with
    other runs'); a guided step (gradients through the run's own UNet call, decode and CLIP) yields
    None, then computes itself with `guided` when resumed."""

    def denoise(x: Tensor, sigma: Tensor) -> RunSteps:
        if active(knobs(), clip):
            yield None
            return guided(x, sigma)
        return (yield from calls(x, sigma))

    return denoise


def through(sampler: Steps, denoise: Callable[[Tensor, Tensor], RunSteps]) -> RunSteps:
    """A sampler's steps with each "denoise (x, sigma)" request answered by `denoise`'s network calls."""
    try:
        request = next(sampler)
        while True:
            request = sampler.send((yield from denoise(*request)))
    except StopIteration as done:
        return done.value


def generate(models: DiffusionModels, params: DiffusionParams, **kwargs) -> Tensor:
    """Sample one batch alone; returns the final latent [batch, C, h, w]. Arguments: `sample_steps`."""
    with torch.no_grad():
        return answer(sample_steps(models, params, **kwargs), lambda call: unet_call(models.denoiser, call))


def sample_steps(models: DiffusionModels, params: DiffusionParams, *, live: Callable[[], LiveParams],
                 on_step: Callable[[StepInfo], None], start_step: int = 0, start_latent: Tensor | None = None,
                 init_image: Image.Image | None = None, start_denoised: Tensor | None = None,
                 on_boundary: Callable[[int], None] | None = None, check: Callable[[], None] | None = None,
                 mask: Image.Image | None = None) -> RunSteps:
    """Sample one batch as a generator of its network calls (answer each with its UNet output, a None
    with None); returns the final latent [batch, C, h, w]. Drive it under torch.no_grad().

    - `live()` is re-read at every step (cfg_scale, eta, guidance knobs).
    - `on_boundary(n)` is called when n steps are done and before the next one starts (first with
      the starting step, never after the last): where live changes take effect (app.engine.live).
    - `on_step` gets every step, one step late (step i once step i + 1 is queued on the device),
      with `latent` and `denoised` already copied to the CPU; raising from it cancels the run.
    - The per-step CLIP score is taken on the steps that get a full VAE decode (live `preview_every`
      and `full_decode_every`, plus the last step), so it scores the same kind of picture as the
      finished image; the last step's score is the finished image's.
    - Resume: `start_latent` is StepInfo.latent of step `start_step`; the continuation equals the
      original for the same params. For dpmpp_2m pass that step's `denoised` as `start_denoised`
      too, or the multistep history restarts (the tail then differs slightly).
    - img2img: `init_image` is encoded, noised to the sigma of step `skip_steps`, and sampled from
      there. skip_steps without an init image starts from noise at that level (Disco's behaviour).
    - inpainting: `mask` (white = re-generate) with `init_image`: the kept region is the noised init
      at every step and exactly the init's latent at the end (app.diffusion.inpaint); the steps'
      `latent` and `denoised` already show the kept region so (previews, resumes). An inpainting UNet
      (9 channels) also gets its mask / masked-image conditioning, with or without a mask.
    - `check()` raises to cancel inside a step too: between the parts of a guided step (UNet, decode,
      each loss term and CLIP call, the backward pass), see guidance.clip_guided.
    Image j of a batch uses seed + j.
    The run's arguments are checked and its models set up at the first `next()`.
    """
    if params.skip_steps >= params.steps:
        raise ValueError("skip_steps must be smaller than steps")
    if params.width % models.vae_scale or params.height % models.vae_scale:
        raise ValueError(f"width and height must be multiples of {models.vae_scale}")
    if mask is not None and init_image is None:
        raise ValueError("a mask needs an init image")
    prompts = parse_prompt(params.prompt)
    seed = params.seed or 0
    seeds = [seed + j for j in range(params.batch)]
    shape = (models.latent_channels, params.height // models.vae_scale, params.width // models.vae_scale)
    family = family_of(models)
    sigmas = family.levels(params.steps, params.karras, shape)
    device = models.device

    if start_latent is not None:
        if start_latent.shape != (params.batch, *shape):
            raise ValueError(f"start latent has shape {tuple(start_latent.shape)}, expected {(params.batch, *shape)}")
        if not 0 < start_step < params.steps:
            raise ValueError("start_step must be between 1 and steps - 1 when resuming")
        x, first = start_latent.to(device, torch.float32), start_step
    elif start_step:
        raise ValueError("resuming needs start_latent")
    noise = initial_noise(seeds, shape, device)
    image = known = pixels = None
    if models.upscaler and init_image is None:
        raise ValueError("a diffusion upscaler needs the low-resolution image (init_image)")
    if init_image is not None and not models.upscaler and (
            start_latent is None or mask is not None or models.inpaint_unet):
        image = pil_to_tensor(init_image, params.width, params.height).to(device)
        known = previews.encode(models.vae, image).expand(params.batch, -1, -1, -1)
    if models.upscaler and init_image is not None and params.skip_steps and start_latent is None:
        known = enlarged_latent(models, init_image, params.width, params.height).expand(params.batch, -1, -1, -1)
    if start_latent is None:
        first = params.skip_steps
        x = family.noised(known, noise, float(sigmas[first]))
    inpaint = None
    if mask is not None and known is not None:
        pixels = pixel_mask(mask, params.width, params.height).to(device)
        inpaint = Inpaint(known, noise, latent_mask(pixels, models.vae_scale), family.signal)

    concat = None
    if models.inpaint_unet:
        blank = torch.zeros(1, 3, params.height, params.width, device=device)
        concat = inpaint_conditioning(lambda im: previews.encode(models.vae, im),
                                      blank if image is None else image, pixels,
                                      None if inpaint is None else inpaint.mask, shape)

    class_labels = None
    if models.upscaler:
        concat, class_labels = low_res_conditioning(models, init_image, shape, params.noise_level, seed)
    target = clip_target(models.clip, prompts) if models.clip is not None else None
    calls = family.calls(prompts, params.negative_prompt, lambda: live().cfg_scale, concat,
                         size=(params.width, params.height), class_labels=class_labels)
    plain = lambda x, sigma: answer(calls(x, sigma), lambda c: unet_call(models.denoiser, c))  # noqa: E731
    guided = clip_guided(plain, lambda z: previews.decode(models.vae, z), live, sigmas.tolist(), seed,
                         models.clip, target, check or (lambda: None), weight=family.guidance_weight)
    score = _score_fn(models, target)

    # On CUDA, step i is reported once step i + 1 is queued, so waiting for its copies never
    # idles the GPU; on the CPU there is nothing to overlap and each step is reported at once.
    held: list[tuple[dict, bool, Pending, Pending | None]] = []
    lag = 2 if device.type == "cuda" else 1
    side = SideStream(device, models.side_stream)

    def report(d: dict, preview: bool, pending: Pending, scoring: Pending | None) -> None:
        latent, denoised = pending.wait()
        score_t = None if scoring is None else scoring.wait()[0]
        on_step(StepInfo(index=d["i"] + 1, total=params.steps, sigma=d["sigma"], sigma_next=d["sigma_next"],
                         latent=latent, denoised=denoised, preview=preview,
                         clip_score=None if score_t is None else round(float(score_t), 4)))

    def callback(d: dict) -> None:
        if inpaint is not None:  # the latent as the next step sees it; the x0 as it will be kept
            d = {**d, "x": inpaint.blend(d["x"], d["sigma_next"]), "denoised": inpaint.shown(d["denoised"])}
        index = d["i"] + 1
        knobs = live()
        preview = index % knobs.preview_every == 0 or index == params.steps
        scored = scored_step(index, params.steps, knobs.preview_every, knobs.full_decode_every)
        held.append((d, preview, to_host_async(d["x"], d["denoised"]),
                     side.to_host(score, d["denoised"]) if scored else None))
        if len(held) == lag:
            report(*held.pop(0))
        if on_boundary is not None and index < params.steps:
            on_boundary(index)

    if on_boundary is not None:
        on_boundary(first)
    options = dict(callback=callback, start_index=first, eta=lambda: sampler_eta(params.sampler, live().eta),
                   noise=step_noise(seeds, shape, device),
                   old_denoised=None if start_denoised is None else start_denoised.to(device, torch.float32))
    denoiser = own_or_batched(calls, guided, live, models.clip)
    if inpaint is not None:
        denoiser = masked_denoiser(denoiser, inpaint)
    x = yield from through(family.steps(params.sampler, x, sigmas, **options), denoiser)
    if held:
        report(*held.pop())
    return x if inpaint is None else inpaint.paste(x)


def enlarged_latent(models: DiffusionModels, image: Image.Image, width: int, height: int) -> Tensor:
    """An upscale run's start with skip_steps: the latent of the picture's bicubic enlargement, which
    sample_steps noises to the level of step skip_steps and samples from there. Starting the reverse
    process from a forward-diffused estimate instead of pure noise is CCDF (Chung et al. 2022,
    "Come-Closer-Diffuse-Faster"), the same as AUTOMATIC1111's SD upscale (enlarge, then img2img)."""
    enlarged = image.convert("RGB").resize((width, height), Image.Resampling.BICUBIC)
    return previews.encode(models.vae, pil_to_tensor(enlarged, width, height).to(models.device))


def low_res_conditioning(models: DiffusionModels, image: Image.Image, shape: tuple[int, int, int],
                         noise_level: int, seed: int) -> tuple[Tensor, Tensor]:
    """An upscaler's extra input: the low-resolution image at the latent's size, in [-1, 1], noised by the
    low_res_scheduler to `noise_level` (q(x_t | x_0) of DDPM; StableDiffusionUpscalePipeline does the same
    with its own generator, so the noise here is drawn from the run's seed), and the level as a class label."""
    if not 0 <= noise_level <= models.max_noise_level:
        raise ValueError(f"noise_level must be between 0 and {models.max_noise_level} for this upscaler")
    assert models.low_res_alphas is not None
    low = pil_to_tensor(image, shape[2], shape[1]).to(models.device)
    noise = torch.randn(low.shape, generator=torch.Generator().manual_seed(seed + 7919)).to(models.device)
    a = float(models.low_res_alphas[noise_level])
    low = low * a**0.5 + noise * (1 - a) ** 0.5
    return low, torch.tensor([noise_level], device=models.device)


def sampler_eta(sampler: str, eta: float | None) -> float:
    """The live eta, or the sampler's customary one when unset: ancestral Euler 1, DDIM 0."""
    if eta is not None:
        return eta
    return 1.0 if sampler == "euler_a" else 0.0


def decode_to_pil(models: DiffusionModels, latent: Tensor) -> list[Image.Image]:
    images = previews.full_decode(models.vae, latent.to(models.device))
    return [Image.fromarray(previews.to_uint8_hwc(img[None])) for img in images]


def preview_rgb(models: DiffusionModels, denoised: Tensor, full: bool = False) -> np.ndarray:
    """uint8 H x W x 3 of an x0 estimate: a VAE decode, or the fast map at latent resolution
    (computed where `denoised` lives, so a CPU copy costs the device nothing).
    A batch comes back as a grid (4 per row)."""
    if full:
        return previews.to_uint8_hwc(previews.full_decode(models.vae, denoised.to(models.device)))
    return previews.fast_preview(models.rgb_map, denoised)
