"""Evaluation metrics on cases with known answers, and the CLI end to end on tiny models."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from app.train.evaluate import evaluate, gan_generator, main, pick_prompts, real_generator, seed_runs
from app.train.judge import Judge, accuracy, augment, load_judge, predict, save_judge, train_judge


def test_seed_runs_groups_consecutive_seeds_of_one_prompt() -> None:
    assert seed_runs(["a", "a", "a", "b", "b", "a"], [0, 1, 3, 3, 4, 5]) == [("a", 0, 2), ("a", 3, 1), ("b", 3, 2),
                                                                            ("a", 5, 1)]


@pytest.fixture(scope="module")
def shapes():
    from app.train.data import load_dataset

    return load_dataset("shapes:24")


@pytest.fixture(scope="module")
def tiny_judge(shapes) -> Judge:
    images, _, ids = shapes
    return train_judge(images, ids, epochs=3, batch=8, log=lambda _: None)


def test_augment_is_seeded_and_stays_in_range() -> None:
    x = torch.rand(2, 3, 64, 64)
    a = augment(x, torch.Generator().manual_seed(0))
    b = augment(x, torch.Generator().manual_seed(0))
    assert torch.equal(a, b) and a.min() >= 0 and a.max() <= 1 and not torch.equal(a, x)


def test_judge_round_trip(tmp_path: Path, tiny_judge: Judge, shapes) -> None:
    images = shapes[0]
    save_judge(tiny_judge, tmp_path / "judge", {"stats": {"x": 1}})
    loaded = load_judge(tmp_path / "judge")
    assert loaded.cfg.ids == tiny_judge.cfg.ids
    got, want = predict(loaded, images)[0], predict(tiny_judge, images)[0]  # fp16 storage
    assert torch.allclose(got, want, atol=0.05, rtol=0.01)


def test_perfect_generator_scores_the_judge_accuracy(tiny_judge: Judge, shapes) -> None:
    images, captions, _ = shapes
    prompt_set = pick_prompts(captions, len(captions))
    assert list(prompt_set.targets) == list(range(len(captions)))
    _, real_features = predict(tiny_judge, images)
    result = evaluate(real_generator(images, captions), tiny_judge, prompt_set, [0, 1, 2], real_features, batch=5)
    assert result["r_precision_top1"] == pytest.approx(accuracy(tiny_judge, images, np.arange(len(images))))
    assert result["diversity"] == pytest.approx(0.0, abs=1e-6)
    assert abs(result["fid_judge"]) < 1e-3  # every item once per seed: the real distribution exactly
    assert result["images"] == 3 * len(captions)


def test_gan_generator_is_deterministic_per_seed() -> None:
    from app.gan.networks import Generator

    torch.manual_seed(0)
    G = Generator(z_dim=8, c_dim=4, w_dim=16, img_resolution=16, img_channels=3, channel_base=64, channel_max=16).eval()
    fn = gan_generator(G, lambda texts: torch.tensor([[len(t), 1.0, -1.0, 0.0] for t in texts]), size=None)
    a = fn(["ab", "ab", "abc"], [1, 2, 1])
    b = fn(["ab"], [1])
    assert a.dtype == np.uint8 and a.shape == (3, 16, 16, 3)
    assert np.array_equal(a[0], b[0])
    assert not np.array_equal(a[0], a[1]) and not np.array_equal(a[0], a[2])


def test_conditional_truncation_at_zero_gives_the_prompt_centre() -> None:
    from app.gan.networks import Generator

    torch.manual_seed(0)
    G = Generator(z_dim=8, c_dim=4, w_dim=16, img_resolution=16, img_channels=3, channel_base=64, channel_max=16).eval()
    enc = lambda texts: torch.tensor([[len(t), 1.0, -1.0, 0.0] for t in texts])  # noqa: E731
    centre = gan_generator(G, enc, psi=0.0, size=None, conditional_truncation=16)
    a = centre(["ab", "ab", "abc"], [1, 2, 1])
    assert np.array_equal(a[0], a[1]) and not np.array_equal(a[0], a[2])  # seeds collapse, prompts do not
    full = gan_generator(G, enc, psi=1.0, size=None, conditional_truncation=16)(["ab"], [1])
    assert np.array_equal(full[0], gan_generator(G, enc, psi=1.0, size=None)(["ab"], [1])[0])


def test_cli_end_to_end_on_tiny_models(tmp_path: Path, tiny_judge: Judge, tiny_clip_dir: Path,
                                       tiny_diffusion_dir: Path) -> None:
    from app.train.gan import GanConfig, build_state, export_generator

    save_judge(tiny_judge, tmp_path / "judge")
    cfg = GanConfig(c_dim=32, z_dim=8, w_dim=16, g_channel_base=64, g_channel_max=8, d_channel_base=64,
                    d_channel_max=8)
    export_generator(build_state(cfg, torch.device("cpu")).G_ema, cfg, tmp_path / "gan", {})
    out = tmp_path / "eval.json"
    assert main(["--data", "shapes:24", "--judge", str(tmp_path / "judge"), "--gan", str(tmp_path / "gan"),
                 "--clip", str(tiny_clip_dir), "--diffusion", str(tiny_diffusion_dir), "--diffusion-steps", "2",
                 "--clip-guidance-scale", "100", "--guided-seeds", "1", "--diffusion-seeds", "2",
                 "--prompts", "4", "--seeds", "3", "--sweep", "0.5,1.0", "--sweep-seeds", "2", "--centre-samples", "8",
                 "--json", str(out)]) == 0
    res = json.loads(out.read_text())
    assert set(res["truncation_sweep"]) == set(res["truncation_sweep_conditional"]) == {"0.5", "1"}
    names = list(res["rows"])
    assert names[0].startswith("real")
    assert sum(n.startswith("diffusion") for n in names) == 2 and any("CLIP guidance" in n for n in names)
    assert {"GAN psi=1", "GAN psi=0.7", "GAN psi=0.7, conditional centre"} <= set(names)
    assert res["ms_ratio_diffusion_over_gan"] > 0
    for name, row in res["rows"].items():
        assert row["images"] == (4 if "CLIP" in name else 8 if name.startswith("diffusion") else 12)
        assert 0 <= row["r_precision_top1"] <= row["r_precision_top5"] <= 1
    # The studio finds its own default rows in this file, for exactly these weights.
    from app.measured import studio_figures

    assert res["argv"][:2] == ["--data", "shapes:24"]
    names = {"diffusion": str(tiny_diffusion_dir), "gan": str(tmp_path / "gan"), "clip": str(tiny_clip_dir)}
    shown = studio_figures(out, names)
    assert shown["gan"]["label"] == "GAN psi=0.7, conditional centre"
    assert shown["diffusion"]["label"].startswith("diffusion") and "CLIP" not in shown["diffusion"]["label"]
    assert shown["ms_ratio"] == pytest.approx(res["rows"][shown["diffusion"]["label"]]["ms_per_image"]
                                              / res["rows"]["GAN psi=0.7, conditional centre"]["ms_per_image"])
