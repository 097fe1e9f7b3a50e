"""NVIDIA network pickle -> `generator.safetensors` + `config.json`, and the serve-time loader.

Pickles are read once, offline, by the safe reader; the server only ever loads safetensors plus
JSON. The folder layout (also used for the embedded model in models/gan/):

    generator.safetensors   G_ema.state_dict() with NVIDIA key names (float32)
    config.json             {"format": "noisescope-stylegan2" | "noisescope-stylegan3",
                             "class_name": "Generator", "init_kwargs": {...constructor kwargs...}, ...}

StyleGAN2 and StyleGAN3 snapshots are told apart by structure (StyleGAN3 has `synthesis.input.freqs`
and layers `L{i}_{size}_{channels}`), never by the module source stored in the pickle.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from . import stylegan3
from .networks import Generator
from .pkl_reader import NetworkRecord, UnsafePickleError, read_network_pkl

WEIGHTS_NAME = "generator.safetensors"
CONFIG_NAME = "config.json"
FORMAT = "noisescope-stylegan2"
FORMAT_SG3 = "noisescope-stylegan3"
# config.json "format" -> the generator class its init_kwargs build.
GENERATORS: dict[str, type[torch.nn.Module]] = {FORMAT: Generator, FORMAT_SG3: stylegan3.Generator}
# NVIDIA's Generator(z_dim, c_dim, w_dim, img_resolution, img_channels, mapping_kwargs, ...) positional order.
_POSITIONAL = ("z_dim", "c_dim", "w_dim", "img_resolution", "img_channels", "mapping_kwargs")


def pickled_format(record: NetworkRecord) -> str:
    """Which generator a pickled G_ema is, from its state-dict structure."""
    if record.class_name != "Generator":
        raise ValueError(f"expected a Generator, the pickle holds {record.class_name!r}")
    if "synthesis.b4.const" in record.state_dict:
        return FORMAT
    if "synthesis.input.freqs" in record.state_dict:
        return FORMAT_SG3
    raise ValueError("neither a StyleGAN2 (synthesis.b4.const) nor a StyleGAN3 (synthesis.input.freqs) generator")


def generator_kwargs(record: NetworkRecord) -> dict[str, Any]:
    """Constructor kwargs of a pickled StyleGAN2 / StyleGAN3 Generator, flattened to this package's Generator."""
    pickled_format(record)
    if len(record.init_args) > len(_POSITIONAL):
        raise ValueError(f"unexpected positional constructor args: {record.init_args!r}")
    kwargs = dict(zip(_POSITIONAL, record.init_args))
    kwargs.update(record.init_kwargs)
    nested = kwargs.pop("synthesis_kwargs", None) or {}
    return {**nested, **kwargs}


def build_generator(init_kwargs: dict[str, Any], state_dict: dict[str, torch.Tensor],
                    fmt: str = FORMAT) -> torch.nn.Module:
    """The format's Generator(**init_kwargs) with the weights loaded strictly, in eval mode, gradients off."""
    if fmt not in GENERATORS:
        raise ValueError(f"unknown generator format {fmt!r}; known: {sorted(GENERATORS)}")
    G = GENERATORS[fmt](**init_kwargs)
    G.load_state_dict(state_dict, strict=True)
    return G.eval().requires_grad_(False)


def save_generator(folder: str | Path, init_kwargs: dict[str, Any], state_dict: dict[str, torch.Tensor],
                   source: str | None = None, overwrite: bool = False, fmt: str = FORMAT) -> Path:
    """Write generator.safetensors + config.json after checking they build a Generator; returns the folder."""
    folder = Path(folder)
    build_generator(init_kwargs, state_dict, fmt)
    weights, config = folder / WEIGHTS_NAME, folder / CONFIG_NAME
    if not overwrite and (weights.exists() or config.exists()):
        raise FileExistsError(f"{folder} already holds a converted generator (pass overwrite / --force)")
    folder.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().to("cpu", torch.float32).contiguous() for k, v in state_dict.items()}
    meta = {"format": "pt", "init_kwargs": json.dumps(init_kwargs)}
    cfg: dict[str, Any] = {"format": fmt, "class_name": "Generator", "init_kwargs": init_kwargs}
    if source is not None:
        cfg["source"] = source
    tmp_w, tmp_c = weights.with_suffix(".tmp"), config.with_suffix(".tmp")
    save_file(tensors, tmp_w, metadata=meta)
    tmp_c.write_text(json.dumps(cfg, indent=1) + "\n")
    os.replace(tmp_w, weights)
    os.replace(tmp_c, config)
    return folder


def convert_pkl(pkl: str | Path, outdir: str | Path, overwrite: bool = False) -> Path:
    """Read G_ema from an NVIDIA snapshot with the safe reader and save it in the folder format."""
    record = read_network_pkl(pkl, include=("G_ema",))["G_ema"]
    return save_generator(outdir, generator_kwargs(record), record.state_dict, source=Path(pkl).name,
                          overwrite=overwrite, fmt=pickled_format(record))


def read_format(weights: Path) -> str:
    """The "format" in config.json beside the weights (StyleGAN2 when absent)."""
    config = weights.parent / CONFIG_NAME
    if config.is_file():
        cfg = json.loads(config.read_text())
        if isinstance(cfg, dict) and isinstance(cfg.get("format"), str):
            return cfg["format"]
    return FORMAT


def read_init_kwargs(weights: Path) -> dict[str, Any]:
    """kwargs from config.json beside the weights, else from the safetensors header's `init_kwargs`."""
    config = weights.parent / CONFIG_NAME
    if config.is_file():
        cfg = json.loads(config.read_text())
        # A bare kwargs dict is accepted too, for hand-written configs.
        return dict(cfg["init_kwargs"]) if "init_kwargs" in cfg else cfg
    with safe_open(weights, framework="pt") as f:
        meta = f.metadata() or {}
    if "init_kwargs" not in meta:
        raise FileNotFoundError(f"no {CONFIG_NAME} beside {weights} and no init_kwargs in its metadata")
    return json.loads(meta["init_kwargs"])


def load_generator(path: str | Path, device: str | torch.device = "cpu") -> Any:
    """Load a converted StyleGAN2 / StyleGAN3 generator (a folder or its .safetensors file); never reads pickles."""
    path = Path(path)
    weights = path / WEIGHTS_NAME if path.is_dir() else path
    if weights.suffix != ".safetensors":
        raise ValueError(f"{path}: only .safetensors generators are loaded; convert pickles first with "
                         "`python -m app convert-gan NETWORK.pkl OUTDIR`")
    G = build_generator(read_init_kwargs(weights), load_file(weights), read_format(weights))
    return G.to(device)


def convert_main(argv: list[str]) -> int:
    """CLI: `python -m app convert-gan SOURCE OUTDIR [--family F] [--class-names FILE] [--force]`."""
    from .biggan import read_class_names
    from .convert_torch import convert_torch, is_torch_source
    from .torch_checkpoint import UnsafeCheckpointError

    parser = argparse.ArgumentParser(prog="python -m app convert-gan",
                                     description="Convert a GAN checkpoint to generator.safetensors + config.json, "
                                                 "without running its code: an NVIDIA StyleGAN2 / StyleGAN3 network pickle "
                                                 "(G_ema), a BigGAN folder (config.json + pytorch_model.bin) or a "
                                                 "DCGAN torch checkpoint (.pth / .tar), the last two read tensors-only.")
    parser.add_argument("pkl", type=Path, metavar="SOURCE",
                        help="network-snapshot-*.pkl, a BigGAN folder or .bin, or a DCGAN .pth / .pt / .tar")
    parser.add_argument("outdir", type=Path)
    parser.add_argument("--family", choices=("auto", "stylegan", "biggan", "dcgan"), default="auto",
                        help="the generator family (default: .pkl is StyleGAN, torch checkpoints by their keys)")
    parser.add_argument("--class-names", type=Path, help="BigGAN: class names (a JSON list / {id: name} or one per "
                        "line), kept in config.json for the class picker")
    parser.add_argument("--force", action="store_true", help="overwrite an existing conversion")
    args = parser.parse_args(argv)
    torch_source = args.family in ("biggan", "dcgan") or (args.family == "auto" and is_torch_source(args.pkl))
    try:
        if torch_source:
            names = read_class_names(args.class_names) if args.class_names else None
            out = convert_torch(args.pkl, args.outdir, "auto" if args.family == "auto" else args.family,
                                overwrite=args.force, class_names=names)
        else:
            out = convert_pkl(args.pkl, args.outdir, overwrite=args.force)
    except (UnsafePickleError, UnsafeCheckpointError, ValueError, KeyError, FileExistsError, OSError,
            RuntimeError) as exc:
        print(f"convert-gan: {exc}")
        return 1
    print(f"wrote {out / WEIGHTS_NAME} and {out / CONFIG_NAME}")
    return 0
