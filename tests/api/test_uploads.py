"""Uploads (issue 16, item 6): the cap enforced while the body arrives, decoding off the event loop,
temp files swept at start, expiry, the quota, and cross-site writes refused in loopback mode."""

from __future__ import annotations

import asyncio
import io
import os
import re
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from PIL import Image
from starlette.websockets import WebSocketDisconnect

from app.api import uploads as upload_edge
from app.main import create_app
from app.registry import Models
from app.store.uploads import UploadStore
from app.wording import size_text
from tests.api.conftest import make_settings

CAP = 256 * 1024  # a small cap keeps the streamed bodies small
BOUNDARY = "noisescopetestboundary"
MULTIPART = f"multipart/form-data; boundary={BOUNDARY}"


def png(size: int = 16, colour: str = "red") -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (size, size), colour).save(buf, "PNG")
    return buf.getvalue()


def noisy_png(size: int) -> bytes:
    """A PNG that does not compress much (random pixels), so its stored size is predictable."""
    buf = io.BytesIO()
    Image.frombytes("RGB", (size, size), os.urandom(size * size * 3)).save(buf, "PNG")
    return buf.getvalue()


@pytest.fixture
def uploads_dir(tmp_path: Path) -> Path:
    return tmp_path / "uploads"


def client_for(models: Models, tmp_path: Path, **overrides: Any) -> TestClient:
    overrides.setdefault("max_init_image_bytes", CAP)
    return TestClient(create_app(make_settings(tmp_path, **overrides), models=models))


def stored(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def post_file(c: TestClient, data: bytes, **headers: str):
    return c.post("/api/uploads", files={"file": ("x.png", data, "image/png")}, headers=headers)


# ---- streaming: the cap while reading ------------------------------------------------------------

def file_chunks(size: int, chunk: int = 64 * 1024) -> Iterator[bytes]:
    """A multipart body whose `file` part is `size` bytes, produced lazily."""
    yield (f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="big.png"\r\n'
           f"Content-Type: image/png\r\n\r\n").encode()
    sent = 0
    while sent < size:
        n = min(chunk, size - sent)
        yield b"\x89" * n
        sent += n
    yield f"\r\n--{BOUNDARY}--\r\n".encode()


async def post_raw(app, headers: dict[str, str], chunks: Iterator[bytes], on_chunk=None) -> tuple[int, bytes]:
    """POST /api/uploads straight through the ASGI app, handing it the body one chunk per receive()."""
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "http",
             "path": "/api/uploads", "raw_path": b"/api/uploads", "query_string": b"", "root_path": "",
             "headers": [(b"host", b"testserver")] + [(k.encode(), v.encode()) for k, v in headers.items()],
             "client": ("127.0.0.1", 50000), "server": ("testserver", 80)}
    status: list[int] = []
    body = bytearray()

    async def receive() -> dict:
        chunk = next(chunks, None)
        if chunk is None:
            return {"type": "http.request", "body": b"", "more_body": False}
        if on_chunk is not None:
            on_chunk(chunk)
        return {"type": "http.request", "body": chunk, "more_body": True}

    async def send(message: dict) -> None:
        if message["type"] == "http.response.start":
            status.append(message["status"])
        elif message["type"] == "http.response.body":
            body.extend(message.get("body", b""))

    await app(scope, receive, send)
    return status[0], bytes(body)


def test_a_declared_length_over_the_cap_is_refused_before_reading(tiny_models: Models, tmp_path: Path,
                                                                  uploads_dir: Path) -> None:
    read: list[int] = []
    with client_for(tiny_models, tmp_path) as c:
        status, body = c.portal.call(post_raw, c.app, {"content-type": MULTIPART,
                                                       "content-length": str(100 * 1024 * 1024)},
                                     file_chunks(100 * 1024 * 1024), lambda ch: read.append(len(ch)))
    assert status == 413, body
    assert read == [], "not one byte of the body may be read"
    assert b"256 KiB" in body and b"100 MiB" in body
    assert stored(uploads_dir) == []


def test_a_streamed_body_stops_at_the_cap_and_never_lands_whole(tiny_models: Models, tmp_path: Path,
                                                                uploads_dir: Path) -> None:
    """No Content-Length (chunked): a 100 MiB body is refused once it passes the cap; the server reads
    at most the cap, the form overhead and one chunk more, and the temp file never exceeds the cap."""
    read: list[int] = []
    largest: list[int] = [0]

    def on_chunk(chunk: bytes) -> None:
        read.append(len(chunk))
        for p in uploads_dir.glob(".*.tmp"):
            largest[0] = max(largest[0], p.stat().st_size)

    with client_for(tiny_models, tmp_path) as c:
        status, body = c.portal.call(post_raw, c.app, {"content-type": MULTIPART},
                                     file_chunks(100 * 1024 * 1024), on_chunk)
    assert status == 413 and b"images are limited to 256 KiB" in body, body
    assert sum(read) <= CAP + upload_edge.FORM_OVERHEAD + 64 * 1024
    assert 0 < largest[0] <= CAP
    assert stored(uploads_dir) == [], "the partial temp file is removed"


def test_exactly_the_cap_passes_the_size_check(tiny_models: Models, tmp_path: Path, uploads_dir: Path) -> None:
    with client_for(tiny_models, tmp_path) as c:
        over = post_file(c, b"\x00" * (CAP + 1))
        assert over.status_code == 413 and "256 KiB" in over.json()["detail"]
        at_cap = post_file(c, b"\x00" * CAP)  # not too large, just not an image
        assert at_cap.status_code == 400 and "not an image" in at_cap.json()["detail"]
        good = post_file(c, png())
        assert good.status_code == 200
    assert stored(uploads_dir) == [f"{good.json()['id']}.png"]
    with Image.open(uploads_dir / f"{good.json()['id']}.png") as im:
        assert im.format == "PNG" and im.size == (16, 16)


@pytest.mark.parametrize(("headers", "content", "status", "words"), [
    ({"content-type": "image/png"}, png(), 415, "multipart/form-data"),
    ({"content-type": "multipart/form-data"}, b"", 415, "multipart/form-data"),  # no boundary
    ({"content-type": MULTIPART}, b"garbage", 400, "malformed"),
    ({"content-type": MULTIPART}, (f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="other"\r\n\r\nx\r\n'
                                   f"--{BOUNDARY}--\r\n").encode(), 400, "'file'"),
    ({"content-type": MULTIPART}, b"".join(list(file_chunks(100))[:2]), 400, "'file'"),  # cut off mid-part
    ({"content-type": MULTIPART, "content-length": "12x"}, b"", 400, "Content-Length"),
])
def test_malformed_uploads_are_4xx_in_words(tiny_models: Models, tmp_path: Path, uploads_dir: Path,
                                            headers: dict, content: bytes, status: int, words: str) -> None:
    with client_for(tiny_models, tmp_path) as c:
        if "content-length" in headers:  # httpx would replace it: go under it
            code, body = c.portal.call(post_raw, c.app, headers, iter([content]))
            detail = body.decode()
        else:
            res = c.post("/api/uploads", content=content, headers=headers)
            code, detail = res.status_code, res.json()["detail"]
    assert code == status and words in detail, detail
    assert stored(uploads_dir) == []


# ---- off the event loop ---------------------------------------------------------------------------

def test_decoding_runs_in_a_worker_thread_and_the_loop_stays_free(tiny_models: Models, tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """While one upload is held inside its decode, /api/info is answered: the decode is not on the loop.
    (Were it on the loop, /api/info would wait for the decode, which waits for /api/info: `answered`
    would stay False when the safety timeout lets go.)"""
    entered, release = threading.Event(), threading.Event()
    seen: dict[str, Any] = {}
    ingest = UploadStore.ingest

    def held_ingest(self: UploadStore, upload_id: str) -> None:
        try:
            asyncio.get_running_loop()
            seen["loop_in_thread"] = True
        except RuntimeError:
            seen["loop_in_thread"] = False
        seen["thread"] = threading.current_thread().name
        entered.set()
        seen["answered"] = release.wait(timeout=60)
        ingest(self, upload_id)

    monkeypatch.setattr(UploadStore, "ingest", held_ingest)
    result: dict[str, Any] = {}
    with client_for(tiny_models, tmp_path) as c:
        loop_thread = c.portal.call(lambda: threading.current_thread().name)
        uploader = threading.Thread(target=lambda: result.update(res=post_file(c, png())))
        uploader.start()
        assert entered.wait(timeout=60)
        assert c.get("/api/info").status_code == 200  # served while the decode is held
        release.set()
        uploader.join()
    assert seen["loop_in_thread"] is False and seen["thread"] != loop_thread
    assert seen["answered"] is True
    assert result["res"].status_code == 200


# ---- sweeping and expiry ------------------------------------------------------------------------

def test_start_up_sweeps_temp_files_and_expired_uploads(tiny_models: Models, tmp_path: Path,
                                                        uploads_dir: Path) -> None:
    uploads_dir.mkdir(parents=True)
    for name in (".deadbeef.tmp", ".deadbeef.png.tmp", "old.png", "fresh.png", "notes.txt"):
        (uploads_dir / name).write_bytes(b"x")
    two_days_ago = time.time() - 48 * 3600
    os.utime(uploads_dir / "old.png", (two_days_ago, two_days_ago))
    with client_for(tiny_models, tmp_path, upload_max_age_hours=24):
        assert stored(uploads_dir) == ["fresh.png", "notes.txt"]


def test_uploads_expire_at_each_upload(tiny_models: Models, tmp_path: Path, uploads_dir: Path) -> None:
    with client_for(tiny_models, tmp_path, upload_max_age_hours=1) as c:
        first = post_file(c, png()).json()["id"]
        long_ago = time.time() - 2 * 3600
        os.utime(uploads_dir / f"{first}.png", (long_ago, long_ago))
        second = post_file(c, png(colour="blue")).json()["id"]
    assert stored(uploads_dir) == [f"{second}.png"]


def test_sweep_keeps_uploads_in_progress(tmp_path: Path) -> None:
    store = UploadStore(tmp_path, max_bytes=CAP, max_pixels=10**6, quota_bytes=10**9, max_age_s=3600)
    busy = store.begin()
    store.raw_path(busy).write_bytes(b"arriving")
    (tmp_path / ".0123abcd.tmp").write_bytes(b"a killed server's")
    (tmp_path / "a.png").write_bytes(b"x")
    assert store.sweep(now=time.time()).temp_files == 1
    assert stored(tmp_path) == [f".{busy}.tmp", "a.png"]
    assert store.sweep(now=time.time() + 3601).expired == 1
    store.end(busy)
    assert stored(tmp_path) == []


def test_the_periodic_sweep_expires_uploads(tmp_path: Path) -> None:
    swept = threading.Event()

    class Watched(UploadStore):
        def sweep(self, now: float | None = None):
            result = super().sweep(now)
            if not (self.folder / "old.png").exists():
                swept.set()
            return result

    store = Watched(tmp_path, max_bytes=CAP, max_pixels=10**6, quota_bytes=10**9, max_age_s=3600)
    (tmp_path / "old.png").write_bytes(b"x")
    os.utime(tmp_path / "old.png", (time.time() - 7200, time.time() - 7200))

    async def run() -> None:
        task = asyncio.create_task(upload_edge.sweep_periodically(store, every_s=0.01))
        await asyncio.get_running_loop().run_in_executor(None, swept.wait, 60)
        task.cancel()

    asyncio.run(run())
    assert swept.is_set() and stored(tmp_path) == []
    assert upload_edge.sweep_interval(store) == 600.0  # a quarter of an hour's age, capped at 10 minutes


# ---- the quota ---------------------------------------------------------------------------------------

def test_the_quota_refuses_in_words(tiny_models: Models, tmp_path: Path, uploads_dir: Path) -> None:
    image = noisy_png(64)  # ~12 KiB stored
    with client_for(tiny_models, tmp_path, upload_quota_bytes=int(len(image) * 1.5)) as c:
        first = post_file(c, image)
        assert first.status_code == 200
        second = post_file(c, noisy_png(64))
        detail = second.json()["detail"]
        assert second.status_code == 413 and "quota is full" in detail and "KiB" in detail, detail
        assert not re.search(r"\d{4,}", detail.replace("NOISESCOPE_", "")), "sizes in KiB / MiB, not byte counts"
        assert "expire" in detail and "NOISESCOPE_UPLOAD_QUOTA_BYTES" in detail
    assert stored(uploads_dir) == [f"{first.json()['id']}.png"]


def test_a_full_quota_refuses_before_reading(tiny_models: Models, tmp_path: Path, uploads_dir: Path) -> None:
    uploads_dir.mkdir(parents=True)
    (uploads_dir / "kept.png").write_bytes(b"x" * 1000)
    read: list[int] = []
    with client_for(tiny_models, tmp_path, upload_quota_bytes=1000) as c:
        status, body = c.portal.call(post_raw, c.app, {"content-type": MULTIPART}, file_chunks(1000),
                                     lambda ch: read.append(len(ch)))
    assert status == 413 and b"quota is full" in body and read == []


def test_sizes_in_words() -> None:
    assert size_text(8 * 1024 * 1024) == "8 MiB"
    assert size_text(13_000_000) == "12.4 MiB"
    assert size_text(0) == "0 bytes"
    assert size_text(256 * 1024) == "256 KiB"
    assert size_text(5 * 1024) == "5 KiB"


# ---- cross-site writes in loopback mode ---------------------------------------------------------------

@pytest.mark.parametrize(("headers", "status"), [
    ({"sec-fetch-site": "cross-site"}, 403),                                  # a browser without Origin
    ({"sec-fetch-site": "same-site", "origin": "http://127.0.0.1:9999"}, 403),  # another local port
    ({"sec-fetch-site": "same-site"}, 403),
    ({"sec-fetch-site": "cross-site", "origin": "http://127.0.0.1:7860"}, 403),  # the browser's word wins
    ({"origin": "http://evil.example"}, 403),
    ({"origin": "null"}, 403),
    ({"sec-fetch-site": "same-origin", "origin": "http://127.0.0.1:7860"}, 200),
    ({"sec-fetch-site": "none"}, 200),
    ({}, 200),  # scripts and curl send neither: the Host check and (beyond loopback) the token govern them
])
def test_cross_site_posts_are_refused_on_loopback(tiny_models: Models, tmp_path: Path, uploads_dir: Path,
                                                  headers: dict, status: int) -> None:
    settings = make_settings(tmp_path, allowed_hosts=[])  # the defaults a user gets: loopback, no token
    with TestClient(create_app(settings, models=tiny_models), base_url="http://127.0.0.1:7860") as c:
        res = post_file(c, png(), **headers)
    assert res.status_code == status, res.text
    assert (stored(uploads_dir) != []) == (status == 200)


def test_a_configured_origin_may_post_cross_site(tiny_models: Models, tmp_path: Path) -> None:
    settings = make_settings(tmp_path, allowed_hosts=[], allowed_origins=["https://tools.example"])
    with TestClient(create_app(settings, models=tiny_models), base_url="http://127.0.0.1:7860") as c:
        res = post_file(c, png(), origin="https://tools.example", **{"sec-fetch-site": "cross-site"})
        assert res.status_code == 200
        ws_headers = {"origin": "http://127.0.0.1:7860", "sec-fetch-site": "cross-site"}
        with pytest.raises(WebSocketDisconnect):
            with c.websocket_connect("ws://127.0.0.1:7860/ws", headers=ws_headers) as ws:
                ws.receive_text()
