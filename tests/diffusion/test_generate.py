"""The orchestration on the tiny real-format models (a diffusers SD folder, a CLIPModel folder)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from PIL import Image

from app.diffusion.generate import (
    DiffusionModels,
    StepInfo,
    decode_to_pil,
    generate,
    load_diffusion_models,
    preview_rgb,
)
from app.diffusion.guidance import clip_score, clip_target
from app.diffusion.previews import full_decode
from app.engine.scores import image_scores
from app.params import DiffusionParams, LiveParams


@pytest.fixture(scope="module")
def models(tiny_diffusion_dir: Path, tiny_clip_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> DiffusionModels:
    from app.clip.backend import load_clip

    clip = load_clip(str(tiny_clip_dir), torch.device("cpu"))
    return load_diffusion_models(str(tiny_diffusion_dir), torch.device("cpu"), torch.float32, clip=clip,
                                 cache_dir=tmp_path_factory.mktemp("cache"))


def params(**kw) -> DiffusionParams:
    base = {"prompt": "a red fox:1 | blurry:-0.5", "seed": 5, "steps": 4, "width": 32, "height": 32,
            "cutn_overview": "[2]*1000", "cut_icgray_p": "[0]*1000"}
    return DiffusionParams(**(base | kw))


def live_of(p: DiffusionParams) -> LiveParams:
    return p.live()


def run(models: DiffusionModels, p: DiffusionParams, **kw) -> tuple[torch.Tensor, list[StepInfo]]:
    steps: list[StepInfo] = []
    lv = live_of(p)
    return generate(models, p, live=lambda: lv, on_step=steps.append, **kw), steps


@pytest.mark.parametrize("sampler,guide", [("euler_a", 200.0), ("dpmpp_2m", 0.0)])
def test_same_seed_bit_identical_and_rewind(models: DiffusionModels, sampler: str, guide: float) -> None:
    p = params(sampler=sampler, eta=0.8, clip_guidance_scale=guide)
    a, steps = run(models, p)
    b, _ = run(models, p)
    assert torch.equal(a, b)
    assert [s.index for s in steps] == [1, 2, 3, 4] and steps[-1].total == 4
    assert steps[-1].clip_score is not None  # the last step is always scored
    k = 2
    resumed, tail = run(models, p, start_step=k, start_latent=steps[k - 1].latent,
                        start_denoised=steps[k - 1].denoised)
    assert [s.index for s in tail] == [3, 4]
    assert torch.equal(resumed, a)
    other, _ = run(models, params(sampler=sampler, eta=0.8, steps=2, seed=6))
    mine, _ = run(models, params(sampler=sampler, eta=0.8, steps=2))
    assert not torch.equal(other, mine)


def test_clip_guidance_raises_clip_score(models: DiffusionModels) -> None:
    target = clip_target(models.clip, [("a red fox", 1.0)])
    scores = []
    for scale in (0.0, 2000.0):
        latent, _ = run(models, params(prompt="a red fox", sampler="euler", cfg_scale=1.0, clip_guidance_scale=scale))
        scores.append(float(clip_score(models.clip, full_decode(models.vae, latent), target)))
    assert scores[1] > scores[0] + 0.03


def test_live_cfg_scale_is_read_each_step(models: DiffusionModels) -> None:
    p = params(sampler="euler", cfg_scale=5.0)
    fixed, _ = run(models, p)
    lv = {"p": live_of(p)}

    def on_step(info: StepInfo) -> None:
        if info.index == 2:
            lv["p"] = lv["p"].model_copy(update={"cfg_scale": 0.0})

    changed = generate(models, p, live=lambda: lv["p"], on_step=on_step)
    assert not torch.equal(fixed, changed)


def test_cancel_by_raising(models: DiffusionModels) -> None:
    class Cancelled(Exception):
        pass

    def on_step(info: StepInfo) -> None:
        raise Cancelled

    with pytest.raises(Cancelled):
        generate(models, params(), live=lambda: live_of(params()), on_step=on_step)


def test_img2img_starts_at_skip_and_keeps_the_image(models: DiffusionModels) -> None:
    init = Image.new("RGB", (32, 32), (220, 30, 30))
    p = params(sampler="ddim", steps=6, skip_steps=4, cfg_scale=1.0)
    latent, steps = run(models, p, init_image=init)
    assert [s.index for s in steps] == [5, 6]
    assert steps[0].sigma < 1.0
    plain, _ = run(models, params(sampler="ddim", steps=2, cfg_scale=1.0))
    ref = models_encode(models, init)
    assert (latent - ref).abs().mean() < (plain - ref).abs().mean() / 2


def models_encode(models: DiffusionModels, image: Image.Image) -> torch.Tensor:
    from app.diffusion.generate import pil_to_tensor
    from app.diffusion.previews import encode

    return encode(models.vae, pil_to_tensor(image, 32, 32))


def test_batch_images_equal_single_runs(models: DiffusionModels) -> None:
    batch, _ = run(models, params(sampler="euler_a", eta=1.0, batch=2, cfg_scale=3.0))
    single, _ = run(models, params(sampler="euler_a", eta=1.0, seed=6, cfg_scale=3.0))
    torch.testing.assert_close(batch[1:], single, rtol=1e-4, atol=1e-4)
    assert len(decode_to_pil(models, batch)) == 2
    assert preview_rgb(models, batch).shape == (8, 16, 3)
    assert preview_rgb(models, batch, full=True).shape == (32, 64, 3)


def test_refusals(models: DiffusionModels) -> None:
    lv = live_of(params())
    with pytest.raises(ValueError):
        generate(models, params(), live=lambda: lv, on_step=lambda s: None, start_step=2)
    with pytest.raises(ValueError):
        generate(models, params(), live=lambda: lv, on_step=lambda s: None, start_step=2,
                 start_latent=torch.zeros(1, 4, 4, 4))


def test_clip_score_on_fully_decoded_steps(models: DiffusionModels) -> None:
    """One CLIP score: a step is scored on its VAE decode, so only steps that get one (preview steps that
    are also full-decode steps) and the last; the last step's score is the finished image's."""
    _, steps = run(models, params(steps=7, preview_every=3, full_decode_every=3))
    assert [s.index for s in steps if s.clip_score is not None] == [3, 6, 7]
    assert [s.index for s in steps if s.preview] == [3, 6, 7]  # the runner's previews follow preview_every
    latent, steps = run(models, params(steps=7, preview_every=1, full_decode_every=2))
    assert [s.index for s in steps if s.clip_score is not None] == [2, 4, 6, 7]
    image = decode_to_pil(models, latent)[0]
    assert steps[-1].clip_score == image_scores(models.clip, [image], params().prompt)[0]


def test_loader_reads_prediction_type_and_schedule(tmp_path: Path, models: DiffusionModels) -> None:
    from app.demo_models import build_tiny_diffusion

    assert models.prediction_type == "epsilon" and models.timestep_spacing == "leading" and models.steps_offset == 1
    folder = build_tiny_diffusion(tmp_path / "v", seed=1, prediction_type="v_prediction")
    vmodels = load_diffusion_models(str(folder), torch.device("cpu"), torch.float32, cache_dir=tmp_path / "cache")
    assert vmodels.prediction_type == "v_prediction" and vmodels.denoiser.prediction_type == "v_prediction"
    assert abs(float(vmodels.alphas_cumprod[0]) - (1 - 0.00085)) < 1e-6
    latent, steps = run(vmodels, params(karras=False))
    assert torch.isfinite(latent).all() and steps[0].clip_score is None
    assert 0.0 < steps[-1].sigma < steps[0].sigma


def test_trained_model_draws_its_prompt(tmp_path: Path) -> None:
    """The embedded trained pipeline and CLIP (models/), end to end through the real loader."""
    from app.clip.backend import load_clip

    root = Path(__file__).resolve().parents[2] / "models"
    if not (root / "diffusion" / "model_index.json").is_file() or not (root / "clip" / "config.json").is_file():
        pytest.skip("no trained models in models/")
    clip = load_clip(str(root / "clip"), torch.device("cpu"))
    trained = load_diffusion_models(str(root / "diffusion"), torch.device("cpu"), torch.float32, clip=clip,
                                    cache_dir=tmp_path)
    p = DiffusionParams(prompt="a red fox", seed=1, steps=20, sampler="dpmpp_2m", width=64, height=64, cfg_scale=5.0)
    latent, steps = run(trained, p)
    image = decode_to_pil(trained, latent)[0]
    assert image_scores(clip, [image], "a red fox")[0] > 0.6
    scored = [s.clip_score for s in steps if s.clip_score is not None]
    assert len(scored) == 2 and scored[-1] > scored[0]  # steps 10 and 20 (full_decode_every 10)


def test_sampler_eta_defaults() -> None:
    from app.diffusion.generate import sampler_eta

    assert sampler_eta("euler_a", None) == 1.0
    assert sampler_eta("ddim", None) == 0.0
    assert sampler_eta("euler_a", 0.25) == 0.25


@pytest.mark.parametrize("where", ["clip", "tv", "last_term"])
def test_cancel_inside_one_guided_step(models: DiffusionModels, monkeypatch: pytest.MonkeyPatch, where: str) -> None:
    """A cancel requested in the middle of a guided step is honoured at the next check inside that
    step: the next CLIP batch / loss term / backward part is never computed and no step completes."""
    from app.diffusion import guidance
    from app.engine.live import LiveState, RunCancelled

    p = params(clip_guidance_scale=1000.0, cutn_overview=f"[{2 * guidance.CUT_BATCH + 3}]*1000", tv_scale=1.0,
               range_scale=1.0, sat_scale=1.0, cfg_scale=1.0)
    state = LiveState(p.live())
    calls: list[str] = []

    def hooked(name: str, fn, cancel_here: bool):
        def wrapper(*args, **kwargs):
            calls.append(name)
            if cancel_here:
                state.cancel()  # what a `cancel` message does from the event loop
            return fn(*args, **kwargs)
        return wrapper

    monkeypatch.setattr(models.clip, "encode_image", hooked("clip", models.clip.encode_image, where == "clip"))
    for name, fn in (("tv", guidance.tv_loss), ("range", guidance.range_loss), ("sat", guidance.sat_loss)):
        cancel_here = where == name or (where == "last_term" and name == "sat")
        monkeypatch.setattr(guidance, f"{name}_loss", hooked(name, fn, cancel_here))
    reported: list[StepInfo] = []
    with pytest.raises(RunCancelled):
        generate(models, p, live=state.params, on_step=reported.append, check=state.check)
    assert reported == [], "the first step must not finish"
    expected = {"clip": ["clip"], "tv": ["clip"] * 3 + ["tv"], "last_term": ["clip"] * 3 + ["tv", "range", "sat"]}
    assert calls == expected[where]  # (last_term: stopped in the backward pass, before the decoder's gradient)


def test_guided_runs_unchanged_by_the_checks(models: DiffusionModels) -> None:
    p = params(clip_guidance_scale=1000.0, cutn_overview="[3]*1000", tv_scale=1.0, steps=3)
    checks: list[int] = []
    a, _ = run(models, p)
    b, _ = run(models, p, check=lambda: checks.append(1))
    assert torch.equal(a, b) and len(checks) >= 3 * 5
