"""What --diffusion-model accepts, and the errors for what it cannot load, offline."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest
import torch

from app.diffusion.families import ModelNotFound, family_for_class, pipeline_class_name
from app.diffusion.generate import load_diffusion_models

CPU = torch.device("cpu")


@pytest.fixture
def empty_offline_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """HF_HUB_OFFLINE=1, an empty Hugging Face cache, and no sockets."""
    import huggingface_hub.constants

    cache = tmp_path / "hf-cache"
    cache.mkdir()
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache))

    def refuse(*args, **kwargs):
        raise AssertionError("a network connection was attempted")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    return cache


@pytest.mark.parametrize("hub_id", ["stabilityai/stable-diffusion-xl-base-1.0", "someone/no-such-model"])
def test_hub_id_offline_with_an_empty_cache_names_the_id(hub_id: str, empty_offline_cache: Path,
                                                         tmp_path: Path) -> None:
    with pytest.raises(ModelNotFound) as err:
        load_diffusion_models(hub_id, CPU, torch.float32, cache_dir=tmp_path / "cache")
    message = str(err.value)
    assert hub_id in message and "HF_HUB_OFFLINE=1" in message and "cache" in message
    assert "Traceback" not in message


def test_studio_start_reports_the_same(empty_offline_cache: Path, tmp_path: Path, tiny_clip_dir: Path) -> None:
    from app.registry import load_models
    from app.settings import Settings

    settings = Settings(diffusion_model="someone/no-such-model", clip_model=str(tiny_clip_dir), gan_model="",
                        device="cpu", data_dir=tmp_path)
    with pytest.raises(ModelNotFound, match="'someone/no-such-model' is not in the local Hugging Face cache"):
        load_models(settings)


def test_local_paths_are_checked_first(tmp_path: Path) -> None:
    with pytest.raises(ModelNotFound, match="no model_index.json"):
        pipeline_class_name(str(tmp_path), local_only=True)
    with pytest.raises(ModelNotFound, match="neither a pipeline folder"):
        pipeline_class_name(str(tmp_path / "a" / "b" / "c"), local_only=True)


def test_the_family_comes_from_model_index(tmp_path: Path, tiny_diffusion_dir: Path) -> None:
    assert pipeline_class_name(str(tiny_diffusion_dir), local_only=True) == "StableDiffusionPipeline"
    assert family_for_class("StableDiffusionXLPipeline", "x").name == "sdxl"
    assert family_for_class("StableDiffusionInpaintPipeline", "x").name == "sd"
    (tmp_path / "model_index.json").write_text(json.dumps({"_class_name": "KandinskyV22Pipeline"}))
    with pytest.raises(ValueError, match="is a KandinskyV22Pipeline; the studio loads .*StableDiffusionXLPipeline"):
        load_diffusion_models(str(tmp_path), CPU, torch.float32, cache_dir=tmp_path / "cache")
