"""The compute budget over the websocket (issue 16 item 8): jobs, live updates and forks whose
estimate is over the budget or the available memory are answered `too_large` before any compute,
and a refused update leaves the run going."""

from __future__ import annotations

from pathlib import Path

from fastapi.testclient import TestClient

from app.engine.budget import estimate
from app.main import create_app
from app.params import DiffusionParams
from app.registry import Models
from tests.api.conftest import WsReader, make_settings

BASE = {"prompt": "a red fox", "seed": 5, "steps": 40, "width": 32, "height": 32, "sampler": "euler"}


def cost(models: Models, **kw) -> float:
    return estimate(DiffusionParams(**{**BASE, **kw}), models.calibration, has_clip=True,
                    history_bytes=256 * 1024 * 1024).seconds


def test_calibration_of_the_tiny_models(tiny_models: Models) -> None:
    cal = tiny_models.calibration
    assert cal is not None and cal.device == "cpu"
    assert cal.unet_s_per_px > 0 and cal.decode_s_per_px > 0 and cal.clip_s_per_image > 0
    assert cal.unet_bytes_per_px > cal.unet_peak_bytes_per_px > 0
    assert cal.decode_bytes_per_px > cal.decode_peak_bytes_per_px > 0
    assert cal.vae_scale == tiny_models.diffusion.vae_scale
    # the page's default job stays inside the default CPU budget (timed on a shared machine: loosely)
    assert estimate(DiffusionParams(prompt="a fox"), cal, has_clip=True).seconds < 900


def test_a_job_over_the_budget_is_refused_with_what_to_lower(tiny_models: Models, tmp_path: Path) -> None:
    budget = cost(tiny_models) * 2
    settings = make_settings(tmp_path, max_job_seconds=budget)
    with TestClient(create_app(settings, models=tiny_models)) as client, client.websocket_connect("/ws") as ws:
        reader = WsReader(ws)
        ws.send_json({"type": "generate", "params": {**BASE, "steps": 200, "tv_scale": 1.0}})
        err = reader.until("error")
        assert err["code"] == "too_large"
        assert f"budget of {budget:,.0f} s" in err["message"] and "steps (200)" in err["message"]
        assert "tv_scale" in err["message"]
        assert not any(e["type"] == "queued" for e in reader.events)
        ws.send_json({"type": "generate", "params": BASE})  # inside the budget: runs
        run_id = reader.until("queued")["run_id"]
        reader.until("done", run_id)


def test_live_changes_and_forks_that_raise_the_cost_are_checked(tiny_models: Models, tmp_path: Path) -> None:
    plain, guided = cost(tiny_models, steps=400), cost(tiny_models, steps=400, tv_scale=1.0)
    assert guided > 1.5 * plain
    settings = make_settings(tmp_path, max_job_seconds=1.2 * plain)
    with TestClient(create_app(settings, models=tiny_models)) as client, client.websocket_connect("/ws") as ws:
        reader = WsReader(ws)
        ws.send_json({"type": "generate", "params": {**BASE, "steps": 400}})
        run_id = reader.until("queued")["run_id"]
        reader.until("step", run_id)
        ws.send_json({"type": "update", "run_id": run_id, "params": {"tv_scale": 1.0}})
        err = reader.until("error")
        assert err["code"] == "too_large" and err["run_id"] == run_id and "tv_scale" in err["message"]
        ws.send_json({"type": "update", "run_id": run_id, "params": {"cfg_scale": 0.0, "preview_every": 50}})
        assert reader.until("updated", run_id)["params"]["tv_scale"] == 0.0  # cheaper: accepted
        ws.send_json({"type": "rewind", "run_id": run_id, "step": 1, "params": {"tv_scale": 1.0}})
        assert reader.until("error")["code"] == "too_large"
        ws.send_json({"type": "cancel", "run_id": run_id})  # the refused changes left it running
        assert reader.until("cancelled", run_id)["index"] < 400


def test_a_job_that_would_not_fit_in_memory_is_refused(tiny_models: Models, tmp_path: Path) -> None:
    settings = make_settings(tmp_path, memory_fraction=1e-7)  # a few hundred bytes "available"
    with TestClient(create_app(settings, models=tiny_models)) as client, client.websocket_connect("/ws") as ws:
        reader = WsReader(ws)
        ws.send_json({"type": "generate", "params": BASE})
        err = reader.until("error")
        assert err["code"] == "too_large" and "GiB at its peak" in err["message"] and "available" in err["message"]


def test_budget_settings_from_the_environment(monkeypatch) -> None:
    from app.settings import Settings

    monkeypatch.setenv("NOISESCOPE_MAX_JOB_SECONDS", "120")
    monkeypatch.setenv("NOISESCOPE_MEMORY_FRACTION", "0.5")
    s = Settings()
    assert s.job_seconds("cpu") == 120 and s.memory_fraction == 0.5
    monkeypatch.delenv("NOISESCOPE_MAX_JOB_SECONDS")
    assert Settings().job_seconds("cpu") == 900 and Settings().job_seconds("cuda") == 300


def test_the_running_jobs_memory_counts_as_available(tiny_models: Models, tmp_path: Path, monkeypatch) -> None:
    """While a run holds its memory, the next job is checked against what will be free once that
    run has given its memory back."""
    heavy = {**BASE, "steps": 400}
    app = create_app(make_settings(tmp_path, memory_fraction=1.0), models=tiny_models)
    with TestClient(app) as client, client.websocket_connect("/ws") as ws:
        studio = app.state.studio
        peak = studio.estimate(DiffusionParams(**heavy)).peak_bytes
        monkeypatch.setattr("app.engine.studio.available_memory",
                            lambda device: 0.6 * peak if studio.worker.running is not None else 2 * peak)
        reader = WsReader(ws)
        ws.send_json({"type": "generate", "params": heavy})
        first = reader.until("queued")["run_id"]
        reader.until("step", first)
        ws.send_json({"type": "generate", "params": heavy})  # 0.6 P free now, 1.6 P once the first is done
        second = reader.until("queued")["run_id"]
        for run_id in (second, first):
            ws.send_json({"type": "cancel", "run_id": run_id})
            reader.until("cancelled", run_id)


def test_a_schedule_that_turns_guidance_on_is_priced_with_it(tiny_models: Models, tmp_path: Path) -> None:
    plain = cost(tiny_models, steps=400)
    settings = make_settings(tmp_path, max_job_seconds=1.2 * plain)
    with TestClient(create_app(settings, models=tiny_models)) as client, client.websocket_connect("/ws") as ws:
        reader = WsReader(ws)
        schedule = [{"step": 200, "changes": {"tv_scale": 1.0}}]
        ws.send_json({"type": "generate", "params": {**BASE, "steps": 400, "schedule": schedule}})
        err = reader.until("error")
        assert err["code"] == "too_large" and "tv_scale" in err["message"]
