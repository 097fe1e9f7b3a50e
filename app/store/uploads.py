"""Init images on disk: one PNG per upload id, with a cap per file, a quota for the folder and an age
after which uploads expire.

Layout under the uploads folder:
    <id>.png        a decoded and re-encoded upload (what a `generate` with `init_image` reads)
    .<id>.tmp       the bytes of an upload while they arrive (never more than the cap)
    .<id>.png.tmp   its re-encoded PNG before the rename that publishes it

Temp files belong to uploads in progress; any other (a killed server's) is removed by `sweep`, which
also removes PNGs older than the age limit. Everything here blocks: the HTTP edge calls it from a
worker thread, never on the event loop.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, UnidentifiedImageError

from app.wording import size_text

log = logging.getLogger(__name__)

MIB = 1024 * 1024
DECODERS = 2  # concurrent decodes: each holds a decoded image (up to max_pixels x 4 x 3 bytes)


class UploadError(Exception):
    """An upload refused: the HTTP status and a message in words."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True)
class Swept:
    temp_files: int
    expired: int


class UploadStore:
    """The uploads folder. Thread-safe: uploads may arrive in parallel with a sweep."""

    def __init__(self, folder: Path, *, max_bytes: int, max_pixels: int, quota_bytes: int,
                 max_age_s: float) -> None:
        self.folder = folder
        self.max_bytes = max_bytes
        self.max_pixels = max_pixels
        self.quota_bytes = quota_bytes
        self.max_age_s = max_age_s
        self._lock = threading.Lock()
        self._active: set[str] = set()
        self._decoding = threading.BoundedSemaphore(DECODERS)
        folder.mkdir(parents=True, exist_ok=True)

    # ---- paths and bookkeeping -------------------------------------------------------------

    def raw_path(self, upload_id: str) -> Path:
        return self.folder / f".{upload_id}.tmp"

    def _encoded_path(self, upload_id: str) -> Path:
        return self.folder / f".{upload_id}.png.tmp"

    def path(self, upload_id: str) -> Path:
        return self.folder / f"{upload_id}.png"

    def begin(self) -> str:
        """A fresh upload id; its temp files are safe from `sweep` until `end`."""
        upload_id = uuid.uuid4().hex
        with self._lock:
            self._active.add(upload_id)
        return upload_id

    def end(self, upload_id: str) -> None:
        """Forget an upload in progress and remove its temp files (published or not)."""
        for path in (self.raw_path(upload_id), self._encoded_path(upload_id)):
            path.unlink(missing_ok=True)
        with self._lock:
            self._active.discard(upload_id)

    # ---- quota -----------------------------------------------------------------------------

    def usage(self) -> int:
        """Bytes of published uploads."""
        total = 0
        with os.scandir(self.folder) as entries:
            for entry in entries:
                if entry.name.endswith(".png") and not entry.name.startswith("."):
                    try:
                        total += entry.stat().st_size
                    except FileNotFoundError:  # swept meanwhile
                        pass
        return total

    def _quota_message(self, used: int, incoming: int) -> str:
        hours = self.max_age_s / 3600
        return (f"the uploads quota is full: {size_text(used)} of {size_text(self.quota_bytes)} are in use and this image needs "
                f"{size_text(incoming)}; uploads expire after {hours:g} hours (NOISESCOPE_UPLOAD_MAX_AGE_HOURS), or the "
                f"server's owner can raise NOISESCOPE_UPLOAD_QUOTA_BYTES")

    def check_room(self, incoming: int = 0) -> None:
        """Refuse (413) when the quota cannot take `incoming` more bytes (a cheap check before reading)."""
        used = self.usage()
        if used + incoming > self.quota_bytes or (incoming == 0 and used >= self.quota_bytes):
            raise UploadError(413, self._quota_message(used, incoming))

    # ---- decode, re-encode, publish -----------------------------------------------------------

    def ingest(self, upload_id: str) -> None:
        """Decode the arrived bytes, check their pixels, re-encode them as PNG and publish the PNG if the
        quota takes it. Raises UploadError (400 not an image, 413 too many pixels or quota full)."""
        with self._decoding:
            encoded = self._encoded_path(upload_id)
            try:
                with Image.open(self.raw_path(upload_id)) as probe:
                    if probe.width * probe.height > self.max_pixels:
                        raise UploadError(413, f"images are limited to {self.max_pixels:,} pixels; this one is "
                                               f"{probe.width}x{probe.height}")
                    image = probe.convert("RGB")
                image.save(encoded, "PNG")
            except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError, SyntaxError):
                raise UploadError(400, "that file is not an image Pillow can read") from None
        self.sweep()  # expired uploads leave room before the quota is checked
        size = encoded.stat().st_size
        with self._lock:  # check and publish together, so parallel uploads cannot overrun the quota
            used = self.usage()
            if used + size > self.quota_bytes:
                raise UploadError(413, self._quota_message(used, size))
            encoded.replace(self.path(upload_id))

    # ---- sweeping ----------------------------------------------------------------------------

    def sweep(self, now: float | None = None) -> Swept:
        """Remove temp files no upload in progress owns, and uploads older than the age limit."""
        now = time.time() if now is None else now
        temps = expired = 0
        with os.scandir(self.folder) as entries:
            names = [(e.name, e) for e in entries]
        for name, entry in names:
            try:
                if name.startswith(".") and name.endswith(".tmp"):
                    upload_id = name[1:].split(".", 1)[0]
                    with self._lock:
                        if upload_id in self._active:
                            continue
                    os.unlink(entry.path)
                    temps += 1
                elif name.endswith(".png") and now - entry.stat().st_mtime > self.max_age_s:
                    os.unlink(entry.path)
                    expired += 1
            except FileNotFoundError:
                pass  # removed meanwhile (published, ended or swept by another call)
        if temps or expired:
            log.info("uploads: removed %d stale temp files and %d expired uploads", temps, expired)
        return Swept(temps, expired)
