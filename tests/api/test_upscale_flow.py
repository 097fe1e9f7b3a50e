"""Issue 20's upscale flow on tiny random upscalers: a gallery image upscaled by the GAN upscaler, the
diffusion upscaler, and both side by side, over the websocket; the diffusion upscaler streams x0
previews through the studio's samplers and forks and cancels like any diffusion run; every result is
in the gallery with its lineage (source image, upscaler, parameters)."""

from __future__ import annotations

import io
from dataclasses import replace
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from PIL import Image

from app.api.protocol import FrameType
from app.main import create_app
from app.registry import Models
from tests.api.conftest import WsReader, make_settings
from tests.api.test_ws_flow import run_to_done

SOURCE = {"prompt": "cat face", "seed": 3, "steps": 4, "width": 32, "height": 32, "sampler": "euler"}


@pytest.fixture(scope="module")
def upscaler_models(tiny_models: Models, tmp_path_factory: pytest.TempPathFactory) -> Models:
    import torch

    from app.demo_models import build_tiny_upscalers
    from app.upscale.diffusion import load_upscaler_models
    from app.upscale.gan import load_folder

    gan, diffusion = build_tiny_upscalers(tmp_path_factory.mktemp("tiny-upscalers"))
    cache = tmp_path_factory.mktemp("cache")
    return replace(tiny_models, upscaler_gan=load_folder(gan),
                   upscaler_diffusion=load_upscaler_models(diffusion, torch.device("cpu"), torch.float32, cache),
                   names={**tiny_models.names, "upscaler_gan": str(gan), "upscaler_diffusion": str(diffusion)})


@pytest.fixture
def up_client(upscaler_models: Models, tmp_path: Path):
    with TestClient(create_app(make_settings(tmp_path), models=upscaler_models)) as c:
        yield c


def size_of(client: TestClient, image_id: str) -> tuple[int, int]:
    return Image.open(io.BytesIO(client.get(f"/api/gallery/{image_id}.png").content)).size


def upscale(reader: WsReader, params: dict, runs: int) -> list[dict]:
    reader.ws.send_json({"type": "upscale", "params": params, "ref": "u1"})
    queued = [reader.until("queued") for _ in range(runs)]
    assert all(q["ref"] == "u1" for q in queued)
    return [reader.until("done", q["run_id"]) for q in queued]


def test_both_upscalers_side_by_side_with_previews_and_lineage(up_client: TestClient) -> None:
    with up_client.websocket_connect("/ws") as ws:
        reader = WsReader(ws)
        source = run_to_done(reader, SOURCE)[1]["image_id"]
        gan, diffusion = upscale(reader, {"source": f"gallery:{source}", "upscaler": "both", "steps": 5,
                                          "seed": 9, "noise_level": 30}, runs=2)
    assert gan["engine"] == "upscale" and gan["upscaler"] == "gan" and gan["elapsed_ms"] >= 0
    assert gan["lineage"] == {"source_image": source, "upscaler": "gan", "scale": 4,
                              "model": gan["lineage"]["model"]}
    assert diffusion["engine"] == "diffusion" and diffusion["params"]["upscale"] is True
    assert diffusion["params"]["prompt"] == "cat face", "the source's prompt is the upscaler's text"
    assert diffusion["lineage"] == {"source_image": source, "upscaler": "diffusion", "steps": 5, "sampler": "euler_a",
                                    "noise_level": 30, "cfg_scale": 1.0, "strength": 1.0}
    assert size_of(up_client, gan["image_id"]) == size_of(up_client, diffusion["image_id"]) == (128, 128)
    # the diffusion upscaler streamed its x0 estimates as previews, at the upscaled size
    previews = [f for f in reader.frames if f[0] == FrameType.PREVIEW and f[1]["run_id"] == diffusion["run_id"]]
    assert previews and all((m["width"], m["height"]) == (128, 128) for _, m, _ in previews)
    steps = [e for e in reader.events if e["type"] == "step" and e["run_id"] == diffusion["run_id"]]
    assert [e["index"] for e in steps] == [1, 2, 3, 4, 5]
    items = {item["id"]: item for item in up_client.get("/api/gallery").json()}
    assert items[gan["image_id"]]["engine"] == "upscale" and items[gan["image_id"]]["lineage"] == gan["lineage"]
    assert items[diffusion["image_id"]]["lineage"] == diffusion["lineage"]
    assert items[diffusion["image_id"]]["timings"]["steps"] == 5


def test_diffusion_upscale_forks_and_replays(up_client: TestClient) -> None:
    with up_client.websocket_connect("/ws") as ws:
        reader = WsReader(ws)
        source = run_to_done(reader, SOURCE)[1]["image_id"]
        first, = upscale(reader, {"source": f"gallery:{source}", "upscaler": "diffusion", "steps": 4, "seed": 2,
                                  "sampler": "euler"}, runs=1)
        again, = upscale(reader, {"source": f"gallery:{source}", "upscaler": "diffusion", "steps": 4, "seed": 2,
                                  "sampler": "euler"}, runs=1)
        ws.send_json({"type": "rewind", "run_id": first["run_id"], "step": 2})
        fork = reader.until("done", reader.until("queued")["run_id"])
    png = {d["image_id"]: up_client.get(f"/api/gallery/{d['image_id']}.png").content for d in (first, again, fork)}
    a, b, c = (Image.open(io.BytesIO(png[d["image_id"]])) for d in (first, again, fork))
    assert a.tobytes() == b.tobytes(), "the same seed gives the same upscale"
    assert a.tobytes() == c.tobytes(), "a fork with unchanged parameters replays the rest of the run"
    assert fork["lineage"]["parent_run"] == first["run_id"] and fork["lineage"]["upscaler"] == "diffusion"


def test_upscale_of_an_upload_and_refusals(up_client: TestClient) -> None:
    buf = io.BytesIO()
    Image.new("RGB", (20, 24), (10, 200, 10)).save(buf, "PNG")
    upload = up_client.post("/api/uploads", files={"file": ("a.png", buf.getvalue(), "image/png")})
    assert upload.status_code in (200, 201), upload.text
    upload_id = upload.json()["id"]
    big = io.BytesIO()
    Image.new("RGB", (200, 200)).save(big, "PNG")
    big_id = up_client.post("/api/uploads", files={"file": ("b.png", big.getvalue(), "image/png")}).json()["id"]
    with up_client.websocket_connect("/ws") as ws:
        reader = WsReader(ws)
        gan, = upscale(reader, {"source": upload_id}, runs=1)
        assert gan["lineage"]["source_upload"] == upload_id
        diffusion, = upscale(reader, {"source": upload_id, "upscaler": "diffusion", "steps": 2}, runs=1)
        assert diffusion["params"]["prompt"] == "emoji" and diffusion["params"]["width"] == 80
        for params, code in (({"source": "gallery:" + "0" * 24}, "not_found"), ({"source": big_id}, "too_large"),
                             ({"source": upload_id, "upscaler": "magic"}, "bad_request"),
                             ({"source": upload_id, "noise_level": -1}, "bad_request")):
            ws.send_json({"type": "upscale", "params": params})
            err = reader.until("error")
            assert err["code"] == code, (params, err)
    assert size_of(up_client, gan["image_id"]) == (80, 96)
    assert set(up_client.get("/api/info").json()["upscalers"]) == {"gan", "diffusion"}


def test_without_upscalers_the_answer_is_no_model(client: TestClient) -> None:
    with client.websocket_connect("/ws") as ws:
        reader = WsReader(ws)
        source = run_to_done(reader, SOURCE)[1]["image_id"]
        for which in ("gan", "diffusion", "both"):
            ws.send_json({"type": "upscale", "params": {"source": f"gallery:{source}", "upscaler": which}})
            assert reader.until("error")["code"] == "no_model"
    assert client.get("/api/info").json()["upscalers"] == {}


def test_a_diffusion_upscale_from_the_enlargement_at_a_strength(up_client: TestClient, upscaler_models: Models) -> None:
    """strength < 1 runs the last share of the steps from the bicubic enlargement noised to that level
    (CCDF): the steps streamed are that share, and a low strength keeps the enlargement's picture (the
    tiny upscaler is random, so from noise its picture is far from it)."""
    import numpy as np
    import torch

    from app.diffusion.generate import decode_to_pil, enlarged_latent

    with up_client.websocket_connect("/ws") as ws:
        reader = WsReader(ws)
        source = run_to_done(reader, SOURCE)[1]["image_id"]
        base = {"source": f"gallery:{source}", "upscaler": "diffusion", "steps": 20, "seed": 4, "noise_level": 0}
        low, = upscale(reader, {**base, "strength": 0.05}, runs=1)
        mid, = upscale(reader, {**base, "strength": 0.4}, runs=1)
        full, = upscale(reader, base | {"strength": 1.0}, runs=1)
        ws.send_json({"type": "upscale", "params": {**base, "strength": 0}})
        assert reader.until("error")["code"] == "bad_request"
    steps = [e["index"] for e in reader.events if e["type"] == "step" and e["run_id"] == mid["run_id"]]
    assert steps == list(range(13, 21)) and mid["params"]["skip_steps"] == 12
    assert (low["lineage"]["strength"], mid["lineage"]["strength"], full["lineage"]["strength"]) == (0.05, 0.4, 1.0)

    def pixels(image_id: str) -> np.ndarray:
        return np.asarray(Image.open(io.BytesIO(up_client.get(f"/api/gallery/{image_id}.png").content)), dtype=float)

    source_png = Image.open(io.BytesIO(up_client.get(f"/api/gallery/{source}.png").content))
    with torch.no_grad():
        kept = decode_to_pil(upscaler_models.upscaler_diffusion,
                             enlarged_latent(upscaler_models.upscaler_diffusion, source_png, 128, 128))[0]
    kept = np.asarray(kept, dtype=float)
    near, between, far = (np.abs(pixels(d["image_id"]) - kept).mean() for d in (low, mid, full))
    assert near < between < far and near < far / 2, (near, between, far)


def test_a_diffusion_upscale_is_costed_on_the_upscaler(up_client: TestClient, upscaler_models: Models,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """The budget prices an upscale run with the upscaler's own calibration (its f=4 latents, its UNet),
    so it holds memory in the batch and is refused when it cannot fit."""
    from app.engine import budget
    from app.params import DiffusionParams

    studio = up_client.app.state.studio
    assert studio.upscaler.calibration.vae_scale == upscaler_models.upscaler_diffusion.vae_scale == 4
    params = DiffusionParams(prompt="emoji", steps=5, width=128, height=128, init_image="x", upscale=True, cfg_scale=1.0)
    on_upscaler = studio.estimate(params)
    assert studio.upscaler.calibration is not studio.calibration  # measured on the upscaler at start
    assert on_upscaler == budget.estimate(params, studio.upscaler.calibration, has_clip=False,
                                          history_bytes=studio.settings.history_bytes)
    assert on_upscaler.peak_bytes > 0
    with up_client.websocket_connect("/ws") as ws:
        reader = WsReader(ws)
        source = run_to_done(reader, SOURCE)[1]["image_id"]
        monkeypatch.setattr("app.engine.studio.available_memory", lambda device: on_upscaler.peak_bytes / 2)
        ws.send_json({"type": "upscale", "params": {"source": f"gallery:{source}", "upscaler": "diffusion", "steps": 5}})
        err = reader.until("error")
    assert err["code"] == "too_large" and "GiB" in err["message"]
