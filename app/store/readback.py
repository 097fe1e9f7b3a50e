"""Settings read back from a PNG: Noisescope's JSON chunk, else AUTOMATIC1111's `parameters` text.

The answer is what the page restores: {"source", "engine", "params", "seed", "schedule",
"lineage", "notes"}. Parameters are filtered to the fields the engine knows; a schedule is
checked entry by entry like the `generate` message checks it, so what the page sends back is
accepted, and what was dropped is said in a note.
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import ValidationError

from app.params import DiffusionParams, GanParams, ScheduleEntry, dump_schedule
from app.store.a1111 import from_parameters
from app.store.pngmeta import NOISESCOPE_KEY, PARAMETERS_KEY


class NoSettings(ValueError):
    """The PNG carries no settings this studio reads."""


def checked_schedule(raw: object, steps: int | None, notes: list[str]) -> list[dict[str, Any]]:
    """The entries of `raw` that validate (and lie below `steps`), in step order; notes for the rest."""
    if not isinstance(raw, list):
        return []
    kept: list[ScheduleEntry] = []
    for n, item in enumerate(raw[:1000]):
        try:
            entry = ScheduleEntry.model_validate(item)
        except ValidationError as exc:
            notes.append(f"schedule entry {n} dropped: {exc.errors()[0].get('msg')}")
            continue
        if steps is not None and entry.step >= steps:
            notes.append(f"schedule entry {n} dropped: step {entry.step} is not below steps ({steps})")
        elif kept and entry.step <= kept[-1].step:
            notes.append(f"schedule entry {n} dropped: its step does not follow the one before")
        else:
            kept.append(entry)
    return dump_schedule(kept)


def _from_noisescope(text: str) -> dict[str, Any]:
    try:
        record = json.loads(text)
    except ValueError:
        raise NoSettings("the PNG's noisescope chunk is not JSON") from None
    if not isinstance(record, dict) or record.get("engine") not in ("diffusion", "gan") \
            or not isinstance(record.get("params"), dict):
        raise NoSettings("the PNG's noisescope chunk is not a Noisescope record")
    engine = record["engine"]
    fields = set((DiffusionParams if engine == "diffusion" else GanParams).model_fields) - {"schedule"}
    params = {k: v for k, v in record["params"].items() if k in fields}
    notes: list[str] = []
    if engine == "diffusion" and "schedule" not in record:
        notes.append("made before Noisescope recorded live changes: the values are those at the end of the run")
    steps = params.get("steps") if isinstance(params.get("steps"), int) else None
    seed = record.get("seed")
    lineage = record.get("lineage") if isinstance(record.get("lineage"), dict) else None
    return {"source": "noisescope", "engine": engine, "params": params,
            "seed": seed if isinstance(seed, int) and not isinstance(seed, bool) else None,
            "schedule": checked_schedule(record.get("schedule"), steps, notes) if engine == "diffusion" else [],
            "lineage": lineage, "notes": notes}


def settings_from_chunks(chunks: dict[str, str], max_steps: int = 10000) -> dict[str, Any]:
    """What to restore from a PNG's text chunks; raises NoSettings when there is nothing to read."""
    if NOISESCOPE_KEY in chunks:
        return _from_noisescope(chunks[NOISESCOPE_KEY])
    if PARAMETERS_KEY in chunks:
        read = from_parameters(chunks[PARAMETERS_KEY], max_steps)
        notes = read["notes"]
        schedule = checked_schedule(read["schedule"], read["params"].get("steps"), notes)
        return {"source": "automatic1111", "engine": "diffusion", "params": read["params"], "seed": read["seed"],
                "schedule": schedule, "lineage": None, "notes": notes}
    raise NoSettings("that PNG carries no Noisescope or AUTOMATIC1111 settings")
