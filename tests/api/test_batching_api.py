"""Two pages at once: the second page's run joins the first one's batch and finishes while the first
is still running, with every step and preview; a page's own runs still wait their turn."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from app.main import create_app
from app.registry import Models, load_models
from app.settings import Settings
from tests.api.conftest import WsReader, make_settings

SHORT = {"prompt": "a cat", "seed": 1, "steps": 4, "width": 32, "height": 32}
LONG = {**SHORT, "steps": 400, "seed": 2}


def test_another_pages_run_joins_the_batch_and_finishes_first(client: TestClient) -> None:
    studio = client.app.state.studio
    with client.websocket_connect("/ws") as a_ws, client.websocket_connect("/ws") as b_ws:
        a, b = WsReader(a_ws), WsReader(b_ws)
        a_ws.send_json({"type": "generate", "params": LONG})
        long_id = a.until("started")["run_id"]
        a.until("step", long_id)
        a_ws.send_json({"type": "generate", "params": SHORT})  # the same page: waits behind its own run
        assert a.until("queued")["position"] == 0
        b_ws.send_json({"type": "generate", "params": SHORT})
        short_id = b.until("queued")["run_id"]
        done = b.until("done", short_id)
        steps = [e["index"] for e in b.events if e["type"] == "step" and e["run_id"] == short_id]
        previews = sorted(f[1]["step"] for f in b.frames if f[1].get("run_id") == short_id)
        assert steps == [1, 2, 3, 4] and previews == [1, 2, 3, 4]  # 3 previews + the final image
        assert done["image_id"]
        assert studio.worker.running_jobs()[0].run_id == long_id, "the long run is still going"
        a_ws.send_json({"type": "cancel", "run_id": long_id})
        cancelled = a.until("cancelled", long_id)
        assert 1 <= cancelled["index"] < 400
        a.until("done")  # the page's second run went next
    assert studio.batcher is not None and studio.batcher.calls > 0


@pytest.fixture(scope="module")
def flux_models(tmp_path_factory: pytest.TempPathFactory, tiny_clip_dir: Path) -> Models:
    from app.demo_flow_models import build_tiny_flux

    folder = build_tiny_flux(tmp_path_factory.mktemp("flux"), seed=0)
    return load_models(Settings(diffusion_model=str(folder), clip_model=str(tiny_clip_dir), gan_model="",
                                device="cpu", data_dir=tmp_path_factory.mktemp("flux-data")))


def test_two_pages_flow_model_runs_step_together(flux_models: Models, tmp_path: Path) -> None:
    """A flow model's runs (FLUX.1-dev-shaped: distilled guidance per row) batch like SD's: the second
    page's run joins the first one's and finishes while it is still running, with its steps and
    previews, and the batch's transformer calls are shared."""
    with TestClient(create_app(make_settings(tmp_path), models=flux_models)) as client:
        studio = client.app.state.studio
        with client.websocket_connect("/ws") as a_ws, client.websocket_connect("/ws") as b_ws:
            a, b = WsReader(a_ws), WsReader(b_ws)
            a_ws.send_json({"type": "generate", "params": {**LONG, "cfg_scale": 2.0}})
            long_id = a.until("started")["run_id"]
            a.until("step", long_id)
            b_ws.send_json({"type": "generate", "params": {**SHORT, "cfg_scale": 6.0, "sampler": "dpmpp_2m"}})
            short_id = b.until("queued")["run_id"]
            done = b.until("done", short_id)
            steps = [e["index"] for e in b.events if e["type"] == "step" and e["run_id"] == short_id]
            assert steps == [1, 2, 3, 4] and done["image_id"]
            assert studio.worker.running_jobs()[0].run_id == long_id, "the long run is still going"
            a_ws.send_json({"type": "cancel", "run_id": long_id})
            assert 1 <= a.until("cancelled", long_id)["index"] < 400
        calls = studio.batcher.calls
        steps_taken = 4 + max(e["index"] for e in a.events if e["type"] == "step")
        assert 0 < calls < steps_taken, "the two runs' steps shared transformer calls"
