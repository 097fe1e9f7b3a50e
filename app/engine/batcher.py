"""Step-level batching: the diffusion runs in progress advance together, one stacked network call
per group of compatible runs per tick.

A run is a generator of its network calls (app.diffusion.generate.sample_steps); the samplers'
maths never sees the batch. Each `tick` every run takes exactly one step, so no run waits more
than one tick for its turn:
1. cancelled runs leave (a cancel is honoured at the run's next step);
2. the network calls the runs wait for (a UNet's or a flow transformer's) are grouped by the
   network that answers them (runs of a model swapped out while they ran keep theirs) and by what
   can be stacked (latent shape, text-context shape, which per-row conditioning: `UNetCall.key`),
   and each group is answered by one network call of at most `max_rows` rows (a bigger group by
   several);
3. every run gets its slice and runs to its next call: sampler update, history, step event,
   preview, live changes at the step boundary. A run that waits for None (a CLIP-guided step,
   which needs gradients through its own UNet call) computes that step itself, unbatched.
Each run keeps its own sigma, CFG scale, prompt embeddings, live parameters and sampler state; runs
join between ticks and leave when they end: continuous batching as in vLLM's scheduler (Kwon et
al. 2023), at the granularity of a sampler step.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Protocol

import torch
from torch import Tensor

from app.diffusion.denoiser import UNetCall
from app.engine.jobs import Job

log = logging.getLogger(__name__)

FAILED = "the run failed on the server; see the server log"


class SteppedRun(Protocol):
    """A begun job that advances one network call at a time (app.engine.diffusion_runner.DiffusionRun)."""

    job: Job
    request: UNetCall | None  # the call it waits for; None: a step it computes itself

    @property
    def network(self) -> object:
        """What answers its calls (its model's denoiser)."""

    def start(self) -> bool:
        """Run to the first call; True if the run already ended."""

    def send(self, out: Tensor | None) -> bool:
        """Answer the waiting call and run to the next; True when the run has ended."""

    def cancelled(self) -> None:
        """Leave now and tell the page."""

    def cancelled_by_error(self) -> None:
        """Leave now: the network call it waited for failed (the page is told `internal`)."""


def row_chunks(runs: Sequence[SteppedRun], max_rows: int) -> list[list[SteppedRun]]:
    """Consecutive runs packed into network calls of at most `max_rows` rows (a run bigger than
    that alone in its own call)."""
    chunks: list[list[SteppedRun]] = []
    rows = 0
    for run in runs:
        n = run.request.rows  # type: ignore[union-attr]
        if chunks and rows + n <= max_rows:
            chunks[-1].append(run)
            rows += n
        else:
            chunks.append([run])
            rows = n
    return chunks


class Batcher:
    def __init__(self, begin: Callable[[Job], SteppedRun | None],
                 network: Callable[[object, list[UNetCall]], list[Tensor]], max_rows: int) -> None:
        """`begin(job)`: set a job up (None if it ended there); `network(net, calls)`: answer calls with
        equal keys in one call of the network `net` (app.diffusion.denoiser.unet_batch)."""
        self._begin = begin
        self._network = network
        self.max_rows = max_rows
        self.runs: list[SteppedRun] = []
        self.calls = 0  # network calls made, for tests and benchmarks

    @property
    def jobs(self) -> list[Job]:
        return [run.job for run in self.runs]

    def add(self, job: Job) -> bool:
        """Begin a job and run it to its first call; True if it joined (False: it ended already)."""
        try:
            run = self._begin(job)
            if run is None or run.start():
                return False
        except Exception:
            _failed(job)
            return False
        self.runs.append(run)
        return True

    def tick(self) -> list[Job]:
        """Advance every run by one step; returns the jobs that ended (done, cancelled or failed)."""
        ended: dict[int, SteppedRun] = {}
        for run in self.runs:
            if run.job.live is not None and run.job.live.cancelled:
                ended[id(run)] = run
                _quietly(run.cancelled, run.job)
        groups: dict[tuple, list[SteppedRun]] = {}
        for run in self.runs:
            if id(run) not in ended and run.request is not None:
                groups.setdefault((id(run.network), run.request.key()), []).append(run)
        answers: dict[int, Tensor] = {}
        for group in groups.values():
            for chunk in row_chunks(group, self.max_rows):
                try:
                    with torch.no_grad():  # also when ticked from inside a GAN search's step
                        outs = self._network(chunk[0].network, [run.request for run in chunk])  # type: ignore[misc]
                except Exception:
                    log.exception("a batched step of %d runs failed", len(chunk))
                    for run in chunk:
                        ended[id(run)] = run
                        _quietly(run.cancelled_by_error, run.job)
                    continue
                self.calls += 1
                answers.update((id(run), out) for run, out in zip(chunk, outs))
        for run in self.runs:
            if id(run) in ended:
                continue
            try:
                if run.send(answers.pop(id(run), None)):
                    ended[id(run)] = run
            except Exception:
                ended[id(run)] = run
                _failed(run.job)
        self.runs = [run for run in self.runs if id(run) not in ended]
        return [run.job for run in ended.values()]

    def cancel_all(self) -> None:
        for run in self.runs:
            _quietly(run.cancelled, run.job)
        self.runs = []


def _error(job: Job) -> dict:
    return {"type": "error", "code": "internal", "run_id": job.run_id, "message": FAILED}


def _failed(job: Job) -> None:
    log.exception("run %s failed", job.run_id)
    job.sink.send(_error(job))


def _quietly(fn: Callable, job: Job, *args) -> None:
    try:
        fn(*args)
    except Exception:
        log.exception("run %s could not be ended cleanly", job.run_id)
