"""The parts of the Ray Serve path that need no cluster: the stream Sink, the replica's gallery, and the
gallery's prepare / store split (a replica prepares, the ingress stores)."""

from __future__ import annotations

import asyncio
import io
import json
import threading
from pathlib import Path

import pytest
from PIL import Image

from app.cluster.gallery import KEEP_HELD, ReplicaGallery
from app.cluster.stream import StreamSink
from app.store.gallery import Gallery, ImageRecord, prepare


def record(seed: int = 1, run_id: str = "r1") -> ImageRecord:
    return ImageRecord(engine="diffusion", params={"prompt": "a fox", "seed": seed}, seed=seed, run_id=run_id)


def image(colour: tuple[int, int, int] = (200, 10, 10)) -> Image.Image:
    return Image.new("RGB", (16, 8), colour)


async def read_all(sink: StreamSink) -> list[tuple]:
    items = []
    while not (sink.ended and not sink.pending()):
        items.append(await asyncio.wait_for(sink.next(), timeout=30))
    return items


def test_stream_sink_keeps_order_and_sends_gallery_rows_before_the_event_naming_them(tmp_path: Path) -> None:
    gallery = ReplicaGallery(tmp_path)

    async def main() -> list[tuple]:
        sink = StreamSink(asyncio.get_running_loop(), held=gallery.take)

        def engine_thread() -> None:  # what a diffusion run does, from its worker thread
            sink.send({"type": "started", "run_id": "r1"})
            for i in range(1, 4):
                sink.send({"type": "step", "run_id": "r1", "index": i})
                sink.image({"run_id": "r1", "step": i}, b"jpeg%d" % i, "preview")
            ids = [gallery.add(image(), record(seed)) for seed in (1, 2)]
            sink.image({"run_id": "r1", "step": 3, "image_id": ids[0]}, b"png", "final")
            sink.send({"type": "done", "run_id": "r1", "image_id": ids[0], "image_ids": ids})

        thread = threading.Thread(target=engine_thread)
        thread.start()
        items = await read_all(sink)
        thread.join()
        return items

    items = asyncio.run(main())
    kinds = [(i[0], i[1].get("type") if i[0] == "event" else i[-1] if i[0] == "image" else None) for i in items]
    assert kinds == [("event", "started"), *[("event", "step"), ("image", "preview")] * 3, ("gallery", None),
                     ("image", "final"), ("gallery", None), ("event", "done")]
    assert [i[1]["index"] for i in items if i[0] == "event" and i[1]["type"] == "step"] == [1, 2, 3]
    rows = [i for i in items if i[0] == "gallery"]
    done = items[-1][1]
    assert [r[1]["id"] for r in rows] == done["image_ids"]  # each row once, before the event naming it
    assert [r[1]["seed"] for r in rows] == [1, 2]


def test_stream_sink_ends_on_cancelled_and_error() -> None:
    async def main(last: dict) -> list[tuple]:
        sink = StreamSink(asyncio.get_running_loop())
        sink.send({"type": "step", "run_id": "r", "index": 1})
        sink.send(last)
        return await read_all(sink)

    for last in ({"type": "cancelled", "run_id": "r", "index": 1}, {"type": "error", "code": "internal", "run_id": "r"}):
        assert [i[1]["type"] for i in asyncio.run(main(last))] == ["step", last["type"]]


def test_replica_gallery_holds_prepared_images_until_taken(tmp_path: Path) -> None:
    gallery = ReplicaGallery(tmp_path)
    first = gallery.add(image(), record(1))
    second = gallery.add(image((0, 0, 255)), record(2))
    assert first != second
    (rec, png), = gallery.take([second, "0" * 24])
    assert rec["id"] == second and rec["width"] == 16 and rec["height"] == 8
    assert json.loads(Image.open(io.BytesIO(png)).text["noisescope"])["seed"] == 2
    assert gallery.take([second]) == []  # taken once
    for seed in range(KEEP_HELD + 5):  # images whose event never came do not pile up
        gallery.add(image(), record(seed))
    assert gallery.take([first]) == []


def test_replica_gallery_keeps_images_sent_with_a_run(tmp_path: Path) -> None:
    gallery = ReplicaGallery(tmp_path)
    image_id = "0190aa00bb11cc22dd33ee44"
    assert gallery.get(image_id) is None
    gallery.put(image_id, b"\x89PNG...")
    assert gallery.get(image_id).id == image_id
    assert gallery.path_for(image_id).read_bytes() == b"\x89PNG..."
    for bad in ("../../etc/passwd", "0190AA00BB11CC22DD33EE44", "x"):
        assert gallery.get(bad) is None
        with pytest.raises(ValueError):
            gallery.put(bad, b"")
    assert gallery.sweep(now=10**12) == 1 and gallery.get(image_id) is None


def test_gallery_stores_what_a_replica_prepared(tmp_path: Path) -> None:
    gallery = Gallery(tmp_path / "gallery")
    rec, png = prepare(image(), record(5))
    assert gallery.store(ImageRecord(**rec.to_dict()), png) == rec.id
    assert gallery.path_for(rec.id).read_bytes() == png
    stored = gallery.get(rec.id)
    assert stored is not None and stored.seed == 5 and stored.run_id == "r1" and (stored.width, stored.height) == (16, 8)
    with pytest.raises(ValueError):
        gallery.store(ImageRecord(engine="gan", params={}, id="../x"), png)
    added = gallery.add(image(), record(6))  # add is prepare + store
    assert gallery.get(added).seed == 6 and [r.id for r in gallery.list()] == [added, rec.id]


def test_scratch_folders_of_dead_replicas_are_swept(tmp_path: Path) -> None:
    pytest.importorskip("ray", reason="Ray is not installed")
    import os
    import subprocess
    import sys

    from app.cluster.replica import FOLDER_PREFIX, sweep_dead_replica_folders

    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead = tmp_path / f"{FOLDER_PREFIX}{gone.stdout.strip()}-abc"
    alive = tmp_path / f"{FOLDER_PREFIX}{os.getpid()}-def"
    other = tmp_path / "noisescope-replica-notapid"
    for folder in (dead, alive, other):
        folder.mkdir()
    assert sweep_dead_replica_folders(tmp_path) == 1
    assert not dead.exists() and alive.exists() and other.exists()
