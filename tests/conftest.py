"""Shared fixtures: tiny models built once per session, the shared fixtures folder."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared"

torch.set_num_threads(2)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if not torch.cuda.is_available():
        skip = pytest.mark.skip(reason="needs a CUDA GPU")
        for item in items:
            if item.get_closest_marker("gpu") is not None:  # not `in keywords`: folder names count there
                item.add_marker(skip)


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    if not SHARED.is_dir():
        pytest.skip("../shared is not beside the checkout")
    return SHARED


@pytest.fixture(scope="session")
def tiny_diffusion_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from app.demo_models import build_tiny_diffusion

    return build_tiny_diffusion(tmp_path_factory.mktemp("tiny-sd"), seed=0)


@pytest.fixture(scope="session")
def tiny_clip_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from app.demo_models import build_tiny_clip

    return build_tiny_clip(tmp_path_factory.mktemp("tiny-clip"), seed=0)


@pytest.fixture(scope="session")
def tiny_biggan_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from app.demo_models import build_tiny_biggan

    return build_tiny_biggan(tmp_path_factory.mktemp("tiny-biggan"), seed=0,
                             class_names=["tench", "goldfish", "great white shark", "tiger shark", "hammerhead"])


@pytest.fixture(scope="session")
def tiny_dcgan_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from app.demo_models import build_tiny_dcgan

    return build_tiny_dcgan(tmp_path_factory.mktemp("tiny-dcgan"), seed=0)
