"""Tensors-only reading of torch checkpoints (`.pth`, `.pt`, `.bin`, `.tar`: zip or legacy format).

`torch.load(weights_only=True)` resolves only tensors, storages and plain containers; any other global
(a `__reduce__` payload such as `os.system`) is refused before it is called. Checkpoints are read once,
offline, by the converters; the server loads only the safetensors they write.
"""

from __future__ import annotations

import pickle
import re
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch


class UnsafeCheckpointError(pickle.UnpicklingError):
    """The checkpoint holds something other than tensors and plain containers (or is not a checkpoint)."""


def read_checkpoint(path: str | Path) -> Any:
    """The checkpoint's object with every tensor on the CPU; refuses code, never runs it."""
    try:
        with warnings.catch_warnings():  # a protocol-4 pickle's warning says nothing about safety
            warnings.simplefilter("ignore", UserWarning)
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise UnsafeCheckpointError(f"{Path(path).name}: refused: this checkpoint holds more than tensors "
                                    f"({_why(exc)}); nothing in it was run") from None
    except (RuntimeError, EOFError, ValueError) as exc:
        raise UnsafeCheckpointError(f"{Path(path).name}: not a readable torch checkpoint ({exc})") from None


def _why(exc: Exception) -> str:
    """The line of torch's weights-only refusal that names what was refused (its first line does not)."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(exc))
    for line in text.splitlines():
        if "Unsupported" in line or "Trying to" in line:
            return line.strip().removeprefix("WeightsUnpickler error: ").split(" was not an allowed")[0].rstrip(".")
    return "torch's weights-only reader refused it"


def find_state_dict(obj: Any, keys: tuple[str, ...] = ()) -> dict[str, torch.Tensor]:
    """A flat {name: tensor} from a checkpoint: the first of `keys` present (e.g. `netG_state_dict`), else
    `state_dict`, else the object itself when it is already a mapping of tensors."""
    if isinstance(obj, Mapping):
        for key in (*keys, "state_dict"):
            if isinstance(obj.get(key), Mapping):
                obj = obj[key]
                break
    if not isinstance(obj, Mapping) or not obj:
        raise ValueError("the checkpoint holds no state dict")
    bad = [k for k, v in obj.items() if not isinstance(k, str) or not isinstance(v, torch.Tensor)]
    if bad:
        raise ValueError(f"the checkpoint's state dict has non-tensor entries: {bad[:3]}")
    return {k: v.detach().clone() for k, v in obj.items()}
