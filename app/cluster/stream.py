"""A run's output as items of a Ray Serve streaming call. The engine reports through a Sink from its
worker and encoder threads; this Sink hands every event and frame, in order, to the replica's event
loop, which yields them to the ingress one by one. Items are plain tuples:

    ("start", replica, run_id)          first: where the run lives (nothing else is ever first)
    ("refused", code, message)          instead of "start": the engine refused the message (StudioError)
    ("event", {...})                    a JSON event, as the Sink got it
    ("image", meta, data, kind)         an encoded frame: "preview", "final" or "timeline"
    ("gallery", record, png)            a finished image for the ingress to store, before the event naming it

A slow page gets only the newest preview at the ingress (app.api.ws.Connection), as it would without
Ray; nothing is dropped here, where the reader is the ingress itself.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from typing import Any, Literal

Item = tuple[Any, ...]
# The events after which a run sends nothing more.
TERMINAL = frozenset({"done", "cancelled", "error"})


def image_ids_named(kind: str, payload: dict[str, Any]) -> list[str]:
    """The gallery ids an event or a final frame's metadata names (`done`'s image_ids, a final frame's
    image_id)."""
    if kind == "event":
        return [i for i in payload.get("image_ids") or [] if isinstance(i, str)]
    image_id = payload.get("image_id")
    return [image_id] if isinstance(image_id, str) else []


class StreamSink:
    """A Sink for one run, read by `next()` on the event loop that made it."""

    def __init__(self, loop: asyncio.AbstractEventLoop,
                 held: Callable[[list[str]], list[tuple[dict[str, Any], bytes]]] | None = None) -> None:
        """`held(ids)`: the gallery rows (record, png) prepared for those ids and not yet sent."""
        self._loop = loop
        self._held = held
        self._items: deque[Item] = deque()
        self._wake = asyncio.Event()
        self.ended = False  # a terminal event was queued

    # ---- Sink: called from the engine's threads ------------------------------------------

    def send(self, event: dict[str, Any]) -> None:
        ev = dict(event)
        self._put([*self._rows(image_ids_named("event", ev)), ("event", ev)], ev.get("type") in TERMINAL)

    def image(self, meta: dict[str, Any], data: bytes, kind: Literal["preview", "final", "timeline"]) -> None:
        rows = self._rows(image_ids_named("image", meta)) if kind == "final" else []
        self._put([*rows, ("image", dict(meta), data, kind)], False)

    # ---- the event loop's side ----------------------------------------------------------------

    def _rows(self, ids: list[str]) -> list[Item]:
        if not ids or self._held is None:
            return []
        return [("gallery", record, png) for record, png in self._held(ids)]

    def _put(self, items: list[Item], terminal: bool) -> None:
        try:
            self._loop.call_soon_threadsafe(self._append, items, terminal)
        except RuntimeError:  # the loop is closed: nobody reads this run any more
            pass

    def _append(self, items: list[Item], terminal: bool) -> None:
        self._items.extend(items)
        self.ended = self.ended or terminal
        self._wake.set()

    def pending(self) -> bool:
        return bool(self._items)

    async def next(self) -> Item:
        """The next item, waiting for one."""
        while not self._items:
            self._wake.clear()
            await self._wake.wait()
        return self._items.popleft()
