"""SDXL through the studio's own denoiser, samplers, guidance and previews, on a tiny pipeline in
SDXL's real format (two text encoders, pooled embedding, size ids), checked against diffusers'
StableDiffusionXLPipeline with the same scheduler, steps, seed and noise."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest
import torch

from app.diffusion.families.sdxl import SDXLConditioner, SDXLContext
from app.diffusion.generate import DiffusionModels, StepInfo, generate, load_diffusion_models, preview_rgb, run_sigmas
from app.diffusion.guidance import clip_score, clip_target
from app.diffusion.noise import initial_noise
from app.diffusion.previews import full_decode
from app.params import DiffusionParams

SIZE = 32  # pixels; the tiny VAE is f=4, so 8x8 latents


@pytest.fixture(scope="module")
def sdxl_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from app.demo_models import build_tiny_sdxl

    return build_tiny_sdxl(tmp_path_factory.mktemp("tiny-sdxl"), seed=0, words=["red", "fox", "blurry", "snow"])


@pytest.fixture(scope="module")
def models(sdxl_dir: Path, tiny_clip_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> DiffusionModels:
    from app.clip.backend import load_clip

    clip = load_clip(str(tiny_clip_dir), torch.device("cpu"))
    return load_diffusion_models(str(sdxl_dir), torch.device("cpu"), torch.float32, clip=clip,
                                 cache_dir=tmp_path_factory.mktemp("cache"))


def params(**kw) -> DiffusionParams:
    base = {"prompt": "a red fox", "negative_prompt": "blurry", "seed": 7, "steps": 6, "width": SIZE, "height": SIZE,
            "sampler": "euler", "karras": False, "cfg_scale": 5.0, "cutn_overview": "[2]*1000", "cut_icgray_p": "[0]*1000"}
    return DiffusionParams(**(base | kw))


def run(models: DiffusionModels, p: DiffusionParams) -> tuple[torch.Tensor, list[StepInfo]]:
    steps: list[StepInfo] = []
    lv = p.live()
    return generate(models, p, live=lambda: lv, on_step=steps.append), steps


def diffusers_latent(sdxl_dir: Path, models: DiffusionModels, p: DiffusionParams, negative: str | None) -> torch.Tensor:
    """diffusers' own SDXL pipeline, Euler, started from our noise at our first sigma."""
    from diffusers import EulerDiscreteScheduler, StableDiffusionXLPipeline

    pipe = StableDiffusionXLPipeline.from_pretrained(sdxl_dir)
    pipe.scheduler = EulerDiscreteScheduler.from_config(pipe.scheduler.config)
    pipe.scheduler.set_timesteps(p.steps)
    ours = run_sigmas(models, p.steps, karras=False)
    assert torch.allclose(pipe.scheduler.sigmas.double(), ours.double(), rtol=1e-5), "not the same schedule"
    shape = (4, SIZE // 4, SIZE // 4)
    x0 = initial_noise([p.seed], shape, torch.device("cpu")) * float(ours[0])
    # its 'leading' Euler multiplies the start by init_noise_sigma = sqrt(sigma_max^2 + 1)
    start = x0 / pipe.scheduler.init_noise_sigma
    out = pipe(p.prompt, negative_prompt=negative, num_inference_steps=p.steps, guidance_scale=p.cfg_scale,
               width=SIZE, height=SIZE, latents=start, output_type="latent", return_dict=True)
    return out.images.float()


@pytest.mark.parametrize("negative", ["blurry", ""])
def test_matches_diffusers_sdxl_pipeline(models: DiffusionModels, sdxl_dir: Path, negative: str) -> None:
    """Same picture as StableDiffusionXLPipeline (both encoders' penultimate states, the pooled
    embedding and the size ids all reach the UNet as its pipeline gives them; an empty negative
    prompt is zeros there as here). Tolerance 1e-4 absolute on unit-scale latents: float32
    summation order is all that differs."""
    p = params(negative_prompt=negative)
    ours, steps = run(models, p)
    theirs = diffusers_latent(sdxl_dir, models, p, negative or None)
    assert ours.shape == theirs.shape == (1, 4, 8, 8)
    assert (ours - theirs).abs().max() < 1e-4, float((ours - theirs).abs().max())
    assert len(steps) == p.steps


def test_each_conditioning_part_reaches_the_unet(models: DiffusionModels) -> None:
    cond = models.conditioner([("a red fox", 1.0)], "blurry", SIZE, SIZE)
    assert isinstance(cond.cond, SDXLContext)
    assert cond.cond.states.shape == (1, 77, 32 + 48) and cond.cond.pooled.shape == (1, 32)
    assert cond.cond.time_ids.tolist() == [[SIZE, SIZE, 0, 0, SIZE, SIZE]]
    x = torch.randn(1, 4, 8, 8)
    sigma = torch.tensor([3.0])
    base = models.denoiser(x, sigma, cond.cond)
    for changed in (SDXLContext(cond.cond.states, cond.cond.pooled * 0, cond.cond.time_ids),
                    SDXLContext(cond.cond.states, cond.cond.pooled, cond.cond.time_ids * 2),
                    SDXLContext(cond.cond.states * 0, cond.cond.pooled, cond.cond.time_ids)):
        assert not torch.allclose(models.denoiser(x, sigma, changed), base, atol=1e-5)


def test_weighted_prompts_and_empty_negative(models: DiffusionModels) -> None:
    conditioner = models.conditioner
    assert isinstance(conditioner, SDXLConditioner)
    both = conditioner([("a red fox", 1.0), ("snow", -0.5)], "", SIZE, SIZE)
    assert both.weights == (1.0, -0.5) and both.cond.states.shape[0] == 2 and both.cond.pooled.shape[0] == 2
    assert not torch.equal(both.cond.pooled[0], both.cond.pooled[1])
    assert both.uncond.states.abs().max() == 0 and both.uncond.pooled.abs().max() == 0  # force_zeros_for_empty_prompt
    # a zero-weight part adds nothing: the same picture as the prompt alone
    a, _ = run(models, params(prompt="a red fox"))
    b, _ = run(models, params(prompt="a red fox:1 | snow:0"))
    assert (a - b).abs().max() < 1e-5
    c, _ = run(models, params(prompt="a red fox:1 | snow:-0.5"))
    assert (a - c).abs().max() > 1e-3


def test_previews_and_clip_guidance(models: DiffusionModels) -> None:
    latent, steps = run(models, params())
    fast = preview_rgb(models, steps[2].denoised)
    full = preview_rgb(models, steps[-1].denoised, full=True)
    assert fast.shape == (8, 8, 3) and fast.dtype == np.uint8 and full.shape == (SIZE, SIZE, 3)
    assert fast.std() > 0, "the fitted map shows something"
    target = clip_target(models.clip, [("a red fox", 1.0)])
    guided, gsteps = run(models, params(clip_guidance_scale=2000.0, cfg_scale=1.0, negative_prompt=""))
    plain, _ = run(models, params(clip_guidance_scale=0.0, cfg_scale=1.0, negative_prompt=""))
    assert not torch.equal(guided, plain)
    scores = [float(clip_score(models.clip, full_decode(models.vae, z), target)) for z in (plain, guided)]
    assert scores[1] > scores[0], scores
    assert gsteps[-1].clip_score is not None


def test_sdxl_runs_over_the_engine(sdxl_dir: Path, tiny_clip_dir: Path, tmp_path: Path) -> None:
    """The studio as `--diffusion-model <SDXL folder>` starts it: load, calibrate, queue, stream
    previews, decode, store in the gallery."""
    from app.engine.studio import Studio
    from app.registry import load_models
    from app.settings import Settings
    from app.store.gallery import Gallery

    settings = Settings(diffusion_model=str(sdxl_dir), clip_model=str(tiny_clip_dir), gan_model="", device="cpu",
                        data_dir=tmp_path, max_job_seconds=1e9)
    studio = Studio(settings, load_models(settings), Gallery(tmp_path / "gallery"))

    class Sink:
        def __init__(self) -> None:
            self.events: list[dict] = []
            self.kinds: list[str] = []
            self.done = threading.Event()

        def send(self, event: dict) -> None:
            self.events.append(event)
            if event["type"] in ("done", "error", "cancelled"):
                self.done.set()

        def image(self, meta: dict, data: bytes, kind: str) -> None:
            self.kinds.append(kind)

    sink = Sink()
    studio.start()
    try:
        studio.generate(params(steps=4), sink, "page", "page")
        assert sink.done.wait(120)
        final = sink.events[-1]
        assert final["type"] == "done", final
        assert [e["index"] for e in sink.events if e["type"] == "step"] == [1, 2, 3, 4]
        assert len(sink.kinds) >= 4, sink.kinds  # a preview each step and the final image
        assert studio.gallery.get(final["image_id"]) is not None
    finally:
        studio.stop()
        studio.gallery.close()


def test_fp16_keeps_sdxls_vae_in_fp32(sdxl_dir: Path, tmp_path: Path) -> None:
    """SDXL's VAE overflows in fp16 (`force_upcast` in its config): with an fp16 UNet it stays fp32."""
    half = load_diffusion_models(str(sdxl_dir), torch.device("cpu"), torch.float16, cache_dir=tmp_path)
    assert next(half.unet.parameters()).dtype == torch.float16
    assert next(half.vae.parameters()).dtype == torch.float32
    assert all(next(m.parameters()).dtype == torch.float16 for m in half.conditioner.modules)
