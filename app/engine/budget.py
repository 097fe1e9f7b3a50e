"""A job's compute budget: its cost in seconds and its peak memory, estimated before it is queued.

Pure arithmetic over the parameters and a `Calibration` (per-pixel costs of the loaded UNet, VAE
decoder and CLIP image tower, measured once on this device at start-up by app.engine.calibrate).
Per step and image of the batch:

    UNet        unet_s x latent pixels x branches        branches = 1 + CFG (n prompts + 1 with CFG on)
                (+ a fixed cost per call, the whole batch and its branches in one call; the same for decodes)
    guidance    + 2 x UNet (backward) + 3 x decode + 3 x CLIP x cutouts   when CLIP / tv / range / sat is on
    previews    + CLIP (the step's score) on preview steps, + decode on full-decode steps

plus one final decode and score. Peak memory is what one step holds at once: with guidance on, the
activations the backward pass keeps (UNet x branches, VAE decoder, CLIP x cutouts); without it, a
few of the largest activations; plus the step history the run adds (bounded by history_bytes).
Both grow linearly in pixels: attention's quadratic term is not modelled, so very large images
are underestimated (the pixel cap in app.engine.limits still bounds them).
"""

from __future__ import annotations

from dataclasses import dataclass

from app.diffusion.prompts import parse_prompt
from app.diffusion.schedules import at_step, parse_schedule
from app.params import DiffusionParams, LiveParams

GRAD_FACTOR = 3.0  # forward + backward (about twice the forward) of a differentiated pass
NO_GRAD_PEAK = 3.0  # live activations in a no-grad pass, in units of its largest one
OVERHEAD = 1.3  # allocator slack and temporaries the module outputs miss (bench/bench_memory.py: ~1.25x)
GIB = 1024**3


class BudgetError(ValueError):
    """A job over the compute budget or the available memory; the message says what to lower."""


@dataclass(frozen=True)
class Calibration:
    """Costs of the loaded models on this device, per sample (image of a batch)."""

    unet_s_per_px: float  # one UNet evaluation, seconds per latent pixel
    decode_s_per_px: float  # one VAE decode, seconds per image pixel
    clip_s_per_image: float  # one CLIP image embedding (a cutout or a score)
    unet_bytes_per_px: float  # activations a differentiated UNet pass keeps, per latent pixel
    decode_bytes_per_px: float  # the same for the VAE decoder, per image pixel
    clip_bytes_per_image: float  # the same for CLIP, per cutout
    unet_peak_bytes_per_px: float  # largest single activation of the UNet, per latent pixel
    decode_peak_bytes_per_px: float  # largest single activation of the decoder, per image pixel
    latent_channels: int = 4
    vae_scale: int = 8
    device: str = "cpu"
    unet_s_fixed: float = 0.0  # per UNet call, whatever its size (launch and Python overhead)
    decode_s_fixed: float = 0.0  # per VAE decode call
    distilled_guidance: bool = False  # cfg_scale is a model input (FLUX.1-dev), not extra branches


@dataclass(frozen=True)
class Estimate:
    seconds: float
    peak_bytes: float
    parts: dict[str, float]  # seconds by cause: unet, guidance, cutouts, previews

    def text(self) -> str:
        return f"about {self.seconds:,.0f} s of compute and {self.peak_bytes / GIB:.2f} GiB at its peak"


def branches(prompt: str, cfg_scale: float) -> int:
    """UNet passes per sample and step: the cfg_denoiser's branches for this prompt and scale."""
    prompts = parse_prompt(prompt)
    if cfg_scale == 0.0 or (cfg_scale == 1.0 and len(prompts) == 1 and prompts[0][1] == 1.0):
        return 1
    return len(prompts) + 1


def guided(live: LiveParams, has_clip: bool) -> bool:
    return (live.clip_guidance_scale > 0 and has_clip) or live.tv_scale > 0 or live.range_scale > 0 \
        or live.sat_scale > 0


def estimate(params: DiffusionParams, cal: Calibration, *, has_clip: bool, live: LiveParams | None = None,
             first: int | None = None, history_bytes: int | None = None) -> Estimate:
    """Cost of sampling steps `first`..steps-1 of `params` (default: from skip_steps) with `live`
    (default: the params' own live part) held for the whole run."""
    live = live or params.live()
    first = params.skip_steps if first is None else first
    batch = params.batch
    latent_px = (params.width // cal.vae_scale) * (params.height // cal.vae_scale)
    image_px = params.width * params.height
    n_branch = branches(params.prompt, 1.0 if cal.distilled_guidance else live.cfg_scale)
    unet = cal.unet_s_fixed + cal.unet_s_per_px * latent_px * batch * n_branch
    decode = cal.decode_s_fixed + cal.decode_s_per_px * image_px * batch
    clip = cal.clip_s_per_image * batch
    is_guided = guided(live, has_clip)
    use_cuts = live.clip_guidance_scale > 0 and has_clip
    overview, inner = parse_schedule(live.cutn_overview), parse_schedule(live.cutn_inner)

    parts = {"unet": 0.0, "guidance": 0.0, "cutouts": 0.0, "previews": 0.0}
    max_cuts = 0
    for i in range(first, params.steps):
        parts["unet"] += unet
        if is_guided:
            parts["guidance"] += (GRAD_FACTOR - 1) * unet + GRAD_FACTOR * decode
            if use_cuts:
                cuts = int(at_step(overview, i, params.steps)) + int(at_step(inner, i, params.steps))
                max_cuts = max(max_cuts, cuts)
                parts["cutouts"] += GRAD_FACTOR * clip * cuts
        index = i + 1
        if index % live.preview_every == 0 or index == params.steps:
            parts["previews"] += clip
            if index % live.full_decode_every == 0:
                parts["previews"] += decode
    parts["previews"] += decode + clip  # the final image and its score

    if is_guided:
        peak = (cal.unet_bytes_per_px * latent_px * n_branch + cal.decode_bytes_per_px * image_px
                + cal.clip_bytes_per_image * max_cuts) * batch
    else:
        peak = NO_GRAD_PEAK * batch * max(cal.unet_peak_bytes_per_px * latent_px * n_branch,
                                          cal.decode_peak_bytes_per_px * image_px)
    # the decode of the final image (no grad) follows the sampling, it does not add to it
    peak = OVERHEAD * max(peak, NO_GRAD_PEAK * batch * cal.decode_peak_bytes_per_px * image_px)
    latent_bytes = 4 * cal.latent_channels * latent_px * batch
    kept = 2 * latent_bytes * (params.steps - first)  # latent + x0 estimate per step
    peak += min(kept, history_bytes) if history_bytes is not None else kept
    return Estimate(sum(parts.values()), peak, parts)


def _what_to_lower(est: Estimate, params: DiffusionParams, live: LiveParams) -> str:
    advice = [f"steps ({params.steps})", f"width x height ({params.width}x{params.height})"]
    if params.batch > 1:
        advice.append(f"batch ({params.batch})")
    if est.parts["unet"] and live.cfg_scale not in (0.0, 1.0):
        advice.append("cfg_scale (0 or 1 halves the UNet passes)")
    if est.parts["cutouts"] > 0.1 * est.seconds:
        advice.append("cutn_overview / cutn_inner")
    if est.parts["guidance"] > 0.1 * est.seconds:
        advice.append("clip_guidance_scale / tv_scale / range_scale / sat_scale (0 turns guidance's backward "
                      "pass off)")
    return ", ".join(advice)


def check(est: Estimate, params: DiffusionParams, *, budget_s: float, available_bytes: float | None,
          live: LiveParams | None = None) -> None:
    """Raise BudgetError if `est` is over the budget or would not fit in memory."""
    live = live or params.live()
    if est.seconds > budget_s:
        raise BudgetError(f"this job is estimated at {est.seconds:,.0f} s of compute on this device, over the "
                          f"budget of {budget_s:,.0f} s per job (NOISESCOPE_MAX_JOB_SECONDS); lower "
                          f"{_what_to_lower(est, params, live)}")
    if available_bytes is not None and est.peak_bytes > available_bytes:
        raise BudgetError(f"this job needs about {est.peak_bytes / GIB:.2f} GiB at its peak, but "
                          f"{available_bytes / GIB:.2f} GiB is available for it; lower "
                          f"width x height ({params.width}x{params.height}), batch ({params.batch}) or turn "
                          f"guidance off (clip_guidance_scale / tv / range / sat keep activations for a backward "
                          f"pass)")


def meminfo_available(text: str) -> float | None:
    """MemAvailable in bytes from the text of /proc/meminfo, or None."""
    for line in text.splitlines():
        if line.startswith("MemAvailable:"):
            fields = line.split()
            return float(fields[1]) * (1024 if fields[2:3] == ["kB"] else 1)
    return None
