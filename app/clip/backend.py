"""One interface over CLIP implementations.

Images go in as float tensors in [0, 1], shape [B, 3, H, W], any size; the backend resizes to its
own input size and normalises, differentiably, so guidance can back-propagate through it.
Embeddings come out L2-normalised.
"""

from __future__ import annotations

import os
from typing import Protocol

import torch
import torch.nn.functional as F

OPEN_CLIP_PREFIX = "open_clip:"


class ClipBackend(Protocol):
    name: str
    image_size: int
    device: torch.device

    def encode_text(self, texts: list[str]) -> torch.Tensor: ...

    def encode_image(self, images: torch.Tensor) -> torch.Tensor: ...


def _normalise_pixels(images: torch.Tensor, size: int, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    if images.shape[-2:] != (size, size):
        images = F.interpolate(images, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    return (images - mean.view(1, 3, 1, 1)) / std.view(1, 3, 1, 1)


class TransformersClip:
    """A transformers `CLIPModel` folder or hub id (e.g. openai/clip-vit-base-patch32)."""

    def __init__(self, name: str, device: torch.device, dtype: torch.dtype = torch.float32) -> None:
        from transformers import CLIPModel, CLIPTokenizer

        offline = os.environ.get("HF_HUB_OFFLINE") == "1"
        self.name = name
        self.device = device
        self.dtype = dtype
        self.model = CLIPModel.from_pretrained(name, local_files_only=offline).to(device, dtype).eval().requires_grad_(False)
        self.tokenizer = CLIPTokenizer.from_pretrained(name, local_files_only=offline)
        self.image_size = int(self.model.config.vision_config.image_size)
        try:
            from transformers import CLIPImageProcessor

            proc = CLIPImageProcessor.from_pretrained(name, local_files_only=offline)
            mean, std = proc.image_mean, proc.image_std
        except (OSError, ValueError):
            mean, std = [0.48145466, 0.4578275, 0.40821073], [0.26862954, 0.26130258, 0.27577711]
        self.mean = torch.tensor(mean, device=device, dtype=dtype)
        self.std = torch.tensor(std, device=device, dtype=dtype)
        self.max_length = min(int(self.model.config.text_config.max_position_embeddings), self.tokenizer.model_max_length)

    @torch.no_grad()
    def encode_text(self, texts: list[str]) -> torch.Tensor:
        tok = self.tokenizer(texts, padding="max_length", truncation=True, max_length=self.max_length, return_tensors="pt")
        out = self.model.get_text_features(input_ids=tok.input_ids.to(self.device), attention_mask=tok.attention_mask.to(self.device))
        out = out.pooler_output if hasattr(out, "pooler_output") else out
        return F.normalize(out.float(), dim=-1)

    def encode_image(self, images: torch.Tensor) -> torch.Tensor:
        pixels = _normalise_pixels(images.to(self.device, self.dtype), self.image_size, self.mean, self.std)
        out = self.model.get_image_features(pixel_values=pixels)
        out = out.pooler_output if hasattr(out, "pooler_output") else out
        return F.normalize(out.float(), dim=-1)


class OpenClip:
    """An open_clip model, named 'open_clip:ViT-B-32/laion2b_s34b_b79k' (needs the `openclip` extra)."""

    def __init__(self, spec: str, device: torch.device, dtype: torch.dtype = torch.float32) -> None:
        try:
            import open_clip
        except ImportError as exc:  # pragma: no cover - depends on the optional extra
            raise RuntimeError("open_clip is not installed: pip install 'noisescope[openclip]'") from exc
        arch, _, pretrained = spec.partition("/")
        self.name = OPEN_CLIP_PREFIX + spec
        self.device = device
        self.dtype = dtype
        model, _, preprocess = open_clip.create_model_and_transforms(arch, pretrained=pretrained or None, device=device)
        self.model = model.to(dtype).eval().requires_grad_(False)
        self.tokenizer = open_clip.get_tokenizer(arch)
        size = model.visual.image_size
        self.image_size = int(size[0] if isinstance(size, (tuple, list)) else size)
        mean = getattr(model.visual, "image_mean", None) or (0.48145466, 0.4578275, 0.40821073)
        std = getattr(model.visual, "image_std", None) or (0.26862954, 0.26130258, 0.27577711)
        self.mean = torch.tensor(mean, device=device, dtype=dtype)
        self.std = torch.tensor(std, device=device, dtype=dtype)

    @torch.no_grad()
    def encode_text(self, texts: list[str]) -> torch.Tensor:
        return F.normalize(self.model.encode_text(self.tokenizer(texts).to(self.device)).float(), dim=-1)

    def encode_image(self, images: torch.Tensor) -> torch.Tensor:
        pixels = _normalise_pixels(images.to(self.device, self.dtype), self.image_size, self.mean, self.std)
        return F.normalize(self.model.encode_image(pixels).float(), dim=-1)


def load_clip(name: str, device: torch.device, dtype: torch.dtype = torch.float32) -> ClipBackend:
    """Load by name: 'open_clip:ARCH/PRETRAINED' picks open_clip, anything else is a transformers CLIPModel."""
    if name.startswith(OPEN_CLIP_PREFIX):
        return OpenClip(name[len(OPEN_CLIP_PREFIX):], device, dtype)
    return TransformersClip(name, device, dtype)
