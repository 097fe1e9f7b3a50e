"""The GAN side over the websocket: one-pass renders, w-only slider changes, stale requests
dropped, grids, and CLIP search streamed as steps. A tiny text-conditioned generator (c = the
tiny CLIP's text embedding) is built and saved in the real format."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from fastapi.testclient import TestClient

from app.api.protocol import FrameType
from app.engine.gan_runner import load_gan_model
from app.gan.convert import save_generator
from app.gan.networks import Generator
from app.main import create_app
from app.registry import Models
from tests.api.conftest import WsReader, make_settings

KWARGS = {"z_dim": 16, "c_dim": 32, "w_dim": 16, "img_resolution": 16, "img_channels": 3,
          "mapping_kwargs": {"num_layers": 2}, "channel_base": 128, "channel_max": 16}


@pytest.fixture(scope="module")
def gan_models(tiny_models: Models, tmp_path_factory: pytest.TempPathFactory) -> Models:
    torch.manual_seed(0)
    G = Generator(**KWARGS)
    folder = save_generator(tmp_path_factory.mktemp("gan"), KWARGS, G.state_dict())
    gan = load_gan_model(folder, torch.device("cpu"), clip=tiny_models.clip)
    return Models(tiny_models.device, tiny_models.dtype, tiny_models.diffusion, tiny_models.clip, gan,
                  names={**tiny_models.names, "gan": str(folder)})


@pytest.fixture
def gan_client(gan_models: Models, tmp_path: Path):
    with TestClient(create_app(make_settings(tmp_path), models=gan_models)) as c:
        yield c


def render(reader: WsReader, params: dict) -> tuple[dict, bytes]:
    reader.ws.send_json({"type": "generate_gan", "params": params})
    queued = reader.until("queued")
    done = reader.until("done", queued["run_id"])
    final = [f for f in reader.frames if f[0] == FrameType.FINAL and f[1]["run_id"] == queued["run_id"]]
    return done, final[0][2]


def test_info_describes_the_gan(gan_client: TestClient) -> None:
    gan = gan_client.get("/api/info").json()["gan"]
    assert gan["c_dim"] == 32 and gan["resolution"] == 16 and gan["text"] == "condition"


def test_render_is_deterministic_and_sliders_reuse_w(gan_client: TestClient) -> None:
    runner = gan_client.app.state.studio.gan
    with gan_client.websocket_connect("/ws") as ws:
        reader = WsReader(ws)
        done, a = render(reader, {"prompt": "red heart", "seed": 5, "truncation_psi": 0.7})
        assert done["engine"] == "gan" and done["clip_score"] is not None
        _, b = render(reader, {"prompt": "red heart", "seed": 5, "truncation_psi": 0.7})
        assert a == b
        cached = len(runner._w_cache)
        _, c = render(reader, {"prompt": "red heart", "seed": 5, "truncation_psi": 0.3})
        _, d = render(reader, {"prompt": "red heart", "seed": 5, "truncation_psi": 0.7, "mix_seed": 5,
                               "mix_layer": 2})
        assert len(runner._w_cache) == cached, "a truncation or mixing change must not re-run the mapping"
        assert c != a
        assert d == a  # mixing a seed with itself changes nothing
        _, e = render(reader, {"prompt": "pizza", "seed": 5, "truncation_psi": 0.7})
        assert e != a, "the text condition must change the image"


def test_diversity_grid(gan_client: TestClient) -> None:
    with gan_client.websocket_connect("/ws") as ws:
        reader = WsReader(ws)
        done, _ = render(reader, {"prompt": "cat face", "seed": 1, "grid": 8})
        final = [f for f in reader.frames if f[0] == FrameType.FINAL][-1]
        assert (final[1]["width"], final[1]["height"]) == (64, 32)
        assert done["diversity"] is not None and done["diversity"] > 0, "8 seeds of a random G differ"
        single, _ = render(reader, {"prompt": "cat face", "seed": 1})
        assert single["diversity"] is None


def test_clip_search_streams_steps(gan_client: TestClient) -> None:
    with gan_client.websocket_connect("/ws") as ws:
        reader = WsReader(ws)
        done, _ = render(reader, {"prompt": "red heart", "seed": 2, "search_steps": 4, "search_cutn": 2})
        steps = [e for e in reader.events if e["type"] == "step" and e["run_id"] == done["run_id"]]
        assert [e["index"] for e in steps] == [1, 2, 3, 4]
        assert any(f[0] == FrameType.PREVIEW for f in reader.frames)


def test_bad_gan_requests(gan_client: TestClient) -> None:
    with gan_client.websocket_connect("/ws") as ws:
        reader = WsReader(ws)
        ws.send_json({"type": "generate_gan", "params": {"seed": 1, "mix_seed": 2, "mix_layer": 40}})
        err = reader.until("error")
        assert err["code"] == "bad_request" and "mix_layer" in err["message"]
        ws.send_json({"type": "generate_gan", "params": {"seed": 1, "search_steps": 3}})
        err = reader.until("error")
        assert "prompt" in err["message"]
        ws.send_json({"type": "generate_gan", "params": {"seed": 1, "search_steps": 3, "search_cutn": 64, "grid": 8,
                                                           "prompt": "x"}})
        assert reader.until("error")["code"] == "too_large"
        ws.send_json({"type": "generate_gan", "params": {"seed": 4294967295, "grid": 2}})  # numpy's seed range
        err = reader.until("error")
        assert err["code"] == "bad_request" and "seed" in err["message"], err
        done, _ = render(reader, {"seed": 4294967294, "grid": 2, "save": False})  # the last seeds that fit
        assert done["seed"] == 4294967294


def test_slider_renders_stay_out_of_the_gallery(gan_client: TestClient) -> None:
    with gan_client.websocket_connect("/ws") as ws:
        reader = WsReader(ws)
        done, _ = render(reader, {"prompt": "pizza", "seed": 9, "save": False})
        assert done["image_id"] is None and done["url"] is None
        kept, _ = render(reader, {"prompt": "pizza", "seed": 9})
    assert [g["id"] for g in gan_client.get("/api/gallery").json()] == [kept["image_id"]]
    png_models = gan_client.get("/api/gallery").json()[0]["models"]
    assert all(v is None or "/" not in v for v in png_models.values()), png_models
