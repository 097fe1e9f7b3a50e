"""PNG text metadata: an A1111-compatible `parameters` chunk plus a `noisescope` JSON chunk.

The `parameters` text is what A1111, ComfyUI importers and civitai read:

    a red fox
    Negative prompt: blurry
    Steps: 30, Sampler: DPM++ 2M Karras, CFG scale: 5, Seed: 1, Size: 64x64, Model: tiny-sd
"""

from __future__ import annotations

import io
import json
from pathlib import PurePath
from typing import Any

from PIL import Image, PngImagePlugin

PARAMETERS_KEY = "parameters"
NOISESCOPE_KEY = "noisescope"

SAMPLER_LABELS = {
    "ddpm": "DDPM",
    "ddim": "DDIM",
    "euler": "Euler",
    "euler_a": "Euler a",
    "dpmpp_2m": "DPM++ 2M",
}


def _fmt(value: Any) -> str:
    """A1111 writes numbers bare (5 not 5.0) and strips commas that would break its parser."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return str(value).replace(",", " ").replace("\n", " ")


def model_label(model: str) -> str:
    """A model's short name: the last part of a folder path or hub id (no local paths in shared PNGs)."""
    name = PurePath(model.rstrip("/\\")).name
    return name or model


def sampler_label(sampler: str, karras: bool) -> str:
    label = SAMPLER_LABELS.get(sampler, sampler)
    return f"{label} Karras" if karras else label


def a1111_parameters(
    engine: str, params: dict[str, Any], seed: int | None, width: int, height: int, model: str | None
) -> str:
    """The A1111 `parameters` text for one image."""
    lines = [str(params.get("prompt", ""))]
    negative = params.get("negative_prompt") or ""
    if negative:
        lines.append(f"Negative prompt: {negative}")
    fields: list[tuple[str, Any]] = []
    if engine == "diffusion":
        fields += [
            ("Steps", params.get("steps")),
            ("Sampler", sampler_label(str(params.get("sampler", "")), bool(params.get("karras")))),
            ("CFG scale", params.get("cfg_scale")),
        ]
    else:
        fields += [
            ("Steps", params.get("search_steps", 0)),
            ("Sampler", "StyleGAN2"),
            ("Truncation psi", params.get("truncation_psi")),
        ]
    fields += [("Seed", seed), ("Size", f"{width}x{height}")]
    if model:
        fields.append(("Model", model_label(model)))
    if engine == "diffusion":
        if params.get("eta"):
            fields.append(("Eta", params["eta"]))
        if params.get("clip_guidance_scale"):
            fields.append(("CLIP guidance scale", params["clip_guidance_scale"]))
        if params.get("init_image"):
            fields.append(("Denoising start step", params.get("skip_steps", 0)))
    lines.append(", ".join(f"{k}: {_fmt(v)}" for k, v in fields if v is not None))
    return "\n".join(lines)


def png_with_text(image: Image.Image, chunks: dict[str, str]) -> bytes:
    """Encode `image` as PNG with one tEXt/iTXt chunk per entry of `chunks`."""
    info = PngImagePlugin.PngInfo()
    for key, text in chunks.items():
        if text.isascii():
            info.add_text(key, text)
        else:
            info.add_itxt(key, text)
    if image.mode not in ("RGB", "RGBA", "L", "LA"):
        image = image.convert("RGB")
    buf = io.BytesIO()
    image.save(buf, format="PNG", pnginfo=info)
    return buf.getvalue()


def read_text(data: bytes) -> dict[str, str]:
    """The text chunks of PNG bytes."""
    with Image.open(io.BytesIO(data)) as img:
        img.load()
        return dict(getattr(img, "text", {}))


def noisescope_chunk(record: dict[str, Any]) -> str:
    return json.dumps(record, ensure_ascii=False, separators=(",", ":"), sort_keys=True)
