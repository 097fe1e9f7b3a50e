"""Gallery: round trip, restart, PNG chunks, path safety, atomic writes, threads."""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path

import pytest
from PIL import Image

from app.store import gallery as gallery_mod
from app.store.gallery import Gallery, ImageRecord, valid_id


def _record(**over: object) -> ImageRecord:
    params = {
        "prompt": "a red fox", "negative_prompt": "blurry", "steps": 30, "sampler": "dpmpp_2m", "karras": True,
        "cfg_scale": 5.0, "width": 64, "height": 64,
    }
    base = dict(
        engine="diffusion", params=params, seed=1,
        timings={"total_ms": 1200.0, "ms_per_step": 40.0, "steps": 30},
        models={"diffusion": "tiny-sd", "clip": "tiny-clip"}, clip_score=0.31,
    )
    base.update(over)
    return ImageRecord(**base)  # type: ignore[arg-type]


def _image(color: tuple[int, int, int] = (200, 30, 10), size: tuple[int, int] = (64, 48)) -> Image.Image:
    return Image.new("RGB", size, color)


def test_round_trip(tmp_path: Path) -> None:
    g = Gallery(tmp_path)
    image_id = g.add(_image(), _record())
    assert valid_id(image_id)
    rec = g.get(image_id)
    assert rec is not None
    assert rec.params["prompt"] == "a red fox"
    assert rec.seed == 1 and rec.engine == "diffusion"
    assert rec.timings == {"total_ms": 1200.0, "ms_per_step": 40.0, "steps": 30}
    assert rec.models["diffusion"] == "tiny-sd"
    assert rec.clip_score == pytest.approx(0.31)
    assert (rec.width, rec.height) == (64, 48)
    assert rec.created > 0
    with Image.open(g.path_for(image_id)) as img:
        assert img.size == (64, 48)
        assert img.convert("RGB").getpixel((3, 3)) == (200, 30, 10)


def test_list_newest_first_and_paging(tmp_path: Path) -> None:
    g = Gallery(tmp_path)
    ids = [g.add(_image(), _record(seed=i)) for i in range(5)]
    listed = [r.id for r in g.list(limit=10)]
    assert listed == ids[::-1]
    assert [r.id for r in g.list(limit=2, offset=1)] == ids[::-1][1:3]
    assert g.count() == 5


def test_persists_across_restart(tmp_path: Path) -> None:
    g = Gallery(tmp_path)
    image_id = g.add(_image(), _record(engine="gan", params={"prompt": "a face", "truncation_psi": 0.7}))
    g.close()
    g2 = Gallery(tmp_path)
    rec = g2.get(image_id)
    assert rec is not None and rec.engine == "gan" and rec.params["truncation_psi"] == 0.7
    assert g2.path_for(image_id).is_file()
    assert [r.id for r in g2.list()] == [image_id]


def test_png_chunks_readable_by_pillow(tmp_path: Path) -> None:
    g = Gallery(tmp_path)
    image_id = g.add(_image(size=(64, 64)), _record())
    with Image.open(g.path_for(image_id)) as img:
        params = img.text["parameters"]
        meta = json.loads(img.text["noisescope"])
    lines = params.split("\n")
    assert lines[0] == "a red fox"
    assert lines[1] == "Negative prompt: blurry"
    assert lines[2].startswith("Steps: 30, Sampler: DPM++ 2M Karras, CFG scale: 5, Seed: 1, Size: 64x64, Model: tiny-sd")
    assert meta["id"] == image_id
    assert meta["params"]["prompt"] == "a red fox"
    assert meta["timings"]["steps"] == 30


def test_unicode_prompt_survives(tmp_path: Path) -> None:
    g = Gallery(tmp_path)
    image_id = g.add(_image(), _record(params={"prompt": "ein Fuchs 🦊 im Schnee", "steps": 2, "sampler": "ddim"}))
    with Image.open(g.path_for(image_id)) as img:
        assert img.text["parameters"].startswith("ein Fuchs 🦊 im Schnee\nSteps: 2, Sampler: DDIM,")
    assert g.get(image_id).params["prompt"] == "ein Fuchs 🦊 im Schnee"  # type: ignore[union-attr]


@pytest.mark.parametrize(
    "bad",
    [
        "../x", "../../etc/passwd", "/etc/passwd", "/tmp/x", "abc\x00def", "a" * 23 + "\x00",
        "0123456789abcdef01234567/../0123456789abcdef01234567", "０１２３４５６７８９ａｂｃｄｅｆ０１２３４５６７",
        "0123456789abcdef0123456\u0665", "0123456789ABCDEF01234567", "0123456789abcdef01234567\n",
        "0123456789abcdef01234567.png", "..", ".", "", "%2e%2e%2fx", "0123456789abcdef0123456７",
        "0123456789abcdef01234567 ", "\u202e0123456789abcdef0123456",
    ],
)
def test_path_traversal_refused(tmp_path: Path, bad: str) -> None:
    g = Gallery(tmp_path)
    with pytest.raises(ValueError):
        g.path_for(bad)
    assert g.get(bad) is None
    with pytest.raises(ValueError):
        g.delete(bad)


def test_non_string_ids_refused(tmp_path: Path) -> None:
    g = Gallery(tmp_path)
    for bad in (None, 12, b"0123456789abcdef01234567", Path("/etc/passwd")):
        with pytest.raises(ValueError):
            g.path_for(bad)  # type: ignore[arg-type]


def test_path_for_stays_inside_even_through_symlinked_folder(tmp_path: Path) -> None:
    real = tmp_path / "real"
    real.mkdir()
    link = tmp_path / "link"
    link.symlink_to(real, target_is_directory=True)
    g = Gallery(link)
    image_id = g.add(_image(), _record())
    assert g.path_for(image_id).is_file()
    assert g.path_for(image_id).parent == (real / "images").resolve()


def test_failed_file_write_leaves_no_row_and_no_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    g = Gallery(tmp_path)

    def boom(*_: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(gallery_mod.os, "replace", boom)
    with pytest.raises(OSError):
        g.add(_image(), _record())
    assert g.list() == []
    assert list(g.images_dir.iterdir()) == []


def test_failed_row_insert_removes_file(tmp_path: Path) -> None:
    g = Gallery(tmp_path)
    with pytest.raises(Exception):
        g.add(_image(), _record(engine="not-an-engine"))  # violates the CHECK constraint
    assert g.list() == []
    assert list(g.images_dir.iterdir()) == []


def test_listed_rows_always_have_complete_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """While a file is being written, no reader sees its row, and the final name does not exist yet."""
    g = Gallery(tmp_path)
    seen: list[tuple[int, list[str]]] = []
    real_replace = os.replace

    def spying_replace(src: str, dst: str) -> None:
        seen.append((len(g.list()), sorted(p.name for p in g.images_dir.iterdir())))
        real_replace(src, dst)

    monkeypatch.setattr(gallery_mod.os, "replace", spying_replace)
    image_id = g.add(_image(), _record())
    (count, names), = seen
    assert count == 0
    assert f"{image_id}.png" not in names
    assert all(n.startswith(".tmp-") for n in names)


def test_orphans_swept_on_start(tmp_path: Path) -> None:
    g = Gallery(tmp_path)
    keep = g.add(_image(), _record())
    g.close()
    old = time.time() - 3600
    orphan = tmp_path / "images" / f"{gallery_mod.new_id()}.png"
    tmp = tmp_path / "images" / ".tmp-half.png"
    fresh = tmp_path / "images" / ".tmp-inflight.png"
    for p in (orphan, tmp, fresh):
        p.write_bytes(b"partial")
    for p in (orphan, tmp):
        os.utime(p, (old, old))
    g2 = Gallery(tmp_path)
    assert not orphan.exists() and not tmp.exists()
    assert fresh.exists(), "recent temp files may belong to a writer in flight"
    assert g2.path_for(keep).is_file()


def test_delete(tmp_path: Path) -> None:
    g = Gallery(tmp_path)
    image_id = g.add(_image(), _record())
    path = g.path_for(image_id)
    assert g.delete(image_id) is True
    assert not path.exists() and g.get(image_id) is None
    assert g.delete(image_id) is False


def test_wal_mode(tmp_path: Path) -> None:
    g = Gallery(tmp_path)
    assert g._db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_writer_thread_and_readers(tmp_path: Path) -> None:
    g = Gallery(tmp_path)
    errors: list[BaseException] = []
    stop = threading.Event()

    def writer() -> None:
        try:
            for i in range(15):
                g.add(_image(size=(8, 8)), _record(seed=i))
        except BaseException as e:  # noqa: BLE001
            errors.append(e)
        finally:
            stop.set()

    def reader() -> None:
        try:
            while not stop.is_set():
                for rec in g.list(limit=100):
                    assert g.path_for(rec.id).stat().st_size > 0
        except BaseException as e:  # noqa: BLE001
            errors.append(e)

    threads = [threading.Thread(target=writer)] + [threading.Thread(target=reader) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert not errors
    assert g.count() == 15


def test_page_and_search_agree_with_the_total(tmp_path: Path) -> None:
    from app.store.search import like_pattern

    assert like_pattern("5%_a\\b") == "%5\\%\\_a\\\\b%"
    g = Gallery(tmp_path)
    for prompt in ("a red fox", "50% off", "a_b", "aXb", "RED heart"):
        g.add(_image(), _record(params={"prompt": prompt}))
    g.add(_image(), _record(engine="gan", params={"truncation_psi": 0.7}))  # no prompt at all
    assert g.page(limit=2)[1] == 6 and len(g.page(limit=2)[0]) == 2
    assert [r.params["prompt"] for r in g.page(q="a_b")[0]] == ["a_b"]
    assert [r.params["prompt"] for r in g.page(q="%")[0]] == ["50% off"]
    assert sorted(r.params["prompt"] for r in g.page(q="red")[0]) == ["RED heart", "a red fox"]
    assert g.count("red") == 2 and g.count("  ") == 6 and g.count(None) == 6
