from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F

from app.diffusion import previews
from app.diffusion.previews import LatentRGBMap, fast_preview, fit_latent_rgb, fitting_pairs, load_or_fit


class NearlyLinearVAE(torch.nn.Module):
    """A VAE-shaped module (f=4) whose decode is a per-pixel affine map plus a mild nonlinearity,
    like a trained SD VAE is to first order."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.enc = torch.nn.Conv2d(3, 4, 1)
        self.dec = torch.nn.Conv2d(4, 3, 1)
        self.config = SimpleNamespace(scaling_factor=0.5, block_out_channels=(8, 8, 8))

    def encode(self, images: torch.Tensor) -> SimpleNamespace:
        return SimpleNamespace(latent_dist=SimpleNamespace(mean=self.enc(F.avg_pool2d(images, 4))))

    def decode(self, z: torch.Tensor) -> SimpleNamespace:
        y = self.dec(z * 0.5)
        return SimpleNamespace(sample=F.interpolate(y + 0.05 * torch.tanh(3 * y), scale_factor=4.0, mode="nearest"))


def _errors(vae: torch.nn.Module, rgb_map: LatentRGBMap) -> tuple[float, float]:
    lat, img = fitting_pairs(vae, n=3, seed=1)  # held out: other images than the fit's
    err = float((rgb_map(lat) - img).pow(2).mean())
    baseline = float((img - img.mean(dim=(0, 2, 3), keepdim=True)).pow(2).mean())
    return err, baseline


def test_fit_approximates_decodes_and_caches(tmp_path: Path) -> None:
    vae = NearlyLinearVAE()
    rgb_map = load_or_fit(vae, tmp_path)
    err, baseline = _errors(vae, rgb_map)
    assert err < baseline / 50
    cached = list(tmp_path.glob("latent_rgb_*.json"))
    assert len(cached) == 1
    again = load_or_fit(vae, tmp_path)
    assert torch.equal(again.weight, rgb_map.weight) and torch.equal(again.bias, rgb_map.bias)
    with torch.no_grad():
        vae.dec.weight.mul_(2)
    assert previews.vae_fingerprint(vae) not in cached[0].name


def test_fit_on_tiny_random_vae_beats_constant_colour(tiny_diffusion_dir: Path) -> None:
    """An untrained VAE is far from linear, so only a modest gain is possible there."""
    from diffusers import AutoencoderKL

    vae = AutoencoderKL.from_pretrained(tiny_diffusion_dir, subfolder="vae").eval()
    err, baseline = _errors(vae, fit_latent_rgb(*fitting_pairs(vae)))
    assert err < baseline * 0.9


def test_fast_preview_shape() -> None:
    rgb_map = LatentRGBMap(torch.eye(4, 3), torch.zeros(3))
    out = fast_preview(rgb_map, torch.zeros(4, 6, 5))
    assert out.shape == (6, 5, 3) and out.dtype.name == "uint8" and int(out[0, 0, 0]) == 128


def test_fit_on_trained_vae() -> None:
    """The embedded trained VAE (models/diffusion) is close to linear, as SD's is."""
    from diffusers import AutoencoderKL

    folder = Path(__file__).resolve().parents[2] / "models" / "diffusion"
    if not (folder / "vae").is_dir():
        pytest.skip("no trained diffusion model in models/")
    vae = AutoencoderKL.from_pretrained(folder, subfolder="vae").float().eval()
    err, baseline = _errors(vae, fit_latent_rgb(*fitting_pairs(vae)))
    assert err < baseline / 3
