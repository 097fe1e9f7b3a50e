"""A diffusers UNet as a VE denoiser D(x, sigma, context) -> x0, and classifier-free guidance.

x is the VE latent x0 + sigma * eps; the UNet was trained on the VP latent x * c_in with
c_in = 1 / sqrt(sigma^2 + 1) at the timestep whose training sigma matches (Karras et al. 2022,
Table 1, "VP" column and §5 for v-prediction).

Guidance that combines network outputs (CFG) is written once as a generator of network calls
(`cfg_calls`): it yields a `UNetCall` and receives its output, so one run's calls can be answered
alone (`cfg_denoiser`, `answer`) or stacked with other runs' into one network call (`unet_batch`).
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from app.diffusion.samplers import Denoiser, Live, _read
from app.diffusion.sigmas import model_sigmas, sigma_to_t


def _bcast(v: Tensor, x: Tensor) -> Tensor:
    return v.view(-1, *([1] * (x.ndim - 1)))


class UNetDenoiser:
    """D(x, sigma, context) for an epsilon- or v-predicting UNet2DConditionModel.

    epsilon: x0 = x - sigma * eps_hat.
    v:       x0 = x / (sigma^2 + 1) - sigma / sqrt(sigma^2 + 1) * v_hat   (c_skip, c_out).
    Inputs and outputs are float32 whatever the UNet's dtype. An inpainting UNet (9 input
    channels) takes `concat` ([1 or B, 5, h, w]: mask and masked-image latent, app.diffusion.inpaint),
    appended to its scaled input as StableDiffusionInpaintPipeline does; its batch is repeated to x's.
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

    def __call__(self, x: Tensor, sigma: Tensor, context: Tensor, concat: Tensor | None = None) -> Tensor:
        sigma = sigma.float()
        c_in = _bcast((sigma**2 + 1).rsqrt(), x)
        t = sigma_to_t(sigma, self.log_sigmas)
        inputs = x * c_in
        if concat is not None:
            inputs = torch.cat([inputs, concat.to(x.dtype).repeat(x.shape[0] // concat.shape[0], 1, 1, 1)], dim=1)
        out = self.unet(inputs.to(self.dtype), t, encoder_hidden_states=context.to(self.dtype)).sample.float()
        s = _bcast(sigma, x)
        if self.prediction_type == "epsilon":
            return x - s * out
        return x * c_in**2 - s * c_in * out


@dataclass(frozen=True)
class UNetCall:
    """The inputs of one UNetDenoiser call: `x` [rows, C, h, w], `sigma` [rows], `context` [rows, L, D],
    `concat` [rows, 5, h, w] or None (an inpainting UNet's conditioning, already one per row)."""

    x: Tensor
    sigma: Tensor
    context: Tensor
    concat: Tensor | None = None

    @property
    def rows(self) -> int:
        return self.x.shape[0]

    def key(self) -> tuple:
        """Calls with equal keys can be stacked into one network call."""
        return (tuple(self.x.shape[1:]), tuple(self.context.shape[1:]),
                None if self.concat is None else tuple(self.concat.shape[1:]), self.x.dtype, self.x.device)


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


def unet_call(denoiser: UNetDenoiser, call: UNetCall) -> Tensor:
    """One call, alone."""
    return denoiser(call.x, call.sigma, call.context, concat=call.concat)


def unet_batch(denoiser: UNetDenoiser, calls: Sequence[UNetCall]) -> list[Tensor]:
    """Many calls with equal keys as one network call: inputs stacked along the batch, the output split
    back. Every row of the UNet is computed independently (GroupNorm and attention are per sample), so
    each call's slice equals its call alone up to floating-point reassociation in batched kernels."""
    if len(calls) == 1:
        return [unet_call(denoiser, calls[0])]
    concat = None if calls[0].concat is None else torch.cat([c.concat for c in calls])  # type: ignore[misc]
    out = denoiser(torch.cat([c.x for c in calls]), torch.cat([c.sigma for c in calls]),
                   torch.cat([c.context for c in calls]), concat=concat)
    return list(out.split([c.rows for c in calls]))


@dataclass(frozen=True)
class TextConditioning:
    """Text-encoder states for CFG: one per weighted prompt, and the negative prompt as uncond."""

    cond: Tensor  # [n, L, D]
    weights: tuple[float, ...]
    uncond: Tensor  # [1, L, D]


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


def cfg_calls(cond: TextConditioning, scale: Live, concat: Tensor | None = None) -> SteppedDenoiser:
    """Classifier-free guidance (Ho & Salimans 2022) with weighted prompts composed as in
    Liu et al. 2022: D = D_u + scale * sum_i w_i (D_i - D_u), all branches in one network call.
    `scale` is re-read at every call; `concat` ([1 or B, 5, h, w]) goes to an inpainting UNet."""
    n = len(cond.weights)
    contexts = torch.cat([cond.uncond, cond.cond])  # [n + 1, L, D]
    only_cond = n == 1 and cond.weights[0] == 1.0
    batched: dict[int, Tensor] = {}  # batch size -> contexts repeated for it

    def rows(t: Tensor | None, count: int) -> Tensor | None:
        return None if t is None else t.repeat(count // t.shape[0], *([1] * (t.ndim - 1)))

    def denoise(x: Tensor, sigma: Tensor) -> Calls:
        s = _read(scale)
        b = x.shape[0]
        if s == 0.0:
            return (yield UNetCall(x, sigma, cond.uncond.expand(b, -1, -1), rows(concat, b)))
        if s == 1.0 and only_cond:
            return (yield UNetCall(x, sigma, cond.cond.expand(b, -1, -1), rows(concat, b)))
        out = yield UNetCall(x.repeat(n + 1, *([1] * (x.ndim - 1))), sigma.repeat(n + 1),
                             batched.setdefault(b, contexts.repeat_interleave(b, dim=0)), rows(concat, b * (n + 1)))
        out = out.chunk(n + 1)
        uncond = out[0]
        guided = uncond
        for w, branch in zip(cond.weights, out[1:]):
            guided = guided + (branch - uncond) * (s * w)
        return guided

    return denoise


def cfg_denoiser(model: Callable[[Tensor, Tensor, Tensor], Tensor], cond: TextConditioning,
                 scale: Live) -> Denoiser:
    """`cfg_calls` answered by `model(x, sigma, context)`, one run alone."""
    calls = cfg_calls(cond, scale)

    def denoise(x: Tensor, sigma: Tensor) -> Tensor:
        return answer(calls(x, sigma), lambda c: model(c.x, c.sigma, c.context))

    return denoise
