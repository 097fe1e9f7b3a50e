"""The ingress's studio when the engine runs as a Ray Serve deployment: the same methods the websocket
route and the HTTP routes use on app.engine.studio.Studio, answered by the engine's replicas.

- A new run goes to the least loaded replica (the router's choice) as a streaming call; the replica
  that answers holds the run, and its events and frames are relayed to the page's Sink as they come.
- `update`, `cancel`, timeline `preview` and forks (`rewind`) go to the replica that holds the run
  (app.cluster.router), so a fork's steps come from the parent's step history where it lives. A page's
  GAN renders stay on one replica, so a dragged slider's stale renders are replaced there.
- The gallery is written here, in one place: replicas send each finished image in the run's stream,
  and it is stored before the event that names it is passed on.
- A replica that dies ends each of its runs with an `error` event, code `replica_lost`; the page can
  generate again, on another replica. Runs on other replicas and the gallery are untouched.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
from collections import OrderedDict, defaultdict
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ray.exceptions import NodeDiedError, RayActorError, WorkerCrashedError
from ray.serve.exceptions import RequestCancelledError
from ray.serve.handle import DeploymentHandle

from app.cluster.stream import Item
from app.engine.jobs import Sink
from app.engine.studio import StudioError
from app.params import DiffusionParams, GanParams, LiveParams, LiveUpdate, gallery_source
from app.settings import Settings
from app.store.gallery import Gallery, ImageRecord

log = logging.getLogger(__name__)

LOST = (RayActorError, WorkerCrashedError, NodeDiedError)  # the replica's process or machine is gone
KEEP_RUNS = 4096
START_TRIES = 3  # a new run whose replica dies before it answers is sent again: nothing was queued yet
LOST_TEXT = ("the engine replica running this run stopped (its process or machine is gone), and the run "
             "with it; generate again to run it on another replica")


@dataclass
class RunPlace:
    replica: str
    owner: str


class Described:
    """What one replica said about the loaded models (every replica loads the same ones)."""

    def __init__(self, described: dict[str, Any]) -> None:
        self._described = described

    def info(self) -> dict[str, Any]:
        return self._described


class DescribedModels:
    """The parts of app.registry.Models the HTTP routes read: info(), gan.info() and the tokenizer."""

    def __init__(self, described: dict[str, Any]) -> None:
        self._info = described["models"]
        self.gan = None if described["gan"] is None else Described(described["gan"])
        self.diffusion = DescribedTokenizer(described["tokenizer"])

    def info(self) -> dict[str, Any]:
        return dict(self._info)


@dataclass
class DescribedTokenizer:
    tokenizer: Any


def files_for(params: DiffusionParams, uploads: Path, gallery: Gallery) -> dict[str, dict[str, bytes]]:
    """The uploads and gallery images a diffusion run reads (init image, mask), for its replica, which
    may be on another machine. Whatever is missing here stays missing there, and the engine says so."""
    files: dict[str, dict[str, bytes]] = {"uploads": {}, "gallery": {}}
    for name in (params.init_image, params.mask_image):
        if name is None:
            continue
        source = gallery_source(name)
        try:
            if source is None:
                files["uploads"][name] = (uploads / f"{name}.png").read_bytes()
            elif gallery.get(source) is not None:
                files["gallery"][source] = gallery.path_for(source).read_bytes()
        except (FileNotFoundError, ValueError):
            pass
    return files


class RemoteStudio:
    def __init__(self, settings: Settings, engine: DeploymentHandle, gallery: Gallery,
                 described: dict[str, Any]) -> None:
        self.settings = settings
        self.engine = engine
        self.gallery = gallery
        self.models = DescribedModels(described)
        self.measured = described["measured"]
        self.sizes = Described(described["sizes"])
        self.uploads = settings.data_dir / "uploads"
        self.uploads.mkdir(parents=True, exist_ok=True)
        self._runs: OrderedDict[str, RunPlace] = OrderedDict()
        self._lost: set[str] = set()  # replicas whose process died
        self._readers: dict[str, set[asyncio.Task]] = defaultdict(set)  # client id -> its runs' stream readers
        self._gan_replica: dict[str, str] = {}  # client id -> the replica of its GAN renders

    @classmethod
    async def connect(cls, settings: Settings, engine: DeploymentHandle) -> RemoteStudio:
        """Ask one replica what it loaded; open the gallery here."""
        described = await engine.describe.remote()
        return cls(settings, engine, Gallery(settings.data_dir / "gallery"), described)

    @property
    def upload_dir(self) -> Path:
        return self.uploads

    def stop(self) -> None:
        for readers in self._readers.values():
            for task in readers:
                task.cancel()
        self.gallery.close()

    # ---- runs ------------------------------------------------------------------------------------

    async def generate(self, params: DiffusionParams, sink: Sink, client_id: str, owner: str,
                       ref: str | None = None) -> str:
        files = await asyncio.to_thread(files_for, params, self.uploads, self.gallery)
        return await self._start(sink, client_id, "generate",
                                 {"params": params, "client_id": client_id, "owner": owner, "ref": ref}, files)

    async def generate_gan(self, params: GanParams, sink: Sink, client_id: str, owner: str,
                           ref: str | None = None) -> str:
        replica = self._gan_replica.get(client_id)
        run_id = await self._start(sink, client_id, "generate_gan",
                                   {"params": params, "client_id": client_id, "owner": owner, "ref": ref},
                                   None, None if replica in self._lost else replica)
        self._gan_replica[client_id] = self._runs[run_id].replica
        return run_id

    async def rewind(self, run_id: str, step: int, sink: Sink, client_id: str, owner: str,
                     change: LiveUpdate | None = None, ref: str | None = None) -> str:
        """A fork runs where its parent's steps are kept."""
        replica = self._replica_of(run_id, owner)
        return await self._start(sink, client_id, "rewind",
                                 {"run_id": run_id, "step": step, "client_id": client_id, "owner": owner,
                                  "change": change, "ref": ref}, None, replica)

    async def _start(self, sink: Sink, client_id: str, action: str, args: dict[str, Any],
                     files: dict[str, dict[str, bytes]] | None, replica: str | None = None) -> str:
        """Send a run to a replica (`replica`, or the least loaded), wait for its first answer, and relay
        the rest of its stream in a background task. Raises StudioError for a refusal."""
        for _ in range(START_TRIES):
            stream = self.engine.options(stream=True).run.remote(action, args, files, replica=replica)
            try:
                first = await anext(stream)
                break
            except LOST:
                if replica is not None:  # a fork or a pinned GAN render: only that replica will do
                    self._lose(replica)
                    raise StudioError("replica_lost", LOST_TEXT) from None
        else:
            raise StudioError("replica_lost", "no engine replica could take the run; try again") from None
        if first[0] == "refused":
            raise StudioError(first[1], first[2])
        _, replica, run_id = first
        self._remember(run_id, RunPlace(replica, args["owner"]))
        task = asyncio.create_task(self._relay(stream, sink, run_id, replica))
        readers = self._readers[client_id]
        readers.add(task)
        task.add_done_callback(readers.discard)
        return run_id

    async def _relay(self, stream: AsyncIterator[Item], sink: Sink, run_id: str, replica: str) -> None:
        try:
            async for item in stream:
                await self._deliver(sink, item)
        except asyncio.CancelledError:
            stream.cancel()  # type: ignore[attr-defined]  # the replica cancels the run
            raise
        except RequestCancelledError:
            pass
        except LOST:
            log.warning("engine replica %s was lost with run %s", replica, run_id)
            self._lose(replica)
            sink.send({"type": "error", "code": "replica_lost", "run_id": run_id, "message": LOST_TEXT})
        except Exception:
            log.exception("relaying run %s from replica %s failed", run_id, replica)
            sink.send({"type": "error", "code": "internal", "run_id": run_id,
                       "message": "the run failed on the server; see the server log"})

    async def _deliver(self, sink: Sink, item: Item) -> None:
        kind = item[0]
        if kind == "event":
            sink.send(item[1])
        elif kind == "image":
            sink.image(item[1], item[2], item[3])
        elif kind == "gallery":
            await asyncio.to_thread(self.gallery.store, ImageRecord(**item[1]), item[2])

    async def upscale(self, params: Any, sink: Sink, client_id: str, owner: str, ref: str | None = None) -> None:
        """Upscaling is not routed to replicas yet: refused in words, never `internal`."""
        raise StudioError("no_model", "upscaling is not available when the engine runs on Ray Serve (--ray); "
                                      "run the studio without --ray to upscale")

    # ---- live messages: to the replica holding the run --------------------------------------------

    async def update(self, run_id: str, change: LiveUpdate, owner: str) -> LiveParams:
        return LiveParams.model_validate(await self._ask("update", run_id, owner, run_id, change, owner))

    async def cancel(self, run_id: str, owner: str) -> None:
        await self._ask("cancel", run_id, owner, run_id, owner)

    async def preview(self, run_id: str, step: int, sink: Sink, owner: str) -> None:
        for meta, data, kind in await self._ask("preview", run_id, owner, run_id, step, owner):
            sink.image(meta, data, kind)

    def attach_page(self, client_id: str, sink: Sink) -> None:
        """A page connected. Model switching is off under Ray, so there is nothing to tell every page."""

    def disconnect(self, client_id: str) -> None:
        """The page went away: stop reading its runs, which cancels them on their replicas."""
        for task in self._readers.pop(client_id, set()):
            task.cancel()
        self._gan_replica.pop(client_id, None)

    async def _ask(self, method: str, run_id: str, owner: str, *args: Any) -> Any:
        replica = self._replica_of(run_id, owner)
        try:
            answer = await getattr(self.engine, method).remote(*args, replica=replica)
        except LOST:
            self._lose(replica)
            raise StudioError("replica_lost", self._lost_text(run_id)) from None
        if answer[0] == "refused":
            raise StudioError(answer[1], answer[2])
        return answer[1]

    # ---- where runs live -------------------------------------------------------------------------

    def _remember(self, run_id: str, place: RunPlace) -> None:
        self._runs[run_id] = place
        while len(self._runs) > KEEP_RUNS:
            self._runs.popitem(last=False)

    def _replica_of(self, run_id: str, owner: str) -> str:
        """The replica holding `run_id`. Another page's run is answered like an unknown one."""
        place = self._runs.get(run_id)
        if place is None or not hmac.compare_digest(place.owner, owner):
            raise StudioError("not_found", f"no run {run_id!r}")
        if place.replica in self._lost:
            raise StudioError("replica_lost", self._lost_text(run_id))
        return place.replica

    @staticmethod
    def _lost_text(run_id: str) -> str:
        return (f"the engine replica that held run {run_id} stopped (its process or machine is gone), with "
                "the run's steps; generate again")

    def _lose(self, replica: str) -> None:
        self._lost.add(replica)
        for client, held in list(self._gan_replica.items()):
            if held == replica:
                del self._gan_replica[client]

    def replica_of(self, run_id: str) -> str | None:
        """Which replica holds a run (for tests and logs)."""
        place = self._runs.get(run_id)
        return None if place is None else place.replica
