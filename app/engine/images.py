"""Image encoding for frames and PNG files, off the sampling thread."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image


def to_pil(rgb: np.ndarray) -> Image.Image:
    """uint8 HxWx3 -> PIL."""
    return Image.fromarray(np.ascontiguousarray(rgb), "RGB")


def encode(image: Image.Image, fmt: str = "jpeg", quality: int = 90) -> bytes:
    buf = io.BytesIO()
    if fmt == "jpeg":
        image.convert("RGB").save(buf, "JPEG", quality=quality)
    elif fmt == "webp":
        image.save(buf, "WEBP", quality=quality)
    else:
        image.save(buf, "PNG")
    return buf.getvalue()


def grid(images: list[Image.Image], cols: int | None = None) -> Image.Image:
    """Tile equally sized images into one."""
    cols = cols or min(len(images), 4)
    rows = -(-len(images) // cols)
    w, h = images[0].size
    out = Image.new("RGB", (cols * w, rows * h), (0, 0, 0))
    for i, im in enumerate(images):
        out.paste(im, ((i % cols) * w, (i // cols) * h))
    return out
