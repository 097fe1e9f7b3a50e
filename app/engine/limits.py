"""Caps checked before any compute: they depend on several fields together and on Settings."""

from __future__ import annotations

from math import isqrt

from app.params import DiffusionParams, GanParams, LiveParams, LiveUpdate
from app.settings import Settings


class LimitError(ValueError):
    """A request that would exceed a server cap; the message says which and by how much."""


def pixels_text(n: int) -> str:
    """1048576 -> '1024 x 1024 pixels', 3000000 -> '3 megapixels'."""
    side = isqrt(n)
    if side * side == n:
        return f"{side} x {side} pixels"
    return f"{n / 1e6:.3g} megapixels"


def _max_cutouts(p: LiveParams) -> int:
    from app.diffusion.schedules import parse_schedule

    overview = max(parse_schedule(p.cutn_overview))
    inner = max(parse_schedule(p.cutn_inner))
    return int(overview + inner)


def check_live(p: LiveParams, settings: Settings, batch: int = 1) -> None:
    if p.clip_guidance_scale > 0:
        cuts = _max_cutouts(p) * batch
        if cuts > settings.max_cutouts:
            raise LimitError(f"{cuts} cutouts per step (overview + inner, times batch) exceeds the limit of "
                             f"{settings.max_cutouts}")


def check_diffusion(p: DiffusionParams, settings: Settings) -> None:
    pixels = p.width * p.height * p.batch
    if pixels > settings.max_pixels:
        size = f"{p.width} x {p.height}" + (f" x {p.batch} images" if p.batch > 1 else "")
        raise LimitError(f"{size} is more than the limit of {pixels_text(settings.max_pixels)} per run; "
                         "choose a smaller size or batch")
    if p.batch > settings.max_batch:
        raise LimitError(f"batch {p.batch} exceeds the limit of {settings.max_batch}")
    if p.steps > settings.max_steps:
        raise LimitError(f"{p.steps} steps exceeds the limit of {settings.max_steps}")
    if p.skip_steps >= p.steps:
        raise LimitError(f"skip_steps ({p.skip_steps}) must be smaller than steps ({p.steps})")
    for name, text in (("prompt", p.prompt), ("negative_prompt", p.negative_prompt)):
        if len(text) > settings.max_prompt_chars:
            raise LimitError(f"{name} has {len(text)} characters; the limit is {settings.max_prompt_chars}")
    check_live(p, settings, p.batch)
    for n, state in enumerate(p.live_states()):
        try:
            check_live(state, settings, p.batch)
        except LimitError as exc:
            raise LimitError(f"schedule[{n}] (step {p.schedule[n].step}): {exc}") from None


def check_update(current: LiveParams, change: LiveUpdate, settings: Settings, batch: int = 1) -> None:
    check_live(current.model_copy(update=change.model_dump(exclude_none=True)), settings, batch)


def check_gan(p: GanParams, settings: Settings) -> None:
    if len(p.prompt) > settings.max_prompt_chars:
        raise LimitError(f"prompt has {len(p.prompt)} characters; the limit is {settings.max_prompt_chars}")
    if p.walk_frames > settings.max_walk_frames:
        raise LimitError(f"{p.walk_frames} walk frames exceeds the limit of {settings.max_walk_frames}")
    if p.search_steps > settings.max_steps:
        raise LimitError(f"{p.search_steps} search steps exceeds the limit of {settings.max_steps}")
    if p.search_steps and p.search_cutn * p.grid > settings.max_cutouts:
        raise LimitError(f"{p.search_cutn * p.grid} cutouts per step exceeds the limit of {settings.max_cutouts}")
