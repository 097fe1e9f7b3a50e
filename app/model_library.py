"""The models in a `--models-dir` folder, as the page lists them: what each entry is, read from its
metadata only (model_index.json, config.json, a safetensors header), never from its weights.

An entry is a top-level item of the folder, or an item one folder down (as in AUTOMATIC1111's
`models/Stable-diffusion/x.safetensors`):
- a diffusers pipeline folder (model_index.json): a text-to-image diffusion model when its pipeline
  class is one the studio samples (app.diffusion.families, app.diffusion.flow_family);
- a single-file checkpoint (.safetensors; .ckpt / .pt are listed unread: their keys are in a pickle);
- a converted GAN folder (config.json with a GAN `format`, app.gan.family.FAMILIES).
Anything else that looks like a model (a LoRA file, an upscaler, an unconverted StyleGAN .pkl) is
listed with the reason it cannot be loaded here, so a user sees why it is not offered.
"""

from __future__ import annotations

import json
import struct
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

Kind = Literal["diffusion", "gan"]

PIPELINE_NAMES = {
    "StableDiffusionPipeline": "SD 1.x / 2.x",
    "StableDiffusionXLPipeline": "SDXL",
    "StableDiffusion3Pipeline": "SD3",
    "FluxPipeline": "FLUX.1",
}
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".ckpt", ".pt", ".pth", ".pkl")
DIFFUSION_PREFIXES = ("model.diffusion_model.", "conditioner.", "cond_stage_model.", "joint_blocks.",
                      "double_blocks.", "down_blocks.")
UPSCALER_FORMATS = ("realesrgan-rrdbnet",)  # app.upscale.gan's config.json format
MAX_HEADER_BYTES = 100 * 1024 * 1024  # safetensors' own cap on a header


@dataclass(frozen=True)
class ModelEntry:
    id: str  # the path relative to the models folder, with '/': what a load request names
    kind: Kind | None  # None: listed, not loadable (see `problem`)
    family: str  # in words: "SDXL", "SD 1.x (single file)", "StyleGAN2", ...
    bytes: int  # the weight files' total size on disk
    problem: str | None = None

    def public(self) -> dict:
        return asdict(self)


def weight_bytes(path: Path) -> int:
    """Total size of the weight files at `path` (a file, or every weight file under a folder)."""
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and p.suffix.lower() in WEIGHT_SUFFIXES)


def safetensors_header(path: Path) -> dict:
    """A .safetensors header (8-byte little-endian length, then JSON): name -> {dtype, shape, ...}."""
    with path.open("rb") as f:
        head = f.read(8)
        if len(head) != 8:
            raise ValueError("the file is shorter than a safetensors header")
        (n,) = struct.unpack("<Q", head)
        if n > MAX_HEADER_BYTES:
            raise ValueError("the safetensors header is implausibly large")
        header = json.loads(f.read(n))
    if not isinstance(header, dict):
        raise ValueError("the safetensors header is not a JSON object")
    header.pop("__metadata__", None)
    return header


def safetensors_keys(path: Path) -> list[str]:
    return list(safetensors_header(path))


FLOAT_DTYPES = ("F64", "F32", "F16", "BF16", "F8_E4M3", "F8_E5M2")


def load_bytes(path: Path, itemsize: int) -> int:
    """About how many bytes the weights at `path` take once loaded with floats of `itemsize` bytes:
    from the safetensors headers (each float tensor's element count), other weight files at their
    size on disk."""
    total = 0
    files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in WEIGHT_SUFFIXES]
    for file in files:
        if file.suffix.lower() != ".safetensors":
            total += file.stat().st_size
            continue
        try:
            header = safetensors_header(file)
        except (OSError, ValueError):
            total += file.stat().st_size
            continue
        for info in header.values():
            if isinstance(info, dict) and info.get("dtype") in FLOAT_DTYPES:
                n = 1
                for d in info.get("shape", ()):
                    n *= int(d)
                total += n * itemsize
            elif isinstance(info, dict) and len(info.get("data_offsets", ())) == 2:
                total += int(info["data_offsets"][1]) - int(info["data_offsets"][0])
    return total


def _pipeline_entry(rel: str, folder: Path) -> ModelEntry:
    size = weight_bytes(folder)
    try:
        class_name = str(json.loads((folder / "model_index.json").read_text()).get("_class_name", ""))
    except (OSError, ValueError) as exc:
        return ModelEntry(rel, None, "diffusers folder", size, f"model_index.json cannot be read: {exc}")
    if class_name in PIPELINE_NAMES:
        return ModelEntry(rel, "diffusion", PIPELINE_NAMES[class_name], size)
    if class_name == "StableDiffusionUpscalePipeline":
        return ModelEntry(rel, None, "x4 upscaler", size, "an upscaler: start the studio with --upscaler-diffusion")
    return ModelEntry(rel, None, class_name or "diffusers folder", size,
                      f"{class_name or 'this pipeline class'} is not one the studio samples "
                      f"({', '.join(PIPELINE_NAMES.values())})")


def _gan_entry(rel: str, folder: Path, fmt: str) -> ModelEntry:
    from app.gan.family import FAMILIES

    name = fmt.removeprefix("noisescope-")
    family = {"stylegan2": "StyleGAN2", "stylegan3": "StyleGAN3", "biggan": "BigGAN", "dcgan": "DCGAN"}.get(name, name)
    size = weight_bytes(folder)
    if fmt in UPSCALER_FORMATS:
        return ModelEntry(rel, None, "x4 upscaler", size, "an upscaler: start the studio with --upscaler-gan")
    if fmt not in FAMILIES:
        return ModelEntry(rel, None, family, size, f"unknown generator format {fmt!r}")
    return ModelEntry(rel, "gan", family, size)


def _file_entry(rel: str, path: Path) -> ModelEntry | None:
    from app.diffusion.single_file import FAMILY_NAMES, family_config

    suffix = path.suffix.lower()
    size = path.stat().st_size
    if suffix == ".pkl":
        return ModelEntry(rel, None, "network pickle", size,
                          "convert it first: python -m app convert-gan FILE --out FOLDER, then list the folder")
    if suffix in (".ckpt", ".pt", ".pth"):
        return ModelEntry(rel, "diffusion", "single file (pickle, read tensors-only)", size)
    if suffix != ".safetensors":
        return None
    try:
        keys = set(safetensors_keys(path))
    except (OSError, ValueError) as exc:
        return ModelEntry(rel, None, "safetensors", size, f"not a readable safetensors file: {exc}")
    if any(k.startswith("lora_") or ".lora_" in k or "_lora." in k for k in keys):  # kohya, PEFT, old diffusers
        return ModelEntry(rel, None, "LoRA", size, "a LoRA: start the studio with --lora-dir on its folder")
    try:
        return ModelEntry(rel, "diffusion", f"{FAMILY_NAMES[family_config(keys)]} (single file)", size)
    except ValueError as exc:
        if not any(k.startswith(DIFFUSION_PREFIXES) for k in keys):
            return None  # some other network's weights (a CLIP, a classifier): not a model to offer
        return ModelEntry(rel, None, "safetensors", size, str(exc))


def describe(root: Path, path: Path) -> ModelEntry | None:
    """The entry for one item of the folder, or None when it is not a model at all."""
    rel = path.relative_to(root).as_posix()
    if path.is_dir():
        if (path / "model_index.json").is_file():
            return _pipeline_entry(rel, path)
        config = path / "config.json"
        if config.is_file():
            try:
                data = json.loads(config.read_text())
            except (OSError, ValueError):
                return None
            if isinstance(data, dict) and ("format" in data or (path / "generator.safetensors").is_file()):
                return _gan_entry(rel, path, str(data.get("format", "noisescope-stylegan2")))
        return None
    if path.is_file():
        return _file_entry(rel, path)
    return None


Signature = tuple[int, ...]
ScanCache = dict[Path, tuple[Signature, "ModelEntry | None"]]


def signature(path: Path) -> Signature:
    """What changes when an item of the folder changes: its mtime and size, and for a folder the
    mtimes of the metadata files `describe` reads."""
    st = path.stat()
    sig = [st.st_mtime_ns, st.st_size]
    if path.is_dir():
        for name in ("model_index.json", "config.json"):
            meta = path / name
            sig.append(meta.stat().st_mtime_ns if meta.exists() else -1)
    return tuple(sig)


def scan(root: Path, cache: ScanCache | None = None) -> dict[str, ModelEntry]:
    """Every entry of `root` and of its direct subfolders that are not models themselves, by id,
    sorted by id. Hidden items and symlinks leading out of `root` are skipped. With `cache`, an item
    whose `signature` is unchanged since the last scan is not read again (the cache is updated)."""
    root = root.resolve()
    found: dict[str, ModelEntry] = {}
    seen: set[Path] = set()

    def entry_of(path: Path) -> ModelEntry | None:
        if cache is None:
            return describe(root, path)
        try:
            sig = signature(path)
        except OSError:
            return None
        seen.add(path)
        hit = cache.get(path)
        if hit is not None and hit[0] == sig:
            return hit[1]
        entry = describe(root, path)
        cache[path] = (sig, entry)
        return entry

    def visit(folder: Path, depth: int) -> None:
        try:
            items = sorted(folder.iterdir())
        except OSError:
            return
        for path in items:
            if path.name.startswith(".") or not path.resolve().is_relative_to(root):
                continue
            entry = entry_of(path)
            if entry is not None:
                found[entry.id] = entry
            elif path.is_dir() and depth == 0 and not (path / "config.json").exists():
                visit(path, 1)  # a folder of models, not some other network's folder

    if root.is_dir():
        visit(root, 0)
    if cache is not None:
        for gone in set(cache) - seen:
            del cache[gone]
    return dict(sorted(found.items()))
