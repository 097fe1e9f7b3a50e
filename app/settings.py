"""Settings: one object, read from NOISESCOPE_* environment variables or CLI flags, passed down."""

from __future__ import annotations

import secrets
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

REPO_ROOT = Path(__file__).resolve().parent.parent
MODELS_DIR = REPO_ROOT / "models"


class Settings(BaseSettings):
    """Everything the server needs to know; tests build their own instance."""

    model_config = SettingsConfigDict(env_prefix="NOISESCOPE_", extra="ignore")

    host: str = "127.0.0.1"
    port: int = 7860
    token: str | None = Field(
        default=None, description="Required from clients when listening beyond loopback; generated if unset."
    )
    allowed_origins: list[str] = Field(default_factory=list, description="Extra Origins allowed on the websocket.")
    allowed_hosts: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Extra names clients may reach the server by (the Host header), comma-separated, e.g. "
                    "'studio.lan,gpu-box'. Loopback names and the bind host are always allowed; others are "
                    "refused (DNS rebinding).",
    )

    diffusion_model: str = Field(
        default=str(MODELS_DIR / "diffusion"),
        description="diffusers SD 1.x / 2.x / SDXL pipeline folder or hub id (e.g. "
                    "stable-diffusion-v1-5/stable-diffusion-v1-5), or a single-file .safetensors checkpoint.",
    )
    clip_model: str = Field(
        default=str(MODELS_DIR / "clip"),
        description="transformers CLIPModel folder or hub id, or 'open_clip:MODEL/PRETRAINED'.",
    )
    lora: Annotated[list[Path], NoDecode] = Field(
        default_factory=list,
        description="LoRA .safetensors files (kohya / A1111 or diffusers format) loaded at start; each gets a live "
                    "weight slider on the page. Environment: comma-separated paths.",
    )
    lora_dir: Path | None = Field(
        default=None, description="Folder of LoRA .safetensors files that prompts name as <lora:name:weight>.")
    lora_weight: float = Field(default=1.0, ge=-10.0, le=10.0, description="The weight the page's LoRA sliders start at.")
    preview_decoder: str | None = Field(
        default=None,
        description="diffusers AutoencoderTiny folder or hub id (madebyollin/taesd, taesdxl, taesd3, taef1): the "
                    "tiny decoder the page can choose for its preview frames.",
    )
    models_dir: Path | None = Field(
        default=None,
        description="Folder of models the page lists and loads on request while the studio runs: diffusers "
                    "pipeline folders, single-file .safetensors checkpoints, converted GAN folders.",
    )
    gan_model: str | None = Field(
        default=str(MODELS_DIR / "gan"),
        description="StyleGAN2 folder (generator.safetensors + config.json); empty for none.",
    )
    upscaler_gan: str | None = Field(
        default=str(MODELS_DIR / "upscaler-gan"),
        description="GAN upscaler folder (RRDBNet model.safetensors + config.json); empty for none.",
    )
    upscaler_diffusion: str | None = Field(
        default=str(MODELS_DIR / "upscaler-diffusion"),
        description="diffusers StableDiffusionUpscalePipeline folder or hub id; empty for none.",
    )
    device: str = Field(default="auto", description="'auto', 'cpu', 'cuda', 'cuda:1', ...")
    cpu_threads: int = Field(
        default=1, ge=0,
        description="torch threads in the sampling and encoding threads on CPU; 0 keeps torch's default. "
                    "One is fastest for the small embedded models (bench/bench_threads.py); raise it for big ones.",
    )
    compile: Literal["off", "default", "max-autotune-no-cudagraphs", "reduce-overhead", "max-autotune"] = Field(
        default="off",
        description="torch.compile the UNet at load (app.diffusion.accel): 'reduce-overhead' adds CUDA graphs. "
                    "Live CFG changes reuse the graph; each new image size or batch compiles once more.",
    )
    channels_last: bool = Field(default=False, description="UNet and VAE weights in channels_last (NHWC) memory order.")
    data_dir: Path = Field(default=Path("data"), description="Gallery images, database and caches.")
    evaluation: Path | None = Field(
        default=MODELS_DIR / "eval_cpu_v2.json",
        description="JSON written by `python -m app evaluate`; the page shows its figures beside the live ones "
                    "when they were measured on the loaded weights.",
    )

    # Caps that refuse work before any compute.
    max_pixels: int = 1024 * 1024
    max_batch: int = 4
    max_steps: int = 500
    max_cutouts: int = 64
    max_prompt_chars: int = 1000
    max_walk_frames: int = Field(default=120, ge=2, le=1000,
                                 description="Most frames one GAN latent walk may render (each is one synthesis).")
    max_init_image_bytes: int = Field(
        default=8 * 1024 * 1024, ge=1,
        description="Largest init-image upload in bytes; enforced while the body arrives (413 past it).",
    )
    upload_quota_bytes: int = Field(
        default=512 * 1024 * 1024, ge=0,
        description="Total bytes the stored uploads may take; a full quota refuses uploads (413) until old ones expire.",
    )
    upload_max_age_hours: float = Field(
        default=24.0, gt=0,
        description="Uploads older than this are deleted: at start, before each upload and every few minutes.",
    )
    queue_size: int = 8
    batch_runs: int = Field(
        default=8, ge=1,
        description="Diffusion runs of different pages stepped together, one stacked UNet call per step "
                    "(app.engine.batcher); 1 runs them one after another.",
    )
    batch_rows: int = Field(
        default=32, ge=1,
        description="Most rows (images x CFG branches) in one stacked UNet call; a bigger batch makes several calls.",
    )
    # The per-job budget (app.engine.budget): estimated compute and peak memory, checked before queueing.
    max_job_seconds: float | None = Field(
        default=None, gt=0,
        description="Compute budget per diffusion job, in seconds as estimated from the speed measured on this "
                    "device at start-up (steps x pixels x batch x CFG passes + guidance). Unset: 900 on a CPU, "
                    "300 on a GPU.",
    )
    memory_fraction: float = Field(
        default=0.9, gt=0.0, le=1.0,
        description="A job whose estimated peak memory exceeds this fraction of the memory available (CPU: "
                    "MemAvailable; CUDA: free device memory) is refused instead of swapping.",
    )
    history_bytes: int = 256 * 1024 * 1024

    @field_validator("lora", mode="before")
    @classmethod
    def _split_paths(cls, v: Any) -> Any:
        return [p.strip() for p in v.split(",") if p.strip()] if isinstance(v, str) else v

    @field_validator("allowed_hosts", mode="before")
    @classmethod
    def _split_hosts(cls, v: Any) -> Any:
        return [h.strip() for h in v.split(",") if h.strip()] if isinstance(v, str) else v

    def job_seconds(self, device_type: str) -> float:
        """The compute budget per job on a device of this type."""
        if self.max_job_seconds is not None:
            return self.max_job_seconds
        return 300.0 if device_type == "cuda" else 900.0

    def require_token(self) -> bool:
        """Listening on anything but loopback needs a token."""
        return self.host not in {"127.0.0.1", "localhost", "::1"}

    def ensure_token(self) -> str | None:
        if self.require_token() and not self.token:
            self.token = secrets.token_urlsafe(18)
        return self.token


@lru_cache
def get_settings() -> Settings:
    return Settings()
