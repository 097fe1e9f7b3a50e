"""Bad input on every message type: a clear error, no traceback, nothing lost, socket still usable."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

from app.main import create_app
from tests.api.conftest import WsReader, make_settings

GOOD = {"prompt": "a cat", "seed": 1, "steps": 2, "width": 32, "height": 32}

BAD_MESSAGES = [
    ("not json at all", "bad_request"),
    ('{"type": "explode"}', "bad_request"),
    ('{"type": "generate"}', "bad_request"),
    ('{"type": "generate", "params": {"prompt": ""}}', "bad_request"),
    ('{"type": "generate", "params": {"prompt": "x", "steps": -1}}', "bad_request"),
    ('{"type": "generate", "params": {"prompt": "x", "width": 33}}', "bad_request"),
    ('{"type": "generate", "params": {"prompt": "x", "sampler": "magic"}}', "bad_request"),
    ('{"type": "generate", "params": {"prompt": "x", "evil": 1}}', "bad_request"),
    ('{"type": "generate", "params": {"prompt": "x", "width": 4096, "height": 4096}}', "too_large"),
    ('{"type": "generate", "params": {"prompt": "x", "width": 1024, "height": 1024, "batch": 4}}', "too_large"),
    ('{"type": "generate", "params": {"prompt": "x", "steps": 5000}}', "too_large"),
    ('{"type": "generate", "params": {"prompt": "x", "steps": 5, "skip_steps": 5}}', "too_large"),
    ('{"type": "generate", "params": {"prompt": "x", "clip_guidance_scale": 100, "cutn_overview": "[200]*1000"}}',
     "too_large"),
    ('{"type": "generate", "params": {"prompt": "x", "cutn_overview": "__import__(\'os\')"}}', "bad_request"),
    ('{"type": "generate", "params": {"prompt": "x", "init_image": "../../etc/passwd"}}', "bad_request"),
    ('{"type": "generate_gan", "params": {"seed": 1}}', "no_model"),
    ('{"type": "generate_gan", "params": {"truncation_psi": 9}}', "bad_request"),
    ('{"type": "update", "run_id": "nope", "params": {"cfg_scale": 3}}', "not_found"),
    ('{"type": "update", "run_id": "nope", "params": {"cfg_scale": 300}}', "bad_request"),
    ('{"type": "update", "params": {}}', "bad_request"),
    ('{"type": "rewind", "run_id": "nope", "step": 1}', "not_found"),
    ('{"type": "rewind", "run_id": "nope", "step": -4}', "bad_request"),
    ('{"type": "cancel", "run_id": "nope"}', "not_found"),
    ('{"type": "cancel"}', "bad_request"),
    ('{"type": "preview", "run_id": "nope", "step": 0}', "not_found"),
]


def test_every_bad_message_gets_a_clear_error(client: TestClient) -> None:
    with client.websocket_connect("/ws") as ws:
        reader = WsReader(ws)
        for text, code in BAD_MESSAGES:
            ws.send_text(text)
            err = reader.until("error")
            assert err["code"] == code, (text, err)
            assert err["message"] and "Traceback" not in err["message"] and 'File "' not in err["message"]
        ws.send_bytes(b"\x00\x01")
        assert reader.until("error")["code"] == "bad_request"
        ws.send_text("x" * 70000)
        assert reader.until("error")["code"] == "too_large"
        # nothing was queued by the bad messages, and the socket still serves a good one
        ws.send_json({"type": "generate", "params": GOOD})
        queued = reader.until("queued")
        assert queued["position"] == 0
        reader.until("done", queued["run_id"])
    assert len(client.get("/api/gallery").json()) == 1


def test_rewind_beyond_known_steps(client: TestClient) -> None:
    with client.websocket_connect("/ws") as ws:
        reader = WsReader(ws)
        ws.send_json({"type": "generate", "params": GOOD})
        run_id = reader.until("queued")["run_id"]
        reader.until("done", run_id)
        ws.send_json({"type": "rewind", "run_id": run_id, "step": 2})
        assert reader.until("error")["code"] == "bad_request"


def test_busy_queue_answers_with_its_limit(tiny_models, tmp_path) -> None:
    with TestClient(create_app(make_settings(tmp_path, queue_size=1), models=tiny_models)) as c:
        with c.websocket_connect("/ws") as ws:
            reader = WsReader(ws)
            long = {**GOOD, "steps": 400}
            ws.send_json({"type": "generate", "params": long})
            running = reader.until("started")["run_id"]
            ws.send_json({"type": "generate", "params": long})
            waiting = reader.until("queued")
            assert waiting["position"] == 0
            ws.send_json({"type": "generate", "params": long})
            err = reader.until("error")
            assert err["code"] == "busy" and "at most 1" in err["message"]
            ws.send_json({"type": "cancel", "run_id": waiting["run_id"]})
            reader.until("cancelled", waiting["run_id"])
            ws.send_json({"type": "cancel", "run_id": running})
            reader.until("cancelled", running)


def test_token_required_beyond_loopback(tiny_models, tmp_path) -> None:
    settings = make_settings(tmp_path, host="0.0.0.0", token="s3cret")
    with TestClient(create_app(settings, models=tiny_models)) as c:
        assert c.get("/api/info").status_code == 401
        assert c.get("/api/info?token=wrong").status_code == 401
        assert c.get("/api/info", headers={"Authorization": "Bearer s3cret"}).status_code == 200
        with pytest.raises(WebSocketDisconnect):
            with c.websocket_connect("/ws") as ws:
                ws.receive_text()
        with c.websocket_connect("/ws?token=s3cret") as ws:
            ws.send_text("{}")
            assert WsReader(ws).until("error")["code"] == "bad_request"


def test_foreign_origin_refused(client: TestClient) -> None:
    with pytest.raises(WebSocketDisconnect):
        with client.websocket_connect("/ws", headers={"origin": "http://evil.example"}) as ws:
            ws.receive_text()
    with client.websocket_connect("/ws", headers={"origin": "http://testserver"}) as ws:
        ws.send_text("{}")
        assert WsReader(ws).until("error")["code"] == "bad_request"
