"""CLIP guidance as a denoiser wrapper, after Disco Diffusion's cond_fn.

With gradients on x: x0 = D(x, sigma) -> VAE decode -> cutouts -> CLIP image embeddings ->
weighted spherical distance to the prompt embeddings, plus TV / range / saturation losses.
The gradient g of that loss w.r.t. x (NaN -> 0, RMS clamped to clamp_max) is applied as
x0 + (-g) * sigma^2: a score correction of -g turns into the denoiser's output through
D = x + sigma^2 * grad log p (k-diffusion's cond-fn convention).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

import torch
from torch import Tensor

from app.clip.backend import ClipBackend
from app.diffusion.cutouts import CutSpec, make_cutouts
from app.diffusion.noise import CUTS, generator
from app.diffusion.samplers import Denoiser
from app.diffusion.schedules import at_step, parse_schedule

CUT_BATCH = 16  # cutouts per CLIP call; a cancel is honoured between two calls

Check = Callable[[], None]  # raises (RunCancelled) to stop the step where it stands


def _no_check() -> None:
    return None


class GuidanceKnobs(Protocol):
    """The live parameters guidance reads each step (`LiveParams` has them all)."""

    clip_guidance_scale: float
    cutn_overview: str
    cutn_inner: str
    cut_ic_pow: float
    cut_icgray_p: str
    cut_flip: bool
    tv_scale: float
    range_scale: float
    sat_scale: float
    clamp_grad: bool
    clamp_max: float


@dataclass(frozen=True)
class ClipTarget:
    embeds: Tensor  # [n, D], L2-normalised
    weights: Tensor  # [n], scaled so that |sum| = 1 (as Disco does) unless they cancel out


def clip_target(clip: ClipBackend, prompts: list[tuple[str, float]]) -> ClipTarget:
    embeds = clip.encode_text([p for p, _ in prompts])
    w = torch.tensor([wt for _, wt in prompts], device=embeds.device, dtype=embeds.dtype)
    total = w.sum().abs()
    return ClipTarget(embeds, w / total if total > 1e-6 else w)


def spherical_dist(a: Tensor, b: Tensor) -> Tensor:
    """Squared great-circle distance between unit vectors: 2 arcsin(|a - b| / 2)^2."""
    return (a - b).norm(dim=-1).div(2).arcsin().pow(2).mul(2)


def tv_loss(images: Tensor) -> Tensor:
    """[B] mean squared difference to the right and lower neighbours (edges replicated)."""
    x = torch.nn.functional.pad(images, (0, 1, 0, 1), mode="replicate")
    dx = x[..., :-1, 1:] - x[..., :-1, :-1]
    dy = x[..., 1:, :-1] - x[..., :-1, :-1]
    return (dx**2 + dy**2).mean(dim=(1, 2, 3))


def range_loss(images: Tensor) -> Tensor:
    """[B] mean squared excursion outside [-1, 1]."""
    return (images - images.clamp(-1, 1)).pow(2).mean(dim=(1, 2, 3))


def sat_loss(images: Tensor) -> Tensor:
    """[B] mean absolute excursion outside [-1, 1] (Disco's saturation loss)."""
    return (images - images.clamp(-1, 1)).abs().mean(dim=(1, 2, 3))


def cut_spec(knobs: GuidanceKnobs, step: int, total: int) -> CutSpec:
    return CutSpec(
        overview=int(at_step(parse_schedule(knobs.cutn_overview), step, total)),
        inner=int(at_step(parse_schedule(knobs.cutn_inner), step, total)),
        ic_pow=knobs.cut_ic_pow,
        grey_p=at_step(parse_schedule(knobs.cut_icgray_p), step, total),
        flip=knobs.cut_flip,
    )


def clip_loss(clip: ClipBackend, target: ClipTarget, images01: Tensor, spec: CutSpec, gen: torch.Generator,
              check: Check = _no_check) -> Tensor:
    """[B] weighted spherical distance of each image's cutouts to the prompts, mean over cutouts.
    CLIP sees the cutouts CUT_BATCH at a time, with `check()` before each call."""
    cuts = make_cutouts(images01, clip.image_size, spec, gen)  # [B, K, 3, S, S]
    b, k = cuts.shape[:2]
    if k == 0:
        return images01.new_zeros(b)
    flat = cuts.flatten(0, 1)
    parts = []
    for start in range(0, flat.shape[0], CUT_BATCH):
        check()
        parts.append(clip.encode_image(flat[start:start + CUT_BATCH]))
    emb = torch.cat(parts).view(b, k, 1, -1)
    dists = spherical_dist(emb, target.embeds.view(1, 1, *target.embeds.shape))  # [B, K, n]
    return (dists * target.weights).sum(-1).mean(1)


def guidance_loss(images: Tensor, knobs: GuidanceKnobs, clip: ClipBackend | None, target: ClipTarget | None,
                  spec: CutSpec, gen: torch.Generator, check: Check = _no_check) -> Tensor:
    """Scalar loss over decoded images in [-1, 1] (summed over the batch); `check()` runs before
    each term (and between CLIP calls), so a cancel stops it between any two."""
    loss = images.new_zeros(images.shape[0])
    if knobs.clip_guidance_scale > 0 and clip is not None and target is not None:
        loss = loss + clip_loss(clip, target, images.add(1).div(2), spec, gen, check) * knobs.clip_guidance_scale
    for scale, term in ((knobs.tv_scale, tv_loss), (knobs.range_scale, range_loss), (knobs.sat_scale, sat_loss)):
        if scale > 0:
            check()
            loss = loss + term(images) * scale
    return loss.sum()


def _checked(t: Tensor, check: Check) -> Tensor:
    """`t` with a backward hook that runs `check()` when the gradient reaches it: a cancel is
    honoured between the parts of the backward pass too (it propagates out of autograd.grad)."""
    def hook(_grad: Tensor) -> None:
        check()

    if t.requires_grad:
        t.register_hook(hook)
    return t


def clamp_rms(grad: Tensor, max_rms: float) -> Tensor:
    """Scale each sample's gradient down so its RMS is at most max_rms."""
    rms = grad.pow(2).mean(dim=tuple(range(1, grad.ndim)), keepdim=True).sqrt()
    return grad * (rms.clamp(max=max_rms) / rms.clamp(min=1e-12))


def active(knobs: GuidanceKnobs, clip: ClipBackend | None) -> bool:
    return (knobs.clip_guidance_scale > 0 and clip is not None) or knobs.tv_scale > 0 or knobs.range_scale > 0 \
        or knobs.sat_scale > 0


def clip_guided(denoiser: Denoiser, decode: Callable[[Tensor], Tensor], knobs: Callable[[], GuidanceKnobs],
                sigmas: Sequence[float], seed: int, clip: ClipBackend | None = None,
                target: ClipTarget | None = None, check: Check = _no_check,
                weight: Callable[[Tensor], Tensor] | None = None) -> Denoiser:
    """Wrap `denoiser` with guidance re-read from `knobs()` at every call.

    `decode` maps an x0 latent to images in [-1, 1], differentiably. The step index (for the cut
    schedules and the cutouts' randomness) is the position of sigma in `sigmas`. `check()` (which
    raises to cancel) runs between the parts of a guided step: after the UNet, after the decode,
    before each loss term and CLIP call, and in the backward pass before the decoder's and the
    UNet's gradients, so a cancel waits for at most one of those parts, not for the whole step.
    `weight(sigma)` turns the gradient into the x0 correction: sigma^2 in VE form (the default);
    a family in other coordinates passes its own (rectified flow: app.diffusion.flow.guidance_weight).
    """
    levels = [float(s) for s in sigmas]
    total = len(levels) - 1

    def guided(x: Tensor, sigma: Tensor) -> Tensor:
        k = knobs()
        if not active(k, clip):
            return denoiser(x, sigma)
        s = float(sigma[0])
        step = min(range(total), key=lambda j: abs(levels[j] - s))
        with torch.enable_grad():
            x_in = x.detach().requires_grad_()
            denoised = _checked(denoiser(x_in, sigma), check)
            check()
            images = _checked(decode(denoised).float(), check)
            check()
            loss = guidance_loss(images, k, clip, target, cut_spec(k, step, total), generator(seed, CUTS, step),
                                 check)
            if not loss.requires_grad:  # no cutouts and no other loss this step
                return denoised.detach()
            (grad,) = torch.autograd.grad(loss, x_in)
        grad = torch.nan_to_num(grad, nan=0.0, posinf=0.0, neginf=0.0)
        if k.clamp_grad:
            grad = clamp_rms(grad, k.clamp_max)
        w = sigma**2 if weight is None else weight(sigma).to(sigma.device, sigma.dtype)
        return denoised.detach() - grad * w.view(-1, *([1] * (x.ndim - 1)))

    return guided


def target_similarity(emb: Tensor, target: ClipTarget) -> Tensor:
    """[B] weighted cosine similarity of L2-normalised image embeddings [B, D] to the prompts."""
    return (emb @ target.embeds.T.to(emb.dtype) * target.weights.to(emb.dtype)).sum(-1)


CLIP_SCORE_DEFINITION = (
    "CLIP score: cosine similarity between the loaded CLIP's embedding of the decoded image and of the prompt "
    "(weighted parts combined), from -1 to 1; not x100 like some tools")


@torch.no_grad()
def clip_score(clip: ClipBackend, images01: Tensor, target: ClipTarget) -> Tensor:
    """[B] the studio's one CLIP score: weighted cosine similarity of each decoded image's CLIP
    embedding to the prompts. Images are taken as the 8-bit picture the page and the gallery get
    (rounded to 1/255), so a step's score and the saved PNG's score agree."""
    return target_similarity(clip.encode_image(images01.clamp(0, 1).mul(255).round().div(255)), target)
