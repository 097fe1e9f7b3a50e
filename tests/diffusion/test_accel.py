"""app.diffusion.accel on the CPU: a compiled UNet (dynamo with the eager backend, fast) keeps the
live loop working without recompiling, channels_last changes nothing, the side stream is inline."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from pydantic import ValidationError

from app.diffusion.accel import (
    AccelOptions,
    SideStream,
    attention_processors,
    is_compiled,
    prepare_models,
    prepare_unet,
    restore_unet,
    sdpa_kernels,
)
from app.params import DiffusionParams
from app.settings import Settings


@pytest.fixture()
def models(tiny_diffusion_dir: Path, tmp_path: Path):
    from app.diffusion.generate import load_diffusion_models

    m = load_diffusion_models(str(tiny_diffusion_dir), torch.device("cpu"), torch.float32, cache_dir=tmp_path)
    yield m
    restore_unet(m.unet)
    torch._dynamo.reset()


def live_run(models, steps: int, cfg0: float) -> tuple[torch.Tensor, list[float]]:
    """A run whose CFG scale changes at every step boundary (as a user dragging the slider would)."""
    from app.diffusion.generate import generate

    params = DiffusionParams(prompt="red heart", negative_prompt="blue", seed=5, steps=steps, width=32, height=32,
                             cfg_scale=cfg0, sampler="dpmpp_2m", karras=True)
    state = {"live": params.live()}
    used: list[float] = []

    def boundary(n: int) -> None:
        state["live"] = state["live"].model_copy(update={"cfg_scale": cfg0 + 0.75 * n})
        used.append(state["live"].cfg_scale)

    latent = generate(models, params, live=lambda: state["live"], on_step=lambda s: None, on_boundary=boundary)
    return latent, used


class CountingBackend:
    """A torch.compile backend that runs the captured graph eagerly and counts compilations."""

    def __init__(self) -> None:
        self.graphs = 0

    def __call__(self, gm: torch.fx.GraphModule, example_inputs):
        self.graphs += 1
        return gm.forward


def test_compiled_unet_follows_live_cfg_without_recompiling(models) -> None:
    eager, cfgs = live_run(models, steps=5, cfg0=4.0)
    assert len(set(cfgs)) == 5

    torch._dynamo.reset()
    backend = CountingBackend()
    prepare_unet(models.unet, compile_mode="default", backend=backend)
    assert is_compiled(models.unet) and models.unet.config.in_channels == 4  # still the same module
    compiled, _ = live_run(models, steps=5, cfg0=4.0)
    first = backend.graphs
    assert first >= 1
    torch.testing.assert_close(compiled, eager, rtol=1e-4, atol=1e-4)

    # other sigmas (7 Karras steps), another CFG ramp: the same graphs, no recompile allowed
    with torch._dynamo.config.patch(error_on_recompile=True):
        live_run(models, steps=7, cfg0=2.5)
    assert backend.graphs == first

    restore_unet(models.unet)
    assert not is_compiled(models.unet)
    torch.testing.assert_close(live_run(models, steps=5, cfg0=4.0)[0], eager)


def test_channels_last_gives_the_same_image(models) -> None:
    eager, _ = live_run(models, steps=3, cfg0=6.0)
    prepare_models(models, AccelOptions(channels_last=True))
    conv = next(m for m in models.unet.modules() if isinstance(m, torch.nn.Conv2d))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(live_run(models, steps=3, cfg0=6.0)[0], eager, rtol=1e-4, atol=1e-4)


def test_prepare_unet_refuses_unknown_modes(models) -> None:
    with pytest.raises(ValueError, match="compile_mode"):
        prepare_unet(models.unet, compile_mode="fastest")


def test_attention_is_sdpa(models) -> None:
    assert set(attention_processors(models.unet)) == {"AttnProcessor2_0"}
    x = torch.randn(2, 4, 8, 8)
    ctx = torch.randn(2, 77, models.unet.config.cross_attention_dim)
    kernels = sdpa_kernels(lambda: models.unet(x, torch.tensor([500.0, 500.0]), encoder_hidden_states=ctx))
    assert any(k.startswith("aten::_scaled_dot_product") for k in kernels), kernels


def test_side_stream_is_inline_on_cpu() -> None:
    side = SideStream(torch.device("cpu"))
    assert side.stream is None
    x = torch.arange(4.0)
    (out,) = side.to_host(lambda t: t.sum(), x).wait()
    assert float(out) == 6.0
    assert side.to_host(lambda t: None, x).wait() == (None,)


def test_settings_flags() -> None:
    s = Settings(compile="reduce-overhead", channels_last=True)
    assert s.compile == "reduce-overhead" and s.channels_last
    assert Settings().compile == "off" and not Settings().channels_last
    with pytest.raises(ValidationError):
        Settings(compile="fastest")
