"""The GAN upscaler's files: a folder of `model.safetensors` + `config.json` (RRDBConfig), and the
converter from Real-ESRGAN's `.pth` checkpoints (read tensors-only, never unpickled as objects).

Real-ESRGAN's `.pth` is a dict holding `params_ema` (the EMA generator; what its inference uses) and/or
`params`, or a bare state dict. `torch.load(weights_only=True)` accepts only tensors and plain
containers, so a pickle that would run code is refused before anything is called.

    python -m app convert-upscaler RealESRGAN_x4plus.pth models/upscaler-gan
"""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import torch
from torch import Tensor

from app.upscale.rrdbnet import RRDBConfig, RRDBNet, config_from_state_dict

WEIGHTS = "model.safetensors"
CONFIG = "config.json"
FORMAT = "realesrgan-rrdbnet"
PTH_KEYS = ("params_ema", "params")  # Real-ESRGAN (BasicSR) checkpoints: EMA first, as its inference does


class UnsafeCheckpointError(ValueError):
    """A .pth that is not tensors and plain containers (it would need code run to load)."""


def read_pth(path: str | Path) -> dict[str, Tensor]:
    """The RRDBNet state dict inside a Real-ESRGAN .pth, read with weights_only=True."""
    try:
        raw = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        raise UnsafeCheckpointError(f"{Path(path).name}: refused, it is not a tensors-only checkpoint "
                                    f"({str(e).splitlines()[0][:200]})") from None
    if not isinstance(raw, dict):
        raise ValueError(f"{Path(path).name}: expected a state dict, found {type(raw).__name__}")
    for key in PTH_KEYS:
        if isinstance(raw.get(key), dict):
            raw = raw[key]
            break
    state = {k.removeprefix("module."): v for k, v in raw.items() if isinstance(v, Tensor)}
    if not state:
        raise ValueError(f"{Path(path).name}: no tensors found")
    return state


def save_folder(net: RRDBNet, folder: str | Path, dtype: torch.dtype = torch.float16) -> Path:
    from safetensors.torch import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().to(dtype).contiguous() for k, v in net.state_dict().items()}
    save_file(state, str(folder / WEIGHTS), metadata={"format": FORMAT})
    (folder / CONFIG).write_text(json.dumps({"format": FORMAT, **net.cfg.to_dict()}, indent=1) + "\n")
    return folder


def convert_pth(pth: str | Path, folder: str | Path, dtype: torch.dtype = torch.float16) -> RRDBConfig:
    """Real-ESRGAN .pth -> a folder load_folder reads; the architecture is read off the keys."""
    state = read_pth(pth)
    cfg = config_from_state_dict(state)
    net = RRDBNet(cfg)
    net.load_state_dict(state, strict=True)
    save_folder(net, folder, dtype)
    return cfg


def is_gan_upscaler(folder: str | Path) -> bool:
    p = Path(folder)
    return (p / WEIGHTS).is_file() and (p / CONFIG).is_file()


def load_folder(folder: str | Path, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32) -> RRDBNet:
    """An RRDBNet from a converted folder (safetensors; strict key match), in eval mode."""
    from safetensors.torch import load_file

    folder = Path(folder)
    raw = json.loads((folder / CONFIG).read_text())
    if raw.get("format", FORMAT) != FORMAT:
        raise ValueError(f"{folder}: not an RRDBNet folder (format {raw.get('format')!r})")
    cfg = RRDBConfig(**{k: (str(raw[k]) if k == "base" else int(raw[k]))
                        for k in RRDBConfig.__dataclass_fields__ if k in raw})
    net = RRDBNet(cfg)
    net.load_state_dict(load_file(str(folder / WEIGHTS)), strict=True)
    return net.to(device, dtype).eval().requires_grad_(False)


def convert_main(argv: list[str] | None = None) -> int:
    import argparse
    import sys

    p = argparse.ArgumentParser(prog="python -m app convert-upscaler", description=convert_pth.__doc__)
    p.add_argument("pth", type=Path, help="Real-ESRGAN RRDBNet checkpoint (RealESRGAN_x4plus.pth, _x2plus.pth)")
    p.add_argument("out", type=Path, help="folder to write model.safetensors + config.json into")
    p.add_argument("--fp32", action="store_true", help="keep float32 (default float16)")
    a = p.parse_args(argv)
    try:
        cfg = convert_pth(a.pth, a.out, torch.float32 if a.fp32 else torch.float16)
    except (UnsafeCheckpointError, ValueError, FileNotFoundError) as e:
        print(f"cannot convert: {e}", file=sys.stderr)
        return 1
    print(f"wrote {a.out}: RRDBNet x{cfg.scale}, {cfg.num_block} blocks, {cfg.num_feat} features")
    return 0
