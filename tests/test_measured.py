"""Offline evaluation figures reach the page only beside the weights they were measured on."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

from fastapi import FastAPI
from fastapi.testclient import TestClient

from app.api import routes
from app.measured import PLOT_URL, same_weights, studio_figures, truncation_plot_path, weights_manifest
from app.settings import Settings

PNG = b"\x89PNG\r\n\x1a\n" + b"\0" * 16  # the signature is all the route checks


def model_folder(root: Path, payload: bytes) -> Path:
    (root / "unet").mkdir(parents=True)
    (root / "unet" / "w.safetensors").write_bytes(payload)
    (root / "model_index.json").write_text("{}")  # not weights: not part of the manifest
    return root


def write_eval(path: Path, models: dict, rows: dict | None = None) -> Path:
    rows = rows or {
        "real images (ceiling)": {"r_precision_top1": 0.9, "r_precision_top5": 1.0},
        "diffusion plain": {"r_precision_top1": 0.5, "fid_judge": 70.0, "diversity": 0.1, "ms_per_image": 300.0},
        "diffusion guided": {"r_precision_top1": 0.4, "diversity": float("nan"), "ms_per_image": 2000.0},
        "GAN centre": {"r_precision_top1": 0.6, "fid_judge": 60.0, "diversity": float("nan"), "ms_per_image": 30.0},
    }
    path.write_text(json.dumps({"prompts": 4, "seeds": 2, "device": "cpu", "judge_accuracy_real": 0.9,
                                "models": models, "rows": rows,
                                "studio_rows": {"diffusion": "diffusion plain", "gan": "GAN centre"}}))
    return path


def test_manifest_lists_weight_files_only(tmp_path: Path) -> None:
    folder = model_folder(tmp_path / "m", b"abc")
    manifest = weights_manifest(str(folder))
    assert list(manifest) == ["unet/w.safetensors"] and manifest["unet/w.safetensors"][0] == 3
    assert weights_manifest("stable-diffusion-v1-5/stable-diffusion-v1-5") is None  # a hub id
    assert weights_manifest(None) is None


def test_same_weights_needs_the_same_files_sizes_and_bytes(tmp_path: Path) -> None:
    folder = model_folder(tmp_path / "m", b"abc")
    recorded = weights_manifest(str(folder))
    assert same_weights(recorded, str(folder))
    (folder / "unet" / "w.safetensors").write_bytes(b"abd")  # same size, other bytes
    assert not same_weights(recorded, str(folder))
    (folder / "unet" / "w.safetensors").write_bytes(b"abcd")
    assert not same_weights(recorded, str(folder))
    (folder / "unet" / "w.safetensors").write_bytes(b"abc")
    (folder / "extra.safetensors").write_bytes(b"")
    assert not same_weights(recorded, str(folder))
    assert not same_weights(None, str(folder)) and not same_weights(recorded, None)


def test_studio_figures_match_per_engine(tmp_path: Path) -> None:
    diffusion = model_folder(tmp_path / "d", b"unet")
    gan, clip = model_folder(tmp_path / "g", b"gan"), model_folder(tmp_path / "c", b"clip")
    recorded = {"diffusion": weights_manifest(str(diffusion)), "gan": weights_manifest(str(gan)),
                "clip": weights_manifest(str(clip))}
    path = write_eval(tmp_path / "eval.json", recorded)
    names = {"diffusion": str(diffusion), "gan": str(gan), "clip": str(clip)}

    both = studio_figures(path, names)
    assert both["available"] and both["ceiling"]["r_precision_top1"] == 0.9
    assert both["diffusion"]["label"] == "diffusion plain" and both["diffusion"]["fid_judge"] == 70.0
    assert both["gan"]["diversity"] is None  # NaN (one seed) is not JSON
    assert both["ms_ratio"] == 10.0
    json.dumps(both, allow_nan=False)

    other_clip = model_folder(tmp_path / "c2", b"clip2")
    diffusion_only = studio_figures(path, {**names, "clip": str(other_clip)})  # the GAN's c would differ
    assert "diffusion" in diffusion_only and "gan" not in diffusion_only and "ms_ratio" not in diffusion_only

    none = studio_figures(path, {"diffusion": "org/sd", "gan": None, "clip": "openai/clip"})
    assert not none["available"] and "other weights" in none["reason"]
    older = write_eval(tmp_path / "older.json", {})  # written before evaluations recorded their weights
    assert "does not say which weights" in studio_figures(older, names)["reason"]


def test_missing_or_broken_file_says_why(tmp_path: Path) -> None:
    assert "no evaluation file" in studio_figures(tmp_path / "nope.json", {})["reason"]
    assert "no evaluation file" in studio_figures(None, {})["reason"]
    (tmp_path / "bad.json").write_text("{not json")
    assert "not an evaluation file" in studio_figures(tmp_path / "bad.json", {})["reason"]
    (tmp_path / "list.json").write_text("[1, 2]")
    assert "not an evaluation file" in studio_figures(tmp_path / "list.json", {})["reason"]


def engines(root: Path) -> tuple[dict, dict]:
    """Tiny diffusion, GAN and CLIP folders: (their manifests, the names the studio would load)."""
    folders = {k: model_folder(root / k, k.encode()) for k in ("diffusion", "gan", "clip")}
    return {k: weights_manifest(str(v)) for k, v in folders.items()}, {k: str(v) for k, v in folders.items()}


def write_v2(path: Path, models: dict, plot: str | None = "truncation_sweep.png") -> Path:
    """An evaluation v2 file: per-row precision / recall / style coverage, held-out and compositional
    rows, the style classifier's held-out accuracy, the conditional truncation sweep and its plot."""
    v2 = {"precision": 0.6, "recall": 0.3, "style_coverage": 2.5, "style_coverage_prompts": 12}
    rows = {"real images (ceiling)": {"r_precision_top1": 0.9, "r_precision_top5": 1.0},
            "diffusion plain": {"r_precision_top1": 0.5, "diversity": 0.1, "ms_per_image": 300.0, **v2},
            "GAN centre": {"r_precision_top1": 0.6, "ms_per_image": 30.0, **v2, "recall": float("nan")}}
    sweep = {f"{psi:g}": {"r_precision_top1": 0.7 - psi / 10, "precision": 0.9 - psi / 5, "recall": psi / 3,
                          "diversity": psi / 10, "style_coverage": 1 + psi, "fid_judge": 50.0}
             for psi in (1.5, 0.0, 0.7, 1.0)}
    data = {"prompts": 4, "seeds": 8, "device": "cpu", "models": models, "rows": rows,
            "studio_rows": {"diffusion": "diffusion plain", "gan": "GAN centre"},
            "heldout": {"diffusion plain": {"r_precision_top1": 0.2, "precision": 0.4},
                        "GAN centre": {"r_precision_top1": 0.1, "recall": float("inf")}},
            "compositional": {"GAN centre": {"clip_r1_16": 0.375, "diversity": 0.05, "images": 64}},
            "style_classifier_accuracy_heldout": 0.93, "truncation_sweep_conditional": sweep}
    if plot is not None:
        data["truncation_plot"] = plot
    path.write_text(json.dumps(data))
    return path


def test_evaluation_v2_figures_reach_the_page_for_matching_weights(tmp_path: Path) -> None:
    recorded, names = engines(tmp_path)
    path = write_v2(tmp_path / "eval.json", recorded)
    (tmp_path / "truncation_sweep.png").write_bytes(PNG)

    both = studio_figures(path, names)
    json.dumps(both, allow_nan=False)
    d, g = both["diffusion"], both["gan"]
    assert (d["precision"], d["recall"], d["style_coverage"], d["style_coverage_prompts"]) == (0.6, 0.3, 2.5, 12)
    assert g["recall"] is None  # NaN is not JSON
    assert d["heldout"]["r_precision_top1"] == 0.2 and d["heldout"]["recall"] is None
    assert g["heldout"]["recall"] is None  # inf neither
    assert d["compositional"] is None and g["compositional"] == {"clip_r1_16": 0.375, "diversity": 0.05, "images": 64}
    assert both["style_classifier_accuracy_heldout"] == 0.93
    assert [p["psi"] for p in both["truncation"]] == [0.0, 0.7, 1.0, 1.5]
    assert set(both["truncation"][0]) == {"psi", "r_precision_top1", "precision", "recall", "diversity",
                                          "style_coverage"}
    assert both["truncation_plot"] == PLOT_URL

    other_gan = model_folder(tmp_path / "gan2", b"GAN")  # same size, other bytes: a retrained GAN
    diffusion_only = studio_figures(path, {**names, "gan": str(other_gan)})
    assert diffusion_only["diffusion"]["precision"] == 0.6 and "gan" not in diffusion_only
    assert "truncation" not in diffusion_only and "truncation_plot" not in diffusion_only

    (tmp_path / "truncation_sweep.png").unlink()  # named, but not beside the file
    missing = studio_figures(path, names)
    assert missing["truncation_plot"] is None and missing["truncation"]


def test_older_files_lack_the_v2_figures_but_still_work(tmp_path: Path) -> None:
    recorded, names = engines(tmp_path)
    old = studio_figures(write_eval(tmp_path / "old.json", recorded), names)
    assert old["available"] and old["gan"]["r_precision_top1"] == 0.6
    assert old["gan"]["precision"] is None and old["gan"]["heldout"] is None and old["gan"]["compositional"] is None
    assert old["style_classifier_accuracy_heldout"] is None
    assert old["truncation"] is None and old["truncation_plot"] is None
    json.dumps(old, allow_nan=False)


def test_plot_path_stays_inside_the_evaluation_folder(tmp_path: Path) -> None:
    recorded, _ = engines(tmp_path)
    folder = tmp_path / "evals"
    folder.mkdir()
    (folder / "plot.png").write_bytes(PNG)
    (tmp_path / "outside.png").write_bytes(PNG)
    (folder / "notpng.png").write_bytes(b"GIF89a")
    (folder / "link.png").symlink_to(tmp_path / "outside.png")
    assert truncation_plot_path(write_v2(folder / "e.json", recorded, "plot.png")) == (folder / "plot.png").resolve()
    for name in ("../outside.png", str(tmp_path / "outside.png"), "link.png", "notpng.png", "e.json", "nope.png", None):
        assert truncation_plot_path(write_v2(folder / "e.json", recorded, name)) is None, name
    assert truncation_plot_path(None) is None and truncation_plot_path(folder / "absent.json") is None


def client(evaluation: Path, measured: dict) -> TestClient:
    """Only the /api routes, with a stand-in studio: the plot route reads nothing else."""
    app = FastAPI()
    app.include_router(routes.api)
    app.state.settings = Settings(evaluation=evaluation)
    app.state.studio = SimpleNamespace(measured=measured)
    return TestClient(app)


def test_route_serves_the_named_png_and_nothing_else(tmp_path: Path) -> None:
    recorded, names = engines(tmp_path)
    folder = tmp_path / "evals"
    folder.mkdir()
    (folder / "truncation_sweep.png").write_bytes(PNG)
    (tmp_path / "secret.png").write_bytes(PNG + b"secret")
    path = write_v2(folder / "eval.json", recorded)
    measured = studio_figures(path, names)

    got = client(path, measured).get(PLOT_URL)
    assert got.status_code == 200 and got.headers["content-type"] == "image/png" and got.content == PNG
    assert client(path, {**measured, "truncation_plot": None}).get(PLOT_URL).status_code == 404  # other GAN

    write_v2(path, recorded, "../secret.png")  # the file itself names something outside its folder
    assert client(path, measured).get(PLOT_URL).status_code == 404
    c = client(path, measured)
    for url in ("/api/measured/../../secret.png", "/api/measured/%2e%2e%2fsecret.png", "/api/measured/secret.png"):
        assert c.get(url).status_code == 404, url
