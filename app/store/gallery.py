"""SQLite gallery of finished images.

Layout under the gallery folder:
    gallery.sqlite3      one row per image (WAL mode)
    images/<id>.png      the PNG, with `parameters` and `noisescope` text chunks

A PNG is written to a temp file, fsynced and renamed into place before its row is inserted, so
a listed row always has a complete file; a crash leaves at worst an unlisted file or temp file,
both cleaned up on the next start. Deleting goes the other way, row first and then the file, so a
crash between the two leaves the same kind of unlisted file (never served: the HTTP route serves
only ids with a row) for the next start to sweep.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import sqlite3
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from PIL import Image

from app.store.pngmeta import NOISESCOPE_KEY, PARAMETERS_KEY, a1111_parameters, noisescope_chunk, png_with_text
from app.store.search import PROMPT_LIKE, like_pattern, normalise_query

Engine = Literal["diffusion", "gan"]
ID_RE = re.compile(r"^[0-9a-f]{24}$")
TMP_PREFIX = ".tmp-"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS images (
    id          TEXT PRIMARY KEY,
    created     REAL NOT NULL,
    engine      TEXT NOT NULL CHECK (engine IN ('diffusion', 'gan')),
    params      TEXT NOT NULL,
    seed        INTEGER,
    timings     TEXT NOT NULL,
    models      TEXT NOT NULL,
    clip_score  REAL,
    width       INTEGER NOT NULL,
    height      INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS images_created ON images (created DESC);
"""

# Schema versions (PRAGMA user_version) and the statements that reach each from the one before.
# Version 1: the run id, its replay schedule (JSON list of {step, changes}) and fork lineage (JSON).
_MIGRATIONS: list[tuple[int, str]] = [
    (1, """
ALTER TABLE images ADD COLUMN run_id TEXT;
ALTER TABLE images ADD COLUMN schedule TEXT NOT NULL DEFAULT '[]';
ALTER TABLE images ADD COLUMN lineage TEXT;
"""),
]
SCHEMA_VERSION = _MIGRATIONS[-1][0]


@dataclass
class ImageRecord:
    """What the engine knows about a finished image; `add` fills id, created, width and height."""

    engine: Engine
    params: dict[str, Any]
    seed: int | None = None
    timings: dict[str, Any] = field(default_factory=dict)  # total_ms, ms_per_step, steps
    models: dict[str, Any] = field(default_factory=dict)  # e.g. {"diffusion": ..., "clip": ...}
    clip_score: float | None = None
    # the live changes at the step each took effect ([{step, changes}]): params + schedule replay the run
    schedule: list[dict[str, Any]] = field(default_factory=list)
    lineage: dict[str, Any] | None = None  # a fork's {"parent_run", "from_step"}
    run_id: str | None = None
    id: str = ""
    created: float = 0.0
    width: int = 0
    height: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def new_id(now: float | None = None) -> str:
    """24 hex digits: milliseconds since the epoch (12) then 48 random bits, so ids sort by time."""
    ms = int((time.time() if now is None else now) * 1000)
    return f"{ms:012x}{secrets.token_hex(6)}"


def valid_id(image_id: object) -> bool:
    return isinstance(image_id, str) and ID_RE.fullmatch(image_id) is not None


def png_chunks(rec: ImageRecord) -> dict[str, str]:
    """The PNG's text chunks: A1111's `parameters` and the record as JSON."""
    model = rec.models.get(rec.engine) if isinstance(rec.models, dict) else None
    return {
        PARAMETERS_KEY: a1111_parameters(rec.engine, rec.params, rec.seed, rec.width, rec.height, model,
                                          rec.schedule, rec.lineage),
        NOISESCOPE_KEY: noisescope_chunk(rec.to_dict()),
    }


def prepare(image: Image.Image, record: ImageRecord) -> tuple[ImageRecord, bytes]:
    """A finished image made ready to store: its record with a new id, time and size, and its PNG
    with the metadata chunks."""
    rec = ImageRecord(**record.to_dict())
    rec.created = time.time()
    rec.id = new_id(rec.created)
    rec.width, rec.height = image.size
    return rec, png_with_text(image, png_chunks(rec))


class Gallery:
    """Finished images on disk plus their metadata; safe to share between threads."""

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)
        self.images_dir = self.folder / "images"
        self.images_dir.mkdir(parents=True, exist_ok=True)
        self._images_root = self.images_dir.resolve()
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.folder / "gallery.sqlite3", check_same_thread=False, isolation_level=None)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)
        self._migrate()
        self._sweep()

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # ---- writing --------------------------------------------------------------------------

    def add(self, image: Image.Image, record: ImageRecord) -> str:
        """Store `image` with `record`; returns the new id."""
        return self.store(*prepare(image, record))

    def store(self, rec: ImageRecord, data: bytes) -> str:
        """Store a record and its PNG as `prepare` made them (possibly on another machine: an engine
        replica prepares, the ingress stores); returns its id."""
        if not valid_id(rec.id):
            raise ValueError("invalid image id")
        final = self.images_dir / f"{rec.id}.png"
        self._write_atomic(final, data)
        try:
            with self._lock:
                self._db.execute(
                    "INSERT INTO images (id, created, engine, params, seed, timings, models, clip_score, width, height,"
                    " run_id, schedule, lineage) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        rec.id, rec.created, rec.engine, json.dumps(rec.params), rec.seed,
                        json.dumps(rec.timings), json.dumps(rec.models), rec.clip_score, rec.width, rec.height,
                        rec.run_id, json.dumps(rec.schedule), None if rec.lineage is None else json.dumps(rec.lineage),
                    ),
                )
        except BaseException:
            final.unlink(missing_ok=True)
            raise
        return rec.id

    def delete(self, image_id: str) -> bool:
        """Remove an image, row first and then its file; False when there was none. Raises ValueError
        for anything that is not a well-formed id."""
        path = self.path_for(image_id)
        with self._lock:
            cur = self._db.execute("DELETE FROM images WHERE id = ?", (image_id,))
        path.unlink(missing_ok=True)
        return cur.rowcount > 0

    # ---- reading --------------------------------------------------------------------------

    def list(self, limit: int = 50, offset: int = 0, q: str | None = None) -> list[ImageRecord]:
        """Newest first; with `q`, only images whose prompt contains it (see `page`)."""
        return self.page(limit, offset, q)[0]

    def page(self, limit: int = 50, offset: int = 0, q: str | None = None) -> tuple[list[ImageRecord], int]:
        """One page, newest first, and how many images match in all (read together, so they agree).
        `q`: a substring of the prompt, taken literally (`%` and `_` are no wildcards); blank = all."""
        limit = max(0, min(int(limit), 1000))
        offset = max(0, int(offset))
        where, args = self._where(q)
        with self._lock:
            total = int(self._db.execute(f"SELECT COUNT(*) FROM images{where}", args).fetchone()[0])
            rows = self._db.execute(
                f"SELECT * FROM images{where} ORDER BY created DESC, id DESC LIMIT ? OFFSET ?", (*args, limit, offset)
            ).fetchall()
        return [self._record(r) for r in rows], total

    def count(self, q: str | None = None) -> int:
        where, args = self._where(q)
        with self._lock:
            return int(self._db.execute(f"SELECT COUNT(*) FROM images{where}", args).fetchone()[0])

    def get(self, image_id: str) -> ImageRecord | None:
        if not valid_id(image_id):
            return None
        with self._lock:
            row = self._db.execute("SELECT * FROM images WHERE id = ?", (image_id,)).fetchone()
        return self._record(row) if row else None

    def path_for(self, image_id: str) -> Path:
        """The PNG path of `image_id`; raises ValueError for anything that is not a well-formed id."""
        if not valid_id(image_id):
            raise ValueError("invalid image id")
        path = (self._images_root / f"{image_id}.png").resolve()
        if path.parent != self._images_root:
            raise ValueError("invalid image id")
        return path

    # ---- internals ------------------------------------------------------------------------

    @staticmethod
    def _where(q: str | None) -> tuple[str, tuple[str, ...]]:
        """The WHERE clause (and its argument) of a prompt search; empty for no search."""
        text = normalise_query(q)
        return ("", ()) if text is None else (f" WHERE {PROMPT_LIKE}", (like_pattern(text),))

    def _migrate(self) -> None:
        """Bring an older database up to SCHEMA_VERSION, one version per transaction."""
        with self._lock:
            for target, statements in _MIGRATIONS:
                self._db.execute("BEGIN IMMEDIATE")  # re-read inside: another process may have migrated
                if int(self._db.execute("PRAGMA user_version").fetchone()[0]) >= target:
                    self._db.execute("COMMIT")
                    continue
                try:
                    for statement in filter(str.strip, statements.split(";")):
                        self._db.execute(statement)
                    self._db.execute(f"PRAGMA user_version = {int(target)}")
                    self._db.execute("COMMIT")
                except BaseException:
                    self._db.execute("ROLLBACK")
                    raise

    @staticmethod
    def _record(row: sqlite3.Row) -> ImageRecord:
        return ImageRecord(
            id=row["id"], created=row["created"], engine=row["engine"], params=json.loads(row["params"]),
            seed=row["seed"], timings=json.loads(row["timings"]), models=json.loads(row["models"]),
            clip_score=row["clip_score"], width=row["width"], height=row["height"],
            schedule=json.loads(row["schedule"]), lineage=None if row["lineage"] is None else json.loads(row["lineage"]),
            run_id=row["run_id"],
        )

    def _write_atomic(self, final: Path, data: bytes) -> None:
        tmp = self.images_dir / f"{TMP_PREFIX}{final.name}"
        try:
            with open(tmp, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, final)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise

    def _sweep(self, min_age_s: float = 60.0) -> None:
        """Drop temp files and PNGs without a row, left by a crash between file and row.

        Only files older than `min_age_s`: another process may be between its rename and insert.
        """
        with self._lock:
            known = {r[0] for r in self._db.execute("SELECT id FROM images")}
        cutoff = time.time() - min_age_s
        for p in self.images_dir.iterdir():
            stem = p.name.removesuffix(".png")
            orphan = p.name.startswith(TMP_PREFIX) or (p.suffix == ".png" and valid_id(stem) and stem not in known)
            try:
                if orphan and p.stat().st_mtime < cutoff:
                    p.unlink()
            except FileNotFoundError:
                pass
