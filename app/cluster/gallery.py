"""The gallery as an engine replica sees it. The ingress owns the real one (app.store.gallery): a
replica prepares each finished image (id, PNG with its metadata chunks) and holds it until the event
that names its id carries it back in the run's stream, where the ingress stores it before passing the
event on. Images a run reads from the gallery (img2img from a gallery image) arrive with the run and
are kept here as files, so the engine's `get` and `path_for` work as they do on one machine."""

from __future__ import annotations

import os
import threading
import time
from collections import OrderedDict
from pathlib import Path
from typing import Any

from PIL import Image

from app.store.gallery import ImageRecord, prepare, valid_id

KEEP_HELD = 64  # prepared images whose event never came (a run that failed after storing) are dropped


class ReplicaGallery:
    def __init__(self, folder: Path, *, max_age_s: float = 24 * 3600.0) -> None:
        self.images_dir = Path(folder) / "images"
        self.images_dir.mkdir(parents=True, exist_ok=True)
        self.max_age_s = max_age_s
        self._lock = threading.Lock()
        self._held: OrderedDict[str, tuple[dict[str, Any], bytes]] = OrderedDict()

    def add(self, image: Image.Image, record: ImageRecord) -> str:
        """Prepare `image` for the ingress's gallery; returns the id it will have there."""
        rec, png = prepare(image, record)
        with self._lock:
            self._held[rec.id] = (rec.to_dict(), png)
            while len(self._held) > KEEP_HELD:
                self._held.popitem(last=False)
        return rec.id

    def take(self, ids: list[str]) -> list[tuple[dict[str, Any], bytes]]:
        """The prepared images with these ids that were not taken yet, in the order given."""
        with self._lock:
            return [self._held.pop(i) for i in ids if i in self._held]

    # ---- images sent with a run ----------------------------------------------------------------

    def put(self, image_id: str, png: bytes) -> None:
        """Keep a gallery image a run reads (sent by the ingress with the run)."""
        path = self.path_for(image_id)
        tmp = path.with_name(f".tmp-{path.name}")
        tmp.write_bytes(png)
        os.replace(tmp, path)

    def get(self, image_id: str) -> ImageRecord | None:
        """A record holding only the id when the image is here (the ingress has its row), else None."""
        if not valid_id(image_id) or not self.path_for(image_id).is_file():
            return None
        return ImageRecord(engine="diffusion", params={}, id=image_id)

    def path_for(self, image_id: str) -> Path:
        if not valid_id(image_id):
            raise ValueError("invalid image id")
        return self.images_dir / f"{image_id}.png"

    def sweep(self, now: float | None = None) -> int:
        """Remove kept images older than the uploads' age limit; returns how many."""
        cutoff = (time.time() if now is None else now) - self.max_age_s
        removed = 0
        for path in self.images_dir.iterdir():
            try:
                if path.stat().st_mtime < cutoff:
                    path.unlink()
                    removed += 1
            except FileNotFoundError:
                pass
        return removed
