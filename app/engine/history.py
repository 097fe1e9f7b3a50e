"""Every step's latent and x0 estimate of recent runs, kept for rewind and timeline scrubbing.

Memory is bounded by a byte budget over all runs: when a new step would exceed it, whole runs
are evicted oldest first (never the run being written), then, if one run alone is too large,
its earliest steps except step 0.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass, field

import torch


@dataclass
class StepRecord:
    latent: torch.Tensor  # x after this step: what a rewind resumes from
    denoised: torch.Tensor | None  # the x0 estimate at this step: what its preview shows
    sigma: float
    clip_score: float | None = None

    @property
    def nbytes(self) -> int:
        n = self.latent.numel() * self.latent.element_size()
        if self.denoised is not None:
            n += self.denoised.numel() * self.denoised.element_size()
        return n


@dataclass
class RunRecord:
    run_id: str
    params: dict
    total: int
    parent: str | None = None
    from_step: int = 0
    steps: dict[int, StepRecord] = field(default_factory=dict)


class StepHistory:
    def __init__(self, budget_bytes: int) -> None:
        self.budget = budget_bytes
        self._runs: OrderedDict[str, RunRecord] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def start(self, run: RunRecord) -> None:
        with self._lock:
            self._runs[run.run_id] = run

    def put(self, run_id: str, index: int, record: StepRecord) -> None:
        record = StepRecord(record.latent.detach().to("cpu", copy=True),
                            None if record.denoised is None else record.denoised.detach().to("cpu", copy=True),
                            record.sigma, record.clip_score)
        with self._lock:
            run = self._runs.get(run_id)
            if run is None:
                return
            old = run.steps.pop(index, None)
            if old is not None:
                self._bytes -= old.nbytes
            run.steps[index] = record
            self._bytes += record.nbytes
            self._evict(keep=run_id)

    def _evict(self, keep: str) -> None:
        for rid in list(self._runs):
            if self._bytes <= self.budget:
                return
            if rid != keep:
                self._bytes -= sum(s.nbytes for s in self._runs.pop(rid).steps.values())
        run = self._runs[keep]
        for idx in sorted(run.steps)[1:-1]:
            if self._bytes <= self.budget:
                return
            self._bytes -= run.steps.pop(idx).nbytes

    def run(self, run_id: str) -> RunRecord | None:
        with self._lock:
            return self._runs.get(run_id)

    def step(self, run_id: str, index: int) -> StepRecord | None:
        with self._lock:
            run = self._runs.get(run_id)
            return None if run is None else run.steps.get(index)

    @property
    def nbytes(self) -> int:
        return self._bytes
