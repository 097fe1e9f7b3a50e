"""The one place models are loaded, by name or path: the diffusion pipeline, the CLIP used for
guidance and scores, and the GAN generator. Falls back to tiny untrained demo weights (in the
same formats) when the embedded models are missing, and says so."""

from __future__ import annotations

import logging
from collections.abc import Callable
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
    demo: frozenset[str] = frozenset()  # the parts ("diffusion", "clip") on untrained demo weights
    calibration: Any = None  # app.engine.budget.Calibration, measured at load
    upscaler_gan: Any | None = None  # app.upscale.rrdbnet.RRDBNet
    upscaler_diffusion: Any | None = None  # app.diffusion.generate.DiffusionModels of an upscale pipeline

    def public_names(self) -> dict[str, str | None]:
        return public_names(self.names)

    def info(self) -> dict[str, Any]:
        """What /api/info shows: model folders by their name, never their absolute path."""
        public = self.public_names()
        return {
            "device": str(self.device),
            "dtype": str(self.dtype).removeprefix("torch."),
            "demo": bool(self.demo),
            "demo_parts": sorted(self.demo),
            "demo_notice": f"{DEMO_NOTICE} ({', '.join(sorted(self.demo))})" if self.demo else None,
            "diffusion": public.get("diffusion"),
            "clip": public.get("clip"),
            "gan": public.get("gan"),
            "upscalers": {k: public.get(f"upscaler_{k}") for k in ("gan", "diffusion")
                          if getattr(self, f"upscaler_{k}") is not None},
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


def public_names(names: dict[str, str | None]) -> dict[str, str | None]:
    """Model ids safe to write into shared PNGs: hub ids as given, local folders by their name."""
    return {k: (Path(v).name if v and Path(v).exists() else v) for k, v in names.items()}


def _is_embedded(name: str) -> bool:
    return Path(name).resolve().is_relative_to(MODELS_DIR.resolve())


def _missing_embedded(name: str) -> bool:
    """The default embedded folder was asked for but holds no weights: use demo weights."""
    return not Path(name).exists() and _is_embedded(name)


def load_diffusion_extras(diffusion: Any, settings: Settings, left_out: list[str] | None = None) -> None:
    """The LoRAs (--lora, --lora-dir) and the tiny preview decoder (--preview-decoder) of a loaded
    diffusion model. A file or decoder that does not fit it stops the start with a message, or, given
    `left_out` (a model loaded into the running studio), is left off with the reason appended there."""
    from app.diffusion.lora import LoraLibrary, model_parts
    from app.diffusion.tiny_decoder import check_fits, load_tiny_decoder

    if settings.lora or settings.lora_dir is not None:
        log.info("loading %d LoRA file(s)%s", len(settings.lora),
                 f"; LoRA folder {settings.lora_dir}" if settings.lora_dir else "")
        try:
            diffusion.loras = LoraLibrary(model_parts(diffusion), settings.lora, settings.lora_dir, settings.lora_weight)
        except ValueError as exc:
            if left_out is None:
                raise
            left_out.append(f"LoRAs not loaded: {exc}")
    if settings.preview_decoder:
        log.info("loading preview decoder %s", settings.preview_decoder)
        try:
            tiny = load_tiny_decoder(settings.preview_decoder, diffusion.device, diffusion.dtype)
            check_fits(tiny, diffusion.latent_channels, diffusion.vae_scale)
            diffusion.preview_decoder = tiny
        except ValueError as exc:
            if left_out is None:
                raise
            left_out.append(f"no tiny preview decoder: {exc}")


def load_diffusion(name: str, settings: Settings, device: torch.device, dtype: torch.dtype,
                   clip: ClipBackend | None, stage: Callable[[str], None] = lambda what: None,
                   left_out: list[str] | None = None) -> Any:
    """A text-to-image model with what the settings add to it (LoRAs, preview decoder, compile);
    `stage(what)` is told as each part starts (the page's load progress); `left_out`: as in
    load_diffusion_extras."""
    from app.diffusion.generate import load_diffusion_models

    stage("weights")
    log.info("loading diffusion pipeline %s on %s (%s)", name, device, dtype)
    diffusion = load_diffusion_models(name, device, dtype, clip=clip, cache_dir=settings.data_dir / "cache")
    stage("extras")
    load_diffusion_extras(diffusion, settings, left_out)
    if settings.compile != "off" or settings.channels_last:
        from app.diffusion.accel import AccelOptions, prepare_models

        log.info("UNet: compile %s, channels_last %s", settings.compile, settings.channels_last)
        prepare_models(diffusion, AccelOptions(channels_last=settings.channels_last, compile_mode=settings.compile))
    return diffusion


def load_gan(name: str, device: torch.device, clip: ClipBackend | None) -> Any:
    """A converted GAN folder as the GAN runner's model (app.engine.gan_runner.GanModel)."""
    from app.engine.gan_runner import load_gan_model

    log.info("loading GAN %s", name)
    return load_gan_model(name, device, clip=clip)


def load_models(settings: Settings) -> Models:
    """Load everything the settings name. Only a hub id the user named is ever fetched."""
    device = pick_device(settings.device)
    dtype = pick_dtype(device)
    demo_root = settings.data_dir / "demo-models"
    demo: set[str] = set()

    diffusion_name = settings.diffusion_model
    if _missing_embedded(diffusion_name):
        diffusion_name = str(demo_root / "diffusion")
        if not (Path(diffusion_name) / "model_index.json").exists():
            build_tiny_diffusion(Path(diffusion_name), seed=0, sample_size=16)
        demo.add("diffusion")
    clip_name = settings.clip_model
    if not clip_name.startswith("open_clip:") and _missing_embedded(clip_name):
        clip_name = str(demo_root / "clip")
        if not (Path(clip_name) / "config.json").exists():
            build_tiny_clip(Path(clip_name), seed=0)
        demo.add("clip")

    log.info("loading CLIP %s on %s", clip_name, device)
    clip = load_clip(clip_name, device, dtype)
    diffusion = load_diffusion(diffusion_name, settings, device, dtype, clip)

    gan = None
    gan_name = settings.gan_model or None
    if gan_name and Path(gan_name).exists():
        gan = load_gan(gan_name, device, clip)
    elif gan_name and not _is_embedded(gan_name):
        raise FileNotFoundError(f"GAN model not found: {gan_name}")
    else:
        gan_name = None
    upscaler_gan, upscaler_diffusion, up_names = load_upscalers(settings, device, dtype)
    if demo:
        log.warning("models/ holds no trained weights: using %s", DEMO_NOTICE)
    from app.engine.calibrate import calibrate

    return Models(device, dtype, diffusion, clip, gan,
                  names={"diffusion": diffusion_name, "clip": clip_name, "gan": gan_name, **up_names}, demo=frozenset(demo),
                  calibration=calibrate(diffusion, cpu_threads=settings.cpu_threads),
                  upscaler_gan=upscaler_gan, upscaler_diffusion=upscaler_diffusion)


def load_upscalers(settings: Settings, device: torch.device, dtype: torch.dtype) -> tuple[Any, Any, dict[str, str]]:
    """(GAN upscaler or None, diffusion upscaler or None, their names). The embedded folders are optional:
    absent, the studio runs without that upscaler (and says so in /api/info); a folder the user named
    that is missing is an error."""
    gan = diffusion = None
    names: dict[str, str] = {}
    name = settings.upscaler_gan or None
    if name and Path(name).exists():
        from app.upscale.gan import load_folder

        log.info("loading GAN upscaler %s", name)
        gan = load_folder(name, device, torch.float32)
        names["upscaler_gan"] = name
    elif name and not _is_embedded(name):
        raise FileNotFoundError(f"GAN upscaler not found: {name}")
    name = settings.upscaler_diffusion or None
    if name and (Path(name).exists() or not _is_embedded(name)):
        from app.upscale.diffusion import load_upscaler_models

        log.info("loading diffusion upscaler %s", name)
        diffusion = load_upscaler_models(name, device, dtype, cache_dir=settings.data_dir / "cache")
        names["upscaler_diffusion"] = name
    return gan, diffusion, names
