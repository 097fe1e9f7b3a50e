"""GPU speed-ups applied once at load time, each switchable: channels_last weights, a compiled
UNet (torch.compile, optionally with CUDA graphs), a report of the attention kernels in use, and a
side CUDA stream for the per-step CLIP score and its copy to the host.

The compiled graph holds the UNet alone. Everything that changes while a run is live (the CFG
scale, eta, guidance knobs) is applied outside it, and the timestep reaches it as a tensor, so a
new sigma or a CFG change mid-run reuses the same graph: one graph per latent shape and batch
(CFG doubles the batch; a scale of exactly 0 or 1 runs a single branch, another batch).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

from app.diffusion.transfer import Pending, to_host_async

CompileMode = Literal["off", "default", "max-autotune-no-cudagraphs", "reduce-overhead", "max-autotune"]
COMPILE_MODES: tuple[str, ...] = ("off", "default", "max-autotune-no-cudagraphs", "reduce-overhead", "max-autotune")
_ORIGINAL = "_noisescope_eager_forward"


@dataclass(frozen=True)
class AccelOptions:
    channels_last: bool = False
    compile_mode: CompileMode = "off"
    # torch.compile backend: "inductor" on a GPU; "eager" / "aot_eager" (or a callable) exercise
    # dynamo's capture and guards on a CPU in seconds
    backend: str | Callable = "inductor"
    side_stream: bool = True

    @property
    def cuda_graphs(self) -> bool:
        return self.compile_mode in ("reduce-overhead", "max-autotune") and self.backend == "inductor"


def prepare_unet(unet: torch.nn.Module, *, channels_last: bool = False, compile_mode: str = "off",
                 backend: str | Callable = "inductor") -> torch.nn.Module:
    """The UNet made faster in place (same module: config, dtype and parameters stay readable).

    channels_last: NHWC weights, what cuDNN's tensor-core convolutions prefer in fp16.
    compile_mode: torch.compile's mode ("off": eager); static shapes, one graph per input shape.
    With CUDA graphs (reduce-overhead) each call starts a new graph step, so the previous call's
    output must be consumed (the denoiser converts it to float32 at once) before the next call.
    """
    if compile_mode not in COMPILE_MODES:
        raise ValueError(f"compile_mode must be one of {COMPILE_MODES}, not {compile_mode!r}")
    restore_unet(unet)
    if channels_last:
        unet.to(memory_format=torch.channels_last)
    if compile_mode == "off":
        return unet
    eager = unet.forward
    kwargs: dict = {"backend": backend, "dynamic": False}
    if backend == "inductor" and compile_mode != "default":
        kwargs["mode"] = compile_mode
    compiled = torch.compile(eager, **kwargs)
    graphs = AccelOptions(compile_mode=compile_mode, backend=backend).cuda_graphs  # type: ignore[arg-type]

    def forward(*args, **kw):
        if graphs:
            torch.compiler.cudagraph_mark_step_begin()
        return compiled(*args, **kw)

    setattr(unet, _ORIGINAL, eager)
    unet.forward = forward  # type: ignore[method-assign]
    return unet


def restore_unet(unet: torch.nn.Module) -> torch.nn.Module:
    """Undo prepare_unet: the eager forward and contiguous weights."""
    eager = unet.__dict__.pop(_ORIGINAL, None)
    if eager is not None:
        unet.__dict__.pop("forward", None)
    unet.to(memory_format=torch.contiguous_format)
    return unet


def is_compiled(unet: torch.nn.Module) -> bool:
    return _ORIGINAL in unet.__dict__


def prepare_models(models, options: AccelOptions):
    """Apply `options` to a DiffusionModels (app.diffusion.generate) in place: the UNet as
    prepare_unet, the VAE channels_last alone (its decode runs once per preview, not per step)."""
    prepare_unet(models.unet, channels_last=options.channels_last, compile_mode=options.compile_mode,
                 backend=options.backend)
    models.vae.to(memory_format=torch.channels_last if options.channels_last else torch.contiguous_format)
    models.side_stream = options.side_stream
    return models


def attention_processors(unet: torch.nn.Module) -> dict[str, int]:
    """How many of the UNet's attention layers use each diffusers processor class
    (AttnProcessor2_0 calls torch's scaled_dot_product_attention)."""
    counts: dict[str, int] = {}
    for proc in getattr(unet, "attn_processors", {}).values():
        counts[type(proc).__name__] = counts.get(type(proc).__name__, 0) + 1
    return counts


def sdpa_kernels(call: Callable[[], object]) -> list[str]:
    """The attention kernels torch picked while running `call` (profiler op names such as
    aten::_scaled_dot_product_flash_attention or ..._efficient_attention / _cudnn_attention)."""
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if torch.cuda.is_available() else [])
    with profile(activities=activities) as prof:
        call()
    names = {e.key for e in prof.key_averages()}
    return sorted(n for n in names if n.startswith("aten::_scaled_dot_product_") or "attention" in n.lower()
                  and n.startswith("aten::_"))


class SideStream:
    """Work that only feeds the host (the per-step CLIP score and its copy) on a second CUDA
    stream, so the next UNet step is queued without waiting for it; inline where there is no
    CUDA or when disabled."""

    def __init__(self, device: torch.device, enabled: bool = True) -> None:
        self.stream = torch.cuda.Stream(device) if enabled and device.type == "cuda" else None

    def to_host(self, fn: Callable[[Tensor], Tensor | None], x: Tensor) -> Pending:
        """fn(x) copied to the host; wait() on the result for it."""
        if self.stream is None:
            return to_host_async(fn(x))
        self.stream.wait_stream(torch.cuda.current_stream(x.device))
        with torch.cuda.stream(self.stream):
            x.record_stream(self.stream)  # x's memory is not reused while this stream reads it
            return to_host_async(fn(x))  # its event is recorded on this stream
