"""The upscalers' formats on tiny random models: Real-ESRGAN .pth -> safetensors (x4, x2), a malicious
.pth refused unrun, and a StableDiffusionUpscalePipeline folder loaded as the studio's models."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest
import torch
from PIL import Image

from app.upscale.gan import UnsafeCheckpointError, convert_pth, load_folder, read_pth
from app.upscale.rrdbnet import RRDBConfig, RRDBNet, config_from_state_dict, upscale

REAL_ESRGAN_KEYS = ("conv_first.weight", "body.0.rdb1.conv1.weight", "body.1.rdb3.conv5.bias", "conv_body.weight",
                    "conv_up1.weight", "conv_up2.weight", "conv_hr.weight", "conv_last.weight")


@pytest.mark.parametrize("scale,wrapper", [(4, "params_ema"), (2, "params"), (4, None)])
def test_pth_converts_to_the_same_network(tmp_path: Path, scale: int, wrapper: str | None) -> None:
    torch.manual_seed(0)
    net = RRDBNet(RRDBConfig(scale=scale, num_feat=8, num_block=2, num_grow_ch=4)).eval()
    state = net.state_dict()
    assert set(REAL_ESRGAN_KEYS) <= set(state)
    pth = tmp_path / "model.pth"
    torch.save({wrapper: state} if wrapper else state, pth)
    cfg = convert_pth(pth, tmp_path / "out", dtype=torch.float32)
    assert cfg == net.cfg
    loaded = load_folder(tmp_path / "out")
    x = torch.rand(1, 3, 12, 16)
    y = upscale(loaded, x)
    assert y.shape == (1, 3, 12 * scale, 16 * scale)
    torch.testing.assert_close(y, upscale(net, x))


def test_x2_input_is_pixel_unshuffled() -> None:
    net = RRDBNet(RRDBConfig(scale=2, num_feat=8, num_block=1, num_grow_ch=4))
    assert net.conv_first.in_channels == 12  # 3 channels x 2 x 2, as Real-ESRGAN's x2plus
    assert config_from_state_dict(net.state_dict()).scale == 2
    assert upscale(net, torch.rand(1, 3, 7, 9)).shape == (1, 3, 14, 18)  # odd sizes are padded and cropped


class _Payload:
    def __reduce__(self):
        import os

        return (os.system, (f"touch {_Payload.marker}",))


def test_malicious_pth_is_refused_without_running(tmp_path: Path) -> None:
    _Payload.marker = str(tmp_path / "pwned")
    pth = tmp_path / "evil.pth"
    torch.save({"params_ema": {"conv_first.weight": torch.zeros(1)}, "x": _Payload()}, pth, pickle_protocol=2)
    with pytest.raises(UnsafeCheckpointError, match="refused"):
        read_pth(pth)
    with pytest.raises(UnsafeCheckpointError):
        convert_pth(pth, tmp_path / "out")
    assert not (tmp_path / "pwned").exists()
    assert not (tmp_path / "out").exists()


def test_legacy_pickle_is_refused(tmp_path: Path) -> None:
    _Payload.marker = str(tmp_path / "pwned")
    path = tmp_path / "plain.pth"
    path.write_bytes(pickle.dumps({"params": _Payload()}, protocol=2))  # torch's legacy (non-zip) format
    with pytest.raises(UnsafeCheckpointError):
        read_pth(path)
    assert not (tmp_path / "pwned").exists()


def test_not_an_rrdbnet(tmp_path: Path) -> None:
    torch.save({"params": {"weight": torch.zeros(2)}}, tmp_path / "x.pth")
    with pytest.raises(ValueError, match="not an RRDBNet"):
        convert_pth(tmp_path / "x.pth", tmp_path / "out")


def test_convert_cli(tmp_path: Path, capsys) -> None:
    from app.__main__ import main

    net = RRDBNet(RRDBConfig(scale=4, num_feat=8, num_block=1, num_grow_ch=4))
    torch.save({"params_ema": net.state_dict()}, tmp_path / "m.pth")
    assert main(["convert-upscaler", str(tmp_path / "m.pth"), str(tmp_path / "out")]) == 0
    assert "RRDBNet x4" in capsys.readouterr().out
    assert (tmp_path / "out" / "model.safetensors").is_file()
    torch.save({"x": _Payload()}, tmp_path / "evil.pth")
    assert main(["convert-upscaler", str(tmp_path / "evil.pth"), str(tmp_path / "o2")]) == 1


@pytest.fixture(scope="module")
def tiny_upscalers(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    from app.demo_models import build_tiny_upscalers

    return build_tiny_upscalers(tmp_path_factory.mktemp("tiny-upscalers"))


def test_upscale_pipeline_loads_in_diffusers_and_the_studio(tiny_upscalers: tuple[Path, Path], tmp_path: Path) -> None:
    from diffusers import StableDiffusionUpscalePipeline

    from app.diffusion.generate import decode_to_pil, generate
    from app.params import DiffusionParams
    from app.upscale.diffusion import is_upscale_pipeline, load_upscaler_models

    _, folder = tiny_upscalers
    assert is_upscale_pipeline(folder)
    pipe = StableDiffusionUpscalePipeline.from_pretrained(folder)  # the real class reads the folder
    assert pipe.unet.config.in_channels == 7 and pipe.config.max_noise_level == 350
    models = load_upscaler_models(folder, torch.device("cpu"), torch.float32, cache_dir=tmp_path)
    assert models.upscaler and models.prediction_type == "v_prediction"
    seen = []
    original = models.unet.forward

    def spy(sample, t, encoder_hidden_states=None, class_labels=None, **kw):
        seen.append((sample.shape[1], None if class_labels is None else class_labels.tolist()))
        return original(sample, t, encoder_hidden_states=encoder_hidden_states, class_labels=class_labels, **kw)

    models.unet.forward = spy
    params = DiffusionParams(prompt="a cat", width=64, height=64, steps=3, sampler="euler", seed=5, cfg_scale=1.0,
                             init_image="x", upscale=True, noise_level=42)
    source = Image.new("RGB", (16, 16), (200, 30, 30))
    steps = []
    latent = generate(models, params, live=params.live, on_step=steps.append, init_image=source)
    assert latent.shape == (1, 4, 16, 16)  # the latent is the low-resolution picture's size
    assert [s.index for s in steps] == [1, 2, 3] and all(s.denoised.shape == latent.shape for s in steps)
    assert seen and all(c == 7 and labels == [42] for c, labels in seen)
    assert decode_to_pil(models, latent)[0].size == (64, 64)
    again = generate(models, params, live=params.live, on_step=lambda s: None, init_image=source)
    torch.testing.assert_close(latent, again)  # the low-res noise comes from the run's seed
    with pytest.raises(ValueError, match="noise_level"):
        generate(models, params.model_copy(update={"noise_level": 351}), live=params.live,
                 on_step=lambda s: None, init_image=source)
