"""One engine per Ray Serve replica: the models, a Studio (worker, step history, runners) and its own
scratch folder. Runs are Serve streaming calls: a run's events and frames stream back to the ingress
for as long as it lasts, so a replica's ongoing requests are its queued and running runs (what the
autoscaler counts). Live messages for a run arrive as short calls that the router (app.cluster.router)
sends to this replica. Every method takes `replica=`, read by the router and not here.

Answers of the short calls are ("ok", value) or ("refused", code, message), so an engine refusal
crosses the cluster as data, not as a wrapped exception."""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from ray import serve

from app.api.uploads import upload_store
from app.cluster.gallery import ReplicaGallery
from app.cluster.stream import Item, StreamSink
from app.engine.studio import Studio, StudioError
from app.registry import load_models
from app.settings import Settings

log = logging.getLogger(__name__)

Answer = tuple[Any, ...]
RUN_ACTIONS = ("generate", "generate_gan", "rewind")


class FrameList:
    """A Sink that keeps the frames of one short call (a timeline preview)."""

    def __init__(self) -> None:
        self.frames: list[tuple[dict[str, Any], bytes, str]] = []

    def send(self, event: dict[str, Any]) -> None:
        pass

    def image(self, meta: dict[str, Any], data: bytes, kind: str) -> None:
        self.frames.append((dict(meta), data, kind))


FOLDER_PREFIX = "noisescope-replica-"


def sweep_dead_replica_folders(root: Path) -> int:
    """Remove the scratch folders of replicas whose process is gone (killed, so `__del__` never ran);
    their names carry the pid. Returns how many."""
    removed = 0
    for folder in root.glob(f"{FOLDER_PREFIX}*-*"):
        pid = folder.name.removeprefix(FOLDER_PREFIX).split("-", 1)[0]
        if not pid.isdigit():
            continue
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            shutil.rmtree(folder, ignore_errors=True)
            removed += 1
        except PermissionError:  # alive, another user's
            pass
    return removed


class EngineReplica:
    def __init__(self, settings: dict[str, Any]) -> None:
        sweep_dead_replica_folders(Path(tempfile.gettempdir()))
        # uploads and gallery images sent with runs
        self.folder = Path(tempfile.mkdtemp(prefix=f"{FOLDER_PREFIX}{os.getpid()}-"))
        config = Settings.model_validate({**settings, "data_dir": self.folder})
        self.replica = serve.get_replica_context().replica_id.unique_id
        models = load_models(config)
        self.gallery = ReplicaGallery(self.folder / "gallery", max_age_s=config.upload_max_age_hours * 3600)
        self.studio = Studio(config, models, self.gallery)  # type: ignore[arg-type]
        self.uploads = upload_store(config, self.studio.upload_dir)
        self.studio.start()
        log.info("engine replica %s ready on %s (pid %d)", self.replica, models.device, os.getpid())

    def __del__(self) -> None:
        studio = getattr(self, "studio", None)
        if studio is not None:
            studio.stop()
        shutil.rmtree(getattr(self, "folder", ""), ignore_errors=True)

    async def describe(self, replica: str | None = None) -> dict[str, Any]:
        """What the ingress shows in /api/info and uses for /api/vocab, read once from one replica (every
        replica loads the same models), plus where this replica runs."""
        studio = self.studio
        gan = studio.models.gan
        return {"replica": self.replica, "pid": os.getpid(), "models": studio.models.info(),
                "gan": None if gan is None else gan.info(), "measured": studio.measured,
                "sizes": studio.sizes.info(), "tokenizer": studio.models.diffusion.tokenizer}

    async def run(self, action: str, args: dict[str, Any], files: dict[str, dict[str, bytes]] | None = None,
                  replica: str | None = None) -> AsyncIterator[Item]:
        """Queue a run (generate, generate_gan or a fork) and stream what it sends until it ends. A
        caller that goes away (the page closed, the ingress cancelled the call) cancels the run."""
        if action not in RUN_ACTIONS:
            yield ("refused", "bad_request", f"unknown action {action!r}")
            return
        await asyncio.to_thread(self._receive, files or {})
        sink = StreamSink(asyncio.get_running_loop(), held=self.gallery.take)
        try:
            run_id = getattr(self.studio, action)(sink=sink, **args)
        except StudioError as exc:
            yield ("refused", exc.code, exc.message)
            return
        finished = False
        try:
            yield ("start", self.replica, run_id)
            while not (sink.ended and not sink.pending()):
                yield await sink.next()
            await asyncio.to_thread(self._flush)  # previews still being encoded go out before the stream ends
            while sink.pending():
                yield await sink.next()
            finished = True
        finally:
            if not finished:
                try:
                    self.studio.cancel(run_id, args["owner"])
                except StudioError:
                    pass

    async def update(self, run_id: str, change: Any, owner: str, replica: str | None = None) -> Answer:
        return self._answer(lambda: self.studio.update(run_id, change, owner).model_dump())

    async def cancel(self, run_id: str, owner: str, replica: str | None = None) -> Answer:
        return self._answer(lambda: self.studio.cancel(run_id, owner))

    async def preview(self, run_id: str, step: int, owner: str, replica: str | None = None) -> Answer:
        """A stored step's timeline preview: the frames it made, once the encoder has made them."""
        frames = FrameList()
        answer = self._answer(lambda: self.studio.preview(run_id, step, frames, owner))
        if answer[0] != "ok":
            return answer
        await asyncio.to_thread(self._flush)
        return ("ok", frames.frames)

    # ---- internals -----------------------------------------------------------------------------

    @staticmethod
    def _answer(call) -> Answer:
        try:
            return ("ok", call())
        except StudioError as exc:
            return ("refused", exc.code, exc.message)

    def _flush(self) -> None:
        """Wait until the encoder thread has sent everything submitted so far."""
        self.studio.encoder.submit(lambda: None).result()

    def _receive(self, files: dict[str, dict[str, bytes]]) -> None:
        """Keep the uploads and gallery images a run reads, as the ingress sent them."""
        self.uploads.sweep()
        self.gallery.sweep()
        for upload_id, png in files.get("uploads", {}).items():
            path = self.uploads.path(upload_id)
            if path.parent == self.uploads.folder and not path.is_file():
                tmp = path.with_name(f".{upload_id}.png.tmp")
                tmp.write_bytes(png)
                os.replace(tmp, path)
        for image_id, png in files.get("gallery", {}).items():
            self.gallery.put(image_id, png)
