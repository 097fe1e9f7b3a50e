"""Runs that replay (issue 17, defect 2): every live change is recorded at the step it took effect,
with the fork lineage, and a `generate` with the recorded starting values plus schedule gives the
same image bit for bit on the CPU."""

from __future__ import annotations

import io
import json
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient
from PIL import Image

from app.api.protocol import GenerateDiffusion, client_message
from app.engine.studio import Studio, StudioError
from app.params import DiffusionParams, LiveUpdate
from app.registry import Models
from app.store.gallery import Gallery
from tests.api.conftest import WsReader, make_settings
from tests.api.test_ws_flow import final_bytes, run_to_done

CAT = {"prompt": "cat face", "seed": 1234, "steps": 60, "width": 32, "height": 32, "cfg_scale": 5.0}


class ChangingSink:
    """Collects a studio's events; at `at_step` of the first run it makes a live update itself, from
    the sampling thread, so the change lands at a known step without any timing."""

    def __init__(self, studio_ready: threading.Event, at_step: int, change: LiveUpdate) -> None:
        self.studio: Studio | None = None
        self.ready = studio_ready
        self.at_step = at_step
        self.change = change
        self.changed_run: str | None = None
        self.reached = threading.Event()  # set when the run is held at `at_step`
        self.events: list[dict] = []
        self.done: dict[str, threading.Event] = {}
        self._lock = threading.Lock()

    def send(self, event: dict) -> None:
        with self._lock:
            self.events.append(event)
            flag = self.done.setdefault(event.get("run_id", ""), threading.Event())
        if event["type"] == "step" and event["index"] == self.at_step and self.changed_run is None:
            self.reached.set()
            self.ready.wait()
            assert self.studio is not None
            self.changed_run = event["run_id"]
            self.studio.update(event["run_id"], self.change, "page")
        if event["type"] in ("done", "error", "cancelled"):
            flag.set()

    def image(self, meta: dict, data: bytes, kind: str) -> None:
        pass

    def wait_done(self, run_id: str) -> dict:
        with self._lock:
            flag = self.done.setdefault(run_id, threading.Event())
        assert flag.wait(300), f"run {run_id} did not finish"
        return next(e for e in self.events if e.get("run_id") == run_id and e["type"] in ("done", "error", "cancelled"))


@pytest.fixture
def studio(tiny_models: Models, tmp_path: Path):
    s = Studio(make_settings(tmp_path), tiny_models, Gallery(tmp_path / "gallery"))
    s.start()
    yield s
    s.stop()
    s.gallery.close()


def pixels(gallery: Gallery, image_id: str) -> np.ndarray:
    with Image.open(gallery.path_for(image_id)) as img:
        return np.asarray(img.convert("RGB"))


def test_live_change_is_recorded_and_the_replay_is_bit_exact(studio: Studio) -> None:
    ready = threading.Event()
    sink = ChangingSink(ready, at_step=10, change=LiveUpdate(cfg_scale=0.0))
    sink.studio = studio
    original = studio.generate(DiffusionParams(**CAT), sink, "page", "page")
    ready.set()
    done = sink.wait_done(original)
    assert done["type"] == "done" and sink.changed_run == original
    # the change was made once 10 steps were done: it shaped step 11 onwards
    assert done["schedule"] == [{"step": 10, "changes": {"cfg_scale": 0.0}}]
    record = studio.gallery.get(done["image_id"])
    assert record is not None
    assert record.params["cfg_scale"] == 5.0, "the gallery keeps the starting value, not the last one"
    assert record.schedule == done["schedule"] and record.lineage is None and record.run_id == original

    # regenerate from the PNG's JSON chunk, through the wire model a page would send
    with Image.open(studio.gallery.path_for(done["image_id"])) as img:
        chunk = json.loads(img.text["noisescope"])
        assert 'Schedule: "10: cfg_scale=0"' in img.text["parameters"]
        assert "CFG scale: 5," in img.text["parameters"]
    message = client_message.validate_python(
        {"type": "generate", "params": {**chunk["params"], "seed": chunk["seed"], "schedule": chunk["schedule"]}})
    assert isinstance(message, GenerateDiffusion)
    replay = studio.generate(message.params, sink, "page", "page")
    replayed = sink.wait_done(replay)
    assert replayed["schedule"] == done["schedule"], "a replay records the same schedule"

    a, b = (studio.history.step(r, 60) for r in (original, replay))
    assert a is not None and b is not None
    assert torch.equal(a.latent, b.latent), "the replay's final latent differs"
    assert np.array_equal(pixels(studio.gallery, done["image_id"]), pixels(studio.gallery, replayed["image_id"]))

    # without the schedule (what the gallery used to give back) the picture is another one
    plain = studio.generate(DiffusionParams(**CAT), sink, "page", "page")
    sink.wait_done(plain)
    c = studio.history.step(plain, 60)
    assert c is not None and not torch.equal(a.latent, c.latent)


def test_fork_records_lineage_and_replays_from_scratch(client: TestClient) -> None:
    base = {**CAT, "steps": 20, "sampler": "euler_a", "schedule": [{"step": 3, "changes": {"cfg_scale": 7}}]}
    with client.websocket_connect("/ws") as ws:
        reader = WsReader(ws)
        parent, parent_done = run_to_done(reader, base)
        assert parent_done["schedule"] == [{"step": 3, "changes": {"cfg_scale": 7.0}}]
        ws.send_json({"type": "rewind", "run_id": parent["run_id"], "step": 12, "params": {"cfg_scale": 1.5}})
        fork = reader.until("queued")
        fork_done = reader.until("done", fork["run_id"])
        assert fork_done["lineage"] == {"parent_run": parent["run_id"], "from_step": 12}
        assert fork_done["schedule"] == [{"step": 3, "changes": {"cfg_scale": 7.0}},
                                         {"step": 12, "changes": {"cfg_scale": 1.5}}]
        assert fork_done["params"]["cfg_scale"] == 5.0
        # a fork of the fork inherits the whole chain before its step
        ws.send_json({"type": "rewind", "run_id": fork["run_id"], "step": 15, "params": {"eta": 0.25}})
        grandchild = reader.until("done", reader.until("queued")["run_id"])
        assert grandchild["lineage"] == {"parent_run": fork["run_id"], "from_step": 15}
        assert grandchild["schedule"] == [{"step": 3, "changes": {"cfg_scale": 7.0}},
                                          {"step": 12, "changes": {"cfg_scale": 1.5}},
                                          {"step": 15, "changes": {"eta": 0.25}}]
        replay, _ = run_to_done(reader, {**fork_done["params"], "schedule": fork_done["schedule"]})
        replay2, _ = run_to_done(reader, {**grandchild["params"], "schedule": grandchild["schedule"]})
    assert final_bytes(reader, fork["run_id"]) == final_bytes(reader, replay["run_id"])
    assert final_bytes(reader, grandchild["run_id"]) == final_bytes(reader, replay2["run_id"])
    assert final_bytes(reader, fork["run_id"]) != final_bytes(reader, parent["run_id"])
    gallery = {g["id"]: g for g in client.get("/api/gallery").json()}
    assert gallery[fork_done["image_id"]]["lineage"]["from_step"] == 12
    assert gallery[fork_done["image_id"]]["schedule"] == fork_done["schedule"]
    png = Image.open(io.BytesIO(client.get(gallery[fork_done["image_id"]]["url"]).content))
    assert f'Forked from: "run {parent["run_id"]} at step 12"' in png.text["parameters"]


GOOD = {"prompt": "a cat", "seed": 1, "steps": 10, "width": 32, "height": 32}
BAD_SCHEDULES = [
    ([{"step": 10, "changes": {"cfg_scale": 1}}], "below steps"),
    ([{"step": -1, "changes": {"cfg_scale": 1}}], "schedule.0.step"),
    ([{"step": 4, "changes": {"cfg_scale": 1}}, {"step": 4, "changes": {"eta": 1}}], "steps must increase"),
    ([{"step": 5, "changes": {"cfg_scale": 1}}, {"step": 2, "changes": {"eta": 1}}], "steps must increase"),
    ([{"step": 2, "changes": {}}], "at least one parameter"),
    ([{"step": 2, "changes": {"cfg_scale": 99}}], "schedule.0.changes.cfg_scale"),
    ([{"step": 2, "changes": {"steps": 4}}], "schedule.0.changes.steps"),
    ([{"step": 2, "changes": {"cutn_overview": "[1]*0"}}], "schedule.0.changes.cutn_overview"),
    ([{"step": 2}], "schedule.0.changes"),
    ([{"step": 2, "changes": {"cfg_scale": 1}, "extra": 1}], "schedule.0.extra"),
    ([{"step": i % 10, "changes": {"cfg_scale": 1}} for i in range(1001)], "schedule"),
    ("10: cfg_scale=0", "schedule"),
]


@pytest.mark.parametrize(("schedule", "needle"), BAD_SCHEDULES, ids=[n for _, n in BAD_SCHEDULES])
def test_bad_schedules_are_bad_requests(client: TestClient, schedule: object, needle: str) -> None:
    with client.websocket_connect("/ws") as ws:
        reader = WsReader(ws)
        ws.send_json({"type": "generate", "params": {**GOOD, "schedule": schedule}})
        err = reader.until("error")
    assert err["code"] == "bad_request" and needle in err["message"], err


def test_schedule_inside_img2img_window(client: TestClient) -> None:
    with client.websocket_connect("/ws") as ws:
        reader = WsReader(ws)
        ws.send_json({"type": "generate", "params": {**GOOD, "skip_steps": 4,
                                                      "schedule": [{"step": 3, "changes": {"cfg_scale": 1}}]}})
        err = reader.until("error")
    assert err["code"] == "bad_request" and "skip_steps (4)" in err["message"], err


def test_a_schedule_over_the_cutout_cap_is_too_large(studio: Studio) -> None:
    params = DiffusionParams(**{**GOOD, "clip_guidance_scale": 1.0,
                                "schedule": [{"step": 5, "changes": {"cutn_overview": "[60]*1000",
                                                                     "cutn_inner": "[30]*1000"}}]})
    with pytest.raises(StudioError) as exc:
        studio.generate(params, ChangingSink(threading.Event(), 99, LiveUpdate()), "page", "page")
    assert exc.value.code == "too_large" and "schedule[0] (step 5)" in exc.value.message


def test_an_update_is_checked_against_the_changes_still_to_replay(studio: Studio) -> None:
    """Cutouts within the cap now but over it once a replayed entry adds its own: refused."""
    params = DiffusionParams(**{**GOOD, "steps": 30, "clip_guidance_scale": 1.0, "cutn_overview": "[4]*1000",
                                "schedule": [{"step": 25, "changes": {"cutn_inner": "[40]*1000"}}]})
    ready = threading.Event()
    sink = ChangingSink(ready, 1, LiveUpdate(cfg_scale=3.0))
    sink.studio = studio
    run = studio.generate(params, sink, "page", "page")
    assert sink.reached.wait(300)  # the run is held after its first step
    with pytest.raises(StudioError) as exc:
        studio.update(run, LiveUpdate(cutn_overview="[30]*1000"), "page")
    assert exc.value.code == "too_large" and "cutouts" in exc.value.message
    assert studio.update(run, LiveUpdate(cutn_overview="[8]*1000"), "page").cutn_overview == "[8]*1000"
    ready.set()
    done = sink.wait_done(run)
    assert done["schedule"] == [{"step": 1, "changes": {"cutn_overview": "[8]*1000", "cfg_scale": 3.0}},
                                {"step": 25, "changes": {"cutn_inner": "[40]*1000"}}]
