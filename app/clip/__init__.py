"""CLIP backends for guidance and scoring: transformers `CLIPModel` and open_clip."""

from app.clip.backend import ClipBackend, load_clip

__all__ = ["ClipBackend", "load_clip"]
