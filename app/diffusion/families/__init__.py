"""Model families: which diffusers pipeline a model is, and how its text encoders become the
denoiser's conditioning. Samplers and guidance never see a family; each family is one module
here, picked by the pipeline's `_class_name` (model_index.json, or the class of a built pipeline).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import torch

from app.diffusion.denoiser import TextConditioning


class ModelNotFound(FileNotFoundError):
    """A --diffusion-model that is neither a usable local path nor a reachable hub id."""


class Conditioner(Protocol):
    """Prompts -> TextConditioning for one family; `modules` are the text encoders it runs."""

    modules: tuple[torch.nn.Module, ...]

    def __call__(self, prompts: list[tuple[str, float]], negative: str, width: int, height: int) -> TextConditioning:
        ...


@dataclass(frozen=True)
class Family:
    name: str
    pipeline_classes: tuple[str, ...]  # diffusers `_class_name`s this family loads
    from_pretrained: Callable[[str, torch.dtype, bool], Any]  # (name or folder, dtype, local files only) -> pipeline
    conditioner: Callable[[Any], Conditioner]  # pipeline -> its conditioner
    setup: Callable[[Any, torch.dtype], None] = lambda pipe, dtype: None  # e.g. dtype fixes, before moving


def hub_offline() -> bool:
    """HF_HUB_OFFLINE as huggingface_hub reads it (1 / true / yes / on)."""
    return os.environ.get("HF_HUB_OFFLINE", "").strip().upper() in ("1", "ON", "YES", "TRUE")


def _families() -> dict[str, Family]:
    from app.diffusion.families import sd, sdxl

    return {cls: fam for fam in (sd.FAMILY, sdxl.FAMILY) for cls in fam.pipeline_classes}


def family_for_class(class_name: str, source: str) -> Family:
    known = _families()
    if class_name not in known:
        raise ValueError(f"{source} is a {class_name or 'pipeline of unknown class'}; the studio loads "
                         + ", ".join(sorted(known)))
    return known[class_name]


def pipeline_family(pipe: Any) -> Family:
    """The family of an already built pipeline."""
    return family_for_class(type(pipe).__name__, type(pipe).__name__)


def pipeline_class_name(name_or_path: str, local_only: bool) -> str:
    """`_class_name` from a pipeline folder's model_index.json, or from a hub id's (downloaded only
    when `local_only` is false). Raises ModelNotFound naming the model when neither is there."""
    folder = Path(name_or_path).expanduser()
    if folder.is_dir():
        index = folder / "model_index.json"
        if not index.is_file():
            raise ModelNotFound(f"{folder.name} is not a diffusers pipeline folder (it has no model_index.json)")
        return str(json.loads(index.read_text()).get("_class_name", ""))
    if folder.exists() or name_or_path.count("/") != 1:
        raise ModelNotFound(f"diffusion model {name_or_path!r} is neither a pipeline folder, a .safetensors file "
                            "nor a hub id (owner/name)")
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError, HfHubHTTPError, LocalEntryNotFoundError, OfflineModeIsEnabled

    try:
        index_file = hf_hub_download(name_or_path, "model_index.json", local_files_only=local_only)
    except (LocalEntryNotFoundError, OfflineModeIsEnabled) as e:
        why = ("HF_HUB_OFFLINE=1 forbids downloading it" if local_only or hub_offline()
               else "the hub could not be reached")
        raise ModelNotFound(f"diffusion model {name_or_path!r} is not in the local Hugging Face cache and {why}; "
                            "download it once with network access, or give a local folder or file") from e
    except EntryNotFoundError as e:
        raise ModelNotFound(f"hub model {name_or_path!r} is not a diffusers pipeline (no model_index.json)") from e
    except HfHubHTTPError as e:
        raise ModelNotFound(f"hub model {name_or_path!r} could not be fetched: {e.__class__.__name__}") from e
    return str(json.loads(Path(index_file).read_text()).get("_class_name", ""))


def load_pipeline(name_or_path: str, dtype: torch.dtype) -> Any:
    """A diffusers pipeline folder or hub id, by its family; HF_HUB_OFFLINE=1 keeps it local."""
    local_only = hub_offline()
    family = family_for_class(pipeline_class_name(name_or_path, local_only), Path(name_or_path).name)
    return family.from_pretrained(name_or_path, dtype, local_only)
