"""LoRA sliders and TAESD previews through the studio (issue 18, items 3 and 4): a server started with
`--lora`, `--lora-dir` and `--preview-decoder` on the tiny models lists them in /api/info; a LoRA's
weight changed mid-run is recorded and replays bit for bit from the gallery's PNG; prompt tags name
LoRAs in the folder; bad names, unknown LoRAs and a missing tiny decoder are refused at the edge;
preview frames come from the decoder the run chose."""

from __future__ import annotations

import io
import json
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient
from PIL import Image

from app.api.protocol import FrameType, GenerateDiffusion, client_message
from app.engine.studio import Studio, StudioError
from app.main import create_app
from app.params import DiffusionParams, LiveUpdate
from app.registry import Models, load_models
from app.settings import Settings
from app.store.a1111 import from_parameters
from app.store.gallery import Gallery
from tests.api.conftest import WsReader, make_settings
from tests.api.test_replay import ChangingSink, pixels
from tests.api.test_ws_flow import run_to_done
from tests.diffusion.test_lora import random_lora, write_kohya, write_peft
from tests.diffusion.test_tiny_decoder import build_tiny_taesd

CAT = {"prompt": "cat face", "seed": 99, "steps": 12, "width": 32, "height": 32, "sampler": "euler", "karras": False}


@pytest.fixture(scope="module")
def lora_models(tiny_diffusion_dir: Path, tiny_clip_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Models:
    from diffusers import UNet2DConditionModel
    from transformers import CLIPTextModel

    root = tmp_path_factory.mktemp("lora-server")
    unet = UNet2DConditionModel.from_pretrained(tiny_diffusion_dir, subfolder="unet")
    te = CLIPTextModel.from_pretrained(tiny_diffusion_dir, subfolder="text_encoder")
    (root / "loras").mkdir()
    write_kohya(root / "style.safetensors", random_lora(unet, 1), random_lora(te, 2, convs=False))
    write_peft(root / "loras" / "ink.safetensors", random_lora(unet, 5), {})
    settings = Settings(diffusion_model=str(tiny_diffusion_dir), clip_model=str(tiny_clip_dir), gan_model="",
                        device="cpu", data_dir=root / "data", lora=[root / "style.safetensors"],
                        lora_dir=root / "loras", lora_weight=0.8,
                        preview_decoder=str(build_tiny_taesd(root / "taesd")))
    return load_models(settings)


@pytest.fixture
def studio(lora_models: Models, tmp_path: Path) -> Iterator[Studio]:
    s = Studio(make_settings(tmp_path), lora_models, Gallery(tmp_path / "gallery"))
    s.start()
    yield s
    s.stop()
    s.gallery.close()


@pytest.fixture
def lora_client(lora_models: Models, tmp_path: Path) -> Iterator[TestClient]:
    with TestClient(create_app(make_settings(tmp_path), models=lora_models)) as c:
        yield c


def test_info_lists_the_loras_and_the_preview_decoders(lora_client: TestClient, client: TestClient) -> None:
    info = lora_client.get("/api/info").json()
    assert [(x["name"], x["weight"], x["format"]) for x in info["loras"]] == [("style", 0.8, "kohya")]
    assert info["lora_dir"] is True and "loras" not in json.dumps(info["loras"]), "no folder paths"
    assert info["preview_decoders"] == ["linear", "tiny", "full"] and info["preview_decoder"] == "taesd"
    assert info["defaults"]["live"]["lora_weights"] == {} and info["defaults"]["live"]["preview_decoder"] == "linear"
    plain = client.get("/api/info").json()
    assert plain["loras"] == [] and plain["lora_dir"] is False and plain["preview_decoders"] == ["linear", "full"]


def test_a_lora_weight_changed_mid_run_is_recorded_and_replays_bit_exact(studio: Studio) -> None:
    ready = threading.Event()
    sink = ChangingSink(ready, at_step=5, change=LiveUpdate(lora_weights={"style": -0.5}))
    sink.studio = studio
    base = {**CAT, "lora_weights": {"style": 0.8}}
    original = studio.generate(DiffusionParams(**base), sink, "page", "page")
    ready.set()
    done = sink.wait_done(original)
    assert done["type"] == "done", done
    assert done["schedule"] == [{"step": 5, "changes": {"lora_weights": {"style": -0.5}}}]
    assert done["params"]["lora_weights"] == {"style": 0.8}
    steady = studio.generate(DiffusionParams(**base), sink, "page", "page")
    sink.wait_done(steady)
    for i in range(1, 6):
        assert torch.equal(studio.history.step(original, i).latent, studio.history.step(steady, i).latent), i
    for i in range(6, 13):
        assert not torch.equal(studio.history.step(original, i).latent, studio.history.step(steady, i).latent), i

    with Image.open(studio.gallery.path_for(done["image_id"])) as img:
        chunk = json.loads(img.text["noisescope"])
        text = img.text["parameters"]
    # the A1111 text carries them too, and reads back to the same starting weights and schedule
    assert 'Lora weights: "style=0.8"' in text and 'Schedule: "5: lora_weights[style]=-0.5"' in text
    read = from_parameters(text)
    back = DiffusionParams(**read["params"], seed=read["seed"], schedule=read["schedule"])
    assert back.lora_weights == {"style": 0.8} and back.schedule[0].changes.lora_weights == {"style": -0.5}
    message = client_message.validate_python(
        {"type": "generate", "params": {**chunk["params"], "seed": chunk["seed"], "schedule": chunk["schedule"]}})
    assert isinstance(message, GenerateDiffusion)
    replay = studio.generate(message.params, sink, "page", "page")
    replayed = sink.wait_done(replay)
    assert replayed["schedule"] == done["schedule"]
    assert torch.equal(studio.history.step(original, 12).latent, studio.history.step(replay, 12).latent)
    assert np.array_equal(pixels(studio.gallery, done["image_id"]), pixels(studio.gallery, replayed["image_id"]))


def test_prompt_tags_name_loras_in_the_folder(lora_client: TestClient) -> None:
    with lora_client.websocket_connect("/ws") as ws:
        reader = WsReader(ws)
        _, tagged = run_to_done(reader, {**CAT, "prompt": "cat face <lora:ink:0.6>", "lora_weights": {"style": 0.8}})
        _, plain = run_to_done(reader, {**CAT, "prompt": "cat face", "lora_weights": {"style": 0.8}})
        # the tag is not text: the same prompt without LoRAs but with a tag of weight 0 is the plain image
        _, zero = run_to_done(reader, {**CAT, "prompt": "cat face <lora:ink:0>", "lora_weights": {"style": 0.8}})
    assert tagged["params"]["lora_weights"] == {"style": 0.8, "ink": 0.6}
    assert tagged["params"]["prompt"] == "cat face <lora:ink:0.6>"
    gallery = {g["id"]: g for g in lora_client.get("/api/gallery").json()}
    assert gallery[tagged["image_id"]]["params"]["lora_weights"] == {"style": 0.8, "ink": 0.6}
    tagged_png = lora_client.get(f"/api/gallery/{tagged['image_id']}.png").content
    plain_png = lora_client.get(f"/api/gallery/{plain['image_id']}.png").content
    zero_png = lora_client.get(f"/api/gallery/{zero['image_id']}.png").content
    assert png_pixels(tagged_png) != png_pixels(plain_png)
    assert png_pixels(zero_png) == png_pixels(plain_png)


def png_pixels(data: bytes) -> bytes:
    with Image.open(io.BytesIO(data)) as img:
        return img.convert("RGB").tobytes()


BAD = [
    ({"lora_weights": {"../style": 1}}, "not a LoRA name"),
    ({"lora_weights": {"nope": 1}}, "no LoRA named 'nope'"),
    ({"lora_weights": {"style": 11}}, "from -10 to 10"),
    ({"prompt": "cat <lora:../../etc/passwd:1>"}, "not a LoRA name"),
    ({"prompt": "cat <lora:missing:1>"}, "no LoRA named 'missing'"),
    ({"prompt": "cat <lora:ink:x>"}, "must be a number"),
    ({"schedule": [{"step": 2, "changes": {"lora_weights": {"ink": 1}}}]}, "does not start with"),
]


@pytest.mark.parametrize(("change", "needle"), BAD, ids=[n for _, n in BAD])
def test_bad_loras_are_refused_at_the_edge(lora_client: TestClient, change: dict, needle: str) -> None:
    with lora_client.websocket_connect("/ws") as ws:
        reader = WsReader(ws)
        ws.send_json({"type": "generate", "params": {**CAT, **change}})
        err = reader.until("error")
    assert err["code"] == "bad_request" and needle in err["message"], err


def test_a_server_without_loras_or_tiny_decoder_says_so(client: TestClient) -> None:
    with client.websocket_connect("/ws") as ws:
        reader = WsReader(ws)
        ws.send_json({"type": "generate", "params": {**CAT, "prompt": "cat <lora:ink:1>"}})
        err = reader.until("error")
        assert err["code"] == "bad_request" and "--lora-dir" in err["message"], err
        ws.send_json({"type": "generate", "params": {**CAT, "preview_decoder": "tiny"}})
        err = reader.until("error")
        assert err["code"] == "bad_request" and "--preview-decoder" in err["message"], err
        queued, _ = run_to_done(reader, {**CAT, "steps": 2})
        ws.send_json({"type": "rewind", "run_id": queued["run_id"], "step": 1, "params": {"preview_decoder": "tiny"}})
        err = reader.until("error")
        assert err["code"] == "bad_request" and "--preview-decoder" in err["message"], err


def test_an_update_may_only_move_the_runs_own_loras(studio: Studio) -> None:
    ready = threading.Event()
    sink = ChangingSink(ready, at_step=1, change=LiveUpdate(cfg_scale=4.0))
    sink.studio = studio
    run = studio.generate(DiffusionParams(**{**CAT, "lora_weights": {"style": 1.0}}), sink, "page", "page")
    assert sink.reached.wait(300)
    with pytest.raises(StudioError) as exc:
        studio.update(run, LiveUpdate(lora_weights={"ink": 1.0}), "page")
    assert exc.value.code == "bad_request" and "has no LoRA 'ink'" in exc.value.message
    assert studio.update(run, LiveUpdate(lora_weights={"style": 0.0}), "page").lora_weights == {"style": 0.0}
    ready.set()
    assert sink.wait_done(run)["type"] == "done"


def test_preview_frames_come_from_the_chosen_decoder(lora_client: TestClient) -> None:
    with lora_client.websocket_connect("/ws") as ws:
        reader = WsReader(ws)
        params = {**CAT, "steps": 6, "full_decode_every": 3}
        for decoder in ("tiny", "linear", "full"):
            queued, _ = run_to_done(reader, {**params, "preview_decoder": decoder})
            frames = [f for f in reader.frames if f[0] == FrameType.PREVIEW and f[1]["run_id"] == queued["run_id"]]
            assert [f[1]["step"] for f in frames] == [1, 2, 3, 4, 5]
            kinds = [f[1]["decoder"] for f in frames]
            assert kinds == [decoder, decoder, "full", decoder, decoder], kinds
            assert all((f[1]["width"], f[1]["height"]) == (32, 32) for f in frames)
            assert all(f[1]["full"] == (f[1]["decoder"] == "full") for f in frames)
            assert Image.open(io.BytesIO(frames[0][2])).size == (32, 32)


def test_a_lora_run_runs_whole_beside_the_batch_and_a_pages_runs_keep_their_order(lora_client: TestClient) -> None:
    """A LoRA's hooks scale the whole UNet call, so a LoRA run is not batched (DiffusionRunner.batchable):
    it runs whole between two ticks while another page's run is in the batch, with the image it gives
    alone; the same page's LoRA run waits behind its own batched run."""
    studio = lora_client.app.state.studio
    lora = {**CAT, "lora_weights": {"style": 0.8}}
    long = {**CAT, "steps": 400, "seed": 5}
    with lora_client.websocket_connect("/ws") as a_ws, lora_client.websocket_connect("/ws") as b_ws:
        a, b = WsReader(a_ws), WsReader(b_ws)
        a_ws.send_json({"type": "generate", "params": long})
        long_id = a.until("started")["run_id"]
        a.until("step", long_id)
        assert studio.diffusion.batchable(studio.worker.running_jobs()[0])  # the plain run is batched
        a_ws.send_json({"type": "generate", "params": lora})  # the same page: waits behind its own run
        own_id = a.until("queued")["run_id"]
        b_ws.send_json({"type": "generate", "params": lora})
        beside = b.until("done")
        assert [e["index"] for e in b.events if e["type"] == "step"] == list(range(1, 13))
        assert studio.worker.running_jobs()[0].run_id == long_id, "the batched run is still going"
        assert not [e for e in a.events if e.get("run_id") == own_id and e["type"] == "started"]
        a_ws.send_json({"type": "cancel", "run_id": long_id})
        assert 1 <= a.until("cancelled", long_id)["index"] < 400
        after = a.until("done", own_id)
        _, plain = run_to_done(b, CAT)
    first, second, without = (lora_client.get(f"/api/gallery/{d['image_id']}.png").content
                              for d in (beside, after, plain))
    assert png_pixels(first) == png_pixels(second), "beside the batch as alone"
    assert png_pixels(first) != png_pixels(without), "the LoRA was on"
