"""The style CNN on a tiny set whose four 'art styles' are drawn traits, and its use by the evaluation."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from app.train.evaluate import concept_prompts
from app.train.evaluate import main as evaluate_main
from app.train.judge import Judge, JudgeConfig, save_judge
from app.train.style_classifier import (
    CONFIG_NAME,
    WEIGHTS_NAME,
    StyleClassifier,
    StyleConfig,
    augment_styles,
    fit,
    load_style_classifier,
    parameter_count,
    predict_styles,
    save_style_classifier,
    style_accuracies,
    train_style_classifier,
)
from app.train.style_classifier import main as style_main

STYLES = ("flat", "outlined", "shaded", "dotted")
TINY = (4, 8, 8)  # channels small enough to train in well under a second


def draw(image: np.ndarray, style: str) -> np.ndarray:
    """One shapes image redrawn with a style trait: as is, a black frame, a vertical shade, or a dot grid."""
    x = image.astype(np.float32)
    if style == "outlined":
        x[:3], x[-3:], x[:, :3], x[:, -3:] = 0, 0, 0, 0
    elif style == "shaded":
        x *= np.linspace(0.4, 1.0, x.shape[0])[:, None, None]
    elif style == "dotted":
        x[::4, ::4] = 0
    return x.clip(0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def records():
    """Eight concepts, each in the four drawn styles; concept 7 is held out."""
    from app.train.data import Records, load_records

    shapes = load_records("shapes:8")
    rows = [(c, s) for c in range(8) for s in STYLES]
    images = np.stack([draw(shapes.images[c], s) for c, s in rows])
    return Records(images, [[f"shape {c}"] for c, _ in rows], [f"c{c}" for c, _ in rows], [s for _, s in rows],
                   ["heldout" if c == 7 else "train" for c, _ in rows])


@pytest.fixture(scope="module")
def data_dir(records, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from app.train.data import NPZ_NAME, save_npz

    folder = tmp_path_factory.mktemp("styles")
    save_npz(folder / NPZ_NAME, records)
    return folder


def test_default_network_is_small_and_names_every_style() -> None:
    model = StyleClassifier(StyleConfig(styles=list(STYLES)))
    assert 100_000 <= parameter_count(model) <= 300_000
    assert model(torch.rand(2, 3, 64, 64)).shape == (2, 4)
    assert model.eval()(torch.rand(1, 3, 32, 32)).shape == (1, 4)  # other sizes are resized to 64


def test_augmentation_is_seeded_stays_in_range_and_pads_with_white() -> None:
    x = torch.rand(3, 3, 64, 64)
    a = augment_styles(x, torch.Generator().manual_seed(0))
    b = augment_styles(x, torch.Generator().manual_seed(0))
    assert torch.equal(a, b) and a.shape == x.shape and 0 <= a.min() and a.max() <= 1
    white = augment_styles(torch.ones(4, 3, 64, 64), torch.Generator().manual_seed(1))
    assert torch.allclose(white, torch.ones_like(white))


def test_fit_save_load_and_predict(tmp_path: Path, records) -> None:
    record: dict = {}
    model = fit(records.images, records.styles, cfg=StyleConfig(channels=TINY), epochs=2, batch=16,
                log=lambda _: None, record=record)
    assert model.cfg.styles == sorted(STYLES) and record["steps"] == 4 and record["epochs_run"] == 2
    calls = predict_styles(model, records.images)
    assert calls.dtype == torch.long and calls.shape == (len(records.ids),) and int(calls.max()) < 4
    assert predict_styles(model, records.images[:0]).shape == (0,)
    acc = style_accuracies(model, records.images, records.styles)
    assert 0 <= acc["accuracy"] <= 1 and set(acc["per_style"]) == set(STYLES)
    assert load_style_classifier(tmp_path / "none") is None
    save_style_classifier(model, tmp_path / "style", {"accuracy_heldout": 0.5})
    loaded = load_style_classifier(tmp_path / "style")
    assert loaded is not None and loaded.cfg == model.cfg
    assert torch.equal(predict_styles(loaded, records.images), calls)
    assert json.loads((tmp_path / "style" / CONFIG_NAME).read_text())["accuracy_heldout"] == 0.5
    (tmp_path / "style" / WEIGHTS_NAME).unlink()
    assert load_style_classifier(tmp_path / "style") is None  # half a classifier is none


def test_cli_trains_on_the_train_split_and_scores_the_heldout_concepts(tmp_path: Path, data_dir: Path) -> None:
    out = tmp_path / "style"
    assert style_main(["--data", str(data_dir), "--out", str(out), "--minutes", "0.2", "--epochs", "2",
                       "--batch", "16", "--channels", ",".join(map(str, TINY)), "--threads", "1"]) == 0
    cfg = json.loads((out / CONFIG_NAME).read_text())
    assert cfg["styles"] == sorted(STYLES) and cfg["channels"] == list(TINY)
    assert cfg["images_train"] == 28 and cfg["images_heldout"] == 4 and cfg["steps"] == 4
    assert 0 <= cfg["accuracy_heldout"] <= 1 and set(cfg["accuracy_heldout_per_style"]) == set(STYLES)
    assert cfg["command"][:3] == ["python", "-m", "app.train.style_classifier"]
    assert cfg["parameters"] == parameter_count(load_style_classifier(out))


def test_a_short_run_learns_the_drawn_styles(tmp_path: Path, data_dir: Path) -> None:
    figures = train_style_classifier(data_dir, tmp_path / "style", minutes=None, threads=1, epochs=40, batch=8,
                                     channels=(8, 16, 16), command=["test"], log=lambda _: None)
    assert figures["accuracy_train_sample"] >= 0.75  # 140 steps on 28 images: the traits are easy


def test_evaluation_uses_the_style_cnn_when_its_files_are_there(tmp_path: Path, records, data_dir: Path) -> None:
    judge = Judge(JudgeConfig(num_classes=8, channels=(4, 8), feature_dim=8, ids=[f"c{k}" for k in range(8)],
                              styles=sorted(STYLES)))
    save_judge(judge, tmp_path / "judge")
    args = ["--data", str(data_dir), "--judge", str(tmp_path / "judge"), "--gan", "", "--diffusion", "", "--clip", "",
            "--prompts", "4", "--heldout-prompts", "1", "--compositional-prompts", "0", "--seeds", "4", "--sweep", ""]

    def run(*extra: str) -> dict:
        out = tmp_path / "eval.json"
        assert evaluate_main([*args, "--json", str(out), *extra]) == 0
        return json.loads(out.read_text())

    head = run()
    assert head["style_classifier"] == "judge head" and 0 <= head["style_classifier_accuracy_heldout"] <= 1

    model = fit(records.images, records.styles, cfg=StyleConfig(channels=TINY), epochs=1, batch=32, log=lambda _: None)
    save_style_classifier(model, tmp_path / "style")
    held = np.asarray(records.split) == "heldout"
    want = style_accuracies(model, records.images[held], np.asarray(records.styles)[held])["accuracy"]
    cnn = run("--style-classifier", str(tmp_path / "style"))
    assert cnn["style_classifier"] == "style CNN" and cnn["style_classifier_styles"] == sorted(STYLES)
    assert cnn["style_classifier_accuracy_heldout"] == pytest.approx(want)
    real = cnn["rows"]["real images (ceiling)"]
    chosen = concept_prompts(records.captions, records.ids, records.styles, records.split, judge.cfg.ids, "train", 4)
    calls = predict_styles(model, records.images).view(8, 4)  # seeds 0-3 of the ceiling are a concept's 4 rows
    assert real["style_coverage_prompts"] == 4
    assert real["style_coverage"] == pytest.approx(np.mean([len(set(calls[int(c[1:])].tolist()))
                                                            for c in chosen.concepts]))

    save_style_classifier(model, tmp_path / "judge")  # by default the judge's folder is looked in
    assert run()["style_classifier"] == "style CNN"
    assert run("--style-classifier", "")["style_classifier"] == "judge head"
