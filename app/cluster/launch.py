"""`python -m app serve --ray`: connect to a Ray cluster (or start one on this machine), deploy the
engine as a Ray Serve application of N replicas, and serve the FastAPI ingress from this process.

The ingress is this process, not a Serve deployment behind Serve's HTTP proxy: one process keeps the
websocket server as the studio configures it (no per-message deflate, the Host / Origin guard, the
token), holds the table of which replica holds which run, and is the gallery's one writer."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import ray
from ray import serve
from ray.serve.config import RequestRouterConfig
from ray.serve.handle import DeploymentHandle

from app.cluster.replica import EngineReplica
from app.cluster.router import RunRouter
from app.settings import REPO_ROOT, Settings

log = logging.getLogger(__name__)

APP_NAME = "noisescope-engine"
LIVE_HEADROOM = 16  # room on a replica, beyond its runs, for live messages (update, cancel, preview)


@dataclass(frozen=True)
class Scale:
    """How many engine replicas, and what each takes."""

    replicas: int = 1
    max_replicas: int | None = None  # above `replicas`: autoscale between the two
    target_runs: float = 2.0  # autoscaling target: runs (queued + running) per replica
    gpus: float = 0.0  # per replica; 1 on GPU machines
    cpus: float = 1.0  # per replica

    def deployment_options(self, queue_size: int) -> dict[str, Any]:
        """Ray Serve options of the engine deployment. A replica takes as many requests as its worker
        queues runs (plus the one running) and leaves room for live messages; its Worker answers
        `busy` before Serve would queue anything. Autoscaling is Serve's, on ongoing requests, which
        for the engine are its queued and running runs (each run is one streaming call)."""
        options: dict[str, Any] = {
            "name": "engine",
            "max_ongoing_requests": queue_size + 1 + LIVE_HEADROOM,
            "ray_actor_options": {"num_cpus": self.cpus, "num_gpus": self.gpus},
            "request_router_config": RequestRouterConfig(request_router_class=RunRouter),
            # a replica being scaled down finishes its runs first
            "graceful_shutdown_timeout_s": 600.0,
            "max_constructor_retry_count": 3,  # a model that cannot load fails the deployment soon
        }
        if self.max_replicas is not None and self.max_replicas > self.replicas:
            options["autoscaling_config"] = {
                "min_replicas": self.replicas, "max_replicas": self.max_replicas,
                "target_ongoing_requests": self.target_runs,
                "upscale_delay_s": 5.0, "downscale_delay_s": 600.0,  # a fork's parent stays a while
            }
        else:
            options["num_replicas"] = self.replicas
        return options


def replica_settings(settings: Settings) -> dict[str, Any]:
    """The settings each replica starts from (it takes its own scratch folder as data_dir)."""
    return settings.model_dump(mode="json", exclude={"token", "data_dir"})


def runtime_env() -> dict[str, Any]:
    """Workers import `app` from this checkout: the same path on every machine (or `pip install -e .`)."""
    return {"env_vars": {"PYTHONPATH": str(REPO_ROOT)}}


def deploy(settings: Settings, scale: Scale, name: str = APP_NAME) -> DeploymentHandle:
    """Deploy the engine on the connected Ray cluster; returns its handle once every replica is up."""
    serve.start(proxy_location="Disabled")  # the ingress is this process; Serve's HTTP proxy is not used
    engine = serve.deployment(EngineReplica).options(**scale.deployment_options(settings.queue_size))
    return serve.run(engine.bind(replica_settings(settings)), name=name, route_prefix=None)


def scale_for_cluster(replicas: int, max_replicas: int | None, target_runs: float, device: str,
                      cpu_threads: int) -> Scale:
    """One GPU per replica where the cluster has GPUs (unless --device cpu), else CPU replicas."""
    gpus = ray.cluster_resources().get("GPU", 0.0)
    on_gpu = gpus > 0 and not device.startswith("cpu")
    return Scale(replicas, max_replicas, target_runs, gpus=1.0 if on_gpu else 0.0,
                 cpus=1.0 if on_gpu else float(max(1, cpu_threads)))


def serve_with_ray(settings: Settings, *, address: str | None, replicas: int, max_replicas: int | None,
                   target_runs: float) -> int:
    import uvicorn

    from app.cluster.front import RemoteStudio
    from app.main import create_app

    ray.init(address=address, runtime_env=runtime_env(), include_dashboard=False)
    scale = scale_for_cluster(replicas, max_replicas, target_runs, settings.device, settings.cpu_threads)
    log.info("deploying %s", scale)
    handle = deploy(settings, scale)
    app = create_app(settings, front=lambda s: RemoteStudio.connect(s, handle))
    url = f"http://{'localhost' if settings.host in ('127.0.0.1', '::1') else settings.host}:{settings.port}/"
    if settings.require_token():
        url += f"?token={settings.token}"
    print(f"Noisescope studio (Ray Serve, {scale.replicas} engine replicas"
          f"{f' up to {scale.max_replicas}' if scale.max_replicas else ''}): {url}", flush=True)
    try:
        uvicorn.run(app, host=settings.host, port=settings.port, ws_per_message_deflate=False, log_level="info")
    finally:
        serve.delete(APP_NAME)
    return 0
