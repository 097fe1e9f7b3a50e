"""Giving memory back after a job: without it a heavy job leaves the process gigabytes above its
baseline (glibc keeps freed arenas mapped; the CUDA caching allocator keeps its blocks).

`release_memory` runs after every job in the worker: a garbage collection (tracebacks and
closures can hold tensors in reference cycles), the CUDA cache emptied, and glibc's
`malloc_trim(0)`, which returns the free heap pages to the kernel. A full collection over the
~400k objects the loaded models and libraries make takes ~0.7 s on a busy 2-core CPU, so the
studio freezes those once at start (`freeze_loaded`: they live as long as the server) and each
collection after a job then only walks what was made since: well under a millisecond.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import os
from functools import lru_cache
from pathlib import Path

import torch


@lru_cache(maxsize=1)
def _malloc_trim():
    """glibc's malloc_trim, or None (musl, macOS, Windows)."""
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        fn = ctypes.CDLL(name).malloc_trim
    except (OSError, AttributeError):
        return None
    fn.argtypes = [ctypes.c_size_t]
    fn.restype = ctypes.c_int
    return fn


def trim_heap() -> bool:
    """Return free heap pages to the kernel (glibc only); True if it could be asked."""
    fn = _malloc_trim()
    if fn is None:
        return False
    fn(0)
    return True


def freeze_loaded() -> None:
    """Move every object alive now (the loaded models, the libraries) out of the collector's sight."""
    gc.freeze()


def release_memory(device: torch.device) -> bool:
    """Drop what a finished or cancelled job left behind; True if the heap was trimmed."""
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return trim_heap()


def resident_bytes(statm: Path = Path("/proc/self/statm")) -> int | None:
    """This process's resident set size in bytes (Linux), or None."""
    try:
        return int(statm.read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None
