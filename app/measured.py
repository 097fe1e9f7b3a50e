"""Figures that `python -m app evaluate` measured offline, for the studio to show beside its live ones.

The evaluation records which weights it ran (a manifest of every *.safetensors file: size and
sha256). The studio shows a row only when the folder it has loaded holds exactly those files, so a
figure is never shown for weights it was not measured on (a retrained GAN, a real checkpoint).
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

Manifest = dict[str, list[Any]]  # path inside the model folder -> [bytes, sha256 hex]
FIGURES = ("r_precision_top1", "r_precision_top5", "fid_judge", "diversity", "ms_per_image", "images",
           "precision", "recall", "style_coverage", "style_coverage_prompts")  # the last four: evaluation v2
COMPOSITIONAL = ("clip_r1_16", "diversity", "images")
SWEEP = ("r_precision_top1", "precision", "recall", "diversity", "style_coverage")
PLOT_URL = "/api/measured/truncation.png"  # routes.truncation_plot serves the one PNG the evaluation names
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# Which loaded models each engine's figures depend on (the GAN's c is the CLIP text embedding).
DEPENDS_ON = {"diffusion": ("diffusion",), "gan": ("gan", "clip")}


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def _weight_files(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*.safetensors") if p.is_file())


def weights_manifest(name: str | None) -> Manifest | None:
    """Size and sha256 of every *.safetensors file under a local model folder; None for a hub id,
    an open_clip name, or a folder without safetensors."""
    root = Path(name) if name else None
    if root is None or not root.is_dir():
        return None
    files = _weight_files(root)
    return {f: [(root / f).stat().st_size, sha256_file(root / f)] for f in files} or None


def same_weights(recorded: Manifest | None, name: str | None) -> bool:
    """Whether the folder `name` holds exactly the recorded files; sizes are compared before any hashing."""
    root = Path(name) if name else None
    if not recorded or root is None or not root.is_dir():
        return False
    files = _weight_files(root)
    if files != sorted(recorded) or any((root / f).stat().st_size != recorded[f][0] for f in files):
        return False
    return all(sha256_file(root / f) == recorded[f][1] for f in files)


def _finite(value: Any) -> Any:
    """JSON has no NaN: a metric that does not apply (diversity of one seed) becomes null."""
    return None if isinstance(value, float) and not math.isfinite(value) else value


def _pick(row: Any, keys: tuple[str, ...]) -> dict[str, Any] | None:
    return {k: _finite(row.get(k)) for k in keys} if isinstance(row, dict) else None


def _sweep(sweep: Any) -> list[dict[str, Any]] | None:
    """{"0.7": {...}, ...} -> [{"psi": 0.7, ...}, ...] in increasing psi; None when absent or malformed."""
    if not isinstance(sweep, dict):
        return None
    try:
        points = sorted((float(psi), row) for psi, row in sweep.items() if isinstance(row, dict))
    except ValueError:
        return None
    return [{"psi": psi, **_pick(row, SWEEP)} for psi, row in points if math.isfinite(psi)] or None


def truncation_plot_path(path: Path | None) -> Path | None:
    """The PNG the evaluation file names as `truncation_plot`, if it is a PNG file inside the file's own
    folder (symlinks resolved, so no name can lead outside it); None otherwise."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8")) if path else None
        name = data.get("truncation_plot") if isinstance(data, dict) else None
        if not isinstance(name, str) or not name.lower().endswith(".png"):
            return None
        folder = Path(path).resolve().parent
        plot = (folder / name).resolve()
        if not plot.is_relative_to(folder) or not plot.is_file():
            return None
        with open(plot, "rb") as f:
            return plot if f.read(len(PNG_SIGNATURE)) == PNG_SIGNATURE else None
    except (OSError, ValueError):
        return None


def studio_figures(path: Path | None, names: Mapping[str, str | None]) -> dict[str, Any]:
    """The evaluation's rows for what the studio runs by default, where they were measured on the
    loaded weights: {"available": True, "diffusion": {...}, "gan": {...}, ...}, or
    {"available": False, "reason": ...} so the page can say why it shows none.

    Each engine's block carries its row's FIGURES (None where the file lacks one: older evaluations)
    and, from evaluation v2, "heldout" (the same figures on concepts never trained on) and
    "compositional" (COMPOSITIONAL), each None when absent. The GAN's truncation sweep ("truncation",
    a list in increasing psi) and the URL of its plot ("truncation_plot") come only with the GAN's
    weights, the plot only when its PNG lies beside the evaluation file."""
    if path is None or not Path(path).is_file():
        return {"available": False, "reason": "no evaluation file (python -m app evaluate writes one)"}
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        rows, chosen, recorded = data["rows"], data.get("studio_rows", {}), data.get("models", {})
        if not all(isinstance(v, dict) for v in (rows, chosen, recorded)):
            raise TypeError
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return {"available": False, "reason": f"{Path(path).name} is not an evaluation file"}
    out: dict[str, Any] = {"available": False, "source": Path(path).name, "prompts": data.get("prompts"),
                           "seeds": data.get("seeds"), "device": data.get("device"),
                           "judge_accuracy_real": _finite(data.get("judge_accuracy_real")),
                           "style_classifier_accuracy_heldout": _finite(data.get("style_classifier_accuracy_heldout"))}
    heldout, compositional = data.get("heldout") or {}, data.get("compositional") or {}
    ceiling = rows.get("real images (ceiling)")
    if ceiling:
        out["ceiling"] = {k: _finite(ceiling.get(k)) for k in ("r_precision_top1", "r_precision_top5")}
    for engine, deps in DEPENDS_ON.items():
        label = chosen.get(engine)
        if isinstance(rows.get(label), dict) and all(same_weights(recorded.get(k), names.get(k)) for k in deps):
            out[engine] = {"label": label, **_pick(rows[label], FIGURES),
                           "heldout": _pick(heldout.get(label), FIGURES) if isinstance(heldout, dict) else None,
                           "compositional": (_pick(compositional.get(label), COMPOSITIONAL)
                                             if isinstance(compositional, dict) else None)}
    if "gan" in out:
        out["truncation"] = _sweep(data.get("truncation_sweep_conditional"))
        out["truncation_plot"] = PLOT_URL if truncation_plot_path(path) else None
    if "diffusion" in out and "gan" in out and out["gan"]["ms_per_image"]:
        out["ms_ratio"] = out["diffusion"]["ms_per_image"] / out["gan"]["ms_per_image"]
    out["available"] = "diffusion" in out or "gan" in out
    if not out["available"]:
        out["reason"] = (f"{Path(path).name} was measured on other weights than the ones loaded" if recorded else
                         f"{Path(path).name} does not say which weights it measured (python -m app evaluate "
                         "records them)")
    return out
