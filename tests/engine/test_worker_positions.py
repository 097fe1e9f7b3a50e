"""The waiting line as the page sees it: `queued` before the job can start, `position` as it moves."""

from __future__ import annotations

import threading

from app.engine.jobs import Job
from app.engine.live import LiveState
from app.engine.worker import Worker
from app.params import LiveParams
from tests.engine.test_engine_parts import ListSink


def _job(sink: ListSink, client: str = "c", engine: str = "diffusion") -> Job:
    return Job(engine, LiveParams(), sink, client, client, live=LiveState(LiveParams()))  # type: ignore[arg-type]


def test_positions_follow_the_line() -> None:
    release = threading.Event()
    started = threading.Event()

    def run(job: Job) -> None:
        started.set()
        while not release.is_set():
            job.live.check()
            release.wait(0.005)

    worker = Worker(run, max_queue=8)
    sink = ListSink()
    first, a, b, c = (_job(sink) for _ in range(4))
    heard: list[tuple[str, int]] = []
    assert worker.submit(first, on_queued=lambda p: heard.append((first.run_id, p))) == 0
    worker.start()
    assert started.wait(5)
    for job in (a, b, c):
        worker.submit(job, on_queued=lambda p, j=job: heard.append((j.run_id, p)))
    assert heard == [(first.run_id, 0), (a.run_id, 0), (b.run_id, 1), (c.run_id, 2)]
    sink.events.clear()
    worker.cancel(a.run_id)  # the ones behind it move up, each told once
    moves = [(e["run_id"], e["position"]) for e in sink.events if e["type"] == "position"]
    assert moves == [(b.run_id, 0), (c.run_id, 1)]
    sink.events.clear()
    worker.cancel_client("other page")  # nothing moved: nothing said
    assert not [e for e in sink.events if e["type"] == "position"]
    release.set()
    worker.stop()


def test_a_replaced_gan_request_moves_the_line_up() -> None:
    gate = threading.Event()
    started = threading.Event()

    def run(job: Job) -> None:
        started.set()
        gate.wait(5)

    worker = Worker(run, max_queue=8)
    sink = ListSink()
    worker.submit(_job(sink, "x"))
    worker.start()
    assert started.wait(5)
    gan = _job(sink, "c", "gan")
    behind = _job(sink, "d")
    worker.submit(gan, replace_stale=True)
    worker.submit(behind)
    sink.events.clear()
    worker.submit(_job(sink, "c", "gan"), replace_stale=True)  # the waiting GAN request is superseded
    assert [e for e in sink.events if e["type"] == "position"] == [
        {"type": "position", "run_id": behind.run_id, "position": 0}]
    gate.set()
    worker.stop()
