"""Resident memory across repeated heavy-ish jobs on the tiny models (issue 16 item 8): the worker
gives each job's memory back, so the process does not grow from job to job. Generous slack, no
timing; bench/bench_memory.py reports the figures."""

from __future__ import annotations

from pathlib import Path

from fastapi.testclient import TestClient

from app.engine import memory
from app.main import create_app
from app.registry import Models
from tests.api.conftest import WsReader, make_settings

HEAVY = {"prompt": "a red fox", "seed": 1, "steps": 2, "width": 128, "height": 128, "sampler": "euler",
         "tv_scale": 1.0, "batch": 2, "preview_every": 2}


def test_memory_does_not_grow_across_repeated_jobs(tiny_models: Models, tmp_path: Path, monkeypatch) -> None:
    trims: list[int] = []
    trim = memory.trim_heap
    monkeypatch.setattr(memory, "trim_heap", lambda: trims.append(1) or trim())
    after: list[int] = []
    with TestClient(create_app(make_settings(tmp_path), models=tiny_models)) as client, \
            client.websocket_connect("/ws") as ws:
        reader = WsReader(ws)
        for _ in range(4):
            ws.send_json({"type": "generate", "params": HEAVY})
            reader.until("done", reader.until("queued")["run_id"])
            # a tiny job after it: the worker released the heavy job's memory before starting it
            ws.send_json({"type": "generate", "params": {"prompt": "x", "steps": 1, "width": 16, "height": 16}})
            reader.until("done", reader.until("queued")["run_id"])
            after.append(memory.resident_bytes() or 0)
    assert len(trims) >= 8, "the heap is trimmed after every job"
    growth = after[-1] - after[0]
    assert growth < 96 * 2**20, f"resident memory grew {growth / 2**20:.0f} MiB over 3 more heavy jobs"
