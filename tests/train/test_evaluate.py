"""Evaluation v2 and the judge's style head on cases with known answers, and the CLI end to end on tiny models."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from app.train.evaluate import (
    clip_r1,
    compositional_candidates,
    concept_prompts,
    draw_sweep_plot,
    evaluate,
    gan_generator,
    main,
    prompt_rows,
    real_generator,
    seed_runs,
)
from app.train.judge import (
    Judge,
    JudgeConfig,
    accuracy,
    augment,
    concept_labels,
    load_judge,
    lr_at,
    predict,
    save_judge,
    style_accuracy,
    train_judge,
    transfer,
)
from app.train.judge import main as judge_main

STYLES = ("noto", "twemoji", "fluent-flat", "fluent-color")


def test_seed_runs_groups_consecutive_seeds_of_one_prompt() -> None:
    assert seed_runs(["a", "a", "a", "b", "b", "a"], [0, 1, 3, 3, 4, 5]) == [("a", 0, 2), ("a", 3, 1), ("b", 3, 2),
                                                                            ("a", 5, 1)]


@pytest.fixture(scope="module")
def records():
    """Six concepts in four art sets (procedural shapes stand in for drawings); concept 5 is held out,
    concept 4 has only two styles."""
    from app.train.data import Records, load_records

    shapes = load_records("shapes:24")
    rows = [r for r in range(24) if not (16 <= r < 20 and r % 4 >= 2)]  # concept 4: two styles
    ids = [f"c{r // 4}" for r in rows]
    styles = [STYLES[r % 4] for r in rows]
    captions = [[f"shape {r // 4}", f"a shape {r // 4}", f"shape {r // 4}, {STYLES[r % 4]}"] for r in rows]
    split = ["heldout" if r // 4 == 5 else "train" for r in rows]
    return Records(shapes.images[rows], captions, ids, styles, split)


@pytest.fixture(scope="module")
def tiny_judge(records) -> Judge:
    return train_judge(records.images, records.ids, styles=records.styles,
                       style_rows=np.asarray(records.split) == "train", epochs=3, batch=8, log=lambda _: None)


@pytest.fixture(scope="module")
def data_dir(records, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from app.train.data import NPZ_NAME, save_npz

    folder = tmp_path_factory.mktemp("emoji")
    save_npz(folder / NPZ_NAME, records)
    items = [{"prompt": f"{c} {o}", "kind": "colour", "object": o, "attribute": c}
             for o in ("cat", "dog", "star") for c in ("red", "blue", "green")]
    items += [{"prompt": f"{o} with a hat", "kind": "accessory", "object": o, "attribute": "a hat"}
              for o in ("cat", "dog")]
    (folder / "compositional.json").write_text(json.dumps(items))
    return folder


def test_augment_is_seeded_and_stays_in_range() -> None:
    x = torch.rand(2, 3, 64, 64)
    a = augment(x, torch.Generator().manual_seed(0))
    b = augment(x, torch.Generator().manual_seed(0))
    assert torch.equal(a, b) and a.min() >= 0 and a.max() <= 1 and not torch.equal(a, x)


def test_judge_classes_are_concepts_over_all_splits_with_a_style_head(tiny_judge: Judge, records) -> None:
    assert tiny_judge.cfg.ids == [f"c{k}" for k in range(6)]  # the held-out concept is a class too
    assert tiny_judge.cfg.styles == sorted(STYLES)
    logits, feats, style_logits = predict(tiny_judge, records.images, with_styles=True)
    assert logits.shape == (len(records.ids), 6) and style_logits.shape == (len(records.ids), 4)
    assert torch.equal(predict(tiny_judge, records.images)[0], logits)  # the two-value form still works
    held = np.asarray(records.split) == "heldout"
    assert 0 <= style_accuracy(tiny_judge, records.images[held], np.asarray(records.styles)[held]) <= 1
    _, labels = concept_labels(records.ids)
    assert 0 <= accuracy(tiny_judge, records.images, labels, augmented=True) <= 1


def test_judge_round_trip_with_and_without_a_style_head(tmp_path: Path, tiny_judge: Judge, records) -> None:
    save_judge(tiny_judge, tmp_path / "judge", {"stats": {"x": 1}})
    loaded = load_judge(tmp_path / "judge")
    assert loaded.cfg.ids == tiny_judge.cfg.ids and loaded.cfg.styles == tiny_judge.cfg.styles
    got, want = predict(loaded, records.images, with_styles=True), predict(tiny_judge, records.images, with_styles=True)
    assert torch.allclose(got[0], want[0], atol=0.05, rtol=0.01)  # fp16 storage
    assert torch.allclose(got[2], want[2], atol=0.05, rtol=0.01)
    old = Judge(JudgeConfig(num_classes=3, ids=["a", "b", "c"]))  # an old judge.json has no "styles"
    save_judge(old, tmp_path / "old")
    raw = json.loads((tmp_path / "old" / "judge.json").read_text())
    raw.pop("styles")
    (tmp_path / "old" / "judge.json").write_text(json.dumps(raw))
    loaded_old = load_judge(tmp_path / "old")
    assert loaded_old.style_head is None and predict(loaded_old, records.images[:2], with_styles=True)[2] is None


def test_transfer_copies_the_trunk_and_matching_head_rows() -> None:
    torch.manual_seed(0)
    src = Judge(JudgeConfig(num_classes=3, channels=(4, 8), feature_dim=8, ids=["a", "b", "c"]))
    dst = transfer(src, JudgeConfig(num_classes=3, channels=(4, 8), feature_dim=8, ids=["c", "x", "a"],
                                    styles=["noto", "twemoji"]))
    assert torch.equal(dst.blocks[1][0].weight, src.blocks[1][0].weight)
    assert torch.equal(dst.head.weight[0], src.head.weight[2]) and torch.equal(dst.head.weight[2], src.head.weight[0])
    assert not torch.equal(dst.head.weight[1], src.head.weight[1]) and dst.style_head is not None
    with pytest.raises(ValueError):
        transfer(src, JudgeConfig(num_classes=1, channels=(4, 16), feature_dim=8, ids=["a"]))


def test_lr_schedule_warms_up_and_anneals() -> None:
    assert lr_at(0.0, 1.0) == pytest.approx(0.04)
    assert lr_at(0.1, 1.0) == pytest.approx(1.0)
    assert lr_at(1.0, 1.0) < 1e-3 and lr_at(0.5, 1.0) < lr_at(0.3, 1.0)


def test_judge_cli_fine_tunes_from_init_within_a_budget(tmp_path: Path, tiny_judge: Judge, data_dir: Path) -> None:
    save_judge(tiny_judge, tmp_path / "init")
    assert judge_main(["--data", str(data_dir), "--out", str(tmp_path / "judge"), "--init", str(tmp_path / "init"),
                       "--epochs", "2", "--batch", "8", "--minutes", "0.5", "--threads", "1"]) == 0
    cfg = json.loads((tmp_path / "judge" / "judge.json").read_text())
    assert cfg["styles"] == sorted(STYLES) and len(cfg["ids"]) == 6
    assert 0 <= cfg["style_accuracy_heldout"] <= 1 and cfg["stats"]["heldout_images"] == 4
    assert cfg["stats"]["init"] == str(tmp_path / "init") and cfg["stats"]["steps"] >= 1


def test_real_ceiling_cycles_styles_and_matches_the_data(tiny_judge: Judge, records) -> None:
    ps = concept_prompts(records.captions, records.ids, records.styles, records.split, tiny_judge.cfg.ids, "train", 10)
    assert ps.prompts == [f"shape {k}" for k in range(5)] and list(ps.n_styles) == [4, 4, 4, 4, 2]
    rows = prompt_rows(ps, records.ids)
    fn = real_generator(records.images, rows)
    assert np.array_equal(fn(["shape 4"] * 3, [0, 1, 2]), records.images[[16, 17, 16]])
    train = np.asarray(records.split) == "train"
    _, feats = predict(tiny_judge, records.images)
    result = evaluate(fn, tiny_judge, ps, [0, 1, 2, 3], feats[train], batch=5)
    _, labels = concept_labels(records.ids)
    # Each 4-style concept shows every row once; the 2-style concept shows each of its rows twice.
    shown = np.concatenate([rows[p][np.arange(4) % len(rows[p])] for p in ps.prompts])
    assert result["r_precision_top1"] == pytest.approx(float((predict(tiny_judge, records.images[shown])[0].argmax(1)
                                                              .numpy() == labels[shown]).mean()))
    assert result["precision"] == 1.0 and result["recall"] == 1.0  # real images are the real manifold
    assert result["style_coverage_prompts"] == 4 and 1 <= result["style_coverage"] <= 4
    assert result["images"] == 20 and result["diversity"] > 0


def test_compositional_candidates_prefer_hard_negatives() -> None:
    items = [{"prompt": f"{c} {o}", "kind": "colour", "object": o, "attribute": c}
             for o in ("cat", "dog", "star", "tree", "car") for c in ("red", "blue", "green", "pink")]
    cand = compositional_candidates(items)
    assert cand.shape == (20, 16) and list(cand[:, 0]) == list(range(20))
    assert all(len(set(row)) == 16 for row in cand)
    first = [items[j] for j in cand[0, 1:7]]  # 'red cat': 3 other colours of cat, 4 other objects in red
    assert sum(it["object"] == "cat" for it in first) == 3 and sum(it["attribute"] == "red" for it in first) == 3
    assert np.array_equal(cand, compositional_candidates(items))
    assert compositional_candidates(items[:5]).shape == (5, 5)


def test_clip_r1_counts_strict_wins() -> None:
    text = torch.eye(3)
    images = torch.tensor([[1.0, 0, 0], [0, 1.0, 0], [0.5, 0.5, 0]])
    cand = np.array([[0, 1, 2], [0, 1, 2], [0, 1, 2]])  # every image's own prompt is text 0
    assert clip_r1(images, text, cand) == pytest.approx(1 / 3)  # a tie is not a win


def test_sweep_plot_is_a_png_even_with_missing_values(tmp_path: Path) -> None:
    from PIL import Image

    sweep = {"0": {"r_precision_top1": 0.9, "precision": 0.95, "recall": 0.1, "diversity": 0.05,
                   "style_coverage": None},
             "1": {"r_precision_top1": 0.6, "precision": 0.7, "recall": 0.5, "diversity": 0.4, "style_coverage": 2.0},
             "0.5": {"r_precision_top1": 0.8, "precision": float("nan"), "recall": 0.3, "diversity": 0.2,
                     "style_coverage": 1.5}}
    path = draw_sweep_plot(sweep, tmp_path / "plot.png")
    with Image.open(path) as im:
        assert im.format == "PNG" and im.size[0] > 500 and len(np.unique(np.asarray(im.convert("L")))) > 2


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
                                       tiny_diffusion_dir: Path, data_dir: Path) -> None:
    from app.train.gan import GanConfig, build_state, export_generator

    save_judge(tiny_judge, tmp_path / "judge")
    cfg = GanConfig(c_dim=32, z_dim=8, w_dim=16, g_channel_base=64, g_channel_max=8, d_channel_base=64,
                    d_channel_max=8)
    export_generator(build_state(cfg, torch.device("cpu")).G_ema, cfg, tmp_path / "gan", {})
    out = tmp_path / "eval.json"
    assert main(["--data", str(data_dir), "--judge", str(tmp_path / "judge"), "--gan", str(tmp_path / "gan"),
                 "--clip", str(tiny_clip_dir), "--diffusion", str(tiny_diffusion_dir), "--diffusion-steps", "2",
                 "--clip-guidance-scale", "100", "--guided-seeds", "1", "--diffusion-seeds", "2",
                 "--prompts", "4", "--heldout-prompts", "2", "--compositional-prompts", "3", "--seeds", "3",
                 "--sweep", "0,0.5,1.5", "--sweep-seeds", "2", "--centre-samples", "8",
                 "--json", str(out), "--plot", str(tmp_path / "sweep.png")]) == 0
    res = json.loads(out.read_text())
    assert set(res["truncation_sweep"]) == set(res["truncation_sweep_conditional"]) == {"0", "0.5", "1.5"}
    assert all(set(v) == {"r_precision_top1", "precision", "recall", "diversity", "style_coverage"}
               for v in res["truncation_sweep_conditional"].values())
    assert res["truncation_plot"] == "sweep.png" and (tmp_path / "sweep.png").read_bytes()[:4] == b"\x89PNG"
    assert 0 <= res["style_classifier_accuracy_heldout"] <= 1
    names = list(res["rows"])
    assert names[0].startswith("real")
    assert sum(n.startswith("diffusion") for n in names) == 2 and any("CLIP guidance" in n for n in names)
    assert {"GAN psi=1", "GAN psi=0.7", "GAN psi=0.7, conditional centre"} <= set(names)
    assert res["ms_ratio_diffusion_over_gan"] > 0
    keys = {"r_precision_top1", "r_precision_top5", "fid_judge", "diversity", "precision", "recall", "style_coverage",
            "style_coverage_prompts", "ms_per_image", "images"}
    for name, row in res["rows"].items():
        assert set(row) == keys
        assert row["images"] == 4 * (1 if "CLIP" in name else 2 if name.startswith("diffusion") else 3)
        assert 0 <= row["r_precision_top1"] <= row["r_precision_top5"] <= 1
        assert row["style_coverage_prompts"] == 3  # concept 4 has two styles only
    assert list(res["heldout"]) == names and all(set(r) == keys for r in res["heldout"].values())
    assert res["heldout"]["real images (ceiling)"]["images"] == 3  # one held-out concept exists
    assert set(res["compositional"]) == set(names[1:])
    for name, row in res["compositional"].items():
        assert set(row) == {"clip_r1_16", "diversity", "images"} and 0 <= row["clip_r1_16"] <= 1
        assert row["images"] == 3 * (1 if "CLIP" in name else 2 if name.startswith("diffusion") else 3)
    # The studio finds its own default rows in this file, for exactly these weights.
    from app.measured import studio_figures

    assert res["argv"][:2] == ["--data", str(data_dir)]
    names = {"diffusion": str(tiny_diffusion_dir), "gan": str(tmp_path / "gan"), "clip": str(tiny_clip_dir)}
    shown = studio_figures(out, names)
    assert shown["gan"]["label"] == "GAN psi=0.7, conditional centre"
    assert shown["diffusion"]["label"].startswith("diffusion") and "CLIP" not in shown["diffusion"]["label"]
    assert shown["gan"]["heldout"] is not None and shown["gan"]["compositional"] is not None
    assert shown["truncation_plot"] and len(shown["truncation"]) == 3
    assert shown["ms_ratio"] == pytest.approx(res["rows"][shown["diffusion"]["label"]]["ms_per_image"]
                                              / res["rows"]["GAN psi=0.7, conditional centre"]["ms_per_image"])


def test_merge_joins_engines_of_the_same_prompts_and_refuses_others() -> None:
    from app.train.evaluate import merge_results

    base = {"data": "d", "prompts": 4, "seeds": 2, "heldout_prompts": 1, "compositional_prompts": 1,
            "judge_accuracy_real": 0.5}
    a = {**base, "rows": {"real images (ceiling)": {"diversity": 0.4}, "diffusion x": {"ms_per_image": 100.0}},
         "studio_rows": {"diffusion": "diffusion x"}, "models": {"diffusion": {"f": [1, "h"]}, "gan": None}}
    b = {**base, "rows": {"real images (ceiling)": {"diversity": 0.4}, "GAN psi=1": {"ms_per_image": 20.0}},
         "studio_rows": {"gan": "GAN psi=1"}, "models": {"diffusion": None, "gan": {"g": [2, "k"]}},
         "truncation_plot": "t.png"}
    merged = merge_results([a, b])
    assert set(merged["rows"]) == {"real images (ceiling)", "diffusion x", "GAN psi=1"}
    assert merged["studio_rows"] == {"diffusion": "diffusion x", "gan": "GAN psi=1"}
    assert merged["models"] == {"diffusion": {"f": [1, "h"]}, "gan": {"g": [2, "k"]}}
    assert merged["ms_ratio_diffusion_over_gan"] == 5.0 and merged["truncation_plot"] == "t.png"
    with pytest.raises(ValueError, match="seeds"):
        merge_results([a, {**b, "seeds": 8}])
