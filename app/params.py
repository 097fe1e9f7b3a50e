"""Request parameters, validated at the edge (app.api) and passed down unchanged to the engine and
samplers: every field has a range; caps that depend on several fields together (pixels x batch) are
checked against the server's Settings. A leaf module: it imports nothing from the app."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

SamplerName = Literal["ddpm", "ddim", "euler", "euler_a", "dpmpp_2m"]
Schedule = Annotated[str, Field(max_length=200, pattern=r"^[\[\]0-9.*+ ]*$")]


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


class DiffusionParams(LiveParams):
    """Everything that defines a diffusion image; with the same seed it is reproducible."""

    prompt: str = Field(..., min_length=1, max_length=4000, description="'a red fox:1 | blurry:-0.5' weights prompts")
    negative_prompt: str = Field("", max_length=4000)
    seed: int | None = Field(None, ge=0, le=2**32 - 1)
    steps: int = Field(30, ge=1, le=10000)
    sampler: SamplerName = "dpmpp_2m"
    karras: bool = True
    width: int = Field(64, ge=8, le=4096, multiple_of=8)
    height: int = Field(64, ge=8, le=4096, multiple_of=8)
    batch: int = Field(1, ge=1, le=64)
    init_image: str | None = Field(None, max_length=64, pattern=r"^[A-Za-z0-9_-]+$", description="id from /api/uploads")
    skip_steps: int = Field(0, ge=0, le=10000)

    def live(self) -> LiveParams:
        """The live part of these parameters, as a run starts with them."""
        return LiveParams(**self.model_dump(include=set(LiveParams.model_fields)))

    @field_validator("prompt")
    @classmethod
    def _not_blank(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("prompt is empty")
        return v


class GanParams(StrictModel):
    """A GAN render: a seed, a prompt (text condition or CLIP search target) and w-space sliders."""

    prompt: str = Field("", max_length=4000)
    seed: int | None = Field(None, ge=0, le=2**32 - 1)
    truncation_psi: float = Field(0.7, ge=-1.0, le=2.0)
    truncation_cutoff: int | None = Field(None, ge=0, le=64)
    noise_mode: Literal["const", "random", "none"] = "const"
    mix_seed: int | None = Field(None, ge=0, le=2**32 - 1)
    mix_layer: int = Field(4, ge=0, le=64)
    search_steps: int = Field(0, ge=0, le=1000, description="CLIP search iterations in w space; 0 = none")
    search_lr: float = Field(0.05, gt=0.0, le=10.0)
    search_pull: float = Field(0.1, ge=0.0, le=100.0)
    search_cutn: int = Field(8, ge=1, le=64)
    grid: int = Field(1, ge=1, le=16, description="Render this many seeds (seed, seed+1, ...) as a grid")
    save: bool = Field(True, description="Keep the result in the gallery (slider drags send false)")
