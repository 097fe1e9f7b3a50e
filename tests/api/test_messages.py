"""Issue 17, defects 1 and 9 at the server edge: refusals in words, seeds never changed silently,
one-line prompts, `ref` echoed, and `position` events as the waiting line moves."""

from __future__ import annotations

import io

import pytest
from fastapi.testclient import TestClient
from PIL import Image

from app.engine.limits import pixels_text
from app.main import create_app
from app.wording import size_text
from tests.api.conftest import WsReader, make_settings

GOOD = {"prompt": "a cat", "seed": 1, "steps": 2, "width": 32, "height": 32}
LONG = {**GOOD, "steps": 400}
JARGON = ("Input should", "String should", "pattern", "^[", "Value error", "params.")


def refusal(client: TestClient, message: dict) -> dict:
    with client.websocket_connect("/ws") as ws:
        ws.send_json(message)
        return WsReader(ws).until("error")


@pytest.mark.parametrize("seed", [-5, 3.7, 2**32, "abc"])
def test_a_bad_seed_is_refused_in_words(client: TestClient, seed) -> None:
    err = refusal(client, {"type": "generate", "params": {**GOOD, "seed": seed}})
    assert err["code"] == "bad_request"
    assert err["message"] == "seed: must be a whole number from 0 to 4294967295; leave it empty for a random seed"


@pytest.mark.parametrize(("params", "words"), [
    ({**GOOD, "cutn_overview": "abc"}, "cutn_overview: must be a schedule such as [12]*400+[4]*600"),
    ({**GOOD, "init_image": "../x"}, "init_image: must be the id of an uploaded image"),
    ({**GOOD, "width": 33}, "width: must be a multiple of 8"),
    ({**GOOD, "cfg_scale": 300}, "cfg_scale: must be at most 30"),
    ({**GOOD, "prompt": "\n \n"}, "prompt: prompt is empty"),
    ({**GOOD, "evil": 1}, "evil: is not a setting this server knows"),
    ({**GOOD, "width": 2048, "height": 2048}, "2048 x 2048 is more than the limit of 1024 x 1024 pixels"),
])
def test_refusals_name_the_field_without_jargon(client: TestClient, params: dict, words: str) -> None:
    err = refusal(client, {"type": "generate", "params": params})
    assert words in err["message"], err
    assert not any(j in err["message"] for j in JARGON), err


def test_sizes_read_as_units() -> None:
    assert [size_text(n) for n in (8 * 2**20, 1536, 100, 3 * 2**30)] == ["8 MiB", "1.5 KiB", "100 bytes", "3 GiB"]
    assert pixels_text(4 * 1024 * 1024) == "2048 x 2048 pixels" and pixels_text(3_000_000) == "3 megapixels"


def test_upload_limit_in_mib(tiny_models, tmp_path) -> None:
    png = io.BytesIO()
    Image.new("RGB", (64, 64), "red").save(png, "PNG")
    with TestClient(create_app(make_settings(tmp_path, max_init_image_bytes=2**20 // 4), models=tiny_models)) as c:
        big = png.getvalue() + b"\0" * (2**20)
        res = c.post("/api/uploads", files={"file": ("a.png", big, "image/png")})
    assert res.status_code == 413 and res.json()["detail"].startswith("images are limited to 256 KiB;")


def test_busy_is_said_once(tiny_models, tmp_path) -> None:
    with TestClient(create_app(make_settings(tmp_path, queue_size=1), models=tiny_models)) as c:
        with c.websocket_connect("/ws") as ws:
            reader = WsReader(ws)
            ws.send_json({"type": "generate", "params": LONG})
            running = reader.until("started")["run_id"]
            ws.send_json({"type": "generate", "params": LONG})
            waiting = reader.until("queued")["run_id"]
            ws.send_json({"type": "generate", "params": LONG, "ref": "third"})
            err = reader.until("error")
            assert err["code"] == "busy" and err["ref"] == "third"
            assert "busy" not in err["message"] and "at most 1 runs may wait" in err["message"]
            for run_id in (waiting, running):
                ws.send_json({"type": "cancel", "run_id": run_id})
                reader.until("cancelled", run_id)


def test_newlines_never_reach_the_saved_prompt(client: TestClient) -> None:
    with client.websocket_connect("/ws") as ws:
        reader = WsReader(ws)
        ws.send_json({"type": "generate", "ref": "r1",
                      "params": {**GOOD, "prompt": "a red\nfox\r\n", "negative_prompt": "blurry\n"}})
        queued = reader.until("queued")
        assert queued["ref"] == "r1"
        done = reader.until("done", queued["run_id"])
    assert (done["params"]["prompt"], done["params"]["negative_prompt"]) == ("a red fox", "blurry")
    (item,) = client.get("/api/gallery").json()
    assert item["params"]["prompt"] == "a red fox"
    text = Image.open(io.BytesIO(client.get(item["url"]).content)).text["parameters"]
    assert text.startswith("a red fox\n")  # A1111's layout: prompt line, then the settings


def test_refusal_echoes_ref_even_when_unreadable(client: TestClient) -> None:
    err = refusal(client, {"type": "generate", "ref": "mine", "params": {**GOOD, "seed": -5}})
    assert err["ref"] == "mine"
    err = refusal(client, {"type": "generate", "ref": "x" * 65, "params": GOOD})
    assert "ref" not in err and "ref: must have at most 64 characters" in err["message"]


def test_waiting_runs_hear_their_new_position(client: TestClient) -> None:
    with client.websocket_connect("/ws") as ws:
        reader = WsReader(ws)
        ws.send_json({"type": "generate", "params": LONG})
        first = reader.until("started")["run_id"]
        ids = []
        for _ in range(3):
            ws.send_json({"type": "generate", "params": LONG})
            ids.append(reader.until("queued"))
        assert [q["position"] for q in ids] == [0, 1, 2]
        second, third, fourth = (q["run_id"] for q in ids)
        ws.send_json({"type": "cancel", "run_id": second})  # the ones behind it move up
        reader.until("cancelled", second)
        assert reader.until("position", third)["position"] == 0
        assert reader.until("position", fourth)["position"] == 1
        ws.send_json({"type": "cancel", "run_id": first})  # the running one stops: the next one starts
        reader.until("cancelled", first)
        assert reader.until("position", fourth)["position"] == 0  # told as the worker takes the next
        assert reader.until("started", third)
        for run_id in (third, fourth):
            ws.send_json({"type": "cancel", "run_id": run_id})
            reader.until("cancelled", run_id)
