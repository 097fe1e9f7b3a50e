"""Widening a generator keeps its output, the new channels then learn, and a widened run resumes."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from app.gan.networks import Generator
from app.train.gan import CHECKPOINT, load_checkpoint
from app.train.gan_widen import main, widen_generator
from tests.train.test_gan_train import CPU, params, run


def tiny_generator(channel_base: int, seed: int) -> Generator:
    torch.manual_seed(seed)
    return Generator(z_dim=8, c_dim=4, w_dim=16, img_resolution=32, img_channels=3,
                     mapping_kwargs={"num_layers": 2}, channel_base=channel_base, channel_max=32).eval()


def trained_looking(G: Generator) -> Generator:
    """Random values everywhere, including the biases and noise strengths that start at zero."""
    with torch.no_grad():
        for p in G.parameters():
            p.add_(torch.randn_like(p) * 0.3)
    return G


def test_widened_generator_draws_the_same_image() -> None:
    old = trained_looking(tiny_generator(128, seed=0))
    new = tiny_generator(512, seed=1)
    widen_generator(old, new)
    assert sum(p.numel() for p in new.parameters()) > sum(p.numel() for p in old.parameters())
    assert new.synthesis.b32.conv1.weight.shape[:2] == (16, 16) != old.synthesis.b32.conv1.weight.shape[:2]
    z, c = torch.randn(3, 8), torch.nn.functional.normalize(torch.randn(3, 4), dim=1)
    with torch.no_grad():
        want = old(z, c, noise_mode="const")
        got = new(z, c, noise_mode="const")
    assert want.abs().mean() > 0.05
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)


def test_narrowing_is_refused() -> None:
    with pytest.raises(ValueError, match="does not fit"):
        widen_generator(tiny_generator(512, seed=0), tiny_generator(128, seed=1))


def test_widened_run_resumes_and_its_new_channels_learn(tmp_path: Path, tiny_clip_dir: Path, capsys) -> None:
    narrow = run(tmp_path / "a", tiny_clip_dir, 2)
    assert main([str(tmp_path / "a"), str(tmp_path / "b"), "--g-channel-base", "512"]) == 0
    assert "64: 8" in capsys.readouterr().out
    state, cfg = load_checkpoint(tmp_path / "b" / CHECKPOINT, CPU)
    assert cfg.g_channel_base == 512 and (state.step, state.nimg) == (narrow.step, narrow.nimg)
    assert torch.equal(params(state.D), params(narrow.D))
    assert state.opt_g.state_dict()["state"] == {}
    old_out, old_in = narrow.G.synthesis.b64.conv1.weight.shape[:2]
    assert not state.G.synthesis.b64.conv1.weight[:old_out, old_in:].any()

    resumed = run(tmp_path / "b", tiny_clip_dir, 4, resume=True)
    assert resumed.step == 4 and torch.isfinite(params(resumed.G)).all()
    assert resumed.G.synthesis.b64.conv1.weight[:old_out, old_in:].abs().sum() > 0
