"""A diffusers UNet as a VE denoiser D(x, sigma, context) -> x0, and classifier-free guidance.

x is the VE latent x0 + sigma * eps; the UNet was trained on the VP latent x * c_in with
c_in = 1 / sqrt(sigma^2 + 1) at the timestep whose training sigma matches (Karras et al. 2022,
Table 1, "VP" column and §5 for v-prediction).

Guidance that combines network outputs (CFG) is written once as a generator of network calls
(`cfg_calls`): it yields a `UNetCall` and receives its output, so one run's calls can be answered
alone (`cfg_denoiser`, `answer`) or stacked with other runs' into one network call (`unet_batch`).
A call holds its inputs row by row and the denoiser reads them, so the same calls serve every model
family: the UNets here, and the flow transformers (app.diffusion.flow_family.FlowDenoiser).
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass, fields, is_dataclass, replace
from typing import Any, Protocol, TypeAlias

import torch
from torch import Tensor

from app.diffusion.samplers import Denoiser, Live, _read
from app.diffusion.sigmas import model_sigmas, sigma_to_t


def _bcast(v: Tensor, x: Tensor) -> Tensor:
    return v.view(-1, *([1] * (x.ndim - 1)))


class FamilyContext(Protocol):
    """A model family's conditioning beyond the text states (e.g. SDXL's pooled embeddings and
    size ids): a dataclass whose fields are all tensors batched along dim 0; only the family's
    `unet_kwargs` reads them, CFG merely stacks and repeats them like a tensor."""

    def unet_kwargs(self, dtype: torch.dtype) -> dict[str, Any]: ...


Context: TypeAlias = "Tensor | FamilyContext"  # [B, L, D] text states, or a family's batched context


def _per_field(ctx: Context, fn: Callable[[Tensor], Tensor]) -> Context:
    if isinstance(ctx, Tensor):
        return fn(ctx)
    assert is_dataclass(ctx)
    return replace(ctx, **{f.name: fn(getattr(ctx, f.name)) for f in fields(ctx)})


def cat_context(parts: list[Context]) -> Context:
    """Stack contexts along the batch."""
    first = parts[0]
    if isinstance(first, Tensor):
        return torch.cat(parts)
    assert is_dataclass(first)
    return replace(first, **{f.name: torch.cat([getattr(p, f.name) for p in parts]) for f in fields(first)})


def expand_context(ctx: Context, b: int) -> Context:
    """A one-row context broadcast to batch b."""
    return _per_field(ctx, lambda t: t.expand(b, *t.shape[1:]))


def repeat_context(ctx: Context, b: int) -> Context:
    """Each row repeated b times in place (rows r, r, ..., r + 1, ...)."""
    return _per_field(ctx, lambda t: t.repeat_interleave(b, dim=0))


def context_shape(ctx: Context) -> tuple:
    """A context's shape without the batch (each field's, for a family's context)."""
    if isinstance(ctx, Tensor):
        return tuple(ctx.shape[1:])
    assert is_dataclass(ctx)
    return (type(ctx).__name__, *((f.name, tuple(getattr(ctx, f.name).shape[1:])) for f in fields(ctx)))


def unet_kwargs(ctx: Context, dtype: torch.dtype) -> dict[str, Any]:
    """The UNet's conditioning arguments: the text states alone, or what the family's context says."""
    if isinstance(ctx, Tensor):
        return {"encoder_hidden_states": ctx.to(dtype)}
    return ctx.unet_kwargs(dtype)


class UNetDenoiser:
    """D(x, sigma, context) for an epsilon- or v-predicting UNet2DConditionModel.

    epsilon: x0 = x - sigma * eps_hat.
    v:       x0 = x / (sigma^2 + 1) - sigma / sqrt(sigma^2 + 1) * v_hat   (c_skip, c_out).
    Inputs and outputs are float32 whatever the UNet's dtype. An inpainting UNet (9 input
    channels) takes `concat` ([1 or B, 5, h, w]: mask and masked-image latent, app.diffusion.inpaint),
    appended to its scaled input as StableDiffusionInpaintPipeline does; its batch is repeated to x's.
    An upscaler UNet (Stable Diffusion x4 upscaler layout: 7 channels) takes the noised low-resolution
    image as `concat` and its noise level as `class_labels` ([1 or B]), as StableDiffusionUpscalePipeline.
    """

    def __init__(self, unet: torch.nn.Module, alphas_cumprod: Tensor, prediction_type: str = "epsilon") -> None:
        if prediction_type not in ("epsilon", "v_prediction"):
            raise ValueError(f"unsupported prediction_type {prediction_type!r}")
        self.unet = unet
        self.prediction_type = prediction_type
        device = next(unet.parameters()).device
        self.dtype = next(unet.parameters()).dtype
        self.sigmas = model_sigmas(alphas_cumprod).float().to(device)
        self.log_sigmas = self.sigmas.log()

    @property
    def sigma_min(self) -> float:
        return float(self.sigmas[0])

    @property
    def sigma_max(self) -> float:
        return float(self.sigmas[-1])

    def __call__(self, x: Tensor, sigma: Tensor, context: Context, concat: Tensor | None = None,
                 class_labels: Tensor | None = None) -> Tensor:
        sigma = sigma.float()
        c_in = _bcast((sigma**2 + 1).rsqrt(), x)
        t = sigma_to_t(sigma, self.log_sigmas)
        inputs = x * c_in
        if concat is not None:
            inputs = torch.cat([inputs, concat.to(x.dtype).repeat(x.shape[0] // concat.shape[0], 1, 1, 1)], dim=1)
        extra = {} if class_labels is None else {"class_labels": class_labels.expand(x.shape[0])}
        out = self.unet(inputs.to(self.dtype), t, **unet_kwargs(context, self.dtype), **extra).sample.float()
        s = _bcast(sigma, x)
        if self.prediction_type == "epsilon":
            return x - s * out
        return x * c_in**2 - s * c_in * out


@dataclass(frozen=True)
class UNetCall:
    """The inputs of one denoiser call D(x, sigma, context, **conditioning), a UNet's or a flow
    transformer's (app.diffusion.flow_family.FlowDenoiser), every tensor one row per row of `x`:
    `x` [rows, C, h, w], `sigma` [rows], `context` [rows, L, D] (or a family's context), and the
    conditioning only some networks take: `concat` [rows, c, h, w] (an inpainting UNet's mask and
    masked image, or an upscaler's low-resolution image), `class_labels` [rows] (an upscaler's noise
    level), `guidance` [rows] (FLUX.1-dev's distilled-guidance input). What those mean is the
    denoiser's business; stacking calls only concatenates their rows."""

    x: Tensor
    sigma: Tensor
    context: Context
    concat: Tensor | None = None
    class_labels: Tensor | None = None
    guidance: Tensor | None = None

    @property
    def rows(self) -> int:
        return self.x.shape[0]

    def conditioning(self) -> dict[str, Tensor]:
        """The conditioning arguments this call has (the keyword arguments of the denoiser)."""
        return {name: t for name in CONDITIONING if (t := getattr(self, name)) is not None}

    def key(self) -> tuple:
        """Calls with equal keys can be stacked into one network call."""
        extra = tuple((name, tuple(t.shape[1:]), t.dtype) for name, t in self.conditioning().items())
        return (tuple(self.x.shape[1:]), context_shape(self.context), extra, self.x.dtype, self.x.device)


CONDITIONING = ("concat", "class_labels", "guidance")  # UNetCall's optional per-row inputs

Calls = Generator[UNetCall, Tensor, Tensor]  # yields network calls, receives their x0, returns the result
SteppedDenoiser = Callable[[Tensor, Tensor], Calls]  # D(x, sigma) written as network calls


def answer(calls: Generator[UNetCall | None, Tensor | None, Tensor], model: Callable[[UNetCall], Tensor]) -> Tensor:
    """Run a generator of network calls to its result, answering each call with `model` (and a None,
    a step the generator computes itself, with None)."""
    try:
        call = next(calls)
        while True:
            call = calls.send(None if call is None else model(call))
    except StopIteration as done:
        return done.value


def unet_call(denoiser: Callable[..., Tensor], call: UNetCall) -> Tensor:
    """One call, alone, answered by `denoiser(x, sigma, context, **conditioning)` (a UNetDenoiser,
    or any model family's denoiser of that signature)."""
    return denoiser(call.x, call.sigma, call.context, **call.conditioning())


def stack_calls(calls: Sequence[UNetCall]) -> UNetCall:
    """Calls with equal keys as one: every input concatenated along the rows."""
    first = calls[0]
    extra = {name: torch.cat([getattr(c, name) for c in calls]) for name in first.conditioning()}
    return UNetCall(torch.cat([c.x for c in calls]), torch.cat([c.sigma for c in calls]),
                    cat_context([c.context for c in calls]), **extra)


def unet_batch(denoiser: Callable[..., Tensor], calls: Sequence[UNetCall]) -> list[Tensor]:
    """Many calls with equal keys as one network call: inputs stacked along the batch, the output split
    back. Every row of the network is computed independently (a UNet's GroupNorm, a transformer's
    LayerNorm, and attention are per sample), so each call's slice equals its call alone up to
    floating-point reassociation in batched kernels. The denoiser reads the conditioning (`unet_call`),
    so one function serves every model family."""
    if len(calls) == 1:
        return [unet_call(denoiser, calls[0])]
    return list(unet_call(denoiser, stack_calls(calls)).split([c.rows for c in calls]))


@dataclass(frozen=True)
class TextConditioning:
    """Text-encoder states for CFG: one per weighted prompt, and the negative prompt as uncond
    (tensors [n, L, D] and [1, L, D], or a family's context batched alike)."""

    cond: Context
    weights: tuple[float, ...]
    uncond: Context


@torch.no_grad()
def encode_text(tokenizer, text_encoder: torch.nn.Module, texts: list[str]) -> Tensor:
    """[len(texts), L, D] last hidden states, padded to the tokenizer's max length (as SD was trained)."""
    tok = tokenizer(texts, padding="max_length", max_length=tokenizer.model_max_length, truncation=True,
                    return_tensors="pt")
    device = next(text_encoder.parameters()).device
    return text_encoder(tok.input_ids.to(device))[0]


def text_conditioning(tokenizer, text_encoder: torch.nn.Module, prompts: list[tuple[str, float]],
                      negative: str = "") -> TextConditioning:
    states = encode_text(tokenizer, text_encoder, [negative] + [p for p, _ in prompts])
    return TextConditioning(states[1:], tuple(w for _, w in prompts), states[:1])


def cfg_calls(cond: TextConditioning, scale: Live, concat: Tensor | None = None,
              class_labels: Tensor | None = None, guidance: Live | None = None) -> SteppedDenoiser:
    """Classifier-free guidance (Ho & Salimans 2022) with weighted prompts composed as in
    Liu et al. 2022: D = D_u + scale * sum_i w_i (D_i - D_u), all branches in one network call.
    `scale` is re-read at every call; so is `guidance`, the value of a distilled-guidance input
    (FLUX.1-dev; None: the network has none). `concat` ([1 or B, c, h, w]) and `class_labels`
    ([1 or B]) are an inpainting UNet's or an upscaler's extra inputs; every call gets them one per row."""
    n = len(cond.weights)
    contexts = cat_context([cond.uncond, cond.cond])  # [n + 1, L, D]
    only_cond = n == 1 and cond.weights[0] == 1.0
    batched: dict[int, Context] = {}  # batch size -> contexts repeated for it

    def rows(t: Tensor | None, count: int) -> Tensor | None:
        return None if t is None else t.repeat(count // t.shape[0], *([1] * (t.ndim - 1)))

    def call(x: Tensor, sigma: Tensor, context: Context, count: int) -> UNetCall:
        g = None if guidance is None else x.new_full((count,), _read(guidance))
        return UNetCall(x, sigma, context, rows(concat, count), rows(class_labels, count), g)

    def denoise(x: Tensor, sigma: Tensor) -> Calls:
        s = _read(scale)
        b = x.shape[0]
        if s == 0.0:
            return (yield call(x, sigma, expand_context(cond.uncond, b), b))
        if s == 1.0 and only_cond:
            return (yield call(x, sigma, expand_context(cond.cond, b), b))
        if b not in batched:
            batched[b] = repeat_context(contexts, b)
        out = yield call(x.repeat(n + 1, *([1] * (x.ndim - 1))), sigma.repeat(n + 1), batched[b], b * (n + 1))
        out = out.chunk(n + 1)
        uncond = out[0]
        guided = uncond
        for w, branch in zip(cond.weights, out[1:]):
            guided = guided + (branch - uncond) * (s * w)
        return guided

    return denoise


def cfg_denoiser(model: Callable[[Tensor, Tensor, Context], Tensor], cond: TextConditioning,
                 scale: Live) -> Denoiser:
    """`cfg_calls` answered by `model(x, sigma, context)`, one run alone."""
    calls = cfg_calls(cond, scale)

    def denoise(x: Tensor, sigma: Tensor) -> Tensor:
        return answer(calls(x, sigma), lambda c: model(c.x, c.sigma, c.context))

    return denoise
