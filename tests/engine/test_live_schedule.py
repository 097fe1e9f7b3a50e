"""LiveState: changes wait for a step boundary, are recorded with it, and a plan replays."""

from __future__ import annotations

from app.engine.live import LiveState
from app.params import LiveParams, LiveUpdate, ScheduleEntry, dump_schedule


def entry(step: int, **changes: object) -> ScheduleEntry:
    return ScheduleEntry(step=step, changes=LiveUpdate(**changes))


def test_changes_take_effect_at_boundaries_and_are_recorded() -> None:
    live = LiveState(LiveParams(cfg_scale=5.0), plan=[entry(3, eta=0.5)])
    live.update(LiveUpdate(cfg_scale=7.0))  # queued before the run starts
    assert live.params().cfg_scale == 7.0  # before the first step: the latest values
    live.advance(0)
    live.update(LiveUpdate(cfg_scale=2.0))
    assert live.update(LiveUpdate(cfg_scale=2.5, eta=0.1)).cfg_scale == 2.5
    assert live.params().cfg_scale == 7.0, "the step in progress keeps its values"
    assert live.latest().cfg_scale == 2.5
    live.advance(1)
    assert (live.params().cfg_scale, live.params().eta) == (2.5, 0.1)
    live.advance(2)
    live.update(LiveUpdate(eta=0.9))  # pending beats the plan's entry at the same step
    live.advance(3)
    live.update(LiveUpdate(cfg_scale=2.5))  # no change: nothing recorded
    live.advance(4)
    assert dump_schedule(live.schedule()) == [
        {"step": 0, "changes": {"cfg_scale": 7.0}},
        {"step": 1, "changes": {"cfg_scale": 2.5, "eta": 0.1}},
        {"step": 3, "changes": {"eta": 0.9}},
    ]
    assert dump_schedule(live.schedule(before=3)) == dump_schedule(live.schedule())[:2]


def test_a_fork_replays_its_inherited_entries_at_its_first_boundary() -> None:
    live = LiveState(LiveParams(cfg_scale=5.0), plan=[entry(1, cfg_scale=7.0), entry(5, eta=0.3), entry(8, eta=0.6)])
    live.advance(5)  # a fork resuming after 5 steps
    assert (live.params().cfg_scale, live.params().eta) == (7.0, 0.3)
    live.advance(6)
    live.advance(7)
    live.advance(8)
    assert live.params().eta == 0.6
    assert [e.step for e in live.schedule()] == [1, 5, 8]


def test_states_with_covers_the_plan_still_to_come() -> None:
    live = LiveState(LiveParams(), plan=[entry(2, cfg_scale=1.0), entry(4, eta=0.2)])
    live.advance(0)
    live.advance(1)
    live.advance(2)
    states = live.states_with(LiveUpdate(tv_scale=3.0))
    assert [(s.tv_scale, s.cfg_scale, s.eta) for s in states] == [(3.0, 1.0, None), (3.0, 1.0, 0.2)]
