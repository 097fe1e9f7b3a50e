"""A flow-matching model (tiny SD3- and FLUX-shaped folders) loaded with `--diffusion-model <folder>`,
through the websocket: step events and previews, a live CFG change, rewind / fork, sizes in /api/info."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from app.api.protocol import FrameType
from app.main import create_app
from app.registry import Models, load_models
from app.settings import Settings
from tests.api.conftest import WsReader, make_settings
from tests.api.test_ws_flow import final_bytes, run_to_done

BASE = {"prompt": "a red fox", "negative_prompt": "blurry", "seed": 7, "steps": 8, "width": 32, "height": 32,
        "sampler": "euler", "cfg_scale": 4.0, "preview_every": 1, "full_decode_every": 4}


@pytest.fixture(scope="module", params=["sd3", "flux"])
def flow_models(request: pytest.FixtureRequest, tiny_clip_dir: Path, tmp_path_factory: pytest.TempPathFactory
                ) -> Models:
    from app.demo_flow_models import build_tiny_flux, build_tiny_sd3

    build = build_tiny_sd3 if request.param == "sd3" else build_tiny_flux
    folder = build(tmp_path_factory.mktemp(request.param), seed=0)
    settings = Settings(diffusion_model=str(folder), clip_model=str(tiny_clip_dir), gan_model="", device="cpu",
                        data_dir=tmp_path_factory.mktemp("flow-data"))
    return load_models(settings)


@pytest.fixture
def flow_client(flow_models: Models, tmp_path: Path) -> Iterator[TestClient]:
    with TestClient(create_app(make_settings(tmp_path), models=flow_models)) as c:
        yield c


def test_flow_model_streams_steps_and_previews(flow_client: TestClient) -> None:
    info = flow_client.get("/api/info").json()
    assert info["sizes"]["multiple_of"] == 4 and info["sizes"]["native"] == 32  # f=2 VAE x 2 x 2 patches
    with flow_client.websocket_connect("/ws") as ws:
        reader = WsReader(ws)
        queued, done = run_to_done(reader, BASE)
    steps = [e for e in reader.events if e["type"] == "step"]
    assert [e["index"] for e in steps] == list(range(1, 9))
    assert steps[0]["sigma"] == 1.0 and all(1.0 >= e["sigma"] > 0 for e in steps)  # t, from pure noise
    previews = [f for f in reader.frames if f[0] == FrameType.PREVIEW]
    assert [m["step"] for _, m, _ in previews] == list(range(1, 8))
    assert [m["full"] for _, m, _ in previews] == [s % 4 == 0 for s in range(1, 8)]
    assert [e["index"] for e in steps if e["clip_score"] is not None] == [4, 8]
    assert done["image_id"] and final_bytes(reader, queued["run_id"])


def test_flow_model_live_cfg_and_rewind(flow_client: TestClient) -> None:
    params = {**BASE, "steps": 16, "sampler": "dpmpp_2m"}
    with flow_client.websocket_connect("/ws") as ws:
        reader = WsReader(ws)
        q1, _ = run_to_done(reader, params)
        ws.send_json({"type": "generate", "params": params})
        q2 = reader.until("queued")
        ws.send_json({"type": "update", "run_id": q2["run_id"], "params": {"cfg_scale": 9.0}})
        reader.until("updated", q2["run_id"])
        steps_before = [e["index"] for e in reader.events if e["type"] == "step" and e["run_id"] == q2["run_id"]]
        reader.until("done", q2["run_id"])
        assert not steps_before or max(steps_before) < 16, "the update arrived after the run finished"
        assert final_bytes(reader, q1["run_id"]) != final_bytes(reader, q2["run_id"])
        parent = q1["run_id"]
        ws.send_json({"type": "rewind", "run_id": parent, "step": 6})
        fork = reader.until("queued")
        reader.until("done", fork["run_id"])
        fork_steps = [e["index"] for e in reader.events if e["type"] == "step" and e["run_id"] == fork["run_id"]]
        assert fork_steps == list(range(7, 17))
        assert final_bytes(reader, fork["run_id"]) == final_bytes(reader, parent)
        ws.send_json({"type": "rewind", "run_id": parent, "step": 6, "params": {"cfg_scale": 1.0}})
        own = reader.until("queued")
        reader.until("done", own["run_id"])
        assert final_bytes(reader, own["run_id"]) != final_bytes(reader, parent)
