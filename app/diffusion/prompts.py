"""Weighted multi-prompts: "a red fox:1 | blurry:-0.5" -> [("a red fox", 1.0), ("blurry", -0.5)].

Parts are separated by "|". A part ends in a weight only when its last colon is followed by
nothing but a number, so "a photo: at dusk" keeps its colon; to keep a trailing "12:30" literal,
give a weight after it ("at 12:30:1"). `<lora:name:weight>` tags (app.diffusion.lora_tags) are checked
and removed first: they choose LoRAs, not text. Empty parts are skipped; weights beyond +-MAX_WEIGHT (and
1e999, which reads as infinity) are refused, since CFG multiplies the image by them.
"""

from __future__ import annotations

import math
import re

from app.diffusion.lora_tags import lora_tags, strip_lora_tags

MAX_PROMPTS = 16
MAX_WEIGHT = 100.0
_WEIGHT = re.compile(r"^(.*):\s*([+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?)\s*$", re.DOTALL)


def parse_prompt(text: str) -> list[tuple[str, float]]:
    """Split on "|" and read an optional trailing ":weight" from each part; raises ValueError when
    nothing is left, a weight is out of range, or there are more than MAX_PROMPTS parts."""
    out: list[tuple[str, float]] = []
    lora_tags(text)
    for part in strip_lora_tags(text).split("|"):
        m = _WEIGHT.match(part)
        body, weight = (m.group(1), float(m.group(2))) if m else (part, 1.0)
        body = body.strip()
        if not body:
            continue
        if not (math.isfinite(weight) and abs(weight) <= MAX_WEIGHT):
            raise ValueError(f"the weight of {body[:40]!r} is {m.group(2) if m else weight}; "
                             f"weights are limited to +-{MAX_WEIGHT:g}")
        out.append((body, weight))
    if not out:
        raise ValueError("the prompt has no text")
    if len(out) > MAX_PROMPTS:
        raise ValueError(f"at most {MAX_PROMPTS} weighted prompts, got {len(out)}")
    return out
