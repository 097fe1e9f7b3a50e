"""The studio with its engine as a Ray Serve deployment of two CPU replicas (a local Ray cluster, tiny
models): concurrent pages, live messages and forks on the replica holding the run, and a replica killed
mid-run. The order matters: the last test kills a replica."""

from __future__ import annotations

import io
import json
import os
import signal
import time

import pytest
from fastapi.testclient import TestClient
from PIL import Image

from app.api.protocol import FrameType
from app.api.ws import owner_key
from tests.api.conftest import WsReader

pytest.importorskip("ray", reason="Ray is not installed (pip install -e '.[ray]')")
pytestmark = [pytest.mark.ray, pytest.mark.slow]

BASE = {"prompt": "a red fox", "seed": 7, "steps": 12, "width": 32, "height": 32, "sampler": "euler",
        "cfg_scale": 4.0}


def generate(reader: WsReader, params: dict) -> str:
    reader.ws.send_json({"type": "generate", "params": params})
    return reader.until("queued")["run_id"]


def frames_of(reader: WsReader, run_id: str, kind: FrameType) -> list[tuple]:
    return [f for f in reader.frames if f[0] == kind and f[1]["run_id"] == run_id]


def replica_of(client: TestClient, run_id: str) -> str:
    replica = client.app.state.studio.replica_of(run_id)
    assert replica is not None
    return replica


def test_two_pages_at_once_run_on_two_replicas_and_stream_every_step(ray_client: TestClient) -> None:
    with ray_client.websocket_connect("/ws") as a, ray_client.websocket_connect("/ws") as b:
        pages = [WsReader(a), WsReader(b)]
        runs = [generate(page, {**BASE, "seed": 7 + i}) for i, page in enumerate(pages)]
        dones = [page.until("done", run) for page, run in zip(pages, runs)]
    assert replica_of(ray_client, runs[0]) != replica_of(ray_client, runs[1])
    for page, run, done in zip(pages, runs, dones):
        steps = [e["index"] for e in page.events if e["type"] == "step" and e["run_id"] == run]
        assert steps == list(range(1, 13))
        assert [m["step"] for _, m, _ in frames_of(page, run, FrameType.PREVIEW)] == list(range(1, 12))
        finals = frames_of(page, run, FrameType.FINAL)
        assert len(finals) == 1 and finals[0][1]["image_id"] == done["image_id"]
        assert not [e for e in page.events if e["type"] == "error"]
    listed = {g["id"] for g in ray_client.get("/api/gallery").json()}  # written by the ingress
    assert {d["image_id"] for d in dones} <= listed
    stored = ray_client.get(f"/api/gallery/{dones[0]['image_id']}.png")
    assert stored.status_code == 200
    image = Image.open(io.BytesIO(stored.content))
    assert json.loads(image.text["noisescope"])["seed"] == 7  # the PNG with its metadata, as the replica made it
    shown = Image.open(io.BytesIO(frames_of(pages[0], runs[0], FrameType.FINAL)[0][2]))
    assert image.tobytes() == shown.tobytes()


def test_update_preview_and_fork_reach_the_replica_holding_the_run(ray_client: TestClient) -> None:
    with ray_client.websocket_connect("/ws") as ws:
        page = WsReader(ws)
        parent = generate(page, {**BASE, "steps": 40})
        ws.send_json({"type": "update", "run_id": parent, "params": {"eta": 0.5}})
        updated = page.until("updated", parent)
        done = page.until("done", parent)
        ws.send_json({"type": "preview", "run_id": parent, "step": 20})
        while not frames_of(page, parent, FrameType.TIMELINE):
            page.next()
        # a fork from step 5, unchanged: it reads the parent's step history on the parent's replica
        ws.send_json({"type": "rewind", "run_id": parent, "step": 5})
        fork = page.until("queued")["run_id"]
        page.until("done", fork)
    assert updated["params"]["eta"] == 0.5
    assert done["schedule"] and done["schedule"][0]["changes"] == {"eta": 0.5}, "the update reached the run"
    assert frames_of(page, parent, FrameType.TIMELINE)[0][1]["step"] == 20
    assert replica_of(ray_client, fork) == replica_of(ray_client, parent)
    fork_steps = [e["index"] for e in page.events if e["type"] == "step" and e["run_id"] == fork]
    assert fork_steps == list(range(6, 41))
    same = [frames_of(page, r, FrameType.FINAL)[0][2] for r in (parent, fork)]
    assert same[0] == same[1], "an unchanged fork reproduces its parent's image from the parent's history"


def test_info_and_vocab_come_from_the_replicas_models(ray_client: TestClient) -> None:
    info = ray_client.get("/api/info").json()
    assert info["device"] == "cpu" and info["diffusion"] and info["gan"] is None
    assert info["sizes"]["native"] == 32
    assert ray_client.get("/api/vocab", params={"prefix": "a"}).status_code == 200  # the replica's tokenizer


def test_a_closed_page_cancels_its_run_on_its_replica(ray_client: TestClient, engine) -> None:
    secret = "closed-page-secret-0123456789abcdef"
    with ray_client.websocket_connect("/ws") as ws:
        page = WsReader(ws)
        ws.send_json({"type": "hello", "owner": secret})
        run = generate(page, {**BASE, "steps": 500})
        page.until("step", run)
        replica = replica_of(ray_client, run)
    # the replica cancels the run when its stream is dropped; a cancel then finds nothing to stop
    for _ in range(300):
        answer = engine.cancel.remote(run, owner_key(secret), replica=replica).result()
        if answer[0] == "refused":
            break
        time.sleep(0.1)
    assert answer == ("refused", "not_found", f"run {run!r} is not queued or running")
    with ray_client.websocket_connect("/ws") as ws:  # the same page, reloaded: its run stopped early
        page = WsReader(ws)
        ws.send_json({"type": "hello", "owner": secret})
        ws.send_json({"type": "preview", "run_id": run, "step": 499})
        refused = page.until("error")
    assert refused["code"] == "not_found" and "499" in refused["message"]


def test_a_replica_killed_mid_run_ends_that_run_only(ray_client: TestClient, engine) -> None:
    before = {g["id"] for g in ray_client.get("/api/gallery").json()}
    with ray_client.websocket_connect("/ws") as a, ray_client.websocket_connect("/ws") as b:
        doomed_page, other_page = WsReader(a), WsReader(b)
        doomed = generate(doomed_page, {**BASE, "steps": 400})
        other = generate(other_page, {**BASE, "steps": 120})
        doomed_page.until("step", doomed)
        other_page.until("step", other)
        victim = replica_of(ray_client, doomed)
        assert replica_of(ray_client, other) != victim
        pid = engine.describe.remote(replica=victim).result()["pid"]
        os.kill(pid, signal.SIGKILL)
        error = doomed_page.until("error", doomed)
        other_done = other_page.until("done", other)
        # the lost run's steps went with its replica; the page can resubmit
        a.send_json({"type": "preview", "run_id": doomed, "step": 1})
        refused = doomed_page.until("error")
        again = generate(doomed_page, {**BASE, "steps": 8})
        again_done = doomed_page.until("done", again)
    assert error["code"] == "replica_lost" and "generate again" in error["message"]
    assert not [e for e in other_page.events if e["type"] == "error"]
    assert refused["code"] == "replica_lost" and refused["run_id"] == doomed
    assert replica_of(ray_client, again) != victim
    after = {g["id"] for g in ray_client.get("/api/gallery").json()}
    assert after == before | {other_done["image_id"], again_done["image_id"]}
