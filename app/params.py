"""Request parameters, validated at the edge (app.api) and passed down unchanged to the engine and
samplers: every field has a range; caps that depend on several fields together (pixels x batch) are
checked against the server's Settings. Prompts and schedules are parsed here with the grammar the
sampler uses, so nothing the edge accepts can fail there. A leaf module: of the app it imports only
those two pure grammar modules."""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator, model_validator

from app.diffusion.lora_tags import check_lora_weights, lora_tags
from app.diffusion.prompts import parse_prompt
from app.diffusion.schedules import parse_schedule

SamplerName = Literal["ddpm", "ddim", "euler", "euler_a", "dpmpp_2m"]
# what draws the preview frames between full decodes: the fitted linear map, the tiny decoder
# (--preview-decoder, app.diffusion.tiny_decoder) or the full VAE
PreviewDecoder = Literal["linear", "tiny", "full"]
MAX_SEED = 2**32 - 1  # numpy's RandomState range, which the GAN's seed_to_w uses
GALLERY_PREFIX = "gallery:"
# an upload id, or "gallery:" and a gallery image's id (img2img from a finished image: variations)
INIT_IMAGE_PATTERN = r"^(gallery:[0-9a-f]{24}|[A-Za-z0-9_-]+)$"


def gallery_source(init_image: str | None) -> str | None:
    """The gallery image id an `init_image` names ("gallery:<id>"), or None for an upload or none."""
    if init_image and init_image.startswith(GALLERY_PREFIX):
        return init_image[len(GALLERY_PREFIX):]
    return None


def strength(steps: int, skip_steps: int) -> float:
    """The share of the steps an img2img run re-draws (A1111's denoising strength), to 2 decimals."""
    return round((steps - skip_steps) / steps, 2)


def skip_steps_for(steps: int, strength: float) -> int:
    """The steps a run at `strength` skips: it runs round(steps x strength) of them, at least one."""
    return steps - max(1, round(steps * strength))


def _parses(text: str) -> str:
    parse_schedule(text)  # ValueError -> a validation error naming the field
    return text


_LINE_BREAK = re.compile(r"\s*[\r\n\v\f\x85\u2028\u2029]\s*")


def one_line(text: str) -> str:
    """A prompt as it is run and saved: each line break (with the spaces around it) becomes one space."""
    return _LINE_BREAK.sub(" ", text).strip()


Schedule = Annotated[str, Field(max_length=200, pattern=r"^[\[\]0-9.*+ ]*$"), AfterValidator(_parses)]
# {name: weight}: names of LoRA files (app.diffusion.lora_tags), checked in words rather than by a pattern
LoraWeights = Annotated[dict[str, float], AfterValidator(check_lora_weights)]


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid")


class LiveParams(StrictModel):
    """Parameters a running job re-reads at every step (the `update` message sets them)."""

    cfg_scale: float = Field(5.0, ge=0.0, le=30.0)
    eta: float | None = Field(None, ge=0.0, le=1.0, description="None: the sampler's own (euler_a 1, ddim 0)")
    clip_guidance_scale: float = Field(0.0, ge=0.0, le=100000.0)
    cutn_overview: Schedule = "[4]*1000"
    cutn_inner: Schedule = "[0]*1000"
    cut_ic_pow: float = Field(1.0, ge=0.0, le=10.0)
    cut_icgray_p: Schedule = "[0.2]*400+[0]*600"
    cut_flip: bool = True
    tv_scale: float = Field(0.0, ge=0.0, le=100000.0)
    range_scale: float = Field(0.0, ge=0.0, le=100000.0)
    sat_scale: float = Field(0.0, ge=0.0, le=100000.0)
    clamp_grad: bool = True
    clamp_max: float = Field(0.05, gt=0.0, le=10.0)
    preview_every: int = Field(1, ge=1, le=1000, description="Send a preview every N steps.")
    full_decode_every: int = Field(10, ge=1, le=1000, description="Full VAE decode every N steps; fast map otherwise.")
    preview_decoder: PreviewDecoder = Field(
        "linear", description="the other preview frames: linear map, tiny decoder (needs --preview-decoder) or full VAE")
    lora_weights: LoraWeights = Field(
        default_factory=dict, description="{LoRA name: weight}; the run's LoRAs are the names it starts with")


class LiveUpdate(StrictModel):
    """A partial LiveParams: only the fields present change."""

    cfg_scale: float | None = Field(None, ge=0.0, le=30.0)
    eta: float | None = Field(None, ge=0.0, le=1.0)
    clip_guidance_scale: float | None = Field(None, ge=0.0, le=100000.0)
    cutn_overview: Schedule | None = None
    cutn_inner: Schedule | None = None
    cut_ic_pow: float | None = Field(None, ge=0.0, le=10.0)
    cut_icgray_p: Schedule | None = None
    cut_flip: bool | None = None
    tv_scale: float | None = Field(None, ge=0.0, le=100000.0)
    range_scale: float | None = Field(None, ge=0.0, le=100000.0)
    sat_scale: float | None = Field(None, ge=0.0, le=100000.0)
    clamp_grad: bool | None = None
    clamp_max: float | None = Field(None, gt=0.0, le=10.0)
    preview_every: int | None = Field(None, ge=1, le=1000)
    full_decode_every: int | None = Field(None, ge=1, le=1000)
    preview_decoder: PreviewDecoder | None = None
    lora_weights: LoraWeights | None = Field(None, description="only the LoRAs named change")


MAX_SCHEDULE_ENTRIES = 1000


class ScheduleEntry(StrictModel):
    """One recorded live change: `changes` take effect once `step` steps are done (they shape step
    `step + 1` onwards); step 0 changes the starting values."""

    step: int = Field(..., ge=0, le=10000)
    changes: LiveUpdate

    @field_validator("changes")
    @classmethod
    def _not_empty(cls, v: LiveUpdate) -> LiveUpdate:
        if not v.model_dump(exclude_none=True):
            raise ValueError("a schedule entry must change at least one parameter")
        return v


def apply_change(current: LiveParams, change: LiveUpdate | dict) -> LiveParams:
    """`current` with the fields of `change` set, validated as a whole (ValueError when refused)."""
    fields = change.model_dump(exclude_none=True) if isinstance(change, LiveUpdate) else change
    if "lora_weights" in fields:  # a change names only the LoRAs whose weight it sets
        fields = {**fields, "lora_weights": {**current.lora_weights, **fields["lora_weights"]}}
    return LiveParams.model_validate({**current.model_dump(), **fields})


def dump_schedule(entries: list[ScheduleEntry]) -> list[dict]:
    """JSON form of a schedule: [{"step", "changes": {only the fields changed}}]."""
    return [e.model_dump(exclude_none=True) for e in entries]


def live_diff(before: LiveParams, after: LiveParams) -> dict:
    """The fields whose values differ (after's values): what one schedule entry records."""
    old, new = before.model_dump(), after.model_dump()
    return {k: v for k, v in new.items() if v != old[k] and v is not None}


class DiffusionParams(LiveParams):
    """Everything that defines a diffusion image; with the same seed it is reproducible."""

    prompt: str = Field(..., min_length=1, max_length=4000, description="'a red fox:1 | blurry:-0.5' weights prompts")
    negative_prompt: str = Field("", max_length=4000)
    seed: int | None = Field(None, ge=0, le=MAX_SEED)
    steps: int = Field(30, ge=1, le=10000)
    sampler: SamplerName = "dpmpp_2m"
    karras: bool = True
    width: int = Field(64, ge=8, le=4096, multiple_of=8)
    height: int = Field(64, ge=8, le=4096, multiple_of=8)
    batch: int = Field(1, ge=1, le=64)
    init_image: str | None = Field(None, max_length=64, pattern=INIT_IMAGE_PATTERN,
                                   description="id from /api/uploads, or gallery:<image id> for a gallery image")
    mask_image: str | None = Field(
        None, max_length=64, pattern=r"^[A-Za-z0-9_-]+$",
        description="inpainting: id from /api/uploads of a mask (white = re-generate, black = keep); needs init_image")
    skip_steps: int = Field(0, ge=0, le=10000)
    upscale: bool = Field(False, description="a diffusion upscaler run: init_image is the low-resolution picture, "
                                             "width x height the upscaled size (4x)")
    noise_level: int = Field(20, ge=0, le=1000,
                             description="diffusion upscaler runs only: how much noise the low-resolution input "
                                         "gets (0 = trust it exactly; the x4 upscaler's default is 20)")
    schedule: list[ScheduleEntry] = Field(
        default_factory=list, max_length=MAX_SCHEDULE_ENTRIES,
        description="live changes to replay: [{step, changes}], steps increasing, skip_steps <= step < steps")

    def live(self) -> LiveParams:
        """The live part of these parameters, as a run starts with them."""
        return LiveParams(**self.model_dump(include=set(LiveParams.model_fields)))

    @field_validator("prompt")
    @classmethod
    def _not_blank(cls, v: str) -> str:
        v = one_line(v)
        if not v:
            raise ValueError("prompt is empty")
        parse_prompt(v)  # "|", "x:1e999", 17 parts: refused here, not in the worker
        return v

    @model_validator(mode="after")
    def _mask_needs_init(self) -> DiffusionParams:
        if self.mask_image is not None and self.init_image is None:
            raise ValueError("mask_image needs an init_image: the mask says which part of that image to re-generate")
        return self

    @model_validator(mode="after")
    def _upscale_needs_source(self) -> DiffusionParams:
        if self.upscale and (self.init_image is None or self.mask_image is not None):
            raise ValueError("an upscale run needs init_image (the picture to upscale) and no mask_image")
        return self

    @model_validator(mode="after")
    def _schedule_in_range(self) -> DiffusionParams:
        previous = -1
        for n, entry in enumerate(self.schedule):
            where = f"schedule[{n}].step = {entry.step}"
            if entry.step <= previous:
                raise ValueError(f"{where}: steps must increase (one entry per step)")
            if not self.skip_steps <= entry.step < self.steps:
                raise ValueError(f"{where}: must be at least skip_steps ({self.skip_steps}) and below steps "
                                 f"({self.steps})")
            previous = entry.step
            unknown = set(entry.changes.lora_weights or ()) - set(self.run_loras())
            if unknown:
                raise ValueError(f"{where}: sets the weight of LoRA {sorted(unknown)[0]!r}, which the run does not "
                                 "start with (name it in lora_weights or a <lora:name:weight> tag)")
        return self

    def run_loras(self) -> dict[str, float]:
        """The LoRAs this run applies and their starting weights: `lora_weights`, then the prompt's
        `<lora:name:weight>` tags (a tag's weight wins)."""
        return {**self.lora_weights, **lora_tags(self.prompt)}

    def live_states(self) -> list[LiveParams]:
        """The live parameters in force after each schedule entry, in order (for the limit checks)."""
        states, current = [], self.live()
        for entry in self.schedule:
            current = apply_change(current, entry.changes)
            states.append(current)
        return states

    @field_validator("negative_prompt")
    @classmethod
    def _negative_one_line(cls, v: str) -> str:
        return one_line(v)


UPSCALE_FACTOR = 4
MAX_UPSCALE_SOURCE = 128  # pixels per side of the picture to upscale (512 px out)
UPSCALE_STRENGTH = 1.0  # the diffusion upscaler's default strength (models/MODEL_CARD.md, Upscalers)
UPSCALE_SAMPLER = "euler_a"  # the diffusion upscaler's default sampler, chosen on training concepts (MODEL_CARD.md)


class UpscaleParams(StrictModel):
    """Upscale one picture x4 with the GAN upscaler, the diffusion upscaler, or both (side by side)."""

    source: str = Field(..., max_length=64, pattern=INIT_IMAGE_PATTERN,
                        description="gallery:<image id>, or an id from /api/uploads")
    upscaler: Literal["gan", "diffusion", "both"] = "gan"
    prompt: str = Field("", max_length=4000, description="diffusion upscaler's text; empty = the source's prompt")
    seed: int | None = Field(None, ge=0, le=MAX_SEED)
    steps: int = Field(20, ge=1, le=200, description="diffusion upscaler steps")
    sampler: SamplerName = UPSCALE_SAMPLER
    noise_level: int = Field(20, ge=0, le=1000, description="noise added to the low-resolution input (diffusion)")
    cfg_scale: float = Field(1.0, ge=0.0, le=30.0, description="classifier-free guidance (diffusion); 1 = one pass")
    strength: float = Field(UPSCALE_STRENGTH, gt=0.0, le=1.0, description=(
        "diffusion upscaler: the share of its steps it runs, starting from the bicubic enlargement noised to "
        "that level (CCDF, Chung et al. 2022; A1111's SD-upscale denoising strength); 1 = from pure noise"))

    @field_validator("prompt")
    @classmethod
    def _prompt_one_line(cls, v: str) -> str:
        v = one_line(v)
        if v:
            parse_prompt(v)
        return v


class GanParams(StrictModel):
    """A GAN render: a seed, a prompt (text condition or CLIP search target) and w-space sliders."""

    prompt: str = Field("", max_length=4000)
    seed: int | None = Field(None, ge=0, le=MAX_SEED)
    truncation_psi: float = Field(0.7, ge=-1.0, le=2.0)
    truncation_cutoff: int | None = Field(None, ge=0, le=64)
    noise_mode: Literal["const", "random", "none"] = "const"
    mix_seed: int | None = Field(None, ge=0, le=MAX_SEED)
    mix_layer: int = Field(4, ge=0, le=64)
    translate_x: float = Field(0.0, ge=-4.0, le=4.0, description="Input shift in image widths (families with an "
                               "input transform: StyleGAN3)")
    translate_y: float = Field(0.0, ge=-4.0, le=4.0, description="Input shift in image heights")
    rotate: float = Field(0.0, ge=-360.0, le=360.0, description="Input rotation in degrees (as gen_images.py --rotate)")
    class_index: int | None = Field(None, ge=0, le=100_000, description="Class id (class-conditional families)")
    search_steps: int = Field(0, ge=0, le=1000, description="CLIP search iterations in w space; 0 = none")
    search_lr: float = Field(0.05, gt=0.0, le=10.0)
    search_pull: float = Field(0.1, ge=0.0, le=100.0)
    search_cutn: int = Field(8, ge=1, le=64)
    grid: int = Field(1, ge=1, le=16, description="Render this many seeds (seed, seed+1, ...) as a grid")
    save: bool = Field(True, description="Keep the result in the gallery (slider drags send false)")
    walk_frames: int = Field(0, ge=0, le=1000, description="A latent walk of this many frames from `seed` to "
                             "`walk_seed` (and `class_index` to `walk_class`); 0 = no walk. Capped by "
                             "the server's max_walk_frames")
    walk_seed: int | None = Field(None, ge=0, le=MAX_SEED, description="The walk's end seed; None: seed + 1")
    walk_class: int | None = Field(None, ge=0, le=100_000, description="The walk's end class (class-conditional)")
    walk_fps: float = Field(12.0, ge=1.0, le=60.0, description="Frames per second of the exported animation")
    walk_t: float = Field(0.0, ge=0.0, le=1.0, description="Render one point of the walk instead of all of it: 0 = "
                          "the seed (and class), 1 = walk_seed (and walk_class), along the family's own path (a "
                          "line, or slerp for a Gaussian z): seed and class interpolation as a live slider")

    @field_validator("prompt")
    @classmethod
    def _one_line(cls, v: str) -> str:
        return one_line(v)

    @property
    def supersedable(self) -> bool:
        """A slider render (no CLIP search, not kept): a newer request from the same page may replace it
        while it waits, and its CLIP score may be skipped. A search or a kept render is never dropped."""
        return not self.search_steps and not self.walk_frames and not self.save

    @model_validator(mode="after")
    def _seeds_in_range(self) -> GanParams:
        if self.seed is not None and self.seed + self.grid - 1 > MAX_SEED:
            raise ValueError(f"seed + grid - 1 must be at most {MAX_SEED} (the grid renders seed, seed+1, ...)")
        if self.walk_frames:
            if self.walk_frames < 2:
                raise ValueError("walk_frames: a walk needs at least 2 frames (0 = no walk)")
            if self.grid > 1 or self.search_steps:
                raise ValueError("walk_frames: a latent walk renders one seed's path; it takes neither grid > 1 "
                                 "nor search_steps")
            if self.walk_t:
                raise ValueError("walk_t: one point of the walk (walk_t) or the whole walk (walk_frames), not both")
        return self
