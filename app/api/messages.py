"""Refusals in words: a pydantic ValidationError becomes "field: what it must be", with no regex
patterns or validator jargon, and sizes read as KiB / MiB rather than byte counts."""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from app.params import MAX_SEED

# Message wrappers and the `params` level say nothing to a person reading the error.
_HIDDEN_LOC = {"generate", "generate_gan", "upscale", "update", "rewind", "cancel", "preview", "hello", "params"}
_SCHEDULE = "a schedule such as [12]*400+[4]*600 (digits, [ ] * + . and spaces)"
_PATTERN_HINTS = {"cutn_overview": _SCHEDULE, "cutn_inner": _SCHEDULE, "cut_icgray_p": _SCHEDULE,
                  "init_image": "the id of an uploaded image (letters, digits, - and _) or gallery:<image id>",
                  "source": "gallery:<image id> or the id of an uploaded image",
                  "mask_image": "the id of an uploaded mask image (letters, digits, - and _)"}
_SEEDS = {"seed", "mix_seed"}
SEED_RULE = f"must be a whole number from 0 to {MAX_SEED}; leave it empty for a random seed"


def _num(v: Any) -> str:
    return f"{v:g}" if isinstance(v, float) else str(v)


def _what(err: dict[str, Any], field: str) -> str:
    kind = err.get("type", "")
    ctx = err.get("ctx") or {}
    if field in _SEEDS and kind in {"int_from_float", "int_parsing", "int_type", "greater_than_equal",
                                    "less_than_equal"}:
        return SEED_RULE
    if kind == "string_pattern_mismatch":
        return "must be " + _PATTERN_HINTS.get(field, "plain text without special characters")
    if kind == "value_error":
        return str(ctx.get("error", err.get("msg", "is not valid")))
    words = {
        "greater_than_equal": lambda: f"must be at least {_num(ctx.get('ge'))}",
        "greater_than": lambda: f"must be more than {_num(ctx.get('gt'))}",
        "less_than_equal": lambda: f"must be at most {_num(ctx.get('le'))}",
        "less_than": lambda: f"must be less than {_num(ctx.get('lt'))}",
        "multiple_of": lambda: f"must be a multiple of {_num(ctx.get('multiple_of'))}",
        "int_from_float": lambda: "must be a whole number",
        "int_parsing": lambda: "must be a whole number",
        "int_type": lambda: "must be a whole number",
        "float_parsing": lambda: "must be a number",
        "float_type": lambda: "must be a number",
        "bool_parsing": lambda: "must be true or false",
        "bool_type": lambda: "must be true or false",
        "string_type": lambda: "must be text",
        "string_too_short": lambda: ("must not be empty" if ctx.get("min_length") == 1
                                     else f"must have at least {ctx.get('min_length')} characters"),
        "string_too_long": lambda: f"must have at most {ctx.get('max_length')} characters",
        "literal_error": lambda: f"must be one of {ctx.get('expected')}",
        "extra_forbidden": lambda: "is not a setting this server knows",
        "missing": lambda: "is missing",
        "union_tag_invalid": lambda: f"must be one of {ctx.get('expected_tags')}",
        "union_tag_not_found": lambda: "is missing",
        "json_invalid": lambda: "the message is not valid JSON",
        "model_type": lambda: "must be an object",
        "model_attributes_type": lambda: "must be an object",
    }
    return words[kind]() if kind in words else str(err.get("msg", "is not valid"))


def validation_text(exc: ValidationError, limit: int = 5) -> str:
    """'seed: must be a whole number ...; width: must be a multiple of 8' (at most `limit` parts)."""
    parts = []
    for err in exc.errors()[:limit]:
        loc = [str(p) for p in err.get("loc", ()) if p not in _HIDDEN_LOC]  # list indices kept: schedule.0.step
        field = loc[-1] if loc else ""
        what = _what(err, field)
        if err.get("type") == "union_tag_invalid" and not loc:
            what = "unknown message type; " + what
        parts.append(f"{'.'.join(loc)}: {what}" if loc else what)
    return "; ".join(dict.fromkeys(parts))
