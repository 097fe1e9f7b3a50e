"""Per-run state shared between the sampling thread and the websocket: live parameters and
cancellation. The sampler re-reads `params()` at every step."""

from __future__ import annotations

import threading

from app.params import LiveParams, LiveUpdate


class RunCancelled(Exception):
    """Raised from a step callback to stop a run within one step."""


class LiveState:
    def __init__(self, params: LiveParams) -> None:
        self._lock = threading.Lock()
        self._params = params
        self._cancel = threading.Event()

    def params(self) -> LiveParams:
        with self._lock:
            return self._params

    def update(self, change: LiveUpdate) -> LiveParams:
        """Apply `change`, validated as a whole first: a change that is refused (ValueError) leaves the
        run's parameters as they were, so an accepted update can never break the running sampler."""
        fields = change.model_dump(exclude_none=True)
        with self._lock:
            self._params = LiveParams.model_validate({**self._params.model_dump(), **fields})
            return self._params

    def cancel(self) -> None:
        self._cancel.set()

    @property
    def cancelled(self) -> bool:
        return self._cancel.is_set()

    def check(self) -> None:
        if self._cancel.is_set():
            raise RunCancelled
