"""Settings read back from PNGs: Noisescope's own (JSON chunk and A1111 text), AUTOMATIC1111's, the
chunk walker's limits, and the gallery's schema migration of an older database."""

from __future__ import annotations

import io
import json
import sqlite3
import struct
import zlib
from pathlib import Path

import pytest
from PIL import Image, PngImagePlugin

from app.params import DiffusionParams
from app.store.a1111 import from_parameters, map_sampler, split_parameters
from app.store.gallery import SCHEMA_VERSION, Gallery, ImageRecord
from app.store.pngread import MAX_TEXT_BYTES, PngTextError, text_chunks
from app.store.readback import NoSettings, settings_from_chunks

A1111_TEXT = (
    "masterpiece, a cat face, (smiling:1.2)\n"
    "with whiskers\n"
    "Negative prompt: blurry, lowres\n"
    'Steps: 28, Sampler: DPM++ SDE Karras, CFG scale: 7.5, Seed: 3141592653, Size: 512x768, Model hash: abc123, '
    'Model: sd15, Denoising strength: 0.4, Lora hashes: "a: 1, b: 2", Version: v1.6.0'
)


def a1111_png(text: str, how: str = "tEXt") -> bytes:
    """A PNG as AUTOMATIC1111 writes it: pixels plus a `parameters` text chunk."""
    info = PngImagePlugin.PngInfo()
    if how == "iTXt":
        info.add_itxt("parameters", text, zip=True)
    else:
        info.add_text("parameters", text, zip=how == "zTXt")
    buf = io.BytesIO()
    Image.new("RGB", (16, 24), "teal").save(buf, format="PNG", pnginfo=info)
    return buf.getvalue()


@pytest.mark.parametrize("how", ["tEXt", "zTXt", "iTXt"])
def test_a1111_png_restores_the_controls(how: str) -> None:
    got = settings_from_chunks(text_chunks(a1111_png(A1111_TEXT, how)))
    assert got["source"] == "automatic1111" and got["engine"] == "diffusion"
    p = got["params"]
    assert p["prompt"] == "masterpiece, a cat face, (smiling:1.2)\nwith whiskers"
    assert p["negative_prompt"] == "blurry, lowres"
    assert (p["steps"], p["cfg_scale"], p["width"], p["height"]) == (28, 7.5, 512, 768)
    assert (p["sampler"], p["karras"]) == ("euler_a", True)
    assert got["seed"] == 3141592653
    notes = " | ".join(got["notes"])
    assert "'DPM++ SDE Karras' is not in the studio: using the nearest, euler_a" in notes
    assert "not used here: Denoising strength, Lora hashes, Model, Model hash, Version" in notes
    assert "emphasis" in notes
    DiffusionParams.model_validate({**p, "seed": got["seed"]})  # what the page will send is accepted


def test_sampler_names_map_to_the_nearest() -> None:
    assert map_sampler("DPM++ 2M Karras") == ("dpmpp_2m", True, None)
    assert map_sampler("DPM++ 2M", "Karras") == ("dpmpp_2m", True, None)
    assert map_sampler("DPM++ 2M", "Automatic") == ("dpmpp_2m", True, None)
    assert map_sampler("Euler a") == ("euler_a", False, None)
    assert map_sampler("DDIM") == ("ddim", False, None)
    for name, nearest in [("LMS", "dpmpp_2m"), ("UniPC", "dpmpp_2m"), ("DPM++ 3M SDE Exponential", "euler_a"),
                          ("DPM2 a Karras", "euler_a"), ("Heun", "euler"), ("DPM adaptive", "euler"),
                          ("Some New Sampler", "euler")]:
        sampler, _, note = map_sampler(name)
        assert sampler == nearest and note and name in note, (name, sampler, note)


def test_odd_values_are_kept_in_range_and_said() -> None:
    text = "a cat\nSteps: 9000, Sampler: Euler, CFG scale: 45, Seed: -1, Size: 500x77"
    got = from_parameters(text, max_steps=500)
    assert got["params"]["steps"] == 500 and got["params"]["cfg_scale"] == 30
    assert (got["params"]["width"], got["params"]["height"]) == (496, 80)
    assert got["seed"] is None
    notes = " | ".join(got["notes"])
    for needle in ("Steps 9000", "CFG scale 45", "Seed -1", "width 500", "height 77"):
        assert needle in notes, notes


def test_text_without_a_field_line_is_all_prompt() -> None:
    assert split_parameters("just a prompt\nover two lines") == ("just a prompt\nover two lines", "", {})


def test_noisescope_png_round_trip(tmp_path: Path) -> None:
    """The gallery's PNG gives back the starting values, the schedule and the lineage, from the JSON
    chunk; the A1111 text alone gives the same starting values and schedule."""
    g = Gallery(tmp_path)
    params = DiffusionParams(prompt="cat face", seed=1234, steps=60, cfg_scale=5.0, width=32, height=32)
    schedule = [{"step": 10, "changes": {"cfg_scale": 0.0}}, {"step": 30, "changes": {"eta": 0.5, "cut_flip": False}}]
    lineage = {"parent_run": "abc123def456", "from_step": 7}
    image_id = g.add(Image.new("RGB", (32, 32), "red"), ImageRecord(
        engine="diffusion", params=params.model_dump(exclude={"schedule"}), seed=1234, schedule=schedule,
        lineage=lineage, run_id="0123456789ab", models={"diffusion": "tiny-sd"}))
    data = g.path_for(image_id).read_bytes()
    chunks = text_chunks(data)
    got = settings_from_chunks(chunks)
    assert got["source"] == "noisescope" and got["params"]["cfg_scale"] == 5.0 and got["seed"] == 1234
    assert got["schedule"] == schedule and got["lineage"] == lineage and got["notes"] == []
    assert 'Schedule: "10: cfg_scale=0; 30: cut_flip=false eta=0.5"' in chunks["parameters"]
    from_text = settings_from_chunks({"parameters": chunks["parameters"]})
    assert from_text["schedule"] == schedule
    assert from_text["params"]["cfg_scale"] == 5 and from_text["params"]["sampler"] == "dpmpp_2m"
    assert from_text["notes"] == ["not used here: Model"]
    replay = DiffusionParams.model_validate({**got["params"], "seed": got["seed"], "schedule": got["schedule"]})
    assert replay.schedule[1].changes.cut_flip is False


def test_an_old_noisescope_record_says_its_values_are_the_last_ones() -> None:
    record = {"engine": "diffusion", "params": {"prompt": "x", "cfg_scale": 0, "parent": None, "steps": 4}, "seed": 3}
    got = settings_from_chunks({"noisescope": json.dumps(record)})
    assert "parent" not in got["params"] and got["schedule"] == []
    assert "end of the run" in got["notes"][0]


def test_bad_schedule_entries_are_dropped_with_a_note() -> None:
    record = {"engine": "diffusion", "params": {"prompt": "x", "steps": 10}, "seed": 3, "schedule": [
        {"step": 2, "changes": {"cfg_scale": 1}}, {"step": 12, "changes": {"cfg_scale": 2}},
        {"step": 3, "changes": {"cfg_scale": 99}}, {"step": 1, "changes": {"eta": 1}}, "junk"]}
    got = settings_from_chunks({"noisescope": json.dumps(record)})
    assert got["schedule"] == [{"step": 2, "changes": {"cfg_scale": 1.0}}]
    assert len(got["notes"]) == 4


@pytest.mark.parametrize("chunks", [{}, {"Software": "x"}, {"noisescope": "{"}, {"noisescope": "[1]"}])
def test_nothing_to_read(chunks: dict) -> None:
    with pytest.raises(NoSettings):
        settings_from_chunks(chunks)


def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def test_chunk_walker_refuses_damage_and_bombs() -> None:
    good = a1111_png("a cat\nSteps: 2, Sampler: Euler, CFG scale: 1")
    with pytest.raises(PngTextError, match="not a PNG"):
        text_chunks(b"GIF89a" + good)
    with pytest.raises(PngTextError, match="cut short"):
        text_chunks(good[:40])
    head = good[:33]  # signature + IHDR
    bomb = _chunk(b"zTXt", b"parameters\0\0" + zlib.compress(b"a" * (MAX_TEXT_BYTES + 10)))
    with pytest.raises(PngTextError, match="larger than"):
        text_chunks(head + bomb + _chunk(b"IEND", b""))
    bad_crc = bytearray(_chunk(b"tEXt", b"parameters\0x"))
    bad_crc[-1] ^= 1
    with pytest.raises(PngTextError, match="CRC"):
        text_chunks(head + bytes(bad_crc) + _chunk(b"IEND", b""))
    # text after the image data is read too, and pixels are never decoded (IDAT here is garbage)
    late = head + _chunk(b"IDAT", b"not zlib at all") + _chunk(b"tEXt", b"parameters\0late") + _chunk(b"IEND", b"")
    assert text_chunks(late) == {"parameters": "late"}


OLD_SCHEMA = """
CREATE TABLE images (
    id TEXT PRIMARY KEY, created REAL NOT NULL,
    engine TEXT NOT NULL CHECK (engine IN ('diffusion', 'gan')), params TEXT NOT NULL, seed INTEGER,
    timings TEXT NOT NULL, models TEXT NOT NULL, clip_score REAL, width INTEGER NOT NULL, height INTEGER NOT NULL
);
CREATE INDEX images_created ON images (created DESC);
"""


def test_an_old_gallery_database_is_migrated(tmp_path: Path) -> None:
    (tmp_path / "images").mkdir()
    old_id = "0190000000000123456789ab"
    Image.new("RGB", (8, 8)).save(tmp_path / "images" / f"{old_id}.png")
    db = sqlite3.connect(tmp_path / "gallery.sqlite3")
    db.executescript(OLD_SCHEMA)
    db.execute("INSERT INTO images VALUES (?, 1.0, 'diffusion', ?, 5, '{}', '{}', 0.3, 8, 8)",
               (old_id, json.dumps({"prompt": "old", "cfg_scale": 0})))
    db.commit()
    db.close()

    g = Gallery(tmp_path)
    old = g.get(old_id)
    assert old is not None and old.params["prompt"] == "old"
    assert old.schedule == [] and old.lineage is None and old.run_id is None
    new_id = g.add(Image.new("RGB", (8, 8)), ImageRecord(engine="diffusion", params={"prompt": "new"},
                                                         schedule=[{"step": 1, "changes": {"eta": 0.5}}],
                                                         lineage={"parent_run": "r", "from_step": 1}, run_id="r2"))
    g.close()
    again = Gallery(tmp_path)  # a second start does not migrate twice
    assert [r.id for r in again.list()] == [new_id, old_id]
    assert again.get(new_id).schedule == [{"step": 1, "changes": {"eta": 0.5}}]  # type: ignore[union-attr]
    assert again.get(new_id).lineage == {"parent_run": "r", "from_step": 1}  # type: ignore[union-attr]
    version = again._db.execute("PRAGMA user_version").fetchone()[0]
    up = again.add(Image.new("RGB", (32, 32)), ImageRecord(engine="upscale", params={"source": f"gallery:{old_id}"},
                                                          lineage={"source_image": old_id, "upscaler": "gan"}))
    assert again.get(up).lineage == {"source_image": old_id, "upscaler": "gan"}  # type: ignore[union-attr]
    again.close()
    assert version == SCHEMA_VERSION == 2  # 2: engine 'upscale' (the table rebuilt with the new CHECK)


def test_a_gan_png_restores_the_gan_panel(tmp_path: Path) -> None:
    g = Gallery(tmp_path)
    image_id = g.add(Image.new("RGB", (16, 16)), ImageRecord(
        engine="gan", params={"prompt": "red heart", "truncation_psi": 0.5, "search_steps": 0, "grid": 1,
                              "save": True, "junk": 1}, seed=9))
    got = settings_from_chunks(text_chunks(g.path_for(image_id).read_bytes()))
    g.close()
    assert got["engine"] == "gan" and got["seed"] == 9 and got["schedule"] == []
    assert got["params"]["truncation_psi"] == 0.5 and "junk" not in got["params"]
