"""SD3- and FLUX-shaped tiny pipelines (real diffusers folders) through the studio's loader, samplers and
guidance, against diffusers' own StableDiffusion3Pipeline / FluxPipeline with FlowMatchEulerDiscreteScheduler."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from PIL import Image

from app.diffusion.flux import pack_latents, unpack_latents
from app.diffusion.generate import DiffusionModels, StepInfo, decode_to_pil, family_of, generate, load_diffusion_models
from app.diffusion.noise import initial_noise
from app.params import DiffusionParams

# float32 on the CPU: the same maths in a different order (our D = x - t v, then Euler's (x - D) / t)
TOLERANCE = {"rtol": 1e-4, "atol": 1e-4}
CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(scope="module")
def sd3(tmp_path_factory: pytest.TempPathFactory, tiny_clip_dir: Path, cache: Path) -> DiffusionModels:
    from app.clip.backend import load_clip
    from app.demo_flow_models import build_tiny_sd3

    folder = build_tiny_sd3(tmp_path_factory.mktemp("sd3"), seed=0)
    return load_diffusion_models(str(folder), CPU, torch.float32, clip=load_clip(str(tiny_clip_dir), CPU),
                                 cache_dir=cache)


@pytest.fixture(scope="module")
def flux(tmp_path_factory: pytest.TempPathFactory, cache: Path) -> DiffusionModels:
    from app.demo_flow_models import build_tiny_flux

    return load_diffusion_models(str(build_tiny_flux(tmp_path_factory.mktemp("flux"), seed=0)), CPU, torch.float32,
                                 cache_dir=cache)


def params(**kw) -> DiffusionParams:
    base = {"prompt": "a red fox", "seed": 3, "steps": 5, "width": 32, "height": 32, "sampler": "euler",
            "cfg_scale": 4.0, "cutn_overview": "[2]*1000", "cut_icgray_p": "[0]*1000"}
    return DiffusionParams(**(base | kw))


def run(models: DiffusionModels, p: DiffusionParams, **kw) -> tuple[torch.Tensor, list[StepInfo]]:
    steps: list[StepInfo] = []
    lv = p.live()
    return generate(models, p, live=lambda: lv, on_step=steps.append, **kw), steps


def noise_of(models: DiffusionModels, p: DiffusionParams) -> torch.Tensor:
    shape = (models.latent_channels, p.height // models.vae_scale, p.width // models.vae_scale)
    return initial_noise([p.seed + j for j in range(p.batch)], shape)


def sd3_pipeline(models: DiffusionModels):
    from diffusers import StableDiffusion3Pipeline

    kind = models.family.kind
    return StableDiffusion3Pipeline(transformer=kind.transformer, scheduler=_scheduler(models), vae=models.vae,
                                    text_encoder=kind.text_encoder, tokenizer=kind.tokenizer,
                                    text_encoder_2=kind.text_encoder_2, tokenizer_2=kind.tokenizer_2,
                                    text_encoder_3=kind.text_encoder_3, tokenizer_3=kind.tokenizer_3)


def flux_pipeline(models: DiffusionModels):
    from diffusers import FluxPipeline

    kind = models.family.kind
    return FluxPipeline(transformer=kind.transformer, scheduler=_scheduler(models), vae=models.vae,
                        text_encoder=kind.text_encoder, tokenizer=kind.tokenizer, text_encoder_2=kind.text_encoder_2,
                        tokenizer_2=kind.tokenizer_2)


def _scheduler(models: DiffusionModels):
    from dataclasses import asdict

    from diffusers import FlowMatchEulerDiscreteScheduler

    return FlowMatchEulerDiscreteScheduler(**asdict(models.family.schedule))


def test_loader_picks_the_flow_family_from_model_index(sd3: DiffusionModels, flux: DiffusionModels) -> None:
    from app.diffusion.flow_family import FlowFamily
    from app.diffusion.flux import Flux
    from app.diffusion.sd3 import SD3

    assert isinstance(sd3.family, FlowFamily) and isinstance(sd3.family.kind, SD3)
    assert isinstance(flux.family, FlowFamily) and isinstance(flux.family.kind, Flux)
    assert sd3.family.schedule.shift == 3.0 and flux.family.schedule.use_dynamic_shifting
    assert sd3.latent_channels == flux.latent_channels == 4 and sd3.vae_scale == 2


@pytest.mark.parametrize("negative,cfg", [("blurry", 4.0), ("", 1.0)])
def test_sd3_matches_diffusers_pipeline(sd3: DiffusionModels, negative: str, cfg: float) -> None:
    p = params(negative_prompt=negative, cfg_scale=cfg, steps=6)
    ours, steps = run(sd3, p)
    theirs = sd3_pipeline(sd3)(p.prompt, negative_prompt=negative, guidance_scale=cfg, num_inference_steps=p.steps,
                               height=p.height, width=p.width, latents=noise_of(sd3, p), output_type="latent").images
    torch.testing.assert_close(ours, theirs, **TOLERANCE)
    assert steps[0].sigma == 1.0 and [s.index for s in steps] == list(range(1, 7))


def test_flux_dev_matches_diffusers_pipeline_with_distilled_guidance(flux: DiffusionModels) -> None:
    p = params(cfg_scale=3.5, steps=4, width=48, height=32)
    ours, _ = run(flux, p)
    theirs = flux_pipeline(flux)(p.prompt, guidance_scale=3.5, num_inference_steps=p.steps, height=p.height,
                                 width=p.width, latents=pack_latents(noise_of(flux, p)), output_type="latent").images
    torch.testing.assert_close(ours, unpack_latents(theirs, 16, 24), **TOLERANCE)
    other, _ = run(flux, p.model_copy(update={"cfg_scale": 1.0}))
    assert not torch.allclose(other, ours, atol=1e-3)  # the guidance input is read
    weighted, _ = run(flux, p.model_copy(update={"prompt": "a red fox:1 | blurry:-0.5"}))
    assert torch.isfinite(weighted).all() and not torch.allclose(weighted, ours, atol=1e-3)


def test_flux_without_guidance_input_takes_true_cfg(tmp_path: Path) -> None:
    from app.demo_flow_models import build_tiny_flux

    schnell = load_diffusion_models(str(build_tiny_flux(tmp_path / "schnell", seed=1, guidance_embeds=False)), CPU,
                                    torch.float32, cache_dir=tmp_path / "cache")
    assert not schnell.family.kind.distilled_guidance
    p = params(cfg_scale=3.0, negative_prompt="blurry", steps=3)
    ours, _ = run(schnell, p)
    theirs = flux_pipeline(schnell)(p.prompt, negative_prompt="blurry", true_cfg_scale=3.0, num_inference_steps=3,
                                    height=32, width=32, latents=pack_latents(noise_of(schnell, p)),
                                    output_type="latent").images
    torch.testing.assert_close(ours, unpack_latents(theirs, 16, 16), **TOLERANCE)


def test_x0_preview_is_x_minus_t_v(sd3: DiffusionModels) -> None:
    """Step 1's denoised is x_1 - 1 * v_hat (unguided here); the last x0 estimate is near the result."""
    p = params(cfg_scale=1.0, steps=4)
    latent, steps = run(sd3, p)
    kind = sd3.family.kind
    tokens, pooled = kind.encode([p.prompt])
    x = noise_of(sd3, p)
    v = kind.transformer(hidden_states=x, timestep=torch.full((1,), 1000.0), encoder_hidden_states=tokens,
                         pooled_projections=pooled).sample
    torch.testing.assert_close(steps[0].denoised, x - v, **TOLERANCE)
    assert torch.equal(steps[-1].latent, latent) and torch.equal(steps[-1].denoised, latent)  # t' = 0: x = D


@pytest.mark.parametrize("which", ["sd3", "flux"])
def test_live_cfg_changes_from_the_next_step(which: str, request: pytest.FixtureRequest) -> None:
    models = request.getfixturevalue(which)
    p = params(steps=4)
    fixed, fixed_steps = run(models, p)
    lv = {"p": p.live()}

    def on_step(info: StepInfo) -> None:
        if info.index == 2:
            lv["p"] = lv["p"].model_copy(update={"cfg_scale": 1.0})

    changed_steps: list[StepInfo] = []
    changed = generate(models, p, live=lambda: lv["p"], on_step=lambda s: (changed_steps.append(s), on_step(s)))
    assert not torch.equal(fixed, changed)
    assert torch.equal(fixed_steps[1].latent, changed_steps[1].latent)  # steps 1-2 unchanged


@pytest.mark.parametrize("which,sampler", [("sd3", "dpmpp_2m"), ("sd3", "euler_a"), ("flux", "ddpm"),
                                           ("flux", "ddim")])
def test_same_seed_identical_and_rewind_bit_exact(which: str, sampler: str, request: pytest.FixtureRequest) -> None:
    models = request.getfixturevalue(which)
    p = params(sampler=sampler, eta=0.7, steps=5)
    a, steps = run(models, p)
    b, _ = run(models, p)
    assert torch.equal(a, b)
    k = 2
    resumed, tail = run(models, p, start_step=k, start_latent=steps[k - 1].latent,
                        start_denoised=steps[k - 1].denoised)
    assert [s.index for s in tail] == [3, 4, 5] and torch.equal(resumed, a)


def test_karras_does_not_apply(sd3: DiffusionModels) -> None:
    a, _ = run(sd3, params(karras=True, steps=3))
    b, _ = run(sd3, params(karras=False, steps=3))
    assert torch.equal(a, b)


def test_clip_guidance_through_the_flow_wrapper(sd3: DiffusionModels) -> None:
    from app.diffusion.guidance import clip_score, clip_target
    from app.diffusion.previews import full_decode

    target = clip_target(sd3.clip, [("a red fox", 1.0)])
    scores = []
    for scale in (0.0, 3000.0):
        latent, steps = run(sd3, params(cfg_scale=1.0, clip_guidance_scale=scale, steps=4))
        assert torch.isfinite(latent).all()
        scores.append(float(clip_score(sd3.clip, full_decode(sd3.vae, latent), target)))
    assert scores[1] > scores[0] + 0.02, scores


def test_img2img_and_inpainting(flux: DiffusionModels) -> None:
    from app.diffusion.generate import pil_to_tensor
    from app.diffusion.previews import encode

    init = Image.new("RGB", (32, 32), (220, 30, 30))
    known = encode(flux.vae, pil_to_tensor(init, 32, 32))
    latent, steps = run(flux, params(steps=6, skip_steps=4), init_image=init)
    assert [s.index for s in steps] == [5, 6] and steps[0].sigma < 1.0
    plain, _ = run(flux, params(steps=2))
    assert (latent - known).abs().mean() < (plain - known).abs().mean() / 2
    mask = Image.new("L", (32, 32), 0)
    mask.paste(255, (0, 0, 16, 32))  # re-generate the left half
    painted, _ = run(flux, params(steps=4), init_image=init, mask=mask)
    torch.testing.assert_close(painted[..., 8:], known[..., 8:], rtol=0, atol=0)


def test_sizes_previews_and_calibration(sd3: DiffusionModels, flux: DiffusionModels) -> None:
    from app.diffusion.generate import preview_rgb
    from app.engine.calibrate import calibrate

    sizes = family_of(sd3).sizes(512 * 512)
    assert sizes.grid == sizes.step == 4 and sizes.native == 32  # VAE scale 2 x patch 2; sample_size 16 x 2
    assert sizes.problem("width", 34) is not None and sizes.problem("width", 36) is None
    assert family_of(flux).sizes(512 * 512).grid == 4
    latent, steps = run(sd3, params(batch=2, steps=2))
    assert preview_rgb(sd3, steps[0].denoised).shape == (16, 32, 3)
    assert preview_rgb(sd3, latent, full=True).shape == (32, 64, 3)
    assert [im.size for im in decode_to_pil(sd3, latent)] == [(32, 32)] * 2
    from app.engine.budget import estimate

    cal = calibrate(flux)
    assert cal.latent_channels == 4 and cal.unet_s_per_px > 0 and cal.distilled_guidance
    assert not calibrate(sd3).distilled_guidance
    p = params(cfg_scale=3.5)  # FLUX.1-dev: one pass per step whatever the scale, as with CFG off
    assert estimate(p, cal, has_clip=False).seconds == estimate(p.model_copy(update={"cfg_scale": 1.0}), cal,
                                                                has_clip=False).seconds


def test_hub_id_offline_with_an_empty_cache_names_the_id(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The one loader (app.diffusion.generate.load_diffusion_models) reads every pipeline class, flow
    families' included, through families.pipeline_class_name."""
    from app.diffusion.generate import load_diffusion_models

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    with pytest.raises(FileNotFoundError, match="someone/not-cached"):
        load_diffusion_models("someone/not-cached", torch.device("cpu"), torch.float32)
