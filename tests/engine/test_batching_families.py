"""Step-level batching beyond SD's UNets: runs of a flow-matching model (tiny SD3 / FLUX.1-dev folders)
and runs of the diffusion upscaler (tiny StableDiffusionUpscalePipeline) stepped together give the
images they give alone, with one network call per tick for the runs that can share it."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from PIL import Image

from app.diffusion.generate import DiffusionModels, load_diffusion_models
from app.engine.batcher import Batcher
from app.params import DiffusionParams
from tests.engine.test_batching import TOLERANCE, StepsRun, alone, batcher_for, image

CPU = torch.device("cpu")


@pytest.fixture(autouse=True)
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def sd3(tmp_path_factory: pytest.TempPathFactory, tiny_clip_dir: Path) -> DiffusionModels:
    from app.clip.backend import load_clip
    from app.demo_flow_models import build_tiny_sd3

    folder = build_tiny_sd3(tmp_path_factory.mktemp("sd3"), seed=0)
    return load_diffusion_models(str(folder), CPU, torch.float32, clip=load_clip(str(tiny_clip_dir), CPU),
                                 cache_dir=tmp_path_factory.mktemp("cache"))


@pytest.fixture(scope="module")
def flux(tmp_path_factory: pytest.TempPathFactory) -> DiffusionModels:
    from app.demo_flow_models import build_tiny_flux

    return load_diffusion_models(str(build_tiny_flux(tmp_path_factory.mktemp("flux"), seed=0)), CPU, torch.float32,
                                 cache_dir=tmp_path_factory.mktemp("cache"))


@pytest.fixture(scope="module")
def upscaler(tmp_path_factory: pytest.TempPathFactory) -> DiffusionModels:
    from app.demo_models import build_tiny_upscalers
    from app.upscale.diffusion import load_upscaler_models

    _, folder = build_tiny_upscalers(tmp_path_factory.mktemp("upscalers"))
    return load_upscaler_models(folder, CPU, torch.float32, tmp_path_factory.mktemp("cache"))


def params(**kw) -> DiffusionParams:
    base = {"prompt": "a red fox", "seed": 5, "steps": 5, "width": 32, "height": 32, "sampler": "euler",
            "cfg_scale": 4.0, "cutn_overview": "[2]*1000", "cut_icgray_p": "[0]*1000", "clip_guidance_scale": 0.0}
    return DiffusionParams(**(base | kw))


def step_together(batcher: Batcher, runs: dict[str, StepsRun]) -> int:
    for run in runs.values():
        assert batcher.add(run.job)
    ticks = 0
    while batcher.runs:
        batcher.tick()
        ticks += 1
    assert all(run.ended == "done" for run in runs.values())
    return ticks


def assert_as_alone(models: DiffusionModels, runs: dict[str, StepsRun], cases: dict, **kw) -> None:
    for name, p in cases.items():
        off = (image(models, runs[name].result) - image(models, alone(models, p, **kw.get(name, {})))).abs().max()
        assert off.item() <= TOLERANCE, name


def test_sd3_runs_batched_give_the_images_they_give_alone(sd3: DiffusionModels) -> None:
    cases = {
        "a": params(seed=1, sampler="euler"),
        "b": params(seed=2, sampler="dpmpp_2m", prompt="a red fox:1 | blurry:-0.5", cfg_scale=3.0),  # 3 branches
        "c": params(seed=3, sampler="euler_a", cfg_scale=0.0, prompt="a blue boat"),  # one branch
        "d": params(seed=4, sampler="ddim", eta=0.5, negative_prompt="grey", batch=2),  # two images
        "e": params(seed=5, tv_scale=50.0),  # CLIP-guided: steps itself, unbatched
    }
    log: list[str] = []
    runs = {name: StepsRun(sd3, name, p, log) for name, p in cases.items()}
    batcher = batcher_for(sd3, runs)
    ticks = step_together(batcher, runs)
    assert ticks == 5 and batcher.calls == ticks, "a-d share one transformer call a tick, e none"
    assert_as_alone(sd3, runs, cases)
    assert torch.equal(runs["e"].result, alone(sd3, cases["e"])), "the guided run steps alone: bit-exact"


def test_flux_runs_with_different_guidance_batch_into_one_call(flux: DiffusionModels) -> None:
    """FLUX.1-dev's distilled guidance (the live cfg_scale) is an input per row, so runs with
    different guidance share a call; so do weighted prompts' branches."""
    cases = {
        "a": params(seed=1, cfg_scale=2.0),
        "b": params(seed=2, cfg_scale=6.5, sampler="euler_a", prompt="a green tree"),
        "c": params(seed=3, cfg_scale=3.5, sampler="dpmpp_2m", prompt="a red fox:1 | blurry:-0.5", steps=7),
        "d": params(seed=4, cfg_scale=1.0, sampler="ddpm", batch=2),
    }
    log: list[str] = []
    runs = {name: StepsRun(flux, name, p, log) for name, p in cases.items()}
    batcher = batcher_for(flux, runs)
    ticks = step_together(batcher, runs)
    assert batcher.calls == ticks == 7 < sum(p.steps for p in cases.values())
    assert_as_alone(flux, runs, cases)


def test_upscale_runs_batch_with_each_other(upscaler: DiffusionModels) -> None:
    """The low-resolution image (concat) and the noise level (class_labels) travel per row."""
    lows = [Image.new("RGB", (16, 16), colour) for colour in ((200, 40, 40), (20, 90, 220), (240, 240, 30))]
    base = {"upscale": True, "init_image": "x", "width": 64, "height": 64, "steps": 4}
    cases = {
        "a": params(**base, seed=1, noise_level=20, prompt="emoji"),
        "b": params(**base, seed=2, noise_level=60, sampler="euler_a", cfg_scale=7.0, prompt="emoji"),
        "c": params(**base, seed=3, noise_level=0, sampler="dpmpp_2m", cfg_scale=0.0, prompt="a face"),
    }
    inputs = {name: {"init_image": low} for name, low in zip(cases, lows)}
    log: list[str] = []
    runs = {name: StepsRun(upscaler, name, p, log, **inputs[name]) for name, p in cases.items()}
    batcher = batcher_for(upscaler, runs)
    ticks = step_together(batcher, runs)
    assert batcher.calls == ticks == 4
    assert_as_alone(upscaler, runs, cases, **inputs)
