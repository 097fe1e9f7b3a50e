"""AUTOMATIC1111's `parameters` text read back into studio settings.

The text is the prompt, an optional "Negative prompt:" part, then one line of `Key: value` pairs
(values may be quoted to hold commas). Samplers the studio lacks map to the nearest one it has,
and every value that had to change is said in a note.
"""

from __future__ import annotations

import re
from typing import Any

from app.diffusion.prompts import parse_prompt
from app.params import MAX_SEED
from app.store.pngmeta import schedule_from_note, weights_from_note

_FIELD = re.compile(r'\s*([A-Za-z][\w \-/().+]*?):\s*("(?:\\.|[^\\"])*"|[^,]*)(?:,|$)')
_EXACT = {"euler a": "euler_a", "euler": "euler", "ddim": "ddim", "dpm++ 2m": "dpmpp_2m", "ddpm": "ddpm"}
_SCHEDULE_SUFFIXES = ("karras", "exponential", "polyexponential", "sgm uniform", "uniform", "align your steps")
_MULTISTEP = ("2m", "3m", "lms", "plms", "unipc", "deis", "ipndm")
_USED = {"Steps", "Sampler", "Schedule type", "CFG scale", "Seed", "Size", "Eta", "Eta DDIM", "CLIP guidance scale",
         "Schedule", "Forked from", "Lora weights"}
MAX_PROMPT_CHARS = 4000


def split_parameters(text: str) -> tuple[str, str, dict[str, str]]:
    """(prompt, negative prompt, {key: value}) of an A1111 `parameters` text."""
    lines = text.replace("\r\n", "\n").strip("\n").split("\n")
    fields: dict[str, str] = {}
    matches = _FIELD.findall(lines[-1]) if lines else []
    if len(matches) >= 3 or any(k == "Steps" for k, _ in matches):
        fields = {k.strip(): (v[1:-1].replace('\\"', '"') if v.startswith('"') else v).strip() for k, v in matches}
        lines = lines[:-1]
    prompt, negative, target = [], [], None
    for line in lines:
        if line.startswith("Negative prompt:"):
            target = negative
            line = line.removeprefix("Negative prompt:").lstrip()
        (negative if target is negative else prompt).append(line)
    return "\n".join(prompt).strip(), "\n".join(negative).strip(), fields


def map_sampler(name: str, schedule_type: str = "") -> tuple[str, bool, str | None]:
    """(studio sampler, karras, note or None) for an A1111 sampler name and "Schedule type"."""
    low = " ".join(name.lower().split())
    karras = schedule_type.lower() == "karras"
    for suffix in _SCHEDULE_SUFFIXES:
        if low.endswith(" " + suffix):
            low = low.removesuffix(" " + suffix)
            karras = karras or suffix == "karras"
            break
    if schedule_type.lower() == "automatic":
        karras = "dpm" in low  # A1111's automatic choice: Karras for its DPM family
    if low in _EXACT:
        return _EXACT[low], karras, None
    if low.endswith(" a") or "ancestral" in low or "sde" in low or low in ("lcm", "restart"):
        sampler, why = "euler_a", "stochastic"
    elif any(tag in low for tag in _MULTISTEP):
        sampler, why = "dpmpp_2m", "multistep"
    else:
        sampler, why = "euler", "deterministic single-step"
    return sampler, karras, f"sampler {name!r} is not in the studio: using the nearest, {sampler} ({why})"


def _number(fields: dict[str, str], key: str, notes: list[str], kind: type = float) -> Any:
    raw = fields.get(key)
    if raw is None:
        return None
    try:
        return kind(float(raw)) if kind is int else kind(raw)
    except ValueError:
        notes.append(f"{key} {raw!r} is not a number: left as it was")
        return None


def _clamped(value: float | None, low: float, high: float, label: str, notes: list[str]) -> float | None:
    if value is None or low <= value <= high:
        return value
    kept = min(max(value, low), high)
    notes.append(f"{label} {value:g} is outside {low:g}-{high:g}: using {kept:g}")
    return kept


def _size(raw: str | None, notes: list[str]) -> dict[str, int]:
    m = re.fullmatch(r"\s*(\d{1,6})\s*x\s*(\d{1,6})\s*", raw or "")
    if not m:
        if raw:
            notes.append(f"Size {raw!r} is not WIDTHxHEIGHT: left as it was")
        return {}
    out = {}
    for key, value in zip(("width", "height"), (int(m.group(1)), int(m.group(2))), strict=True):
        kept = min(max(8, round(value / 8) * 8), 4096)
        if kept != value:
            notes.append(f"{key} {value} is not a multiple of 8 within 8-4096: using {kept}")
        out[key] = kept
    return out


def _prompt(text: str, label: str, notes: list[str]) -> str:
    if len(text) > MAX_PROMPT_CHARS:
        notes.append(f"the {label} has {len(text)} characters: cut to {MAX_PROMPT_CHARS}")
        text = text[:MAX_PROMPT_CHARS]
    return text


def from_parameters(text: str, max_steps: int = 10000) -> dict[str, Any]:
    """Studio settings from an A1111 `parameters` text: {"params", "seed", "schedule", "notes"}."""
    prompt, negative, fields = split_parameters(text)
    notes: list[str] = []
    params: dict[str, Any] = {"prompt": _prompt(prompt, "prompt", notes),
                              "negative_prompt": _prompt(negative, "negative prompt", notes)}
    if re.search(r"\([^()]*:\s*[\d.]+\s*\)|<lora:|\[[^\]]*\]", prompt):
        notes.append("A1111 emphasis and [ ] are plain text here (weight parts with 'text:1.2 | other:0.5'); "
                     "<lora:name:weight> names a LoRA in the server's --lora-dir")
    try:
        parse_prompt(params["prompt"])
    except ValueError as exc:
        notes.append(f"the prompt will need editing: {exc}")
    steps = _number(fields, "Steps", notes, int)
    if steps is not None:
        params["steps"] = int(_clamped(steps, 1, max_steps, "Steps", notes))  # type: ignore[arg-type]
    if "Sampler" in fields:
        sampler, karras, note = map_sampler(fields["Sampler"], fields.get("Schedule type", ""))
        params.update(sampler=sampler, karras=karras)
        if note:
            notes.append(note)
    cfg = _clamped(_number(fields, "CFG scale", notes), 0, 30, "CFG scale", notes)
    if cfg is not None:
        params["cfg_scale"] = cfg
    eta = _number(fields, "Eta", notes) if "Eta" in fields else _number(fields, "Eta DDIM", notes)
    if eta is not None:
        params["eta"] = _clamped(eta, 0, 1, "Eta", notes)
    guidance = _number(fields, "CLIP guidance scale", notes)
    if guidance is not None:
        params["clip_guidance_scale"] = _clamped(guidance, 0, 100000, "CLIP guidance scale", notes)
    params.update(_size(fields.get("Size"), notes))
    seed = _number(fields, "Seed", notes, int)
    if seed is not None and not 0 <= seed <= MAX_SEED:
        notes.append(f"Seed {seed} is outside 0-{MAX_SEED}: a random seed will be used")
        seed = None
    if fields.get("Lora weights"):
        try:
            params["lora_weights"] = weights_from_note(fields["Lora weights"])
        except ValueError as exc:
            notes.append(f"the Lora weights note was not read: {exc}")
    schedule: list[dict[str, Any]] = []
    if fields.get("Schedule"):
        try:
            schedule = schedule_from_note(fields["Schedule"])
        except ValueError as exc:
            notes.append(f"the Schedule note was not read: {exc}")
    unused = sorted(k for k in fields if k not in _USED)
    if unused:
        notes.append("not used here: " + ", ".join(unused[:12]) + (" ..." if len(unused) > 12 else ""))
    return {"params": params, "seed": seed, "schedule": schedule, "notes": notes}
