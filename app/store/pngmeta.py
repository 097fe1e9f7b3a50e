"""PNG text metadata: an A1111-compatible `parameters` chunk plus a `noisescope` JSON chunk.

The `parameters` text is what A1111, ComfyUI importers and civitai read:

    a red fox
    Negative prompt: blurry
    Steps: 30, Sampler: DPM++ 2M Karras, CFG scale: 5, Seed: 1, Size: 64x64, Model: tiny-sd

A run changed while it formed keeps its starting values there, plus a quoted note that A1111
shows as it is and `schedule_from_note` reads back:

    ..., Schedule: "10: cfg_scale=0; 30: eta=0.5 cut_flip=false", Forked from: "run 3f2a at step 12"

LoRA weights (a {name: weight} map) are written one token per LoRA, the name percent-encoded:
`Lora weights: "style=0.8 my%20ink=0.5"` for the starting values, `12: lora_weights[style]=-0.5` in a
schedule.
"""

from __future__ import annotations

import io
import json
from pathlib import PurePath
from typing import Any
from urllib.parse import quote, unquote

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


def _note_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return _fmt(value).replace(" ", "").replace('"', "").replace(";", "").replace("=", "")


def weights_note(weights: dict[str, Any], key: str = "") -> str:
    """`style=0.8 my%20ink=0.5`, or with `key`: `lora_weights[style]=0.8 ...`."""
    return " ".join(f"{key}[{quote(n, safe='')}]={_note_value(w)}" if key else f"{quote(n, safe='')}={_note_value(w)}"
                    for n, w in weights.items())


def weights_from_note(note: str) -> dict[str, str]:
    """The inverse of `weights_note` without a key (values left as text)."""
    out = {}
    for token in note.split():
        name, eq, value = token.partition("=")
        if not eq or not name:
            raise ValueError(f"LoRA weight {token[:40]!r} is not name=weight")
        out[unquote(name)] = value
    return out


def schedule_note(schedule: list[dict[str, Any]]) -> str:
    """`10: cfg_scale=0; 30: eta=0.5`: one part per step, the fields that changed there."""
    parts = []
    for entry in schedule:
        changes = " ".join(weights_note(v, k) if isinstance(v, dict) else f"{k}={_note_value(v)}"
                           for k, v in sorted(entry.get("changes", {}).items()))
        parts.append(f"{int(entry['step'])}: {changes}")
    return "; ".join(parts)


def schedule_from_note(note: str) -> list[dict[str, Any]]:
    """The inverse of `schedule_note`, values left as text (validation types them); ValueError when
    the note is not in that form."""
    out = []
    for part in filter(None, (p.strip() for p in note.split(";"))):
        step, sep, rest = part.partition(":")
        if not sep or not step.strip().isdigit():
            raise ValueError(f"schedule part {part[:40]!r} does not start with 'step:'")
        changes = {}
        for token in rest.split():
            key, eq, value = token.partition("=")
            if not eq or not key:
                raise ValueError(f"schedule change {token[:40]!r} is not key=value")
            field, bracket, name = key.partition("[")
            if bracket and name.endswith("]"):  # one entry of a map: lora_weights[style]=0.5
                changes.setdefault(field, {})[unquote(name[:-1])] = value
            else:
                changes[key] = value
        out.append({"step": int(step), "changes": changes})
    return out


def a1111_parameters(
    engine: str, params: dict[str, Any], seed: int | None, width: int, height: int, model: str | None,
    schedule: list[dict[str, Any]] | None = None, lineage: dict[str, Any] | None = None,
) -> str:
    """The A1111 `parameters` text for one image: the starting values, then the schedule of live
    changes and the fork it came from, as quoted notes."""
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
        if params.get("mask_image"):
            fields.append(("Inpaint mask", f"upload {params['mask_image']}"))
        batch = params.get("batch") or 1
        if batch > 1 and seed is not None and params.get("seed") is not None:  # A1111's names for a batch
            fields += [("Batch size", batch), ("Batch pos", seed - params["seed"])]
    text = ", ".join(f"{k}: {_fmt(v)}" for k, v in fields if v is not None)
    if engine == "diffusion" and params.get("lora_weights"):
        text += f', Lora weights: "{weights_note(params["lora_weights"])}"'
    if schedule:
        text += f', Schedule: "{schedule_note(schedule)}"'
    if lineage and lineage.get("parent_run"):
        run = _note_value(lineage["parent_run"])
        text += f', Forked from: "run {run} at step {int(lineage.get("from_step", 0))}"'
    if lineage and lineage.get("source_image"):
        source = _note_value(lineage["source_image"])
        text += f', Variation of: "image {source} at strength {_note_value(lineage.get("strength"))}"'
    lines.append(text)
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
