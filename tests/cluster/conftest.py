"""A local Ray cluster with the engine deployed as two CPU replicas of the tiny models, built once per
module that asks for it and shut down after it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from tests.api.conftest import make_settings


@pytest.fixture(scope="module")
def engine(tiny_diffusion_dir: Path, tiny_clip_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    ray = pytest.importorskip("ray", reason="Ray is not installed (pip install -e '.[ray]')")
    from ray import serve

    from app.cluster.launch import Scale, deploy, runtime_env

    ray.init(address="local", num_cpus=2, object_store_memory=96 * 1024 * 1024, include_dashboard=False, runtime_env=runtime_env(),
             log_to_driver=False)
    try:
        settings = make_settings(tmp_path_factory.mktemp("replica-settings"), diffusion_model=str(tiny_diffusion_dir),
                                 clip_model=str(tiny_clip_dir))
        yield deploy(settings, Scale(replicas=2, cpus=1.0), name="test-engine")
    finally:
        serve.shutdown()
        ray.shutdown()


@pytest.fixture(scope="module")
def ray_client(engine, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    from app.cluster.front import RemoteStudio
    from app.main import create_app

    settings = make_settings(tmp_path_factory.mktemp("ingress"))
    with TestClient(create_app(settings, front=lambda s: RemoteStudio.connect(s, engine))) as client:
        yield client
