"""Offline evaluation figures reach the page only beside the weights they were measured on."""

from __future__ import annotations

import json
from pathlib import Path

from app.measured import same_weights, studio_figures, weights_manifest


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
