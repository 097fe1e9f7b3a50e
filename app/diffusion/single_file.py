"""Single-file checkpoints in the original layout (CompVis / Stability `ldm` and `sgm` keys, as
AUTOMATIC1111, ComfyUI and model sites share them), read with no hub.

The family comes from the keys: `cond_stage_model.transformer.*` (CLIP ViT-L) is SD 1.x,
`cond_stage_model.model.*` (OpenCLIP ViT-H) SD 2.x, `conditioner.embedders.{0,1}.*` (both
encoders) SDXL base. The diffusers-format architecture configs of those full-size models ship
in app/diffusion/configs/ (JSON, no weights) with the CLIP vocabulary; diffusers'
`from_single_file(config=<that folder>, local_files_only=True)` converts the keys.

epsilon or v: a `v_pred` key in the file, or an A1111-style `<name>.yaml` beside it saying
`parameterization: "v"`, means v; SD 2.x files with neither are told apart by the spread of one
weight (v-trained 768 px SD 2 models have std > 0.09 in the last output block's first norm bias,
the check ComfyUI uses), and default to v without it. Pickles (`.ckpt`) are read tensors-only
(`torch.load(weights_only=True)`): one that needs anything else is refused, never executed.
"""

from __future__ import annotations

import json
import pickle
import re
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from app.diffusion.clip_bpe import write_clip_tokenizer_files
from app.diffusion.families import ModelNotFound

CONFIGS = Path(__file__).parent / "configs"
SUFFIXES = (".safetensors", ".ckpt", ".pt", ".pth")
UNET = "model.diffusion_model."
FIRST_CONV = UNET + "input_blocks.0.0.weight"
SD2_V_PROBE = UNET + "output_blocks.11.1.transformer_blocks.0.norm1.bias"
PIPELINES = {"sd1": "StableDiffusionPipeline", "sd2": "StableDiffusionPipeline", "sdxl": "StableDiffusionXLPipeline"}
FAMILY_NAMES = {"sd1": "SD 1.x", "sd2": "SD 2.x", "sdxl": "SDXL"}


@dataclass(frozen=True)
class Checkpoint:
    """What the loader needs to know of a file before reading its weights."""

    config: str  # a folder of app/diffusion/configs: sd1, sd2, sdxl
    prediction_type: str  # epsilon | v_prediction
    in_channels: int  # 4, or 9 for an inpainting UNet


def is_single_file(name: str | Path) -> bool:
    return Path(name).suffix.lower() in SUFFIXES


def _has(keys: set[str], prefix: str) -> bool:
    return any(k.startswith(prefix) for k in keys)


def family_config(keys: set[str]) -> str:
    """sd1 / sd2 / sdxl from the key set; ValueError for anything else, saying what it is when known."""
    if _has(keys, "conditioner.embedders.1.model.") and _has(keys, "conditioner.embedders.0.transformer."):
        return "sdxl"
    if _has(keys, "conditioner.embedders.0.model."):
        raise ValueError("this is an SDXL refiner checkpoint (one OpenCLIP encoder); the studio runs base models")
    if _has(keys, "cond_stage_model.model."):
        return "sd2"
    if _has(keys, "cond_stage_model.transformer."):
        return "sd1"
    if _has(keys, UNET + "joint_blocks.") or _has(keys, "joint_blocks.") or _has(keys, "double_blocks."):
        raise ValueError("this is an SD3 / FLUX transformer checkpoint, not an SD 1.x / 2.x / SDXL one")
    if _has(keys, UNET) or _has(keys, "down_blocks."):
        raise ValueError("this file holds a denoiser without its text encoders; give a full checkpoint "
                         "(UNet, VAE and text encoders in one file) or a diffusers folder")
    raise ValueError("this is not a Stable Diffusion checkpoint in the original layout")


def prediction_type(config: str, keys: set[str], path: Path, read: Callable[[str], torch.Tensor]) -> str:
    if "v_pred" in keys:
        return "v_prediction"
    sidecar = path.with_suffix(".yaml")
    if sidecar.is_file():
        found = re.search(r"parameterization:\s*[\"']?(\w+)", sidecar.read_text(errors="replace"))
        if found:
            return "v_prediction" if found.group(1) == "v" else "epsilon"
    if config == "sd2":
        if SD2_V_PROBE in keys:
            return "v_prediction" if float(read(SD2_V_PROBE).float().std(unbiased=False)) > 0.09 else "epsilon"
        return "v_prediction"
    return "epsilon"


def _open(path: Path) -> tuple[set[str], dict[str, tuple[int, ...]], Callable[[str], torch.Tensor]]:
    """(keys, shapes of the few keys we look at, a reader of one tensor) without loading the file."""
    if path.suffix.lower() == ".safetensors":
        from safetensors import safe_open

        handle = safe_open(str(path), framework="pt")
        keys = set(handle.keys())
        shapes = {k: tuple(handle.get_slice(k).get_shape()) for k in (FIRST_CONV,) if k in keys}
        return keys, shapes, handle.get_tensor
    state = load_tensors_only(path)
    while isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise ValueError(f"{path.name} holds no state dict")
    tensors = {k: v for k, v in state.items() if isinstance(v, torch.Tensor)}
    return set(tensors), {k: tuple(v.shape) for k, v in tensors.items() if k == FIRST_CONV}, tensors.__getitem__


def load_tensors_only(path: Path) -> Any:
    """A .ckpt / .pt read with torch's weights-only unpickler: tensors and plain containers, nothing
    executed; ValueError when the pickle asks for anything else."""
    try:
        try:
            return torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except RuntimeError:  # an old (non-zip) serialisation cannot be mapped; still tensors only
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        raise ValueError(f"{path.name} is a pickle that needs more than tensors to load; it was refused, not "
                         "executed. Use a .safetensors version of it") from e


def inspect_checkpoint(path: Path) -> Checkpoint:
    """Family, prediction type and UNet input channels of a single-file checkpoint."""
    keys, shapes, read = _open(path)
    config = family_config(keys)
    in_channels = shapes[FIRST_CONV][1] if FIRST_CONV in shapes else 4
    return Checkpoint(config, prediction_type(config, keys, path, read), in_channels)


def _patch(file: Path, **changes: Any) -> None:
    file.write_text(json.dumps({**json.loads(file.read_text()), **changes}, indent=2))


def adapt_config_folder(ckpt: Checkpoint, source: Path, folder: Path) -> Path:
    """A copy of the config folder `source` told what the file says: its prediction type and UNet
    input channels (9 for inpainting)."""
    shutil.copytree(source, folder, dirs_exist_ok=True)
    _patch(folder / "scheduler" / "scheduler_config.json", prediction_type=ckpt.prediction_type)
    _patch(folder / "unet" / "config.json", in_channels=ckpt.in_channels)
    return folder


def write_config_folder(ckpt: Checkpoint, folder: Path) -> Path:
    """The shipped full-size config of `ckpt.config` adapted to the file (and SD 2.x's trained size
    to its prediction type), with the CLIP vocabulary written into its tokenizer folders."""
    adapt_config_folder(ckpt, CONFIGS / ckpt.config, folder)
    if ckpt.config == "sd2":  # 768 px v models, 512 px epsilon (base) models
        side = 96 if ckpt.prediction_type == "v_prediction" else 64
        _patch(folder / "unet" / "config.json", sample_size=side)
        _patch(folder / "vae" / "config.json", sample_size=side * 8)
    for tokenizer in sorted(folder.glob("tokenizer*")):
        write_clip_tokenizer_files(tokenizer)
    return folder


def load_single_file(path: Path, dtype: torch.dtype, work_dir: Path, config: Path | None = None) -> Any:
    """A diffusers pipeline from one checkpoint file, offline. `config`: a diffusers-format config
    folder to use instead of the shipped full-size one (tests pass their tiny model's); it is
    adapted to the file alike (prediction type, input channels)."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise ModelNotFound(f"checkpoint file {path.name} not found")
    try:
        ckpt = inspect_checkpoint(path)
    except ValueError as e:
        raise ValueError(f"{path.name}: {e}") from e
    from diffusers import StableDiffusionPipeline, StableDiffusionXLPipeline

    cls = StableDiffusionXLPipeline if PIPELINES[ckpt.config] == "StableDiffusionXLPipeline" else StableDiffusionPipeline
    extra: dict[str, Any] = {} if cls is StableDiffusionXLPipeline else {"safety_checker": None,
                                                                          "requires_safety_checker": False}
    work_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=work_dir) as tmp:
        folder = (write_config_folder(ckpt, Path(tmp) / ckpt.config) if config is None
                  else adapt_config_folder(ckpt, config, Path(tmp) / ckpt.config))
        return cls.from_single_file(str(path), config=str(folder), local_files_only=True, dtype=dtype, **extra)
