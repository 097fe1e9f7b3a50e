"""The websocket route: parse and validate client messages, hand them to the Studio, and send
events and frames back. Only the newest preview waits for a slow client."""

from __future__ import annotations

import asyncio
import hashlib
import inspect
import json
import logging
import secrets
import uuid
from collections import deque
from collections.abc import Awaitable
from typing import Any, Literal, TypeVar

from fastapi import APIRouter, WebSocket
from pydantic import ValidationError
from starlette.websockets import WebSocketDisconnect

from app.api.deps import supplied_token, token_ok
from app.api.messages import validation_text
from app.api.protocol import (
    MAX_REF_CHARS,
    Cancel,
    FrameType,
    GenerateDiffusion,
    GenerateGan,
    Hello,
    PreviewRequest,
    Rewind,
    Update,
    Upscale,
    client_message,
    encode_frame,
    error_event,
    event,
)
from app.engine.studio import Studio, StudioError
from app.settings import Settings

log = logging.getLogger(__name__)
router = APIRouter()
T = TypeVar("T")

MAX_MESSAGE_CHARS = 64 * 1024
_FRAME_TYPES = {"preview": FrameType.PREVIEW, "final": FrameType.FINAL, "timeline": FrameType.TIMELINE}


class Connection:
    """A Sink for one page. Engine threads call send/image; the event loop drains the outbox."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.id = uuid.uuid4().hex
        self.owner = owner_key(secrets.token_urlsafe(32))  # until a `hello` names the page's own secret
        self.spoken = False  # has any message been handled (a `hello` must come first)
        self.loop = loop
        self.items: deque[str | bytes] = deque()
        self.latest_preview: tuple[str, bytes] | None = None
        self.wake = asyncio.Event()
        self.closed = False

    def _push(self, item: str | bytes) -> None:
        self.items.append(item)
        self.wake.set()

    def _push_preview(self, run_id: str, data: bytes) -> None:
        self.latest_preview = (run_id, data)  # replaces any preview the client has not taken yet
        self.wake.set()

    def _push_final(self, run_id: str, data: bytes) -> None:
        if self.latest_preview is not None and self.latest_preview[0] == run_id:
            self.latest_preview = None
        self._push(data)

    def _call(self, fn, *args) -> None:
        if not self.closed:
            try:
                self.loop.call_soon_threadsafe(fn, *args)
            except RuntimeError:  # loop closed: the page is gone
                self.closed = True

    # Sink
    def send(self, ev: dict[str, Any]) -> None:
        fields = dict(ev)
        kind = fields.pop("type")
        self._call(self._push, event(kind, **fields))

    def image(self, meta: dict[str, Any], data: bytes, kind: Literal["preview", "final", "timeline"]) -> None:
        frame = encode_frame(_FRAME_TYPES[kind], meta, data)
        if kind == "preview":
            self._call(self._push_preview, meta["run_id"], frame)
        elif kind == "final":
            self._call(self._push_final, meta["run_id"], frame)
        else:
            self._call(self._push, frame)

    def error(self, code: str, message: str, run_id: str | None = None, ref: str | None = None) -> None:
        self._push(error_event(code, message, run_id, ref))

    async def drain(self, ws: WebSocket) -> None:
        while True:
            await self.wake.wait()
            self.wake.clear()
            while self.items:
                item = self.items.popleft()
                if isinstance(item, bytes):
                    await ws.send_bytes(item)
                else:
                    await ws.send_text(item)
            if self.latest_preview is not None:
                _, data = self.latest_preview
                self.latest_preview = None
                await ws.send_bytes(data)


def owner_key(secret: str) -> str:
    """What the server keeps of a page's secret: its SHA-256, never the secret itself."""
    return hashlib.sha256(b"noisescope-owner\0" + secret.encode()).hexdigest()


def _ref_of(text: str) -> str | None:
    """The client's `ref` of a message that failed validation, so its error still answers it."""
    try:
        raw = json.loads(text)
    except ValueError:
        return None
    ref = raw.get("ref") if isinstance(raw, dict) else None
    return ref if isinstance(ref, str) and len(ref) <= MAX_REF_CHARS else None


async def settle(value: T | Awaitable[T]) -> T:
    """A studio call's result: the local Studio answers at once, the Ray front door (app.cluster.front)
    with a coroutine; either raises StudioError for a refusal."""
    return await value if inspect.isawaitable(value) else value


async def handle(studio: Studio, conn: Connection, text: str) -> None:
    try:
        msg = client_message.validate_json(text)
    except ValidationError as exc:
        conn.error("bad_request", validation_text(exc), ref=_ref_of(text))
        return
    first, conn.spoken = not conn.spoken, True
    run_id = getattr(msg, "run_id", None)
    ref = getattr(msg, "ref", None)
    try:
        if isinstance(msg, Hello):
            if not first:
                conn.error("bad_request", "hello must be the first message on a connection")
                return
            conn.owner = owner_key(msg.owner)
        elif isinstance(msg, GenerateDiffusion):
            await settle(studio.generate(msg.params, conn, conn.id, conn.owner, ref=ref))
        elif isinstance(msg, GenerateGan):
            await settle(studio.generate_gan(msg.params, conn, conn.id, conn.owner, ref=ref))
        elif isinstance(msg, Upscale):
            await settle(studio.upscale(msg.params, conn, conn.id, conn.owner, ref=ref))
        elif isinstance(msg, Update):
            params = await settle(studio.update(msg.run_id, msg.params, conn.owner))
            conn.send({"type": "updated", "run_id": msg.run_id, "params": params.model_dump()})
        elif isinstance(msg, Rewind):
            await settle(studio.rewind(msg.run_id, msg.step, conn, conn.id, conn.owner, msg.params, ref=ref))
        elif isinstance(msg, Cancel):
            await settle(studio.cancel(msg.run_id, conn.owner))
        elif isinstance(msg, PreviewRequest):
            await settle(studio.preview(msg.run_id, msg.step, conn, conn.owner))
    except StudioError as exc:
        conn.error(exc.code, exc.message, run_id, ref)
    except Exception:
        log.exception("failed to handle a %s message", type(msg).__name__)
        conn.error("internal", "the server could not handle that message; see the server log", run_id, ref)


@router.websocket("/ws")
async def websocket_endpoint(websocket: WebSocket) -> None:
    settings: Settings = websocket.app.state.settings
    studio: Studio = websocket.app.state.studio
    token = supplied_token(dict(websocket.query_params), dict(websocket.headers), websocket.cookies)
    if not token_ok(settings, token):  # Host and Origin were checked by app.api.guard.Guard
        await websocket.close(code=1008)
        return
    await websocket.accept()
    conn = Connection(asyncio.get_running_loop())
    drain = asyncio.create_task(conn.drain(websocket))
    studio.attach_page(conn.id, conn)
    try:
        while True:
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                break
            text = message.get("text")
            if text is None:
                conn.error("bad_request", "send JSON text messages; binary messages are not accepted")
            elif len(text) > MAX_MESSAGE_CHARS:
                conn.error("too_large", f"messages are limited to {MAX_MESSAGE_CHARS} characters")
            else:
                await handle(studio, conn, text)
    except WebSocketDisconnect:
        pass
    finally:
        conn.closed = True
        studio.disconnect(conn.id)
        drain.cancel()
