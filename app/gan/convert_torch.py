"""`convert-gan` for torch checkpoints: which family a checkpoint holds, read from its key names.

    a folder with config.json + pytorch_model.bin, or such a .bin    BigGAN (pytorch_pretrained_biggan)
    .pth / .pt / .tar / .bin with main.0.weight (or netG_state_dict) DCGAN (the PyTorch tutorial)

Checkpoints are read tensors-only (app.gan.torch_checkpoint); NVIDIA .pkl files go to app.gan.convert.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from . import biggan, dcgan
from .torch_checkpoint import find_state_dict, read_checkpoint

Family = Literal["auto", "biggan", "dcgan"]
TORCH_SUFFIXES = (".pth", ".pt", ".tar", ".bin", ".ckpt")


def is_torch_source(src: Path) -> bool:
    """Whether `convert-gan` should read `src` as a torch checkpoint (or a BigGAN folder) rather than a pickle."""
    return src.is_dir() or src.suffix.lower() in TORCH_SUFFIXES


def detect_family(state_dict: dict) -> Family:
    if "embeddings.weight" in state_dict and "generator.gen_z.weight_orig" in state_dict:
        return "biggan"
    if "main.0.weight" in state_dict:
        return "dcgan"
    keys = ", ".join(sorted(state_dict)[:4])
    raise ValueError(f"no known generator layout in this checkpoint (keys start: {keys}); "
                     "BigGAN (embeddings.*, generator.*) and DCGAN (main.N.*) are read")


def convert_torch(src: str | Path, outdir: str | Path, family: Family = "auto", overwrite: bool = False,
                  class_names: list[str] | None = None) -> Path:
    """Convert a BigGAN folder / checkpoint or a DCGAN checkpoint into the served folder; returns it."""
    src = Path(src)
    weights = src / "pytorch_model.bin" if src.is_dir() else src
    if not weights.is_file():
        raise FileNotFoundError(f"{weights} does not exist")
    sd = find_state_dict(read_checkpoint(weights), dcgan.CHECKPOINT_KEYS)
    family = detect_family(sd) if family == "auto" else family
    if family == "biggan":
        return biggan.convert_package_checkpoint(src, outdir, overwrite, class_names, state_dict=sd)
    if class_names is not None:
        raise ValueError("--class-names: a DCGAN has no classes")
    return dcgan.convert_checkpoint(weights, outdir, overwrite, state_dict=sd)
