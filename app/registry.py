"""The one place models are loaded, by name or path: the diffusion pipeline, the CLIP used for
guidance and scores, and the GAN generator. Falls back to tiny untrained demo weights (in the
same formats) when the embedded models are missing, and says so."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from app.clip import ClipBackend, load_clip
from app.demo_models import DEMO_NOTICE, build_tiny_clip, build_tiny_diffusion
from app.devices import pick_device, pick_dtype
from app.settings import MODELS_DIR, Settings

log = logging.getLogger(__name__)


@dataclass
class Models:
    device: torch.device
    dtype: torch.dtype
    diffusion: Any  # app.diffusion.generate.DiffusionModels
    clip: ClipBackend | None
    gan: Any | None  # app.engine.gan_runner.GanModel
    names: dict[str, str | None] = field(default_factory=dict)
    demo: bool = False
    calibration: Any = None  # app.engine.budget.Calibration, measured at load

    def public_names(self) -> dict[str, str | None]:
        """Model ids safe to write into shared PNGs: hub ids as given, local folders by their name."""
        return {k: (Path(v).name if v and Path(v).exists() else v) for k, v in self.names.items()}

    def info(self) -> dict[str, Any]:
        """What /api/info shows: model folders by their name, never their absolute path."""
        public = self.public_names()
        return {
            "device": str(self.device),
            "dtype": str(self.dtype).removeprefix("torch."),
            "demo": self.demo,
            "demo_notice": DEMO_NOTICE if self.demo else None,
            "diffusion": public.get("diffusion"),
            "clip": public.get("clip"),
            "gan": public.get("gan"),
            **self.diffusion_extras(),
        }

    def diffusion_extras(self) -> dict[str, Any]:
        """The LoRAs loaded (one live slider each) and the preview decoders the page may choose."""
        d = self.diffusion
        tiny = getattr(d, "preview_decoder", None)
        return {
            "loras": [] if getattr(d, "loras", None) is None else d.loras.info(),
            "lora_dir": getattr(getattr(d, "loras", None), "folder", None) is not None,
            "preview_decoders": ["linear", "tiny", "full"] if tiny is not None else ["linear", "full"],
            "preview_decoder": None if tiny is None else tiny.name,
        }


def _is_embedded(name: str) -> bool:
    return Path(name).resolve().is_relative_to(MODELS_DIR.resolve())


def _missing_embedded(name: str) -> bool:
    """The default embedded folder was asked for but holds no weights: use demo weights."""
    return not Path(name).exists() and _is_embedded(name)


def load_diffusion_extras(diffusion: Any, settings: Settings) -> None:
    """The LoRAs (--lora, --lora-dir) and the tiny preview decoder (--preview-decoder) of a loaded
    diffusion model; a file or decoder that does not fit it stops the start with a message."""
    from app.diffusion.lora import LoraLibrary, model_parts
    from app.diffusion.tiny_decoder import check_fits, load_tiny_decoder

    if settings.lora or settings.lora_dir is not None:
        log.info("loading %d LoRA file(s)%s", len(settings.lora),
                 f"; LoRA folder {settings.lora_dir}" if settings.lora_dir else "")
        diffusion.loras = LoraLibrary(model_parts(diffusion), settings.lora, settings.lora_dir, settings.lora_weight)
    if settings.preview_decoder:
        log.info("loading preview decoder %s", settings.preview_decoder)
        tiny = load_tiny_decoder(settings.preview_decoder, diffusion.device, diffusion.dtype)
        check_fits(tiny, diffusion.latent_channels, diffusion.vae_scale)
        diffusion.preview_decoder = tiny


def load_models(settings: Settings) -> Models:
    """Load everything the settings name. Only a hub id the user named is ever fetched."""
    from app.diffusion.generate import load_diffusion_models

    device = pick_device(settings.device)
    dtype = pick_dtype(device)
    demo_root = settings.data_dir / "demo-models"
    demo = False

    diffusion_name = settings.diffusion_model
    if _missing_embedded(diffusion_name):
        diffusion_name = str(demo_root / "diffusion")
        if not (Path(diffusion_name) / "model_index.json").exists():
            build_tiny_diffusion(Path(diffusion_name), seed=0, sample_size=16)
        demo = True
    clip_name = settings.clip_model
    if not clip_name.startswith("open_clip:") and _missing_embedded(clip_name):
        clip_name = str(demo_root / "clip")
        if not (Path(clip_name) / "config.json").exists():
            build_tiny_clip(Path(clip_name), seed=0)
        demo = True

    log.info("loading CLIP %s on %s", clip_name, device)
    clip = load_clip(clip_name, device, dtype)
    log.info("loading diffusion pipeline %s on %s (%s)", diffusion_name, device, dtype)
    diffusion = load_diffusion_models(diffusion_name, device, dtype, clip=clip, cache_dir=settings.data_dir / "cache")
    load_diffusion_extras(diffusion, settings)

    gan = None
    gan_name = settings.gan_model or None
    if gan_name and Path(gan_name).exists():
        from app.engine.gan_runner import load_gan_model

        log.info("loading GAN %s", gan_name)
        gan = load_gan_model(gan_name, device, clip=clip)
    elif gan_name and not _is_embedded(gan_name):
        raise FileNotFoundError(f"GAN model not found: {gan_name}")
    else:
        gan_name = None
    if demo:
        log.warning("models/ holds no trained weights: using %s", DEMO_NOTICE)
    from app.engine.calibrate import calibrate

    return Models(device, dtype, diffusion, clip, gan,
                  names={"diffusion": diffusion_name, "clip": clip_name, "gan": gan_name}, demo=demo,
                  calibration=calibrate(diffusion, cpu_threads=settings.cpu_threads))
