"""An app on the tiny models; models load once per session and are shared by every app."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from app.api.protocol import decode_frame
from app.main import create_app
from app.registry import Models, load_models
from app.settings import Settings


@pytest.fixture(scope="session")
def tiny_models(tiny_diffusion_dir: Path, tiny_clip_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Models:
    settings = Settings(diffusion_model=str(tiny_diffusion_dir), clip_model=str(tiny_clip_dir), gan_model="",
                        upscaler_gan="", upscaler_diffusion="", device="cpu", data_dir=tmp_path_factory.mktemp("models-data"))
    return load_models(settings)


def make_settings(data_dir: Path, **overrides) -> Settings:
    """TestClient sends `Host: testserver`: it is configured as an extra name, as a deployment would
    configure its own (the default allow-list stays loopback-only; tests/api/test_guard.py checks it).
    The compute budget is lifted: the calibration is timed on a shared machine, so the default
    budget would make tests depend on its load (tests/api/test_budget_api.py sets its own)."""
    overrides.setdefault("allowed_hosts", ["testserver"])
    overrides.setdefault("max_job_seconds", 1e9)
    return Settings(data_dir=data_dir, device="cpu", gan_model="", **overrides)


@pytest.fixture
def client(tiny_models: Models, tmp_path: Path) -> Iterator[TestClient]:
    with TestClient(create_app(make_settings(tmp_path), models=tiny_models)) as c:
        yield c


class WsReader:
    """Reads a websocket until a condition, splitting JSON events from binary frames."""

    def __init__(self, ws) -> None:
        self.ws = ws
        self.events: list[dict] = []
        self.frames: list[tuple] = []

    def next(self) -> dict | tuple:
        msg = self.ws.receive()
        if msg.get("text") is not None:
            ev = json.loads(msg["text"])
            self.events.append(ev)
            return ev
        frame = decode_frame(msg["bytes"])
        self.frames.append(frame)
        return frame

    def until(self, kind: str, run_id: str | None = None, limit: int = 5000) -> dict:
        for _ in range(limit):
            item = self.next()
            if isinstance(item, dict) and item["type"] == kind and (run_id is None or item.get("run_id") == run_id):
                return item
            if isinstance(item, dict) and item["type"] == "error" and kind != "error":
                raise AssertionError(f"unexpected error event: {item}")
        raise AssertionError(f"no {kind} event")
