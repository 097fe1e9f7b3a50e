"""Quantities in the words people read in messages."""

from __future__ import annotations


def size_text(n: float) -> str:
    """8388608 -> '8 MiB', 13000000 -> '12.4 MiB', 1536 -> '1.5 KiB', 100 -> '100 bytes'."""
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= scale:
            return f"{n / scale:.1f}".removesuffix(".0") + f" {unit}"
    return f"{int(n)} bytes"
