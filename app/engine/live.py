"""Per-run state shared between the sampling thread and the websocket: live parameters, the
schedule of changes (replayed and recorded) and cancellation.

Changes take effect only at step boundaries: an `update` waits as pending until the sampler
finishes its current step, then `advance(step)` applies it together with any replayed schedule
entry for that step and records what changed. So every step runs with one consistent set of
parameters, and the record says exactly which step each change shaped first, which is what
makes a run replayable bit for bit."""

from __future__ import annotations

import threading
from collections.abc import Iterable

from app.params import LiveParams, LiveUpdate, ScheduleEntry, apply_change, live_diff


class RunCancelled(Exception):
    """Raised from a step callback to stop a run within one step."""


class LiveState:
    def __init__(self, params: LiveParams, plan: Iterable[ScheduleEntry] = ()) -> None:
        """`params`: the run's starting values (step 0); `plan`: schedule entries to replay."""
        self._lock = threading.Lock()
        self._params = params
        self._pending: dict = {}
        self._plan = {e.step: e.changes.model_dump(exclude_none=True) for e in plan}
        self._record: list[ScheduleEntry] = []
        self._step: int | None = None  # the last boundary passed; None before the run starts
        self._cancel = threading.Event()

    def params(self) -> LiveParams:
        """What the sampler uses: the values committed at the last step boundary (before the run
        starts, the latest values, pending changes included)."""
        with self._lock:
            return self._params if self._step is not None else self._latest()

    def latest(self) -> LiveParams:
        """The values the next step will use: committed plus pending changes."""
        with self._lock:
            return self._latest()

    def _latest(self) -> LiveParams:
        return apply_change(self._params, self._pending) if self._pending else self._params

    def update(self, change: LiveUpdate) -> LiveParams:
        """Queue `change` for the next step boundary, validated as a whole first: a change that is
        refused (ValueError) leaves the run as it was, so an accepted update can never break the
        running sampler. Returns the values the next step will use."""
        fields = change.model_dump(exclude_none=True)
        with self._lock:
            merged = apply_change(self._latest(), fields)
            self._pending.update(fields)
            return merged

    def states_with(self, change: LiveUpdate) -> list[LiveParams]:
        """The values the run would go through if `change` were queued now: the next step's, then
        after each replayed entry still to come (for the caps an update is checked against)."""
        with self._lock:
            state = apply_change(self._latest(), change.model_dump(exclude_none=True))
            states = [state]
            for step in sorted(s for s in self._plan if self._step is None or s > self._step):
                state = apply_change(state, self._plan[step])
                states.append(state)
            return states

    def advance(self, step: int) -> None:
        """A step boundary: `step` steps are done. The first call replays (and records) the plan's
        entries before `step` (a fork's inherited schedule); every call then applies the plan's entry
        for `step` and the pending updates, recording what changed."""
        with self._lock:
            if self._step is None:
                for at in sorted(s for s in self._plan if s < step):
                    self._commit(at, self._plan[at])
            self._step = step
            fields = {**self._plan.get(step, {}), **self._pending}
            self._pending = {}
            self._commit(step, fields)

    def _commit(self, step: int, fields: dict) -> None:
        if not fields:
            return
        after = apply_change(self._params, fields)
        diff = live_diff(self._params, after)
        self._params = after
        if diff:
            self._record.append(ScheduleEntry(step=step, changes=LiveUpdate(**diff)))

    def schedule(self, before: int | None = None) -> list[ScheduleEntry]:
        """The changes recorded so far (all, or only those at steps below `before`)."""
        with self._lock:
            return [e for e in self._record if before is None or e.step < before]

    def cancel(self) -> None:
        self._cancel.set()

    @property
    def cancelled(self) -> bool:
        return self._cancel.is_set()

    def check(self) -> None:
        if self._cancel.is_set():
            raise RunCancelled
