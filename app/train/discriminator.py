"""A conditional StyleGAN2-style discriminator for training the embedded GAN.

Residual blocks (Karras et al. 2020, StyleGAN2 Fig. 7c), minibatch standard deviation (Karras et al.
2018, ProGAN Sec. 3), equalised learning rate, and projection conditioning (Miyato & Koyama 2018,
"cGANs with Projection Discriminator") in StyleGAN2-ADA's form: the score is <phi(x), psi(c)> / sqrt(d)
with psi a small MLP on the text embedding c.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from app.gan.networks import channels_per_resolution

SQRT_HALF = math.sqrt(0.5)


class EqConv2d(nn.Module):
    """Conv with weights stored at unit scale and multiplied by 1/sqrt(fan_in) at run time."""

    def __init__(self, cin: int, cout: int, kernel: int, bias: bool = True) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(cout, cin, kernel, kernel))
        self.bias = nn.Parameter(torch.zeros(cout)) if bias else None
        self.gain = 1 / math.sqrt(cin * kernel * kernel)
        self.padding = kernel // 2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.weight * self.gain, self.bias, padding=self.padding)


class EqLinear(nn.Module):
    def __init__(self, cin: int, cout: int, lr_multiplier: float = 1.0) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(cout, cin) / lr_multiplier)
        self.bias = nn.Parameter(torch.zeros(cout))
        self.gain = lr_multiplier / math.sqrt(cin)
        self.lr_multiplier = lr_multiplier

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight * self.gain, self.bias * self.lr_multiplier)


def lrelu(x: torch.Tensor) -> torch.Tensor:
    return F.leaky_relu(x, 0.2) * math.sqrt(2)


class DBlock(nn.Module):
    """conv -> conv -> 2x average-pool down, plus a 1x1 pooled skip; the sum scaled by sqrt(1/2)."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.conv0 = EqConv2d(cin, cin, 3)
        self.conv1 = EqConv2d(cin, cout, 3)
        self.skip = EqConv2d(cin, cout, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.skip(F.avg_pool2d(x, 2))
        x = F.avg_pool2d(lrelu(self.conv1(lrelu(self.conv0(x)))), 2)
        return (x + y) * SQRT_HALF


def minibatch_std(x: torch.Tensor, group: int = 4) -> torch.Tensor:
    """Append one channel: the std over groups of `group` samples, averaged over features and pixels."""
    n, c, h, w = x.shape
    g = min(group, n)
    while n % g:
        g -= 1
    y = x.reshape(g, -1, c, h, w)
    y = (y - y.mean(dim=0)).square().mean(dim=0).add(1e-8).sqrt().mean(dim=(1, 2, 3))  # [n/g]
    y = y.reshape(-1, 1, 1, 1).repeat(g, 1, h, w)
    return torch.cat([x, y], dim=1)


class Discriminator(nn.Module):
    """D(x [N,3,R,R] in [-1,1], c [N,c_dim]) -> logits [N,1]."""

    def __init__(self, c_dim: int, img_resolution: int = 64, channel_base: int = 8192, channel_max: int = 256,
                 cmap_dim: int = 256, mapping_layers: int = 2) -> None:
        super().__init__()
        self.c_dim = c_dim
        res = [2 ** i for i in range(int(math.log2(img_resolution)), 2, -1)]  # 64, 32, 16, 8
        ch = channels_per_resolution(img_resolution, channel_base, channel_max)
        self.from_rgb = EqConv2d(3, ch[res[0]], 1)
        self.blocks = nn.ModuleList(DBlock(ch[r], ch[r // 2]) for r in res)
        self.conv = EqConv2d(ch[4] + 1, ch[4], 3)
        self.fc = EqLinear(ch[4] * 16, ch[4])
        self.out = EqLinear(ch[4], cmap_dim if c_dim else 1)
        self.cmap_dim = cmap_dim
        if c_dim:
            dims = [c_dim] + [cmap_dim] * mapping_layers
            self.cmap = nn.ModuleList(EqLinear(a, b) for a, b in zip(dims[:-1], dims[1:]))

    def forward(self, x: torch.Tensor, c: torch.Tensor | None) -> torch.Tensor:
        x = lrelu(self.from_rgb(x))
        for block in self.blocks:
            x = block(x)
        x = lrelu(self.conv(minibatch_std(x)))
        x = self.out(lrelu(self.fc(x.flatten(1))))
        if not self.c_dim:
            return x
        cmap = c.float() * (c.float().square().mean(dim=1, keepdim=True) + 1e-8).rsqrt()
        for layer in self.cmap:
            cmap = lrelu(layer(cmap))
        return (x * cmap).sum(dim=1, keepdim=True) / math.sqrt(self.cmap_dim)
