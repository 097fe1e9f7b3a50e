"""The diffusion upscaler's trainer: its loss weighting, the latent rescaling of the export, and a few
steps of training, resumed and exported, on tiny models and a tiny 256 px set in the real formats."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from app.train.upscale_diffusion import (
    TINY,
    export_pipeline,
    latent_moments,
    loss_weights,
    rescale_latents,
    sample_timesteps,
    train_diffusion_upscaler,
)


def test_loss_weights_in_x0_terms() -> None:
    snr = torch.tensor([0.005, 0.5, 1.0, 3.0, 100.0])
    x0 = {kind: loss_weights(snr, kind) * (snr + 1) for kind in ("truncated-min-snr", "min-snr", "v")}
    assert torch.allclose(x0["truncated-min-snr"], torch.tensor([1.0, 1.0, 1.0, 3.0, 5.0]))
    assert torch.allclose(x0["min-snr"], torch.tensor([0.005, 0.5, 1.0, 3.0, 5.0]))
    assert torch.allclose(loss_weights(snr, "v"), torch.ones(5))
    with pytest.raises(ValueError, match="unknown weighting"):
        loss_weights(snr, "snr")


def test_logit_normal_timesteps_favour_the_middle_noise_levels() -> None:
    g = torch.Generator().manual_seed(0)
    uniform, middle = (sample_timesteps(20000, kind, g) for kind in ("uniform", "logit-normal"))
    for t in (uniform, middle):
        assert t.dtype == torch.long and 0 <= int(t.min()) and int(t.max()) <= 999
    share = {k: float(((t >= 250) & (t < 750)).float().mean()) for k, t in (("u", uniform), ("m", middle))}
    assert share["u"] == pytest.approx(0.5, abs=0.02)
    assert share["m"] == pytest.approx(0.728, abs=0.015)  # P(|N(0,1)| < logit(0.75) = 1.0986)
    with pytest.raises(ValueError, match="unknown timestep sampling"):
        sample_timesteps(4, "cosine", g)


@torch.no_grad()
def test_rescaled_vae_decodes_the_same_pictures(tiny_base: Path) -> None:
    from diffusers import AutoencoderKL

    vae = AutoencoderKL.from_pretrained(tiny_base / "vae").eval()
    vae.register_to_config(scaling_factor=0.5)
    x = torch.rand(1, 3, 32, 32) * 2 - 1
    z = vae.encode(x).latent_dist.mean * 0.5
    picture = vae.decode(z / 0.5).sample
    rescale_latents(vae, 0.08333)
    z2 = vae.encode(x).latent_dist.mean * 0.08333
    assert float(vae.config.scaling_factor) == 0.08333
    assert torch.allclose(z2, z, atol=1e-5)  # what the UNet sees is unchanged
    assert torch.allclose(vae.decode(z2 / 0.08333).sample, picture, atol=1e-4)


def test_a_few_steps_train_resume_and_export(tiny_base: Path, tiny_hr: Path, tmp_path: Path, capsys) -> None:
    from diffusers import StableDiffusionUpscalePipeline

    from app.train.upscale_diffusion import main

    run = tmp_path / "run"
    first = train_diffusion_upscaler(str(tiny_hr), tiny_base, run, steps=2, batch=2, crop=32, channels=TINY)
    assert first["steps"] == 2 and all(np.isfinite(first["losses"]))
    assert main(["--data", str(tiny_hr), "--base", str(tiny_base), "--out", str(run), "--steps", "3", "--batch", "2",
                 "--crop", "32", "--tiny", "--resume", "--weighting", "min-snr", "--timesteps", "logit-normal"]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["steps"] == 3 and np.isfinite(summary["loss_last"])  # one more step, not three
    assert [json.loads(line)["step"] for line in (run / "log.jsonl").read_text().splitlines()][-1] == 3
    pipe = StableDiffusionUpscalePipeline.from_pretrained(export_pipeline(run / "model", tiny_base, tmp_path / "export"))
    assert pipe.unet.config.in_channels == 7 and pipe.unet.config.num_class_embeds == 1000
    assert float(pipe.vae.config.scaling_factor) == pytest.approx(0.08333)


@torch.no_grad()
def test_latents_are_encoded_once_and_cropped_in_line_with_the_pixels(tiny_base: Path, tmp_path: Path) -> None:
    from diffusers import AutoencoderKL

    from app.train.sr_data import crop_boxes, crops_at, latent_crops

    vae = AutoencoderKL.from_pretrained(tiny_base / "vae").eval()
    images = np.random.default_rng(1).integers(0, 256, (3, 32, 32, 3), dtype=np.uint8)
    cache = tmp_path / "latents.safetensors"
    moments = latent_moments(vae, images, cache)
    post = vae.encode(torch.from_numpy(images[1:2]).permute(0, 3, 1, 2).float() / 127.5 - 1).latent_dist
    assert moments.shape == (3, 2, 4, 8, 8)
    assert torch.allclose(moments[1, 0], post.mean[0], atol=1e-5) and torch.allclose(moments[1, 1], post.std[0], atol=1e-5)

    calls = []
    vae.encode = lambda x: calls.append(x) or (_ for _ in ()).throw(AssertionError("encoded again"))
    assert torch.equal(latent_moments(vae, images, cache), moments)  # read back, not encoded
    with pytest.raises(AssertionError, match="encoded again"):
        latent_moments(vae, images[::-1].copy(), cache)  # other pictures: the cache's digest no longer matches

    boxes = crop_boxes(images.shape, 16, 5, torch.Generator().manual_seed(0))
    mean, std = latent_crops(moments, boxes, 4).unbind(1)
    assert crops_at(images, boxes, 16).shape == (5, 3, 16, 16) and mean.shape == std.shape == (5, 4, 4, 4)
    for k, (i, y, x) in enumerate(zip(*(b.tolist() for b in boxes))):
        assert y % 4 == 0 and x % 4 == 0
        assert torch.equal(mean[k], moments[i, 0, :, y // 4:y // 4 + 4, x // 4:x // 4 + 4])


def test_the_gan_upscaler_trains_from_the_command_line(tiny_hr: Path, tmp_path: Path, capsys) -> None:
    from app.train.upscale_gan import main
    from app.upscale.gan import load_folder

    run = tmp_path / "gan"
    assert main(["--data", str(tiny_hr), "--out", str(run), "--judge", "", "--steps", "2", "--batch", "2",
                 "--crop", "32", "--tiny", "--gan-from", "0.5"]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["steps"] == 2 and np.isfinite(summary["loss_last"])
    net = load_folder(run / "model")
    assert net(torch.rand(1, 3, 8, 8)).shape == (1, 3, 32, 32)
