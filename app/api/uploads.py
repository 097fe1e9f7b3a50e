"""POST /api/uploads at the edge: the multipart body is streamed into a temp file with the size cap
enforced while it arrives (a declared Content-Length above it is refused before reading), then
decoded, re-encoded and published in a worker thread by app.store.uploads, never on the event loop.
"""

from __future__ import annotations

import asyncio
import io
import logging
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

import anyio.to_thread
from python_multipart.exceptions import FormParserError
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.requests import ClientDisconnect, Request

from app.settings import Settings
from app.store.uploads import UploadError, UploadStore
from app.wording import size_text

log = logging.getLogger(__name__)

FORM_OVERHEAD = 64 * 1024  # boundaries, part headers and small fields around the file, in bytes
FIELD = b"file"


def upload_store(settings: Settings, folder: Path) -> UploadStore:
    """The store the settings describe (pixels: the decode cap is 4x a job's max_pixels, as before)."""
    return UploadStore(folder, max_bytes=settings.max_init_image_bytes, max_pixels=settings.max_pixels * 4,
                       quota_bytes=settings.upload_quota_bytes, max_age_s=settings.upload_max_age_hours * 3600)


def too_large(limit: int, size: int | None = None) -> UploadError:
    said = f"; this request is {size_text(size)}" if size is not None else ""
    return UploadError(413, f"images are limited to {size_text(limit)}{said}")


class FilePart:
    """python_multipart callbacks that write the form's first `file` part to the stream `open_target`
    returns, refusing it as soon as it passes `limit` bytes; other parts are read and dropped."""

    def __init__(self, open_target: Callable[[], BinaryIO], limit: int) -> None:
        self.open_target = open_target
        self.limit = limit
        self.size = 0
        self.complete = False
        self._handle: BinaryIO | None = None
        self._writing = False
        self._headers: dict[bytes, bytes] = {}
        self._field = b""
        self._value = b""

    def callbacks(self) -> dict:
        return {"on_part_begin": self._part_begin, "on_header_field": self._header_field,
                "on_header_value": self._header_value, "on_header_end": self._header_end,
                "on_headers_finished": self._headers_finished, "on_part_data": self._data,
                "on_part_end": self._part_end}

    def _part_begin(self) -> None:
        self._headers = {}
        self._writing = False

    def _header_field(self, data: bytes, start: int, end: int) -> None:
        self._field += data[start:end]

    def _header_value(self, data: bytes, start: int, end: int) -> None:
        self._value += data[start:end]

    def _header_end(self) -> None:
        self._headers[self._field.strip().lower()] = self._value.strip()
        self._field = self._value = b""

    def _headers_finished(self) -> None:
        _, options = parse_options_header(self._headers.get(b"content-disposition", b""))
        if options.get(b"name") == FIELD and self._handle is None:
            self._handle = self.open_target()
            self._writing = True

    def _data(self, data: bytes, start: int, end: int) -> None:
        if not self._writing:
            return
        self.size += end - start
        if self.size > self.limit:
            raise too_large(self.limit)
        assert self._handle is not None
        self._handle.write(data[start:end])

    def _part_end(self) -> None:
        if self._writing:
            self.close()
            self._writing = False
            self.complete = True

    def close(self) -> None:
        if self._handle is not None and not self._handle.closed and not isinstance(self._handle, io.BytesIO):
            self._handle.close()


def _form_boundary(request: Request, limit: int) -> bytes:
    """The multipart boundary; refuses a body that is not a form (415) or declares more than the cap
    plus the form's overhead (413) before anything is read."""
    ctype, options = parse_options_header(request.headers.get("content-type"))
    boundary = options.get(b"boundary")
    if ctype != b"multipart/form-data" or not boundary:
        raise UploadError(415, "send the file as multipart/form-data with one 'file' field")
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise UploadError(400, "the Content-Length header is not a number")
        if int(declared) > limit + FORM_OVERHEAD:
            raise too_large(limit, int(declared))
    return boundary


async def _stream_form(request: Request, boundary: bytes, part: FilePart) -> None:
    """Feed the body to the parser as it arrives, stopping at the cap; raises UploadError."""
    try:
        try:
            parser = MultipartParser(boundary, part.callbacks())  # type: ignore[arg-type]
            received = 0
            async for chunk in request.stream():
                received += len(chunk)
                if received > part.limit + FORM_OVERHEAD:
                    raise too_large(part.limit)
                parser.write(chunk)
            parser.finalize()
        except (FormParserError, ValueError):
            raise UploadError(400, "the multipart/form-data body is malformed") from None
        except ClientDisconnect:
            raise UploadError(400, "the upload was interrupted") from None
    finally:
        part.close()
    if not part.complete:
        raise UploadError(400, "the form has no complete 'file' part")


async def receive_file_bytes(request: Request, limit: int) -> bytes:
    """The form's `file` part in memory, the cap enforced while it arrives (for small reads such as a
    PNG's settings)."""
    boundary = _form_boundary(request, limit)
    buffer = io.BytesIO()
    await _stream_form(request, boundary, FilePart(lambda: buffer, limit))
    return buffer.getvalue()


async def receive_upload(request: Request, store: UploadStore) -> str:
    """Read one init image from a multipart/form-data request into `store`; returns its id. Raises
    UploadError (400 malformed, 413 too large or quota full, 415 not a form)."""
    boundary = _form_boundary(request, store.max_bytes)
    await anyio.to_thread.run_sync(store.check_room)
    upload_id = store.begin()
    raw = store.raw_path(upload_id)
    try:
        await _stream_form(request, boundary, FilePart(lambda: open(raw, "xb"), store.max_bytes))
        await anyio.to_thread.run_sync(store.ingest, upload_id)
    finally:
        store.end(upload_id)
    return upload_id


def sweep_interval(store: UploadStore) -> float:
    """A quarter of the age limit, between 1 s and 10 minutes."""
    return min(max(store.max_age_s / 4, 1.0), 600.0)


async def sweep_periodically(store: UploadStore, every_s: float | None = None) -> None:
    """Expire old uploads while the server runs (cancelled at shutdown)."""
    while True:
        await asyncio.sleep(sweep_interval(store) if every_s is None else every_s)
        try:
            await anyio.to_thread.run_sync(store.sweep)
        except OSError:
            log.exception("sweeping the uploads folder failed")
