"""The engine's moving parts without models: queue, live params, history, outbox."""

from __future__ import annotations

import threading
import time

import pytest
import torch

from app.engine.history import RunRecord, StepHistory, StepRecord
from app.engine.jobs import Job
from app.engine.live import LiveState, RunCancelled
from app.engine.worker import QueueFull, Worker
from app.params import LiveParams, LiveUpdate


class ListSink:
    def __init__(self) -> None:
        self.events: list[dict] = []

    def send(self, event: dict) -> None:
        self.events.append(event)

    def image(self, meta: dict, data: bytes, kind: str) -> None:
        self.events.append({"type": "image", "kind": kind, **meta})


def test_live_update_changes_only_given_fields() -> None:
    live = LiveState(LiveParams(cfg_scale=5.0, eta=0.0))
    live.update(LiveUpdate(cfg_scale=9.0))
    assert live.params().cfg_scale == 9.0
    assert live.params().eta == 0.0
    live.cancel()
    with pytest.raises(RunCancelled):
        live.check()


def test_history_is_bounded_and_keeps_current_run() -> None:
    one = torch.zeros(4, 8, 8)  # 1 KiB as float32
    per_step = 2 * one.numel() * 4
    history = StepHistory(budget_bytes=per_step * 10)
    history.start(RunRecord("a", {}, 8))
    for i in range(8):
        history.put("a", i, StepRecord(one, one, 1.0))
    history.start(RunRecord("b", {}, 8))
    for i in range(8):
        history.put("b", i, StepRecord(one + i, one, 1.0))
    assert history.nbytes <= per_step * 10
    assert history.run("a") is None  # the older run went first
    assert history.step("b", 7) is not None and float(history.step("b", 7).latent[0, 0, 0]) == 7.0
    history.start(RunRecord("c", {}, 30))
    for i in range(30):
        history.put("c", i, StepRecord(one, one, 1.0))
    assert history.nbytes <= per_step * 10
    run = history.run("c")
    assert 0 in run.steps and 29 in run.steps  # first and newest survive inside one run


def test_history_copies_tensors() -> None:
    history = StepHistory(1 << 20)
    history.start(RunRecord("a", {}, 2))
    x = torch.zeros(2)
    history.put("a", 0, StepRecord(x, None, 1.0))
    x += 1
    assert float(history.step("a", 0).latent.sum()) == 0.0


def _job(sink: ListSink, client: str = "c", engine: str = "diffusion") -> Job:
    return Job(engine, LiveParams(), sink, client, client, live=LiveState(LiveParams()))  # type: ignore[arg-type]


def test_worker_runs_in_order_refuses_when_full_and_cancels() -> None:
    started = threading.Event()
    release = threading.Event()
    ran: list[str] = []

    def run(job: Job) -> None:
        ran.append(job.run_id)
        started.set()
        while not release.is_set():
            job.live.check()
            time.sleep(0.005)

    worker = Worker(run, max_queue=2)
    worker.start()
    sink = ListSink()
    first = _job(sink)
    assert worker.submit(first) == 0
    assert started.wait(2)
    second, third = _job(sink), _job(sink)
    assert worker.submit(second) == 0
    assert worker.submit(third) == 1
    with pytest.raises(QueueFull, match="at most 2"):
        worker.submit(_job(sink))
    assert worker.cancel(second.run_id)  # waiting: removed at once
    assert {"type": "cancelled", "run_id": second.run_id, "index": 0} in sink.events
    assert worker.cancel(first.run_id)  # running: stops at its next check
    deadline = time.time() + 2
    while third.run_id not in ran and time.time() < deadline:
        time.sleep(0.01)
    assert ran[:2] == [first.run_id, third.run_id]
    release.set()
    worker.stop()


def test_worker_replaces_stale_gan_request_of_same_client() -> None:
    gate = threading.Event()
    ran: list[str] = []

    def run(job: Job) -> None:
        gate.wait(2)
        ran.append(job.run_id)

    worker = Worker(run, max_queue=8)
    worker.start()
    sink = ListSink()
    blocker = _job(sink, "x")
    worker.submit(blocker)
    time.sleep(0.05)
    jobs = [_job(sink, "c", "gan") for _ in range(4)]
    for j in jobs:
        worker.submit(j, replace_stale=True)
    other = _job(sink, "d", "gan")
    worker.submit(other, replace_stale=True)
    gate.set()
    deadline = time.time() + 2
    while len(ran) < 3 and time.time() < deadline:
        time.sleep(0.01)
    assert ran == [blocker.run_id, jobs[-1].run_id, other.run_id]
    worker.stop()


def test_worker_reports_failures_without_traceback() -> None:
    def run(job: Job) -> None:
        raise RuntimeError("secret internals /home/x")

    worker = Worker(run, max_queue=2)
    worker.start()
    sink = ListSink()
    worker.submit(_job(sink))
    deadline = time.time() + 2
    while not sink.events and time.time() < deadline:
        time.sleep(0.01)
    worker.stop()
    assert sink.events[0]["type"] == "error" and sink.events[0]["code"] == "internal"
    assert "secret" not in sink.events[0]["message"] and "Traceback" not in sink.events[0]["message"]


def test_a_job_run_whole_lets_the_batch_step_between_its_own_steps() -> None:
    """A long GAN search next to batched diffusion runs: after each search step the batch takes one
    step, so the batched runs advance while the search runs instead of waiting for all of it."""
    from app.engine.batcher import Batcher

    order: list[str] = []

    class Stepped:
        network = None

        def __init__(self, job: Job) -> None:
            self.job, self.request, self.left = job, None, 5

        def start(self) -> bool:
            return False

        def send(self, out) -> bool:
            order.append("batch")
            self.left -= 1
            return self.left == 0

    batcher = Batcher(Stepped, lambda net, calls: [], max_rows=8)
    ran = threading.Event()

    def run_whole(job: Job) -> None:  # the GAN job: three steps
        for _ in range(3):
            order.append("gan")
            job.between_steps()
        ran.set()

    sink = ListSink()
    worker = Worker(run_whole, max_queue=8, batcher=batcher,
                    batchable=lambda job: job.engine == "diffusion")
    diffusion, gan = _job(sink, "a"), _job(sink, "b", engine="gan")
    worker.submit(diffusion)
    worker.submit(gan)
    worker.start()
    assert ran.wait(5)
    deadline = time.time() + 5
    while batcher.runs and time.time() < deadline:
        time.sleep(0.01)
    worker.stop()
    assert order.count("batch") == 5
    first_gan = order.index("gan")
    assert order[first_gan:first_gan + 6] == ["gan", "batch", "gan", "batch", "gan", "batch"], order
