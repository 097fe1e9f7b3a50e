"""Tiny end-to-end training: losses drop, and the exported folders load through the real loaders."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from app.train.models import TINY

pytestmark = pytest.mark.slow

DATA = "shapes:32"
STEPS = 20


def _mean(xs: list[float]) -> float:
    return float(np.mean(xs))


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict:
    from app.train.clip import train_clip
    from app.train.unet import train_unet
    from app.train.vae import train_vae

    root = tmp_path_factory.mktemp("runs")
    kw = dict(sizes=TINY, device="cpu")
    return {
        "root": root,
        "clip": train_clip(DATA, root / "clip", steps=STEPS, batch=16, lr=2e-3, **kw),
        "vae": train_vae(DATA, root / "vae", steps=STEPS, batch=4, lr=2e-3, **kw),
        "unet": train_unet(DATA, root / "clip" / "model", root / "vae" / "model", root / "unet", steps=STEPS, batch=8,
                           lr=2e-3, **kw),
    }


@pytest.mark.parametrize("kind", ["clip", "vae", "unet"])
def test_loss_drops(runs: dict, kind: str) -> None:
    losses = runs[kind]["losses"]
    assert len(losses) == STEPS
    assert _mean(losses[-5:]) < _mean(losses[:5]), losses


def test_resume_continues_from_checkpoint(runs: dict, tmp_path: Path) -> None:
    from app.train.vae import train_vae

    out = tmp_path / "vae"
    shutil.copytree(runs["root"] / "vae", out)
    result = train_vae(DATA, out, steps=STEPS + 2, batch=4, lr=2e-3, resume=True, sizes=TINY, device="cpu")
    assert result["steps"] == STEPS + 2 and len(result["losses"]) == 2


def test_vae_centring_is_exact(runs: dict) -> None:
    from diffusers import AutoencoderKL

    from app.train.common import images_to_device
    from app.train.data import load_dataset
    from app.train.vae import latent_moments

    vae = AutoencoderKL.from_pretrained(runs["root"] / "vae" / "model")
    assert vae.config.scaling_factor == pytest.approx(runs["vae"]["scaling_factor"])
    images = images_to_device(load_dataset(DATA)[0], torch.device("cpu"))
    mean, _ = latent_moments(vae, images)
    assert mean.mean(dim=(0, 2, 3)).abs().max() < 1e-3
    assert runs["vae"]["recon_l1_255"] > 0


def test_exported_folders_load(runs: dict, tmp_path: Path) -> None:
    from diffusers import StableDiffusionPipeline
    from transformers import CLIPModel

    from app.clip import load_clip
    from app.train.export import export_clip, export_pipeline

    root = runs["root"]
    clip_dir = export_clip(root / "clip" / "model", tmp_path / "clip")
    pipe_dir = export_pipeline(root / "clip" / "model", root / "vae" / "model", root / "unet" / "model",
                               tmp_path / "diffusion")
    assert CLIPModel.from_pretrained(clip_dir).config.vision_config.image_size == 64
    backend = load_clip(str(clip_dir), torch.device("cpu"))
    txt = backend.encode_text(["a red circle", "a blue square"])
    img = backend.encode_image(torch.rand(2, 3, 64, 64))
    assert txt.shape == img.shape == (2, TINY.clip_width)

    pipe = StableDiffusionPipeline.from_pretrained(pipe_dir)  # fp16 files, loaded as float32 by default
    assert pipe.text_encoder.dtype == pipe.unet.dtype == torch.float32
    pipe.set_progress_bar_config(disable=True)
    assert pipe.safety_checker is None and pipe.vae_scale_factor == 4
    image = pipe("a red circle", num_inference_steps=2, guidance_scale=3.0, output_type="np",
                 generator=torch.Generator().manual_seed(0)).images
    assert image.shape == (1, 64, 64, 3) and np.isfinite(image).all()
    # the text encoder is the CLIP's text tower, unchanged
    full = CLIPModel.from_pretrained(clip_dir, dtype=torch.float32)
    ids = pipe.tokenizer(["a red circle"], return_tensors="pt").input_ids
    with torch.no_grad():
        a = pipe.text_encoder(ids).last_hidden_state
        b = full.text_model(input_ids=ids).last_hidden_state
    assert torch.allclose(a, b, atol=1e-5)
