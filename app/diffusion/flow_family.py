"""The rectified-flow family (SD3 / SD3.5, FLUX.1) behind generate()'s family interface.

The family is chosen from a pipeline folder's model_index.json `_class_name`. Its parts:
- the schedule of its FlowMatchEulerDiscreteScheduler config (app.diffusion.flow.flow_times), with
  the sequence length of the run's latent for FLUX's resolution-dependent shift;
- D(x_t, t, context) = x_t - t v_hat (FlowDenoiser over the model's velocity, app.diffusion.sd3 / flux);
- its text conditioning as ONE tensor per prompt, so the shared CFG composition
  (app.diffusion.denoiser.cfg_calls, which stacks and repeats contexts along dim 0) serves it as
  it serves SD: the token states, then the pooled vector laid over extra rows (pack_context);
- guidance: the live cfg_scale is the CFG scale for SD3 and for a FLUX without a guidance input,
  and the distilled-guidance input of FLUX.1-dev (whose prompts then compose at scale 1), one value
  per row of the network call;
- the flow samplers as generators of their steps (app.diffusion.flow.flow_sampler_steps) and CLIP
  guidance's flow weight.
Its network calls are app.diffusion.denoiser.UNetCall's, answered by FlowDenoiser, so the engine
stacks the calls of many runs of one flow model into one transformer call (app.engine.batcher).
`karras` does not apply: these models run their own shifted schedule.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import torch
from torch import Tensor

from app.diffusion import flow, previews
from app.diffusion.denoiser import SteppedDenoiser, TextConditioning, cfg_calls
from app.diffusion.families import hub_offline
from app.diffusion.flux import Flux
from app.diffusion.sd3 import SD3
from app.diffusion.sizes import SizeRange, size_range

FLOW_PIPELINES = ("StableDiffusion3Pipeline", "FluxPipeline")


def pack_context(tokens: Tensor, pooled: Tensor) -> Tensor:
    """[n, L, D] token states and [n, P] pooled -> [n, L + ceil(P / D), D]: the pooled vector
    zero-padded over the extra rows."""
    n, _, d = tokens.shape
    rows = -(-pooled.shape[1] // d)
    extra = torch.nn.functional.pad(pooled.to(tokens.dtype), (0, rows * d - pooled.shape[1])).view(n, rows, d)
    return torch.cat([tokens, extra], dim=1)


def unpack_context(context: Tensor, pooled_dim: int) -> tuple[Tensor, Tensor]:
    """The inverse of pack_context: (token states, pooled [n, pooled_dim])."""
    rows = -(-pooled_dim // context.shape[-1])
    return context[:, :-rows], context[:, -rows:].flatten(1)[:, :pooled_dim]


class FlowDenoiser:
    """D(x_t, t, context) = x_t - t v_hat(x_t, t, context), float32 in and out; `guidance` ([B] or a
    number) feeds a distilled-guidance input (FLUX.1-dev)."""

    sigma_min = 0.0
    sigma_max = 1.0  # t = 1: pure noise

    def __init__(self, kind: SD3 | Flux) -> None:
        self.kind = kind

    def __call__(self, x: Tensor, t: Tensor, context: Tensor, concat: Tensor | None = None,
                 guidance: Tensor | float | None = None) -> Tensor:
        if concat is not None:
            raise ValueError("flow models take no inpainting-UNet conditioning")
        tokens, pooled = unpack_context(context, self.kind.pooled_dim)
        v = self.kind.velocity(x, t, tokens, pooled, guidance)
        return x - t.float().view(-1, *([1] * (x.ndim - 1))) * v


class FlowFamily:
    """generate()'s family interface (app.diffusion.generate.Family) for SD3 and FLUX."""

    noised = staticmethod(flow.noised)
    signal = staticmethod(flow.signal)
    guidance_weight = staticmethod(flow.guidance_weight)
    steps = staticmethod(flow.flow_sampler_steps)

    def __init__(self, kind: SD3 | Flux, vae: torch.nn.Module, schedule: flow.FlowSchedule) -> None:
        self.kind = kind
        self.vae = vae
        self.schedule = schedule
        self.denoiser = FlowDenoiser(kind)

    @property
    def distilled_guidance(self) -> bool:
        return self.kind.distilled_guidance

    def levels(self, steps: int, karras: bool, shape: tuple[int, ...]) -> Tensor:
        """The run's times t, 1 -> 0; the image's token count sets a dynamic shift."""
        h, w = shape[-2:]
        seq = (h // self.kind.patch) * (w // self.kind.patch)
        return flow.flow_times(self.schedule, steps, seq, pipeline_linspace=self.kind.pipeline_linspace)

    def context(self, texts: list[str]) -> Tensor:
        return pack_context(*self.kind.encode(texts))

    def calls(self, prompts: list[tuple[str, float]], negative: str, cfg: Callable[[], float],
              concat: Tensor | None = None, size: tuple[int, int] = (0, 0),
              class_labels: Tensor | None = None) -> SteppedDenoiser:
        if concat is not None or class_labels is not None:
            raise ValueError("flow models take no inpainting-UNet or upscaler conditioning")
        weights = tuple(w for _, w in prompts)
        # at a fixed scale 1 one prompt of weight 1 is the whole composition: the negative is never read
        skip_negative = self.kind.distilled_guidance and weights == (1.0,)
        states = self.context(([] if skip_negative else [negative]) + [p for p, _ in prompts])
        cond = TextConditioning(states[-len(prompts):], weights, states[:1])
        if self.kind.distilled_guidance:
            return cfg_calls(cond, 1.0, guidance=cfg)
        return cfg_calls(cond, cfg)

    def probe(self, latent: Tensor) -> Callable[[], Tensor]:
        """One unguided denoiser call at t = 1 on the empty prompt (what calibrate times)."""
        context = self.context([""])
        t = torch.ones(latent.shape[0], device=latent.device)
        return lambda: self.denoiser(latent, t, context)

    def sizes(self, max_pixels: int) -> SizeRange:
        """Sizes in whole patches: multiples of VAE scale x patch (16 px for SD3 and FLUX)."""
        scale = previews.vae_scale(self.vae)
        levels = [0] * (1 + (self.kind.patch - 1).bit_length())  # step = scale * patch
        found = size_range({"sample_size": self.kind.native_latent, "block_out_channels": levels},
                           dict(self.vae.config), scale, max_pixels)
        return replace(found, grid=found.step)


def flow_dtype(dtype: torch.dtype, device: torch.device) -> torch.dtype:
    """bfloat16 where the studio would use float16 on a GPU that has it: SD3's T5 and FLUX are
    trained in bf16 and overflow float16."""
    if dtype == torch.float16 and device.type == "cuda" and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return dtype


def load_flow_models(name_or_path: str, class_name: str, device: torch.device, dtype: torch.dtype, clip=None,
                     cache_dir: Path | None = None):
    """A StableDiffusion3Pipeline or FluxPipeline folder / hub id as DiffusionModels."""
    import diffusers

    if class_name not in FLOW_PIPELINES:
        raise ValueError(f"{class_name} is not a flow-matching pipeline ({', '.join(FLOW_PIPELINES)})")
    dtype = flow_dtype(dtype, device)
    pipe = getattr(diffusers, class_name).from_pretrained(
        name_or_path, dtype=dtype, local_files_only=hub_offline())
    return flow_models_from_pipeline(pipe, str(name_or_path), device, dtype, clip, cache_dir)


def flow_models_from_pipeline(pipe, name: str, device: torch.device, dtype: torch.dtype, clip=None,
                              cache_dir: Path | None = None):
    """DiffusionModels from a built StableDiffusion3Pipeline or FluxPipeline (moved to `device`)."""
    from app.diffusion.generate import DiffusionModels, default_cache_dir

    if type(pipe).__name__ == "FluxPipeline":
        kind: SD3 | Flux = Flux(pipe.transformer, pipe.tokenizer, pipe.text_encoder, pipe.tokenizer_2,
                                pipe.text_encoder_2)
    else:
        kind = SD3(pipe.transformer, pipe.tokenizer, pipe.text_encoder, pipe.tokenizer_2, pipe.text_encoder_2,
                   pipe.tokenizer_3, pipe.text_encoder_3)
    for module in (pipe.transformer, pipe.vae, *kind.text_modules()):
        module.to(device).eval().requires_grad_(False)
    family = FlowFamily(kind, pipe.vae, flow.FlowSchedule.from_config(dict(pipe.scheduler.config)))
    rgb_map = previews.load_or_fit(pipe.vae, (cache_dir or default_cache_dir()) / "previews")
    return DiffusionModels(
        name=name, unet=pipe.transformer, vae=pipe.vae, text_encoder=pipe.text_encoder, tokenizer=pipe.tokenizer,
        alphas_cumprod=torch.zeros(0, dtype=torch.float64), prediction_type="flow_prediction",
        timestep_spacing="flow", steps_offset=0, device=device, dtype=dtype, denoiser=family.denoiser,
        rgb_map=rgb_map, clip=clip, family=family,
    )
