"""The page's frame codec (frontend/js/protocol.js) against the server's (app/api/protocol.py)."""

from __future__ import annotations

import json
import shutil
import struct
import subprocess
from pathlib import Path
from typing import Any

import pytest

from app.api.protocol import MAGIC, FrameType, decode_frame, encode_frame

HERE = Path(__file__).resolve().parent
NODE = shutil.which("node")
PNG_ISH = bytes(range(256)) * 3 + b"\x00\xff\x4e"


def _node(cases: dict[str, Any]) -> dict[str, Any]:
    if NODE is None:
        pytest.skip("node is not installed")
    proc = subprocess.run(
        [NODE, str(HERE / "protocol_check.mjs")], input=json.dumps(cases), capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


META = {"run_id": "r1", "step": 7, "width": 64, "height": 48, "format": "jpeg", "engine": "diffusion"}


def test_python_layout_offsets() -> None:
    frame = encode_frame(FrameType.PREVIEW, META, PNG_ISH)
    raw = json.dumps(META, separators=(",", ":")).encode()
    assert frame[0] == MAGIC == 0x4E
    assert frame[1] == 1
    assert struct.unpack(">H", frame[2:4])[0] == len(raw)
    assert frame[4:4 + len(raw)] == raw
    assert frame[4 + len(raw):] == PNG_ISH
    assert decode_frame(frame) == (FrameType.PREVIEW, META, PNG_ISH)


@pytest.mark.parametrize("bad", [b"", b"N\x01\x00", b"X\x01\x00\x00", b"N\x01\x00\x10{}"])
def test_python_refuses_malformed(bad: bytes) -> None:
    with pytest.raises(ValueError):
        decode_frame(bad)


def test_js_decodes_python_frames() -> None:
    frames = [
        (FrameType.PREVIEW, META, PNG_ISH),
        (FrameType.FINAL, {**META, "format": "png", "prompt": "Füchse 🦊"}, b""),
        (FrameType.TIMELINE, {"run_id": "x" * 300, "step": 0}, b"\x4e\x01\x00\x00"),
        (FrameType.PREVIEW, {"pad": "y" * 65000}, b"\x01"),
    ]
    out = _node({"decode": [encode_frame(t, m, img).hex() for t, m, img in frames], "encode": []})
    for (ftype, meta, image), got in zip(frames, out["decoded"]):
        assert got["type"] == int(ftype)
        assert got["meta"] == meta
        assert bytes.fromhex(got["image_hex"]) == image
        header = len(json.dumps(meta, separators=(",", ":")).encode())
        assert got["image_offset"] == 4 + header
        assert got["same_from_view"]


def test_js_refuses_malformed() -> None:
    bad = [b"", b"N\x01\x00", b"X\x01\x00\x00", b"N\x01\x00\x10{}", b"N\x01\x00\x02\xff\xfe"]
    out = _node({"decode": [b.hex() for b in bad], "encode": []})
    assert all("error" in d for d in out["decoded"]), out


def test_python_decodes_js_frames_byte_identical() -> None:
    cases = [
        {"type": 1, "meta": META, "image_hex": PNG_ISH.hex()},
        {"type": 2, "meta": {"run_id": "z", "step": 30, "format": "png"}, "image_hex": ""},
        {"type": 3, "meta": {"nested": {"a": [1, 2.5, None, True]}}, "image_hex": "00ff"},
    ]
    out = _node({"decode": [], "encode": cases})
    for case, hex_frame in zip(cases, out["encoded"]):
        frame = bytes.fromhex(hex_frame)
        ftype, meta, image = decode_frame(frame)
        assert (int(ftype), meta, image.hex()) == (case["type"], case["meta"], case["image_hex"])
        assert frame == encode_frame(FrameType(case["type"]), case["meta"], bytes.fromhex(case["image_hex"]))


def test_js_non_ascii_meta_round_trips_through_python() -> None:
    meta = {"prompt": "ein Fuchs 🦊", "step": 1}
    out = _node({"decode": [], "encode": [{"type": 1, "meta": meta, "image_hex": "abcd"}]})
    assert decode_frame(bytes.fromhex(out["encoded"][0]))[1] == meta
