"""Model switching (`--models-dir`): the folder's models listed with what each is, one loaded on
request while the loaded one keeps serving runs, and every refusal a clear message that leaves the
loaded model in place."""

from __future__ import annotations

import dataclasses
import gc
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from fastapi.testclient import TestClient
from safetensors.torch import save_file

from app.demo_models import build_tiny_biggan, build_tiny_diffusion, build_tiny_upscalers
from app.engine import switcher as switcher_module
from app.main import create_app
from app.model_library import load_bytes, scan
from app.registry import Models, load_models
from app.settings import Settings
from tests.api.conftest import WsReader, make_settings
from tests.api.test_ws_flow import final_bytes, run_to_done

RUN = {"prompt": "a red fox", "seed": 11, "steps": 6, "width": 32, "height": 32, "sampler": "euler",
       "cfg_scale": 3.0, "preview_every": 2, "clip_guidance_scale": 0.0}


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("models-dir")
    build_tiny_diffusion(root / "fox-a", seed=0)
    build_tiny_diffusion(root / "Stable-diffusion" / "fox-b", seed=1)  # one folder down, as A1111 keeps them
    build_tiny_biggan(root / "biggan", seed=0, class_names=["tench", "goldfish", "great white shark", "tiger shark", "hammerhead"])
    build_tiny_upscalers(root / "upscalers", seed=0)
    save_file({"lora_unet_down_blocks_0_attentions_0_proj_in.lora_down.weight": torch.zeros(4, 8),
               "lora_unet_down_blocks_0_attentions_0_proj_in.lora_up.weight": torch.zeros(8, 4)},
              root / "style-lora.safetensors")
    (root / "ffhq.pkl").write_bytes(b"\x80\x04N.")
    broken = root / "broken"
    broken.mkdir()
    (broken / "model_index.json").write_text(json.dumps({"_class_name": "StableDiffusionPipeline"}))
    cascade = root / "cascade"
    cascade.mkdir()
    (cascade / "model_index.json").write_text(json.dumps({"_class_name": "StableCascadeDecoderPipeline"}))
    (root / "notes.txt").write_text("not a model")
    return root


@pytest.fixture(scope="module")
def models_a(models_dir: Path, tiny_clip_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Models:
    """The studio's models at start: fox-a from the folder (its own Models: switching replaces them)."""
    return load_models(Settings(diffusion_model=str(models_dir / "fox-a"), clip_model=str(tiny_clip_dir), gan_model="",
                                upscaler_gan="", upscaler_diffusion="", device="cpu",
                                data_dir=tmp_path_factory.mktemp("switch-data")))


@pytest.fixture
def client(models_a: Models, models_dir: Path, tmp_path: Path) -> Iterator[TestClient]:
    with TestClient(create_app(make_settings(tmp_path, models_dir=models_dir, batch_runs=1), models=models_a)) as c:
        yield c


def load_and_wait(client: TestClient, model_id: str, timeout: float = 120.0) -> dict:
    res = client.post("/api/models/load", json={"id": model_id})
    assert res.status_code == 202, res.text
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        load = client.get("/api/models").json()["load"]
        if load["state"] != "loading":
            return load
        time.sleep(0.05)
    raise AssertionError(f"{model_id} did not finish loading")


def test_the_folder_is_listed_with_what_each_entry_is(client: TestClient) -> None:
    listing = client.get("/api/models").json()
    assert listing["enabled"] and listing["load"] is None
    by_id = {m["id"]: m for m in listing["models"]}
    assert set(by_id) == {"fox-a", "Stable-diffusion/fox-b", "biggan", "upscalers/gan", "upscalers/diffusion",
                          "style-lora.safetensors", "ffhq.pkl", "broken", "cascade"}
    assert by_id["fox-a"] | {"bytes": 0} == {"id": "fox-a", "kind": "diffusion", "family": "SD 1.x / 2.x", "bytes": 0,
                                             "problem": None, "active": True}
    assert by_id["fox-a"]["bytes"] > 0
    assert by_id["Stable-diffusion/fox-b"]["kind"] == "diffusion" and not by_id["Stable-diffusion/fox-b"]["active"]
    assert (by_id["biggan"]["kind"], by_id["biggan"]["family"]) == ("gan", "BigGAN")
    for name, words in {"style-lora.safetensors": "--lora-dir", "ffhq.pkl": "convert-gan", "upscalers/gan": "--upscaler-gan",
                        "upscalers/diffusion": "--upscaler-diffusion", "cascade": "StableCascadeDecoderPipeline"}.items():
        assert by_id[name]["kind"] is None and words in by_id[name]["problem"], name


def test_a_single_file_checkpoint_is_told_apart_by_its_keys(tmp_path: Path) -> None:
    from diffusers import StableDiffusionPipeline

    from tests.diffusion.ldm_layout import sd_single_file

    pipe = StableDiffusionPipeline.from_pretrained(build_tiny_diffusion(tmp_path / "src", seed=2))
    save_file(sd_single_file(pipe), tmp_path / "root" / "tiny.safetensors") if (tmp_path / "root").mkdir() is None else None
    save_file({"transformer.weight": torch.zeros(2)}, tmp_path / "root" / "some-other-net.safetensors")
    entries = scan(tmp_path / "root")
    assert list(entries) == ["tiny.safetensors"]  # another network's weights are not offered
    assert entries["tiny.safetensors"].family == "SD 1.x (single file)"
    assert entries["tiny.safetensors"].kind == "diffusion"
    # the memory estimate reads the header: float32 weights count 4 bytes an element, float16 2
    assert load_bytes(tmp_path / "root" / "tiny.safetensors", 2) * 2 == load_bytes(tmp_path / "root" / "tiny.safetensors", 4)


def test_a_rescan_reads_only_what_changed(models_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import os
    import shutil

    from app import model_library

    root = tmp_path / "root"
    shutil.copytree(models_dir, root)
    read: list[str] = []
    describe = model_library.describe
    monkeypatch.setattr(model_library, "describe", lambda r, p: read.append(p.name) or describe(r, p))
    cache: model_library.ScanCache = {}
    first = scan(root, cache)
    assert first == scan(root) and "style-lora.safetensors" in read
    read.clear()
    assert scan(root, cache) == first and read == []  # the page's poll reads nothing again
    lora = root / "style-lora.safetensors"
    os.utime(lora, ns=(lora.stat().st_atime_ns, lora.stat().st_mtime_ns + 10**9))
    (root / "fox-a" / "model_index.json").write_text(json.dumps({"_class_name": "StableCascadeDecoderPipeline"}))
    shutil.rmtree(root / "broken")
    second = scan(root, cache)
    assert sorted(read) == ["fox-a", "style-lora.safetensors"]
    assert second["fox-a"].kind is None and "broken" not in second
    assert not any(p.name == "broken" for p in cache)


def test_loading_another_model_swaps_it_in_for_new_runs(client: TestClient) -> None:
    with client.websocket_connect("/ws") as ws:
        reader = WsReader(ws)
        before_q, before = run_to_done(reader, RUN)
        load = load_and_wait(client, "Stable-diffusion/fox-b")
        assert load["state"] == "ready" and load["error"] is None and load["stage"] == "swap", load
        assert client.get("/api/info").json()["diffusion"] == "fox-b"
        listing = {m["id"]: m["active"] for m in client.get("/api/models").json()["models"]}
        assert listing["Stable-diffusion/fox-b"] and not listing["fox-a"]
        after_q, after = run_to_done(reader, RUN)
    record = client.get("/api/gallery").json()
    models_of = {item["id"]: item["models"]["diffusion"] for item in record}
    assert models_of[before["image_id"]] == "fox-a" and models_of[after["image_id"]] == "fox-b"
    assert final_bytes(reader, before_q["run_id"]) != final_bytes(reader, after_q["run_id"])  # another network


def test_a_run_in_progress_finishes_on_its_own_model_while_another_loads(client: TestClient, models_a: Models,
                                                                         models_dir: Path) -> None:
    switcher = client.app.state.switcher
    gate, entered = threading.Event(), threading.Event()
    real = switcher._load_diffusion

    def slow_load(*args, **kwargs):
        entered.set()
        assert gate.wait(60)
        return real(*args, **kwargs)

    switcher._load_diffusion = slow_load
    slow = {**RUN, "steps": 40, "preview_every": 5}
    with client.websocket_connect("/ws") as ws:
        reader = WsReader(ws)
        ws.send_json({"type": "generate", "params": slow})
        started = reader.until("started")
        assert client.post("/api/models/load", json={"id": "Stable-diffusion/fox-b"}).status_code == 202
        assert entered.wait(30)
        again = client.post("/api/models/load", json={"id": "fox-a"})
        assert again.status_code == 409 and "is loading" in again.json()["detail"]
        reader.until("step", started["run_id"])  # the run steps while the new model loads
        gate.set()
        done = reader.until("done", started["run_id"])
        assert switcher.wait(60).state == "ready"
    assert done["image_id"]
    record = {i["id"]: i for i in client.get("/api/gallery").json()}[done["image_id"]]
    assert record["models"]["diffusion"] == "fox-a"  # queued before the swap: drawn by fox-a throughout

    # Its model is gone from the studio now: forking or scrubbing that run is refused in words.
    gc.collect()
    with client.websocket_connect("/ws") as ws:
        reader = WsReader(ws)
        ws.send_json({"type": "rewind", "run_id": started["run_id"], "step": 10})
        err = reader.until("error")
    assert err["code"] == "not_found", err


def test_every_open_page_is_told_of_a_swap(client: TestClient) -> None:
    with client.websocket_connect("/ws") as one, client.websocket_connect("/ws") as other:
        pages = [WsReader(one), WsReader(other)]
        for page in pages:  # both connected (a page speaks first: the hello of WsReader's run_to_done)
            run_to_done(page, RUN)
        assert load_and_wait(client, "Stable-diffusion/fox-b")["state"] == "ready"
        told = [page.until("models_changed") for page in pages]
    assert all(ev == {"type": "models_changed", "engine": "diffusion", "name": "fox-b"} for ev in told), told


def test_a_loaded_model_lifts_the_demo_notice_of_its_part(models_a: Models, models_dir: Path, tmp_path: Path) -> None:
    started_on_demo = dataclasses.replace(models_a, demo=frozenset({"diffusion", "clip"}))
    with TestClient(create_app(make_settings(tmp_path, models_dir=models_dir, batch_runs=1), models=started_on_demo)) as c:
        info = c.get("/api/info").json()
        assert info["demo"] and info["demo_parts"] == ["clip", "diffusion"]
        assert load_and_wait(c, "Stable-diffusion/fox-b")["state"] == "ready"
        info = c.get("/api/info").json()
    assert info["demo"] and info["demo_parts"] == ["clip"] and info["demo_notice"] == "untrained demo weights (clip)"


def test_refusals_are_clear_and_leave_the_loaded_model(client: TestClient, monkeypatch: pytest.MonkeyPatch) -> None:
    post = lambda model_id: client.post("/api/models/load", json={"id": model_id})  # noqa: E731
    assert post("nope").status_code == 404
    assert post("../fox-a").status_code == 404  # ids are the listing's, never paths
    res = post("style-lora.safetensors")
    assert res.status_code == 400 and "--lora-dir" in res.json()["detail"]
    assert client.post("/api/models/load", json={"id": "fox-a", "extra": 1}).status_code == 422
    assert client.post("/api/models/load", json={"id": ""}).status_code == 422

    monkeypatch.setattr(switcher_module, "available_memory", lambda device: 1024.0)
    res = post("Stable-diffusion/fox-b")
    assert res.status_code == 409 and "not enough memory" in res.json()["detail"]
    monkeypatch.undo()

    failed = load_and_wait(client, "broken")
    assert failed["state"] == "failed" and failed["error"].startswith("broken could not be loaded")
    assert "the loaded model stays" in failed["error"]
    assert str(client.app.state.settings.models_dir) not in failed["error"]  # no server paths in messages
    assert client.get("/api/info").json()["diffusion"] == "fox-a"
    with client.websocket_connect("/ws") as ws:
        _, done = run_to_done(WsReader(ws), RUN)
    assert done["image_id"]

    def out_of_memory(*args, **kwargs):
        raise MemoryError

    monkeypatch.setattr(client.app.state.switcher, "_load_diffusion", out_of_memory)
    failed = load_and_wait(client, "Stable-diffusion/fox-b")
    assert failed["state"] == "failed" and failed["error"].startswith("not enough memory to load Stable-diffusion/fox-b")
    monkeypatch.undo()
    assert client.get("/api/info").json()["diffusion"] == "fox-a"

    already = post("fox-a").json()["load"]
    assert already["state"] == "ready" and already["notes"] == ["already loaded"]


def test_a_gan_from_the_folder_replaces_the_gan_panel(client: TestClient) -> None:
    assert client.get("/api/info").json()["gan"] is None
    load = load_and_wait(client, "biggan")
    assert load["state"] == "ready", load
    gan = client.get("/api/info").json()["gan"]
    assert gan is not None and gan["family"] == "biggan"
    with client.websocket_connect("/ws") as ws:
        reader = WsReader(ws)
        ws.send_json({"type": "generate_gan", "params": {"seed": 3, "class_index": 1}})
        done = reader.until("done")
    assert done["engine"] == "gan"


def test_without_a_models_dir_nothing_is_listed(tiny_models: Models, tmp_path: Path) -> None:
    with TestClient(create_app(make_settings(tmp_path), models=tiny_models)) as c:
        listing = c.get("/api/models").json()
        assert listing["enabled"] is False and listing["models"] == [] and "--models-dir" in listing["note"]
        res = c.post("/api/models/load", json={"id": "x"})
        assert res.status_code == 400 and "--models-dir" in res.json()["detail"]


def test_a_swapped_out_model_is_freed_once_its_last_run_ends(models_dir: Path, tiny_clip_dir: Path,
                                                               tmp_path: Path) -> None:
    import weakref

    from app.engine.calibrate import calibrate
    from app.engine.studio import Studio
    from app.registry import load_diffusion
    from app.store.gallery import Gallery

    settings = make_settings(tmp_path, models_dir=models_dir, batch_runs=1)
    studio = Studio(settings, load_models(Settings(
        diffusion_model=str(models_dir / "fox-a"), clip_model=str(tiny_clip_dir), gan_model="", upscaler_gan="",
        upscaler_diffusion="", device="cpu", data_dir=tmp_path / "d")), Gallery(tmp_path / "gallery"))
    studio.start()
    try:
        old = weakref.ref(studio.models.diffusion.unet)
        new = load_diffusion(str(models_dir / "Stable-diffusion" / "fox-b"), settings, torch.device("cpu"),
                             torch.float32, studio.models.clip)
        studio.use_diffusion(new, str(models_dir / "Stable-diffusion" / "fox-b"), calibrate(new))
        gc.collect()
        assert old() is None, "nothing in the studio holds the old model after the swap"
    finally:
        studio.stop()


@pytest.mark.parametrize("key", ["lora_unet_down_blocks_0_attentions_0_proj_in.lora_down.weight",  # kohya / A1111
                                 "unet.down_blocks.0.attn1.to_q.lora_A.weight",  # diffusers / PEFT
                                 "unet.down_blocks.0.attn1.processor.to_q_lora.down.weight"])  # older diffusers
def test_every_lora_layout_is_listed_as_a_lora(key: str, tmp_path: Path) -> None:
    save_file({key: torch.zeros(2, 2)}, tmp_path / "style.safetensors")
    entry = scan(tmp_path)["style.safetensors"]
    assert (entry.kind, entry.family) == (None, "LoRA") and "--lora-dir" in entry.problem
