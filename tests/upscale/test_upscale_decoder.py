"""The diffusion upscaler's decoder fine-tuning: the pool of its own samples, crops that pair each latent
cell with its 4x4 pixels, a few steps that move the decoder and not the encoder, and the export."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from app.settings import MODELS_DIR
from app.train.upscale_decoder import export_with_decoder, load_pools, main, pool_crops


def test_crops_pair_each_latent_cell_with_its_pixels() -> None:
    targets = torch.from_numpy(np.random.default_rng(0).integers(0, 256, (3, 32, 32, 3), dtype=np.uint8))
    cells = targets.float().reshape(3, 8, 4, 8, 4, 3).mean(dim=(2, 4)).permute(0, 3, 1, 2)  # [3, 3, 8, 8]
    pool = {"sampled": cells, "targets": targets}
    z, t = pool_crops(pool, "sampled", 16, 6, torch.Generator().manual_seed(1))
    assert z.shape == (6, 3, 4, 4) and t.shape == (6, 3, 16, 16)
    pixels = (t + 1) * 127.5
    assert torch.allclose(pixels.reshape(6, 3, 4, 4, 4, 4).mean(dim=(3, 5)), z, atol=1e-3)


@pytest.mark.skipif(not (MODELS_DIR / "judge").is_dir(), reason="the judge ships in models/judge")
def test_pool_train_resume_and_export(tiny_base: Path, tiny_hr: Path, tmp_path: Path, capsys) -> None:
    from diffusers import AutoencoderKL, StableDiffusionUpscalePipeline

    run = tmp_path / "run"
    for shard in (0, 1):
        assert main(["pool", "--upscaler", str(tiny_base), "--data", str(tiny_hr), "--out", str(run),
                     "--count", "2", "--shard", str(shard)]) == 0
    pool = load_pools(run)
    assert pool["sampled"].shape == pool["clean"].shape == (4, 4, 16, 16) and pool["targets"].shape == (4, 64, 64, 3)
    assert not torch.allclose(pool["sampled"], pool["clean"])

    before = AutoencoderKL.from_pretrained(tiny_base / "vae")
    assert main(["train", "--upscaler", str(tiny_base), "--run", str(run), "--steps", "2", "--batch", "2",
                 "--crop", "32", "--lr", "1e-3"]) == 0
    assert main(["train", "--upscaler", str(tiny_base), "--run", str(run), "--steps", "3", "--batch", "2",
                 "--crop", "32", "--resume"]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["steps"] == 3 and np.isfinite(summary["loss_last"])  # resumed: one more step

    folder = export_with_decoder(tiny_base, run / "vae", tmp_path / "export")
    pipe = StableDiffusionUpscalePipeline.from_pretrained(folder)
    after = pipe.vae.float()
    same = lambda a, b: all(torch.equal(x, y.to(x.dtype)) for x, y in zip(a.parameters(), b.parameters()))  # noqa: E731
    assert same(before.encoder.half().float(), after.encoder) and same(before.quant_conv.half().float(), after.quant_conv)
    assert not same(before.decoder.half().float(), after.decoder)
    assert float(after.config.scaling_factor) == pytest.approx(float(before.config.scaling_factor))
