"""Run ownership (issue 16 item 2): a run belongs to the page that started it and to that page's
reconnects (the same `hello` secret); everyone else is answered exactly as for an unknown run."""

from __future__ import annotations

from fastapi.testclient import TestClient

from app.api.protocol import FrameType
from tests.api.conftest import WsReader

BASE = {"prompt": "a red fox", "seed": 3, "steps": 12, "width": 32, "height": 32, "sampler": "euler"}
SECRET_A = "a" * 40
SECRET_B = "b" * 40


def hello(ws, secret: str) -> None:
    ws.send_json({"type": "hello", "owner": secret})


def attacks(run_id: str) -> list[dict]:
    return [
        {"type": "update", "run_id": run_id, "params": {"cfg_scale": 20.0}},
        {"type": "preview", "run_id": run_id, "step": 1},
        {"type": "rewind", "run_id": run_id, "step": 1},
        {"type": "rewind", "run_id": run_id, "step": 0},
        {"type": "cancel", "run_id": run_id},
    ]


def answers(reader: WsReader, messages: list[dict]) -> list[tuple[str, str]]:
    """(code, message with the run id blanked) of the error answering each message, in order."""
    out = []
    for msg in messages:
        reader.ws.send_json(msg)
        ev = reader.until("error")
        assert ev["run_id"] == msg["run_id"]
        out.append((ev["code"], ev["message"].replace(msg["run_id"], "RUN")))
    return out


def test_another_page_cannot_touch_a_run_and_learns_nothing(client: TestClient) -> None:
    with client.websocket_connect("/ws") as wa, client.websocket_connect("/ws") as wb:
        a, b = WsReader(wa), WsReader(wb)
        hello(wa, SECRET_A)
        hello(wb, SECRET_B)
        wa.send_json({"type": "generate", "params": {**BASE, "steps": 60}})
        run_id = a.until("queued")["run_id"]
        a.until("step", run_id)  # running, step 1 kept
        refused = answers(b, attacks(run_id))
        unknown = answers(b, attacks("0123456789ab"))
        assert refused == unknown, "a foreign run must look exactly like an unknown one"
        assert {code for code, _ in refused} == {"not_found"}
        done = a.until("done", run_id)
        assert done["params"]["cfg_scale"] == 5.0  # B's update never applied
        assert not [e for e in a.events if e["type"] in ("cancelled", "updated", "error")]
        assert not [e for e in b.events if e["type"] in ("queued", "updated", "cancelled")]
        # the owner itself may still act on it
        wa.send_json({"type": "update", "run_id": run_id, "params": {"cfg_scale": 6.0}})
        assert a.until("updated", run_id)["params"]["cfg_scale"] == 6.0


def test_pages_without_a_secret_are_strangers(client: TestClient) -> None:
    with client.websocket_connect("/ws") as wa, client.websocket_connect("/ws") as wb:
        a, b = WsReader(wa), WsReader(wb)
        wa.send_json({"type": "generate", "params": {**BASE, "steps": 400}})
        run_id = a.until("queued")["run_id"]
        a.until("step", run_id)
        wb.send_json({"type": "cancel", "run_id": run_id})
        assert b.until("error")["code"] == "not_found"
        wa.send_json({"type": "cancel", "run_id": run_id})
        assert a.until("cancelled", run_id)["index"] < 400


def test_a_reconnect_with_the_same_secret_keeps_its_runs(client: TestClient) -> None:
    with client.websocket_connect("/ws") as ws:
        reader = WsReader(ws)
        hello(ws, SECRET_A)
        ws.send_json({"type": "generate", "params": BASE})
        run_id = reader.until("queued")["run_id"]
        reader.until("done", run_id)
    with client.websocket_connect("/ws") as ws:  # the page reloaded: same secret from sessionStorage
        reader = WsReader(ws)
        hello(ws, SECRET_A)
        ws.send_json({"type": "preview", "run_id": run_id, "step": 3})
        for _ in range(100):
            item = reader.next()
            if isinstance(item, tuple) and item[0] == FrameType.TIMELINE:
                assert item[1]["run_id"] == run_id and item[1]["step"] == 3
                break
        else:
            raise AssertionError("no timeline frame for the owner's reconnect")
        ws.send_json({"type": "rewind", "run_id": run_id, "step": 5})
        fork = reader.until("queued")
        assert fork["parent"] == run_id
        reader.until("done", fork["run_id"])
    with client.websocket_connect("/ws") as ws:  # a fork belongs to its parent's owner too
        reader = WsReader(ws)
        hello(ws, SECRET_B)
        ws.send_json({"type": "rewind", "run_id": fork["run_id"], "step": 7})
        assert reader.until("error")["code"] == "not_found"


def test_hello_first_and_well_formed_and_never_echoed(client: TestClient) -> None:
    secret = "s3cr3t-" + "x" * 20
    with client.websocket_connect("/ws") as ws:
        reader = WsReader(ws)
        ws.send_json({"type": "hello", "owner": "short"})
        assert reader.until("error")["code"] == "bad_request"
        ws.send_json({"type": "hello", "owner": secret + "!"})
        ev = reader.until("error")
        assert ev["code"] == "bad_request" and secret not in ev["message"]
        ws.send_json({"type": "hello", "owner": secret})  # malformed ones did not count as a first message
        ws.send_json({"type": "hello", "owner": secret})
        ev = reader.until("error")
        assert ev["code"] == "bad_request" and "first" in ev["message"] and secret not in ev["message"]
