"""A perceptual distance from the judge's convolutional features, in the form of LPIPS.

LPIPS (Zhang et al. 2018, Eq. 1) compares unit-normalised activations of a pretrained network,
layer by layer: d(x, y) = sum_l mean_hw || w_l * (f_l(x) - f_l(y)) ||^2. Its networks (AlexNet,
VGG) and learned weights w_l are downloads, and the `lpips` package pulls torchvision; here the
network is the project's judge (app/train/judge.py, trained on the emoji renders) and w_l = 1, the
"baseline" variant of LPIPS. The first three conv blocks run at the image's own resolution (the
judge's 64 px resize is skipped): at 256 px they see edges and textures, which is what an upscaler
gets right or wrong. Lower is closer.
"""

from __future__ import annotations

import torch
from torch import Tensor

from app.train.judge import Judge

LAYERS = 3


def judge_maps(judge: Judge, images: Tensor, layers: int = LAYERS) -> list[Tensor]:
    """images [B, 3, H, W] in [0, 1] -> the first `layers` blocks' maps (2x pooling between inner blocks, as the judge)."""
    x = images * 2 - 1
    maps = []
    for i, block in enumerate(judge.blocks[:layers]):
        x = block(x)
        maps.append(x)
        if 0 < i < len(judge.blocks) - 1:
            x = torch.nn.functional.avg_pool2d(x, 2)
    return maps


def _unit(x: Tensor, eps: float = 1e-10) -> Tensor:
    return x / (x.pow(2).sum(dim=1, keepdim=True) + eps).sqrt()


def perceptual_distance(judge: Judge, a: Tensor, b: Tensor, layers: int = LAYERS) -> Tensor:
    """Per-image distance [B] between two batches in [0, 1] (the judge in eval mode; differentiable)."""
    total = a.new_zeros(a.shape[0])
    for fa, fb in zip(judge_maps(judge, a, layers), judge_maps(judge, b, layers)):
        total = total + (_unit(fa) - _unit(fb)).pow(2).sum(dim=1).mean(dim=(1, 2))
    return total
