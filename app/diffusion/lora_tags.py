"""LoRA names, weights and AUTOMATIC1111's `<lora:name:weight>` prompt tags: the pure grammar shared by
the edge (app.params) and the engine, no torch.

A tag names a LoRA file in `--lora-dir` (`<name>.safetensors`) and its weight; `<lora:name>` means
weight 1. Tags are not text for any encoder: `strip_lora_tags` removes them before a prompt is parsed.
Names can never reach outside the folder: no path separators, no leading dot (so no `..`)."""

from __future__ import annotations

import math
import re

MAX_LORAS = 16  # LoRAs one run may apply
MAX_LORA_WEIGHT = 10.0
LORA_NAME_RULE = ("1 to 100 of letters, digits, spaces and _ . ( ) [ ] + -, not starting with a dot or space "
                  "(the file's name without .safetensors)")
_NAME = re.compile(r"^[A-Za-z0-9_()\[\]+-][A-Za-z0-9_.()\[\]+ -]{0,99}$")
_TAG = re.compile(r"<lora:([^<>]*)>", re.IGNORECASE)
_NUMBER = re.compile(r"^\s*[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?\s*$")


def lora_name_problem(name: str) -> str | None:
    """Why `name` cannot name a LoRA, in words; None when it can."""
    if not _NAME.match(name) or name != name.rstrip():
        return f"{name[:40]!r} is not a LoRA name: use {LORA_NAME_RULE}"
    return None


def lora_weight_problem(name: str, weight: float) -> str | None:
    if not (math.isfinite(weight) and abs(weight) <= MAX_LORA_WEIGHT):
        return f"the weight of LoRA {name!r} must be a number from -{MAX_LORA_WEIGHT:g} to {MAX_LORA_WEIGHT:g}"
    return None


def check_lora_weights(weights: dict[str, float]) -> dict[str, float]:
    """`weights` when every name and weight is acceptable and there are at most MAX_LORAS; else ValueError."""
    if len(weights) > MAX_LORAS:
        raise ValueError(f"at most {MAX_LORAS} LoRAs per run, got {len(weights)}")
    for name, weight in weights.items():
        problem = lora_name_problem(name) or lora_weight_problem(name, float(weight))
        if problem:
            raise ValueError(problem)
    return weights


def lora_tags(text: str) -> dict[str, float]:
    """{name: weight} of the `<lora:name>` / `<lora:name:weight>` tags in `text`, in order; ValueError
    for a bad name or weight, or a LoRA tagged twice."""
    found: dict[str, float] = {}
    for m in _TAG.finditer(text):
        body = m.group(1)
        name, sep, weight_text = body.rpartition(":") if ":" in body else (body, "", "")
        name = name.strip()
        if sep and not _NUMBER.match(weight_text):
            raise ValueError(f"<lora:{body[:60]}>: the weight must be a number, as in <lora:name:0.8>")
        weight = float(weight_text) if sep else 1.0
        problem = lora_name_problem(name) or lora_weight_problem(name, weight)
        if problem:
            raise ValueError(f"<lora:{body[:60]}>: {problem}")
        if name in found:
            raise ValueError(f"LoRA {name!r} is tagged twice in the prompt")
        found[name] = weight
    if len(found) > MAX_LORAS:
        raise ValueError(f"at most {MAX_LORAS} LoRAs per run, got {len(found)}")
    return found


def strip_lora_tags(text: str) -> str:
    """`text` without its LoRA tags (what the text encoder reads), spaces around them collapsed."""
    if "<" not in text:
        return text
    return re.sub(r"[ \t]{2,}", " ", _TAG.sub(" ", text)).strip()
