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


def read_run(reader: WsReader, params: dict) -> tuple[str, list]:
    """Send `generate_gan` and read to its `done`; every event and frame of the run, in arrival order."""
    reader.ws.send_json({"type": "generate_gan", "params": params})
    run_id = reader.until("queued")["run_id"]
    items: list = []
    while True:
        item = reader.next()
        if isinstance(item, dict) and item["type"] == "error":
            raise AssertionError(item)
        mine = item.get("run_id") if isinstance(item, dict) else item[1]["run_id"]
        if mine == run_id:
            items.append(item)
        if isinstance(item, dict) and item["type"] == "done" and mine == run_id:
            return run_id, items


def kinds(items: list) -> list[str]:
    return [i["type"] if isinstance(i, dict) else FrameType(i[0]).name.lower() for i in items]


def test_the_frame_comes_before_the_score(gan_client: TestClient) -> None:
    with gan_client.websocket_connect("/ws") as ws:
        reader = WsReader(ws)
        for save in (False, True):
            _, items = read_run(reader, {"prompt": "red heart", "seed": 5, "save": save})
            assert kinds(items) == ["started", "final", "step", "done"]
            frame, step, done = items[1], items[2], items[3]
            assert step["clip_score"] is None and step["elapsed_ms"] > 0 and (step["index"], step["total"]) == (1, 1)
            assert frame[1]["format"] == "png" and frame[2].startswith(b"\x89PNG")
            assert done["clip_score"] is not None and done["score_skipped"] is False
            assert done["elapsed_ms"] == step["elapsed_ms"], "time per image is the render, not the score after it"
            assert (done["image_id"] is not None) == save


def test_clip_search_streams_steps_with_scores(gan_client: TestClient) -> None:
    with gan_client.websocket_connect("/ws") as ws:
        reader = WsReader(ws)
        _, items = read_run(reader, {"prompt": "red heart", "seed": 2, "search_steps": 4, "search_cutn": 2})
        assert items[0]["task"] == "search" and items[0]["total"] == 4
        steps = [i for i in items if isinstance(i, dict) and i["type"] == "step"]
        assert [e["index"] for e in steps] == [1, 2, 3, 4] and all(e["total"] == 4 for e in steps)
        assert all(isinstance(e["clip_score"], float) and isinstance(e["loss"], float) for e in steps)
        assert [e["elapsed_ms"] for e in steps] == sorted(e["elapsed_ms"] for e in steps) and steps[0]["elapsed_ms"] > 0
        assert "preview" in kinds(items)
        assert kinds(items)[-2:] == ["final", "done"], "every step and preview arrives before the final frame"
        assert items[-1]["clip_score"] is not None and items[-1]["image_id"] is not None, "a search is kept"


def test_a_cancelled_search_sends_nothing_after_cancelled(gan_client: TestClient) -> None:
    with gan_client.websocket_connect("/ws") as ws:
        reader = WsReader(ws)
        ws.send_json({"type": "generate_gan", "params": {"prompt": "pizza", "seed": 1, "search_steps": 500,
                                                         "search_cutn": 1}})
        run_id = reader.until("queued")["run_id"]
        reader.until("step", run_id)
        ws.send_json({"type": "cancel", "run_id": run_id})
        cancelled = reader.until("cancelled", run_id)
        assert 1 <= cancelled["index"] < 500
        at = len(reader.events)
        read_run(reader, {"prompt": "pizza", "seed": 1, "save": False})  # the next run ends after it
        assert not [e for e in reader.events[at:] if e.get("run_id") == run_id]
    assert gan_client.get("/api/gallery").json() == [], "a stopped search keeps nothing"


def test_an_empty_prompt_is_refused_before_queueing_for_a_text_conditioned_gan(gan_client: TestClient) -> None:
    with gan_client.websocket_connect("/ws") as ws:
        reader = WsReader(ws)
        for params in ({"seed": 1}, {"prompt": "  ", "seed": 1, "save": False}, {"prompt": "", "grid": 8}):
            ws.send_json({"type": "generate_gan", "params": params})
            err = reader.until("error")
            assert err["code"] == "bad_request" and err["message"].startswith("prompt is empty"), err
            assert "text-conditioned" in err["message"]
        assert not [e for e in reader.events if e["type"] == "queued"]
    assert gan_client.get("/api/gallery").json() == []


def test_a_replaced_slider_render_skips_its_score(gan_client: TestClient) -> None:
    runner = gan_client.app.state.studio.gan
    runner.waiting = lambda job: True  # as if a newer request of the page were already waiting
    with gan_client.websocket_connect("/ws") as ws:
        reader = WsReader(ws)
        _, items = read_run(reader, {"prompt": "red heart", "seed": 5, "save": False})
        assert kinds(items) == ["started", "final", "step", "done"]
        assert items[-1]["clip_score"] is None and items[-1]["score_skipped"] is True
        _, items = read_run(reader, {"prompt": "red heart", "seed": 5})  # a kept render is always scored
        assert items[-1]["clip_score"] is not None and items[-1]["score_skipped"] is False


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
        ws.send_json({"type": "generate_gan", "params": {"seed": 1, "search_steps": 3, "prompt": "red:1e999"}})
        err = reader.until("error")
        assert err["code"] == "bad_request" and err["message"].startswith("prompt: "), err
        ws.send_json({"type": "generate_gan", "params": {"seed": 4294967295, "grid": 2}})  # numpy's seed range
        err = reader.until("error")
        assert err["code"] == "bad_request" and "seed" in err["message"], err
        done, _ = render(reader, {"prompt": "x", "seed": 4294967294, "grid": 2, "save": False})  # the last seeds
        assert done["seed"] == 4294967294


def test_slider_renders_stay_out_of_the_gallery(gan_client: TestClient) -> None:
    with gan_client.websocket_connect("/ws") as ws:
        reader = WsReader(ws)
        done, _ = render(reader, {"prompt": "pizza", "seed": 9, "save": False})
        assert done["image_id"] is None and done["url"] is None
        kept, _ = render(reader, {"prompt": "pizza", "seed": 9})
    assert [g["id"] for g in gan_client.get("/api/gallery").json()] == [kept["image_id"]]
    assert gan_client.get("/api/gallery").json()[0]["params"]["condition"] == "prompt"  # c = the prompt
    png_models = gan_client.get("/api/gallery").json()[0]["models"]
    assert all(v is None or "/" not in v for v in png_models.values()), png_models


@pytest.fixture(scope="module")
def unconditional_models(tiny_models: Models, tmp_path_factory: pytest.TempPathFactory) -> Models:
    kwargs = {**KWARGS, "c_dim": 0}
    torch.manual_seed(1)
    folder = save_generator(tmp_path_factory.mktemp("gan0"), kwargs, Generator(**kwargs).state_dict())
    gan = load_gan_model(folder, torch.device("cpu"), clip=tiny_models.clip)
    return Models(tiny_models.device, tiny_models.dtype, tiny_models.diffusion, tiny_models.clip, gan,
                  names={**tiny_models.names, "gan": str(folder)})


def test_an_unconditional_gan_renders_an_empty_prompt_and_says_so(unconditional_models: Models,
                                                                  tmp_path: Path) -> None:
    with TestClient(create_app(make_settings(tmp_path), models=unconditional_models)) as client:
        assert client.get("/api/info").json()["gan"]["text"] == "clip_search"
        with client.websocket_connect("/ws") as ws:
            reader = WsReader(ws)
            empty, a = render(reader, {"prompt": "", "seed": 3})
            assert empty["clip_score"] is None, "no prompt, no CLIP score"
            worded, b = render(reader, {"prompt": "pizza", "seed": 3})
            assert a == b, "an unconditional generator draws the seed; the prompt does not change the render"
            assert worded["clip_score"] is not None
            ws.send_json({"type": "generate_gan", "params": {"seed": 3, "search_steps": 2}})
            err = reader.until("error")
            assert err["code"] == "bad_request" and err["message"].startswith("prompt is empty"), err
        items = {g["id"]: g for g in client.get("/api/gallery").json()}
        assert items[empty["image_id"]]["params"]["condition"] == "none"
        assert items[empty["image_id"]]["params"]["prompt"] == ""
        assert items[worded["image_id"]]["params"]["condition"] == "none"


def test_a_latent_walk_streams_its_frames_and_ends_as_an_animated_webp(gan_client: TestClient) -> None:
    import io

    from PIL import Image

    with gan_client.websocket_connect("/ws") as ws:
        reader = WsReader(ws)
        _, items = read_run(reader, {"prompt": "red heart", "seed": 3, "walk_frames": 5, "walk_seed": 9,
                                     "walk_fps": 10})
        assert items[0]["task"] == "walk" and items[0]["total"] == 5
        steps = [i for i in items if isinstance(i, dict) and i["type"] == "step"]
        assert [e["index"] for e in steps] == [1, 2, 3, 4, 5]
        assert kinds(items)[-2:] == ["final", "done"], "every walk frame arrives before the animation"
        frame, done = items[-2], items[-1]
        assert frame[1]["format"] == "webp" and frame[1]["frames"] == 5
        anim = Image.open(io.BytesIO(frame[2]))
        anim.load()
        assert anim.format == "WEBP" and anim.n_frames == 5 and anim.info["duration"] == 100 and anim.info["loop"] == 0
        assert done["walk"] == {"frames": 5, "fps": 10.0, "to_seed": 9, "bytes": len(frame[2])}
        assert done["image_id"] is None, "a walk is exported from the page, not kept in the gallery"
        # The walk's ends are the two seeds' renders (the first and last previews are lossless PNGs).
        previews = [i for i in items if not isinstance(i, dict) and FrameType(i[0]) == FrameType.PREVIEW]
        _, start = render(reader, {"prompt": "red heart", "seed": 3, "save": False})
        _, stop = render(reader, {"prompt": "red heart", "seed": 9, "save": False})
        if previews and previews[0][1]["step"] == 1:
            assert previews[0][2] == start
        if previews and previews[-1][1]["step"] == 5:
            assert previews[-1][2] == stop


@pytest.mark.parametrize(("params", "code"), [
    ({"walk_frames": 121}, "too_large"),
    ({"walk_frames": 1}, "bad_request"),
    ({"walk_frames": 4, "grid": 2}, "bad_request"),
    ({"walk_frames": 4, "search_steps": 2}, "bad_request"),
    ({"walk_frames": 4, "walk_class": 1}, "bad_request"),
    ({"rotate": 10}, "bad_request"),
])
def test_walks_and_controls_this_generator_lacks_are_refused(gan_client: TestClient, params: dict, code: str) -> None:
    with gan_client.websocket_connect("/ws") as ws:
        reader = WsReader(ws)
        ws.send_json({"type": "generate_gan", "params": {"prompt": "red heart", "seed": 1, **params}})
        err = reader.until("error")
        assert err["code"] == code, err
