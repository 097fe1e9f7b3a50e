"""Jobs and the sink they report to. The engine speaks in plain dict events and image frames;
the api layer turns them into wire frames (app/api/protocol.py)."""

from __future__ import annotations

import uuid
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from pydantic import BaseModel

from app.engine.live import LiveState

EngineName = Literal["diffusion", "gan", "upscale"]  # upscale: the GAN upscaler (diffusion upscales are diffusion runs)


class Sink(Protocol):
    """Where a job's output goes. Both methods are called from worker threads."""

    def send(self, event: dict[str, Any]) -> None:
        """A JSON event; never dropped."""

    def image(self, meta: dict[str, Any], data: bytes, kind: Literal["preview", "final", "timeline"]) -> None:
        """An encoded image; previews may be dropped in favour of newer ones, finals never."""


def new_run_id() -> str:
    return uuid.uuid4().hex[:12]


class ModelPin:
    """The loaded model (its runner) a job runs on, so that a model swapped out of the studio while
    the job waits or runs still serves it. Held strongly until the job ends, weakly after: a
    swapped-out model is freed with its last run, and a finished run's model is reachable (for a
    timeline preview or a fork) only while it is still loaded."""

    def __init__(self, runner: Any) -> None:
        self._strong: Any = runner
        self._weak = weakref.ref(runner)

    def get(self) -> Any:
        return self._weak()

    def release(self) -> None:
        self._strong = None


@dataclass
class Job:
    engine: EngineName
    params: BaseModel
    sink: Sink
    client_id: str  # the connection: its runs stop when it closes
    owner: str  # who may update, preview, fork or cancel the run (a hash of the page's secret)
    live: LiveState | None = None
    parent: str | None = None
    from_step: int = 0
    peak_bytes: float = 0.0  # the budget's estimate of its peak memory (app.engine.budget)
    run_id: str = field(default_factory=new_run_id)
    ref: str | None = None  # the client's label for the message that queued it, echoed in `queued`
    position: int = -1  # place in the waiting queue last told to the client
    model: ModelPin | None = None  # the runner it was queued for (app.engine.studio)
    # Called by a job running whole after each of its steps: the worker lets the batch take a step
    # there (app.engine.worker), so a long GAN search or walk does not hold the batched runs.
    between_steps: Callable[[], None] = field(default=lambda: None, repr=False)

    def ended(self) -> None:
        """The job finished, failed, was cancelled or dropped: let go of its model."""
        if self.model is not None:
            self.model.release()
