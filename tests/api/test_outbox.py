"""A slow client gets only the newest preview; events and final images are never dropped."""

from __future__ import annotations

import asyncio
import json

from app.api.guard import origin_allowed
from app.api.protocol import FrameType, decode_frame
from app.api.ws import Connection
from app.settings import Settings


class SlowSocket:
    def __init__(self) -> None:
        self.sent: list[str | bytes] = []

    async def send_text(self, text: str) -> None:
        self.sent.append(text)

    async def send_bytes(self, data: bytes) -> None:
        self.sent.append(data)


def test_stale_previews_are_dropped_events_kept() -> None:
    async def scenario() -> list[str | bytes]:
        conn = Connection(asyncio.get_running_loop())
        sock = SlowSocket()
        # While the client is not reading, the engine produces 5 steps.
        for i in range(1, 6):
            conn.send({"type": "step", "run_id": "r", "index": i})
            conn.image({"run_id": "r", "step": i}, b"jpeg%d" % i, "preview")
        conn.image({"run_id": "r", "step": 6}, b"png", "final")
        conn.send({"type": "done", "run_id": "r"})
        await asyncio.sleep(0)  # let call_soon_threadsafe callbacks run
        task = asyncio.create_task(conn.drain(sock))
        await asyncio.sleep(0.01)
        task.cancel()
        return sock.sent

    sent = asyncio.run(scenario())
    texts = [json.loads(s) for s in sent if isinstance(s, str)]
    frames = [decode_frame(b) for b in sent if isinstance(b, bytes)]
    assert [t["index"] for t in texts if t["type"] == "step"] == [1, 2, 3, 4, 5]
    assert texts[-1]["type"] == "done"
    # the final frame superseded the pending preview of the same run: no stale preview after it
    assert [(f[0], f[2]) for f in frames] == [(FrameType.FINAL, b"png")]


def test_newest_preview_wins() -> None:
    async def scenario() -> list[str | bytes]:
        conn = Connection(asyncio.get_running_loop())
        sock = SlowSocket()
        for i in range(1, 4):
            conn.image({"run_id": "r", "step": i}, b"p%d" % i, "preview")
        await asyncio.sleep(0)
        task = asyncio.create_task(conn.drain(sock))
        await asyncio.sleep(0.01)
        task.cancel()
        return sock.sent

    sent = asyncio.run(scenario())
    assert len(sent) == 1
    kind, meta, data = decode_frame(sent[0])
    assert kind == FrameType.PREVIEW and meta["step"] == 3 and data == b"p3"


def test_origin_check() -> None:
    s = Settings(allowed_origins=["https://studio.example"])
    assert origin_allowed(None, "localhost:7860", s)
    assert origin_allowed("http://localhost:7860", "localhost:7860", s)
    assert origin_allowed("https://studio.example", "localhost:7860", s)
    assert not origin_allowed("http://evil.example", "localhost:7860", s)
    assert not origin_allowed("http://localhost:7861", "localhost:7860", s)
