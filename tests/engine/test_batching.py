"""Step-level batching (app.engine.batcher) on the tiny real-format models: runs stepped together give
the images they give alone, every run steps once per tick, runs join and leave at any step."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from app.diffusion.denoiser import unet_batch
from app.diffusion.generate import DiffusionModels, generate, load_diffusion_models, sample_steps
from app.diffusion.previews import full_decode
from app.engine.batcher import Batcher, row_chunks
from app.engine.jobs import Job
from app.engine.live import LiveState, RunCancelled
from app.params import DiffusionParams, LiveUpdate
from tests.engine.test_engine_parts import ListSink

TOLERANCE = 1e-4  # max abs difference of the final image in [-1, 1], batched vs alone


@pytest.fixture(scope="module")
def models(tiny_diffusion_dir: Path, tiny_clip_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> DiffusionModels:
    from app.clip.backend import load_clip

    clip = load_clip(str(tiny_clip_dir), torch.device("cpu"))
    return load_diffusion_models(str(tiny_diffusion_dir), torch.device("cpu"), torch.float32, clip=clip,
                                 cache_dir=tmp_path_factory.mktemp("cache"))


def params(**kw) -> DiffusionParams:
    base = {"prompt": "a red fox", "seed": 5, "steps": 6, "width": 32, "height": 32,
            "cutn_overview": "[2]*1000", "cut_icgray_p": "[0]*1000", "clip_guidance_scale": 0.0}
    return DiffusionParams(**(base | kw))


class StepsRun:
    """A `SteppedRun` over `sample_steps` without the gallery: records its steps and its final latent."""

    def __init__(self, models: DiffusionModels, name: str, p: DiffusionParams, log: list[str], **kw) -> None:
        self.live = LiveState(p.live(), p.schedule)
        self.job = Job("diffusion", p, ListSink(), name, name, live=self.live)
        self.name, self.log = name, log
        self.network = models.denoiser
        self.steps = sample_steps(models, p, live=self.live.params, on_step=self._on_step,
                                  on_boundary=self.live.advance, check=self.live.check, **kw)
        self.request = None
        self.result: torch.Tensor | None = None
        self.ended: str | None = None

    def _on_step(self, info) -> None:
        self.live.check()
        self.log.append(self.name)

    def _go(self, step) -> bool:
        try:
            with torch.no_grad():
                self.request = step()
            return False
        except StopIteration as done:
            self.result, self.ended = done.value, "done"
        except RunCancelled:
            self.ended = "cancelled"
        return True

    def start(self) -> bool:
        return self._go(lambda: next(self.steps))

    def send(self, out) -> bool:
        return self._go(lambda: self.steps.send(out))

    def cancelled(self) -> None:
        self.steps.close()
        self.ended = "cancelled"

    def cancelled_by_error(self) -> None:
        self.steps.close()
        self.ended = "error"


def alone(models: DiffusionModels, p: DiffusionParams, **kw) -> torch.Tensor:
    live = LiveState(p.live(), p.schedule)
    return generate(models, p, live=live.params, on_step=lambda info: None, on_boundary=live.advance, **kw)


def image(models: DiffusionModels, latent: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return full_decode(models.vae, latent) * 2 - 1


def batcher_for(models: DiffusionModels, runs: dict[str, StepsRun], max_rows: int = 32) -> Batcher:
    return Batcher(lambda job: runs[job.client_id], unet_batch, max_rows)


def test_batched_runs_give_the_images_they_give_alone(models: DiffusionModels) -> None:
    cases = {
        "a": params(sampler="euler_a", seed=1, cfg_scale=7.5),
        "b": params(sampler="dpmpp_2m", seed=2, prompt="a red fox:1 | blurry:-0.5", cfg_scale=3.0),  # 3 branches
        "c": params(sampler="ddim", eta=0.5, seed=3, cfg_scale=0.0, prompt="a blue boat"),  # 1 branch, joins late
        "d": params(sampler="euler", seed=4, tv_scale=50.0),  # guided: steps itself, unbatched
        "e": params(sampler="ddpm", seed=5, karras=True, steps=9),  # a longer run, karras sigmas
        "f": params(sampler="euler_a", seed=6, width=48, height=32),  # another latent shape: its own group
    }
    log: list[str] = []
    runs = {name: StepsRun(models, name, p, log) for name, p in cases.items()}
    batcher = batcher_for(models, runs)
    for name in "abdef":
        assert batcher.add(runs[name].job)
    ticks = 0
    while batcher.runs:
        batcher.tick()
        ticks += 1
        if ticks == 2:
            assert batcher.add(runs["c"].job)  # joins at step 2 of the others
    assert all(run.ended == "done" for run in runs.values())
    # a, b, c, e share one call per tick, f has its own, d none: far fewer calls than steps
    assert batcher.calls <= 2 * ticks < sum(p.steps for p in cases.values())
    exact = []
    for name, p in cases.items():
        mine, solo = image(models, runs[name].result), image(models, alone(models, p))
        assert (mine - solo).abs().max().item() <= TOLERANCE, name
        exact.append(torch.equal(runs[name].result, alone(models, p)))
    assert exact[3], "a guided run steps alone, so it is bit-exact"


def test_every_run_steps_once_per_tick_and_a_cancel_leaves_at_the_next_step(models: DiffusionModels) -> None:
    log: list[str] = []
    runs = {name: StepsRun(models, name, params(seed=i, steps=5), log) for i, name in enumerate("xyz")}
    batcher = batcher_for(models, runs, max_rows=4)  # 3 runs x 2 CFG branches: two network calls per tick
    for run in runs.values():
        batcher.add(run.job)
    batcher.tick()
    assert sorted(log) == ["x", "y", "z"]
    log.clear()
    runs["y"].live.cancel()
    ended = batcher.tick()
    assert [job.client_id for job in ended] == ["y"] and runs["y"].ended == "cancelled"
    assert sorted(log) == ["x", "z"]  # the others still took their step
    while batcher.runs:
        log.clear()
        batcher.tick()
        assert sorted(log) == sorted(run.name for run in runs.values() if run.ended != "cancelled")
    assert runs["x"].ended == runs["z"].ended == "done"
    solo = alone(models, params(seed=2, steps=5))
    assert (image(models, runs["z"].result) - image(models, solo)).abs().max().item() <= TOLERANCE


def test_a_live_update_changes_only_its_own_run(models: DiffusionModels) -> None:
    log: list[str] = []
    runs = {"p": StepsRun(models, "p", params(seed=7), log), "q": StepsRun(models, "q", params(seed=8), log)}
    batcher = batcher_for(models, runs)
    for run in runs.values():
        batcher.add(run.job)
    for tick in range(6):
        if tick == 2:
            runs["p"].live.update(LiveUpdate(cfg_scale=30.0))
        batcher.tick()
    schedule = runs["p"].live.schedule()
    assert schedule, "the change was recorded at the step it took effect"
    replay = params(seed=7, schedule=[e.model_dump() for e in schedule])
    mine = image(models, runs["p"].result)
    off = (mine - image(models, alone(models, replay))).abs().max().item()
    assert off <= TOLERANCE
    assert (mine - image(models, alone(models, params(seed=7)))).abs().max().item() > 10 * max(off, 1e-6)
    assert (image(models, runs["q"].result) - image(models, alone(models, params(seed=8)))).abs().max() <= TOLERANCE


def test_a_failing_network_call_ends_only_its_group(models: DiffusionModels) -> None:
    log: list[str] = []
    runs = {"s": StepsRun(models, "s", params(seed=1), log), "t": StepsRun(models, "t", params(seed=2, tv_scale=5.0), log)}

    def network(net, calls):
        raise RuntimeError("out of memory")

    batcher = Batcher(lambda job: runs[job.client_id], network, 32)
    for run in runs.values():
        batcher.add(run.job)
    assert [job.client_id for job in batcher.tick()] == ["s"]
    assert runs["s"].ended == "error" and runs["t"].ended is None  # the guided run steps itself
    while batcher.runs:
        batcher.tick()
    assert runs["t"].ended == "done"


def test_row_chunks_pack_calls_in_order() -> None:
    class R:
        def __init__(self, rows: int) -> None:
            self.request = type("C", (), {"rows": rows})()

    runs = [R(2), R(2), R(3), R(6), R(1)]
    assert [[r.request.rows for r in c] for c in row_chunks(runs, 4)] == [[2, 2], [3], [6], [1]]


def test_runs_of_two_models_in_one_batch_are_each_answered_by_their_own_network(
        models: DiffusionModels, tmp_path: Path) -> None:
    """A model swapped in while the old one's runs are in the batch (app.engine.switcher): calls of
    equal shape from the two models are never stacked into one network call."""
    from app.demo_models import build_tiny_diffusion

    other = load_diffusion_models(str(build_tiny_diffusion(tmp_path / "other", seed=1)), torch.device("cpu"),
                                  torch.float32, cache_dir=tmp_path / "cache")
    log: list[str] = []
    p = params(seed=3)
    runs = {"old": StepsRun(models, "old", p, log), "new": StepsRun(other, "new", p, log)}
    batcher = batcher_for(models, runs)
    for run in runs.values():
        assert batcher.add(run.job)
    ticks = 0
    while batcher.runs:
        batcher.tick()
        ticks += 1
    assert batcher.calls == 2 * ticks  # same shapes, two networks: two calls a tick
    for name, m in (("old", models), ("new", other)):
        assert (image(m, runs[name].result) - image(m, alone(m, p))).abs().max().item() <= TOLERANCE, name
