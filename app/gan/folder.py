"""The converted-generator folder every GAN family is served from: `generator.safetensors` + `config.json`.

config.json holds `format` (which family reads it), `init_kwargs` (the family's constructor arguments) and
optional extras (`source`, `class_names`). The server reads only these two files, never a pickle.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

WEIGHTS_NAME = "generator.safetensors"
CONFIG_NAME = "config.json"


def write_folder(folder: str | Path, tensors: dict[str, torch.Tensor], config: dict[str, Any],
                 overwrite: bool = False) -> Path:
    """Write the two files atomically (tmp + rename); refuses to replace a conversion unless `overwrite`."""
    folder = Path(folder)
    weights, cfg_path = folder / WEIGHTS_NAME, folder / CONFIG_NAME
    if not overwrite and (weights.exists() or cfg_path.exists()):
        raise FileExistsError(f"{folder} already holds a converted generator (pass overwrite / --force)")
    folder.mkdir(parents=True, exist_ok=True)
    plain = {k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}
    tmp_w, tmp_c = weights.with_suffix(".tmp"), cfg_path.with_suffix(".tmp")
    save_file(plain, tmp_w, metadata={"format": "pt", "noisescope_format": str(config.get("format", ""))})
    tmp_c.write_text(json.dumps(config, indent=1) + "\n")
    os.replace(tmp_w, weights)
    os.replace(tmp_c, cfg_path)
    return folder


def read_config(path: str | Path) -> dict[str, Any]:
    """config.json of a converted folder (or of the folder holding a .safetensors file); {} when absent."""
    path = Path(path)
    cfg = (path if path.is_dir() else path.parent) / CONFIG_NAME
    return json.loads(cfg.read_text()) if cfg.is_file() else {}


def read_weights(path: str | Path) -> dict[str, torch.Tensor]:
    """The safetensors of a folder or file; refuses anything else (pickles are converted first)."""
    path = Path(path)
    weights = path / WEIGHTS_NAME if path.is_dir() else path
    if weights.suffix != ".safetensors":
        raise ValueError(f"{path}: only .safetensors generators are loaded; convert checkpoints first with "
                         "`python -m app convert-gan CHECKPOINT OUTDIR`")
    return load_file(weights)
