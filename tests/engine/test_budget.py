"""The compute budget's arithmetic (app.engine.budget) on a made-up calibration (the start-up
calibration and the refusals over the websocket: tests/api/test_budget_api.py)."""

from __future__ import annotations

import pytest

from app.engine.budget import BudgetError, Calibration, branches, check, estimate, meminfo_available
from app.params import DiffusionParams, LiveParams

CAL = Calibration(unet_s_per_px=1e-3, decode_s_per_px=1e-5, clip_s_per_image=1e-2, unet_bytes_per_px=8000.0,
                  decode_bytes_per_px=2000.0, clip_bytes_per_image=50000.0, unet_peak_bytes_per_px=256.0,
                  decode_peak_bytes_per_px=64.0, latent_channels=4, vae_scale=8)


def params(**kw) -> DiffusionParams:
    base = {"prompt": "a fox", "steps": 20, "width": 64, "height": 64, "cfg_scale": 5.0, "preview_every": 1000,
            "full_decode_every": 1000}
    return DiffusionParams(**{**base, **kw})


def unet_seconds(**kw) -> float:
    return estimate(params(**kw), CAL, has_clip=True).parts["unet"]


def test_unet_cost_is_pixels_times_batch_times_steps_times_cfg_passes() -> None:
    one = unet_seconds()
    assert one == pytest.approx(1e-3 * 64 * 20 * 2)  # 8x8 latent, 20 steps, CFG on: 2 passes
    assert unet_seconds(steps=40) == pytest.approx(2 * one)
    assert unet_seconds(width=128) == pytest.approx(2 * one)
    assert unet_seconds(batch=3) == pytest.approx(3 * one)
    assert unet_seconds(cfg_scale=0.0) == pytest.approx(one / 2)
    assert unet_seconds(cfg_scale=1.0) == pytest.approx(one / 2)
    assert unet_seconds(prompt="a fox:1 | a cat:1") == pytest.approx(1.5 * one)  # 3 branches
    assert unet_seconds(skip_steps=10) == pytest.approx(one / 2)
    assert estimate(params(), CAL, has_clip=True, first=15).parts["unet"] == pytest.approx(one / 4)


def test_a_fixed_cost_per_call_counts_once_per_step() -> None:
    from dataclasses import replace

    fixed = replace(CAL, unet_s_fixed=0.5, decode_s_fixed=0.25)
    for kw in ({}, {"batch": 3}, {"width": 128}):
        extra = estimate(params(**kw), fixed, has_clip=True).parts["unet"] - unet_seconds(**kw)
        assert extra == pytest.approx(0.5 * 20)  # one call a step, whatever the batch and size


def test_branches_follow_the_cfg_denoiser() -> None:
    assert branches("a fox", 0.0) == 1
    assert branches("a fox", 1.0) == 1
    assert branches("a fox:2", 1.0) == 2
    assert branches("a fox", 7.5) == 2
    assert branches("a fox | blurry:-1", 7.5) == 3


def test_guidance_terms_add_backward_decode_and_cutouts() -> None:
    plain = estimate(params(), CAL, has_clip=True)
    assert plain.parts["guidance"] == 0 and plain.parts["cutouts"] == 0
    tv = estimate(params(tv_scale=1.0), CAL, has_clip=True)
    assert tv.parts["cutouts"] == 0
    assert tv.parts["guidance"] == pytest.approx(20 * (2 * plain.parts["unet"] / 20 + 3 * 1e-5 * 64 * 64))
    assert tv.peak_bytes > plain.peak_bytes
    clip = estimate(params(clip_guidance_scale=1000.0, cutn_overview="[8]*500+[0]*500"), CAL, has_clip=True)
    assert clip.parts["cutouts"] == pytest.approx(3 * 1e-2 * 8 * 10)  # 8 cutouts on the first half of 20 steps
    more = estimate(params(clip_guidance_scale=1000.0, cutn_overview="[8]*1000", cutn_inner="[8]*1000"), CAL,
                    has_clip=True)
    assert more.parts["cutouts"] == pytest.approx(4 * clip.parts["cutouts"])
    assert more.peak_bytes > clip.peak_bytes
    no_clip = estimate(params(clip_guidance_scale=1000.0), CAL, has_clip=False)
    assert no_clip.seconds == pytest.approx(plain.seconds)  # no CLIP loaded: guidance is off


def test_previews_cost_a_score_and_full_decodes() -> None:
    few = estimate(params(), CAL, has_clip=True).parts["previews"]
    every = estimate(params(preview_every=1, full_decode_every=5), CAL, has_clip=True).parts["previews"]
    assert every == pytest.approx(few + 19 * 1e-2 + 4 * 1e-5 * 64 * 64)


def test_over_budget_says_the_estimate_the_budget_and_what_to_lower() -> None:
    p = params(steps=400, width=512, height=512, tv_scale=1.0)
    est = estimate(p, CAL, has_clip=True)
    with pytest.raises(BudgetError) as err:
        check(est, p, budget_s=60.0, available_bytes=None)
    text = str(err.value)
    assert f"{est.seconds:,.0f} s" in text and "budget of 60 s" in text
    for hint in ("steps (400)", "512x512", "tv_scale", "NOISESCOPE_MAX_JOB_SECONDS"):
        assert hint in text
    check(est, p, budget_s=est.seconds * 1.01, available_bytes=est.peak_bytes * 1.01)


def test_memory_over_what_is_available_is_refused() -> None:
    p = params(width=512, height=512, batch=2, tv_scale=1.0)
    est = estimate(p, CAL, has_clip=True)
    with pytest.raises(BudgetError, match="GiB at its peak.*batch \\(2\\)"):
        check(est, p, budget_s=1e9, available_bytes=est.peak_bytes / 2)


def test_history_counts_at_most_its_bound() -> None:
    p = params(steps=500)
    assert estimate(p, CAL, has_clip=True, history_bytes=0).peak_bytes < estimate(p, CAL, has_clip=True).peak_bytes


def test_meminfo() -> None:
    text = "MemTotal:       16000000 kB\nMemFree:  100 kB\nMemAvailable:    8000000 kB\n"
    assert meminfo_available(text) == 8000000 * 1024
    assert meminfo_available("MemTotal: 1 kB\n") is None


def test_live_params_default_is_the_params_own() -> None:
    p = params(tv_scale=1.0)
    assert estimate(p, CAL, has_clip=True).seconds == estimate(p, CAL, has_clip=True, live=p.live()).seconds
    assert estimate(p, CAL, has_clip=True, live=LiveParams()).parts["guidance"] == 0


def test_calibration_line_through_two_timings() -> None:
    from app.engine.calibrate import _line

    fixed, slope = _line((256, 0.10), (1024, 0.25))
    assert slope == pytest.approx(0.15 / 768) and fixed == pytest.approx(0.25 - 1024 * 0.15 / 768)
    fixed, slope = _line((256, 0.30), (1024, 0.20))  # noise: the big call timed faster
    assert slope == pytest.approx(0.20 / 1024 / 4) and fixed == pytest.approx(0.15)
