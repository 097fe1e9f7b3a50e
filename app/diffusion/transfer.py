"""Device -> host copies that do not stall the GPU queue.

A blocking `.cpu()` after every step makes the GPU wait for the CPU to queue the next step's
kernels; instead a step's tensors are copied into pinned memory with non_blocking=True and an
event, and waited for only once the next step is queued.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass
class Pending:
    tensors: tuple[Tensor | None, ...]
    event: torch.cuda.Event | None = None

    def wait(self) -> tuple[Tensor | None, ...]:
        if self.event is not None:
            self.event.synchronize()
        return self.tensors


def to_host_async(*tensors: Tensor | None) -> Pending:
    """Start copying CUDA tensors to (pinned) host memory; CPU tensors pass through as they are."""
    if not any(t is not None and t.is_cuda for t in tensors):
        return Pending(tensors)
    out = tuple(None if t is None else
                torch.empty(t.shape, dtype=t.dtype, pin_memory=True).copy_(t.detach(), non_blocking=True)
                for t in tensors)
    event = torch.cuda.Event()
    event.record()
    return Pending(out, event)
