"""A waiting CLIP search or kept render is never replaced by a newer slider render of the same page;
waiting slider renders are."""

from __future__ import annotations

import threading
import time

from app.engine.worker import Worker
from app.params import GanParams
from tests.engine.test_engine_parts import ListSink, _job


def test_slider_renders_replace_each_other_but_not_a_search_or_a_kept_render() -> None:
    gate = threading.Event()
    ran: list[str] = []

    def run(job) -> None:
        gate.wait(5)
        ran.append(job.run_id)

    worker = Worker(run, max_queue=8)
    worker.start()
    sink = ListSink()
    blocker = _job(sink, "x")
    worker.submit(blocker)
    while worker._current is None:  # the blocker is running; everything below waits behind it
        time.sleep(0.01)

    def gan(**params) -> object:
        job = _job(sink, "c", "gan")
        job.params = GanParams(prompt="red heart", seed=1, **params)
        worker.submit(job, replace_stale=True)
        return job

    search = gan(search_steps=5)
    kept = gan()  # Render: save defaults to true
    drags = [gan(save=False, truncation_psi=psi) for psi in (0.1, 0.2, 0.3)]
    assert worker.waiting(blocker) is False, "another page's jobs are not the blocker's"
    assert worker.waiting(search) is True
    gate.set()
    deadline = time.time() + 5
    while len(ran) < 4 and time.time() < deadline:
        time.sleep(0.01)
    worker.stop()
    assert ran == [blocker.run_id, search.run_id, kept.run_id, drags[-1].run_id]
    replaced = [e["run_id"] for e in sink.events if e.get("reason") == "superseded"]
    assert replaced == [d.run_id for d in drags[:2]]
