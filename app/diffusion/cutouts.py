"""Disco Diffusion-style cutouts: whole-image overviews plus random inner crops, resized for CLIP.

Everything random comes from the torch.Generator passed in, so a (seed, step) pair always
gives the same crops. All operations are differentiable in the image.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

_LUMA = (0.299, 0.587, 0.114)  # ITU-R BT.601, as torchvision's Grayscale


@dataclass(frozen=True)
class CutSpec:
    overview: int
    inner: int
    ic_pow: float = 1.0
    grey_p: float = 0.0
    flip: bool = True

    @property
    def count(self) -> int:
        return self.overview + self.inner


def grey(images: Tensor) -> Tensor:
    w = images.new_tensor(_LUMA).view(1, 3, 1, 1)
    return (images * w).sum(1, keepdim=True).expand_as(images)


def _resize(images: Tensor, size: int) -> Tensor:
    if images.shape[-2:] == (size, size):
        return images
    return F.interpolate(images, size=(size, size), mode="bilinear", align_corners=False, antialias=True)


def _pad_square(images: Tensor) -> Tensor:
    h, w = images.shape[-2:]
    side = max(h, w)
    left, top = (side - w) // 2, (side - h) // 2
    return F.pad(images, (left, side - w - left, top, side - h - top))


def make_cutouts(images: Tensor, size: int, spec: CutSpec, gen: torch.Generator) -> Tensor:
    """[B, K, 3, size, size] cutouts of images [B, 3, H, W] in [0, 1], K = spec.count.

    Overviews are the zero-padded square image; they cycle through plain, mirrored, grey and grey
    mirrored (mirrors only if spec.flip, greys only if grey_p > 0). Inner crops have a side
    between min(H, W, size) and min(H, W), skewed small by ic_pow; the first grey_p of them are
    grey, and each is mirrored with probability 1/2 if spec.flip.
    """
    b, _, h, w = images.shape
    cuts: list[Tensor] = []
    if spec.overview:
        whole = _resize(_pad_square(images), size)
        variants = [whole]
        if spec.flip:
            variants.append(whole.flip(-1))
        if spec.grey_p > 0:
            variants += [grey(v) for v in variants]
        cuts += [variants[k % len(variants)] for k in range(spec.overview)]
    max_side = min(h, w)
    min_side = min(h, w, size)
    n_grey = round(spec.grey_p * spec.inner)
    for k in range(spec.inner):
        u, oy, ox, fl = torch.rand(4, generator=gen).tolist()
        side = int(min_side + (max_side - min_side) * u**spec.ic_pow)
        y, x = int(oy * (h - side + 1)), int(ox * (w - side + 1))
        cut = _resize(images[:, :, y:y + side, x:x + side], size)
        if k < n_grey:
            cut = grey(cut)
        if spec.flip and fl < 0.5:
            cut = cut.flip(-1)
        cuts.append(cut)
    if not cuts:
        return images.new_zeros(b, 0, 3, size, size)
    return torch.stack(cuts, dim=1)
