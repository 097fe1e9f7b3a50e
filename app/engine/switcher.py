"""Loading another model of the `--models-dir` folder into the running studio.

One load at a time, in its own thread, while the loaded model keeps serving runs; the new model
is built whole (weights, LoRAs and preview decoder, speed calibration) and then swapped in by one
assignment (Studio.use_diffusion / use_gan), so runs wait for nothing but that. Runs queued before
the swap finish on the model they were queued for (app.engine.jobs.ModelPin), which is freed with
the last of them. The memory check comes first: a model that would not fit next to the loaded one
is refused before anything is read.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch

from app.engine.calibrate import available_memory, calibrate
from app.engine.memory import release_memory
from app.model_library import ModelEntry, ScanCache, load_bytes, scan
from app.settings import Settings

log = logging.getLogger(__name__)

STAGES = {
    "diffusion": ("weights", "extras", "calibration", "swap"),
    "gan": ("weights", "swap"),
}
STAGE_WORDS = {"weights": "reading the weights", "extras": "LoRAs and preview decoder",
               "calibration": "measuring its speed", "swap": "swapping it in"}
MAX_MESSAGE = 400


class SwitchError(Exception):
    """A load request refused before it starts; `status` is the HTTP status the route answers with."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass
class LoadProgress:
    """Where a load is; the page polls it (GET /api/models)."""

    id: str
    kind: str
    family: str
    state: Literal["loading", "ready", "failed"] = "loading"
    stage: str = "weights"
    notes: list[str] = field(default_factory=list)  # what was left off (LoRAs, a preview decoder that do not fit)
    error: str | None = None
    started: float = field(default_factory=time.monotonic)
    ended: float | None = None

    def enter(self, stage: str) -> None:
        self.stage = stage

    def public(self) -> dict[str, Any]:
        stages = STAGES[self.kind]
        return {"id": self.id, "kind": self.kind, "family": self.family, "state": self.state,
                "stage": self.stage, "stage_words": STAGE_WORDS.get(self.stage, self.stage),
                "stage_index": stages.index(self.stage) if self.stage in stages else 0, "stages": len(stages),
                "seconds": round((self.ended or time.monotonic()) - self.started, 1),
                "notes": list(self.notes), "error": self.error}


def _words(exc: BaseException, root: Path) -> str:
    """An exception as one short line, with the models folder's path left out."""
    text = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    text = text.replace(str(root) + "/", "").replace(str(root), "the models folder")
    return text if len(text) <= MAX_MESSAGE else text[:MAX_MESSAGE - 1] + "…"


class Switcher:
    def __init__(self, studio: Any, settings: Settings, root: Path | None,
                 load_diffusion: Callable[..., Any] | None = None, load_gan: Callable[..., Any] | None = None) -> None:
        """`studio`: app.engine.studio.Studio; `root`: the --models-dir folder (None: switching off).
        `load_diffusion` / `load_gan` default to app.registry's loaders."""
        from app import registry

        self.studio = studio
        self.settings = settings
        self.root = root.resolve() if root is not None else None
        self._load_diffusion = load_diffusion or registry.load_diffusion
        self._load_gan = load_gan or registry.load_gan
        self._lock = threading.Lock()
        self._scan_lock = threading.Lock()
        self._scan_cache: ScanCache = {}
        self.progress: LoadProgress | None = None
        self._thread: threading.Thread | None = None

    def _active(self, entry: ModelEntry) -> bool:
        name = self.studio.models.names.get(entry.kind or "")
        return bool(name) and self.root is not None and Path(name).resolve() == (self.root / entry.id).resolve()

    def _scan(self) -> dict[str, ModelEntry]:
        """The folder's entries; items unchanged since the last scan are not read again (the page polls)."""
        if self.root is None:
            return {}
        with self._scan_lock:
            return scan(self.root, self._scan_cache)

    def catalogue(self) -> dict[str, Any]:
        """What GET /api/models answers: the folder's models, which are loaded, the load in progress."""
        entries = self._scan()
        with self._lock:
            progress = None if self.progress is None else self.progress.public()
        return {
            "enabled": self.root is not None,
            "note": None if self.root is not None else "start the server with --models-dir FOLDER to list and load models",
            "models": [{**e.public(), "active": self._active(e)} for e in entries.values()],
            "load": progress,
        }

    def load(self, model_id: str) -> dict[str, Any]:
        """Start loading `model_id` (an id from the catalogue); returns its progress. SwitchError when
        switching is off (400), the id is unknown (404) or not loadable (400), another load runs (409),
        or the model would not fit in memory next to the loaded one (409)."""
        if self.root is None:
            raise SwitchError(400, "this server lists no models: start it with --models-dir FOLDER")
        entry = self._scan().get(model_id)
        if entry is None:
            raise SwitchError(404, f"there is no model {model_id!r} in the models folder")
        if entry.kind is None:
            raise SwitchError(400, f"{entry.id} cannot be loaded: {entry.problem}")
        with self._lock:
            if self.progress is not None and self.progress.state == "loading":
                raise SwitchError(409, f"{self.progress.id} is loading; wait for it to finish")
            if self._active(entry):
                self.progress = LoadProgress(entry.id, entry.kind, entry.family, state="ready", stage="swap",
                                             notes=["already loaded"], ended=time.monotonic())
                return self.progress.public()
            self._check_memory(entry)
            self.progress = progress = LoadProgress(entry.id, entry.kind, entry.family)
            self._thread = threading.Thread(target=self._run, args=(entry, progress), daemon=True,
                                            name="noisescope-model-loader")
            self._thread.start()
            return progress.public()

    def _check_memory(self, entry: ModelEntry) -> None:
        models = self.studio.models
        itemsize = torch.tensor([], dtype=models.dtype).element_size()
        needed = load_bytes(self.root / entry.id, itemsize)  # type: ignore[operator]
        available = available_memory(models.device)
        if available is None:
            return
        room = available * self.settings.memory_fraction
        if needed > room:
            raise SwitchError(409, f"not enough memory to load {entry.id}: it needs about {needed / 2**30:.1f} GiB "
                                   f"and {room / 2**30:.1f} GiB is free next to the loaded model")

    def wait(self, timeout: float | None = None) -> LoadProgress | None:
        """Block until the load in progress ends (tests, scripts)."""
        thread = self._thread
        if thread is not None:
            thread.join(timeout)
        return self.progress

    def _run(self, entry: ModelEntry, progress: LoadProgress) -> None:
        studio, settings = self.studio, self.settings
        models = studio.models
        path = str(self.root / entry.id)  # type: ignore[operator]
        if models.device.type == "cpu" and settings.cpu_threads:
            torch.set_num_threads(settings.cpu_threads)
        log.info("loading %s (%s) into the running studio", entry.id, entry.family)
        try:
            if entry.kind == "diffusion":
                loaded = self._load_diffusion(path, settings, models.device, models.dtype, models.clip,
                                              stage=progress.enter, left_out=progress.notes)
                progress.enter("calibration")
                calibration = calibrate(loaded, cpu_threads=settings.cpu_threads)
                progress.enter("swap")
                studio.use_diffusion(loaded, path, calibration)
            else:
                progress.enter("weights")
                loaded = self._load_gan(path, models.device, models.clip)
                progress.enter("swap")
                studio.use_gan(loaded, path)
            progress.state = "ready"
            log.info("%s is loaded (%.1f s)", entry.id, time.monotonic() - progress.started)
        except (MemoryError, torch.OutOfMemoryError):
            progress.error = f"not enough memory to load {entry.id}; the loaded model stays"
            progress.state = "failed"
        except (OSError, ValueError, KeyError, TypeError, RuntimeError) as exc:
            log.warning("loading %s failed: %s", entry.id, exc)
            progress.error = f"{entry.id} could not be loaded ({_words(exc, self.root)}); the loaded model stays"  # type: ignore[arg-type]
            progress.state = "failed"
        except Exception:
            log.exception("loading %s failed", entry.id)
            progress.error = f"{entry.id} could not be loaded (see the server log); the loaded model stays"
            progress.state = "failed"
        finally:
            progress.ended = time.monotonic()
            loaded = None
            release_memory(models.device)
