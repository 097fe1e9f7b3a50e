"""pack / unpack of a GAN run: smaller files, the same nets to fp16 precision, and --resume continues."""

from __future__ import annotations

from pathlib import Path

import torch

from app.gan.convert import load_generator
from app.train.gan import CHECKPOINT, load_checkpoint
from app.train.gan_carry import main, pack, unpack
from tests.train.test_gan_train import CPU, params, run


def test_pack_unpack_round_trip_and_resume(tmp_path: Path, tiny_clip_dir: Path) -> None:
    trained = run(tmp_path / "a", tiny_clip_dir, 3)
    files = pack(tmp_path / "a", tmp_path / "carry")
    assert sum(f.stat().st_size for f in files) < (tmp_path / "a" / CHECKPOINT).stat().st_size / 2
    load_generator(tmp_path / "carry", CPU)  # the folder is also an exported generator

    unpack(tmp_path / "carry", tmp_path / "b")
    state, cfg = load_checkpoint(tmp_path / "b" / CHECKPOINT, CPU)
    assert (state.step, state.nimg, len(state.history)) == (3, 3 * cfg.batch, len(trained.history))
    for name in ("G", "D", "G_ema"):
        want, got = params(getattr(trained, name)), params(getattr(state, name))
        assert not torch.equal(want, torch.zeros_like(want))
        assert torch.allclose(want, got, rtol=1e-3, atol=1e-3), name
    assert state.opt_g.state_dict()["state"] == {} and state.opt_d.state_dict()["state"] == {}

    resumed = run(tmp_path / "b", tiny_clip_dir, 4, resume=True)
    assert resumed.step == 4 and torch.isfinite(params(resumed.G)).all()


def test_cli_reports_the_files(tmp_path: Path, tiny_clip_dir: Path, capsys) -> None:
    run(tmp_path / "a", tiny_clip_dir, 1)
    assert main(["pack", str(tmp_path / "a"), str(tmp_path / "carry")]) == 0
    assert main(["unpack", str(tmp_path / "carry"), str(tmp_path / "b")]) == 0
    out = capsys.readouterr().out
    assert "G.pt" in out and "D.pt" in out and "step 1" in out
