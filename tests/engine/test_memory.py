"""Memory given back after each job (issue 16 item 8): the worker's after-job hook, glibc's
malloc_trim through ctypes, and resident memory that does not grow across repeated jobs."""

from __future__ import annotations

import queue
import sys
from collections.abc import Callable

import pytest
import torch

from app.engine import memory
from app.engine.jobs import Job
from app.engine.live import LiveState, RunCancelled
from app.engine.worker import Worker
from app.params import LiveParams
from tests.engine.test_engine_parts import ListSink


def test_resident_bytes_reads_statm() -> None:
    if not sys.platform.startswith("linux"):
        pytest.skip("/proc/self/statm is Linux")
    rss = memory.resident_bytes()
    assert rss is not None and rss > 10 * 2**20


def test_trim_heap_asks_glibc() -> None:
    if memory._malloc_trim() is None:
        pytest.skip("not glibc")
    assert memory.trim_heap() is True


def test_release_memory_collects_and_trims(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    monkeypatch.setattr(memory, "trim_heap", lambda: calls.append("trim") or True)
    monkeypatch.setattr(memory.gc, "collect", lambda *a: calls.append("gc") or 0)
    assert memory.release_memory(torch.device("cpu")) is True
    assert calls == ["gc", "trim"]


@pytest.mark.parametrize("outcome", ["done", "cancelled", "failed"])
def test_worker_releases_memory_after_every_job(outcome: str) -> None:
    released: queue.Queue[str] = queue.Queue()

    def run(job: Job) -> None:
        if outcome == "cancelled":
            raise RunCancelled
        if outcome == "failed":
            raise RuntimeError("boom")

    after: Callable[[], None] = lambda: released.put(outcome)  # noqa: E731
    worker = Worker(run, max_queue=2, after=after)
    worker.start()
    try:
        sink = ListSink()
        worker.submit(Job("diffusion", LiveParams(), sink, "c", "c", live=LiveState(LiveParams())))  # type: ignore[arg-type]
        assert released.get(timeout=10) == outcome
    finally:
        worker.stop()
