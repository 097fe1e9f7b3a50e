"""Issue 17's batch and variations on the tiny models: a batch keeps one gallery row per image with
its own seed, and variations are one img2img batch of 4 from a gallery image (`init_image:
"gallery:<id>"`), each image close to the source at a low strength and further at a high one, with
the source and strength recorded as lineage."""

from __future__ import annotations

import io

import numpy as np
from fastapi.testclient import TestClient
from PIL import Image

from app.params import strength
from app.store.pngread import text_chunks
from tests.api.conftest import WsReader
from tests.api.test_ws_flow import run_to_done

SOURCE = {"prompt": "cat face", "seed": 21, "steps": 12, "width": 32, "height": 32, "sampler": "euler_a"}


def pixels(client: TestClient, image_id: str) -> np.ndarray:
    res = client.get(f"/api/gallery/{image_id}.png")
    assert res.status_code == 200
    return np.asarray(Image.open(io.BytesIO(res.content)).convert("RGB"), dtype=np.float64)


def variations(reader: WsReader, source_id: str, skip_steps: int, seed: int = 500) -> dict:
    params = {**SOURCE, "seed": seed, "batch": 4, "init_image": f"gallery:{source_id}", "skip_steps": skip_steps}
    return run_to_done(reader, params)[1]


def test_variations_stay_near_the_source_at_low_strength(client: TestClient) -> None:
    with client.websocket_connect("/ws") as ws:
        reader = WsReader(ws)
        source = run_to_done(reader, SOURCE)[1]["image_id"]
        low = variations(reader, source, skip_steps=9)  # strength 0.25
        high = variations(reader, source, skip_steps=1)  # strength 0.92
        again = variations(reader, source, skip_steps=9)
    src = pixels(client, source)
    distances = {}
    for name, done in (("low", low), ("high", high)):
        images = [pixels(client, i) for i in done["image_ids"]]
        assert len(images) == 4 and all(im.shape == src.shape for im in images)
        assert len({im.tobytes() for im in images}) == 4, f"{name}: four seeds give four different images"
        distances[name] = [float(np.abs(im - src).mean()) for im in images]
        assert done["diversity"] is not None and done["diversity"] > 0
    assert max(distances["low"]) < min(distances["high"]), distances
    # deterministic: the same source, strength and seeds give the same four images
    assert [pixels(client, i).tobytes() for i in again["image_ids"]] == \
        [pixels(client, i).tobytes() for i in low["image_ids"]]

    items = {item["id"]: item for item in client.get("/api/gallery").json()}
    for j, image_id in enumerate(low["image_ids"]):
        item = items[image_id]
        assert item["lineage"] == {"source_image": source, "strength": strength(12, 9)} == low["lineage"]
        assert item["seed"] == 500 + j, "each image of a batch records the seed its noise came from"
        assert item["params"]["seed"] == 500 and item["params"]["batch"] == 4, "params replay the whole batch"
    text = text_chunks(client.get(f"/api/gallery/{low['image_ids'][2]}.png").content)["parameters"]
    assert f'Variation of: "image {source} at strength 0.25"' in text
    assert "Seed: 502" in text and "Batch size: 4, Batch pos: 2" in text


def test_a_batch_replays_from_its_recorded_params(client: TestClient) -> None:
    with client.websocket_connect("/ws") as ws:
        reader = WsReader(ws)
        first = run_to_done(reader, {**SOURCE, "batch": 3})[1]
        items = {item["id"]: item for item in client.get("/api/gallery").json()}
        recorded = items[first["image_ids"][1]]
        replay = run_to_done(reader, {**recorded["params"], "init_image": None})[1]
    assert [pixels(client, i).tobytes() for i in replay["image_ids"]] == \
        [pixels(client, i).tobytes() for i in first["image_ids"]]
    assert first["lineage"] is None


def test_a_missing_or_malformed_gallery_source_is_refused_before_queueing(client: TestClient) -> None:
    with client.websocket_connect("/ws") as ws:
        reader = WsReader(ws)
        ws.send_json({"type": "generate", "ref": "v1",
                      "params": {**SOURCE, "init_image": "gallery:" + "0" * 24, "skip_steps": 6}})
        err = reader.until("error")
        assert err["code"] == "not_found" and err["ref"] == "v1"
        assert "there is no gallery image 000000000000000000000000" in err["message"]
        ws.send_json({"type": "generate", "params": {**SOURCE, "init_image": "gallery:../x", "skip_steps": 6}})
        err = reader.until("error")
        assert err["code"] == "bad_request" and "gallery:<image id>" in err["message"], err
        assert "pattern" not in err["message"]
    assert not any(e["type"] == "queued" for e in reader.events)



def test_a_fork_of_a_variation_batch_keeps_both_lineages(client: TestClient) -> None:
    with client.websocket_connect("/ws") as ws:
        reader = WsReader(ws)
        source = run_to_done(reader, SOURCE)[1]["image_id"]
        parent = variations(reader, source, skip_steps=6)
        ws.send_json({"type": "rewind", "run_id": parent["run_id"], "step": 8, "params": {"cfg_scale": 0}})
        queued = reader.until("queued")
        fork = reader.until("done", queued["run_id"])
    assert len(fork["image_ids"]) == 4 and fork["params"]["batch"] == 4
    assert fork["lineage"] == {"parent_run": parent["run_id"], "from_step": 8, "source_image": source, "strength": 0.5}
    assert fork["schedule"] == [{"step": 8, "changes": {"cfg_scale": 0.0}}]
