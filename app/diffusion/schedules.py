"""Disco Diffusion's per-step schedules, "[12]*400+[4]*600", parsed without eval.

A schedule is a sum of terms, each a bracketed list of numbers with an optional integer repeat;
it describes 1000 entries from the noisiest step to the last and is mapped onto a run's steps.
Shorter schedules are padded with their last value; longer ones are refused.
"""

from __future__ import annotations

import re
from functools import lru_cache

LENGTH = 1000
MAX_CHARS = 200
_NUMBER = r"\d+(?:\.\d+)?"
_TERM = re.compile(rf"\[\s*({_NUMBER}(?:\s*,\s*{_NUMBER})*)\s*\](?:\s*\*\s*(\d{{1,5}}))?")


@lru_cache(maxsize=64)
def parse_schedule(text: str) -> tuple[float, ...]:
    """The 1000 entries of a schedule; raises ValueError on anything but the grammar above."""
    if len(text) > MAX_CHARS:
        raise ValueError(f"schedule longer than {MAX_CHARS} characters")
    terms = text.replace(" ", "").split("+")
    parsed: list[tuple[list[float], int]] = []
    total = 0
    for term in terms:
        m = _TERM.fullmatch(term)
        if m is None:
            raise ValueError(f"bad schedule term {term!r}; expected e.g. [12]*400+[4]*600")
        values = [float(v) for v in m.group(1).split(",")]
        repeat = int(m.group(2) or 1)
        total += len(values) * repeat
        if total > LENGTH:
            raise ValueError(f"schedule has more than {LENGTH} entries")
        parsed.append((values, repeat))
    entries = [v for values, repeat in parsed for _ in range(repeat) for v in values]
    if not entries:
        raise ValueError("empty schedule")
    return tuple(entries + [entries[-1]] * (LENGTH - len(entries)))


def at_step(schedule: tuple[float, ...], step: int, total: int) -> float:
    """The entry for step `step` (0-based) of a `total`-step run."""
    return schedule[min(LENGTH - 1, step * LENGTH // max(1, total))]
