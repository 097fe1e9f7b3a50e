"""TAESD-shaped preview decoders (app.diffusion.tiny_decoder): a tiny random diffusers AutoencoderTiny
folder written here, loaded through the same code as madebyollin/taesd, drawing the loaded model's
latents at image resolution."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from app.diffusion.tiny_decoder import TinyDecoder, check_fits, load_tiny_decoder


def build_tiny_taesd(folder: Path, *, blocks: int = 3, latent_channels: int = 4, seed: int = 0,
                     scaling_factor: float = 1.0, shift_factor: float = 0.0) -> Path:
    """A random AutoencoderTiny folder; `blocks` decoder blocks upsample 2 ** (blocks - 1) times (TAESD has 4: 8x)."""
    from diffusers import AutoencoderTiny

    torch.manual_seed(seed)
    AutoencoderTiny(encoder_block_out_channels=(8,) * blocks, decoder_block_out_channels=(8,) * blocks,
                    num_encoder_blocks=(1,) * blocks, num_decoder_blocks=(1,) * blocks,
                    latent_channels=latent_channels, scaling_factor=scaling_factor,
                    shift_factor=shift_factor).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def taesd_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_taesd(tmp_path_factory.mktemp("taesd"))


def test_tiny_decoder_draws_latents_at_image_resolution(taesd_dir: Path) -> None:
    tiny = load_tiny_decoder(str(taesd_dir), torch.device("cpu"), torch.float32)
    assert (tiny.latent_channels, tiny.scale, tiny.name) == (4, 4, taesd_dir.name)
    latent = torch.randn(2, 4, 8, 6)
    images = tiny.decode(latent)
    assert images.shape == (2, 3, 32, 24) and images.dtype == torch.float32
    assert 0 <= images.min() and images.max() <= 1
    grid = tiny.preview(latent)
    assert grid.shape == (32, 48, 3) and grid.dtype.name == "uint8"  # a batch as one grid, as the other previews
    assert tiny.preview(latent[0]).shape == (32, 24, 3)
    # it is the AutoencoderTiny's own decode, mapped from [-1, 1] to [0, 1]
    with torch.no_grad():
        expected = tiny.vae.decode(latent).sample.add(1).div(2).clamp(0, 1)
    assert torch.equal(images, expected)


def test_scaling_and_shift_factors_map_the_latents_first(tmp_path: Path) -> None:
    """The SD3 / FLUX tiny decoders carry a scaling and shift factor: latent / scaling + shift goes in."""
    tiny = load_tiny_decoder(str(build_tiny_taesd(tmp_path / "t3", scaling_factor=1.5, shift_factor=0.1)),
                             torch.device("cpu"), torch.float32)
    latent = torch.randn(1, 4, 4, 4)
    with torch.no_grad():
        expected = tiny.vae.decode(latent / 1.5 + 0.1).sample.add(1).div(2).clamp(0, 1)
    assert torch.allclose(tiny.decode(latent), expected)


def test_a_decoder_for_another_latent_space_is_refused(tmp_path: Path, taesd_dir: Path) -> None:
    tiny = load_tiny_decoder(str(taesd_dir), torch.device("cpu"), torch.float32)
    check_fits(tiny, 4, 4)
    with pytest.raises(ValueError, match="8x.*taesdxl"):
        check_fits(TinyDecoder("taesd", load_tiny_decoder(str(build_tiny_taesd(tmp_path / "t8", blocks=4)),
                                                          torch.device("cpu"), torch.float32).vae), 4, 4)
    with pytest.raises(ValueError, match="16-channel"):
        check_fits(load_tiny_decoder(str(build_tiny_taesd(tmp_path / "t16", latent_channels=16)),
                                     torch.device("cpu"), torch.float32), 4, 4)


def test_a_hub_id_offline_with_no_cache_names_the_id(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ValueError, match="'madebyollin/taesd-not-cached'.*local cache"):
        load_tiny_decoder("madebyollin/taesd-not-cached", torch.device("cpu"), torch.float32)
    with pytest.raises(ValueError, match="no AutoencoderTiny"):
        load_tiny_decoder(str(tmp_path), torch.device("cpu"), torch.float32)  # a folder without one
