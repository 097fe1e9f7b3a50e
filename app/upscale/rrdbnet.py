"""RRDBNet, the generator of ESRGAN (Wang et al. 2018) as Real-ESRGAN ships it (Wang et al. 2021).

The module and parameter names are Real-ESRGAN's (`conv_first`, `body.N.rdb1.conv1`, `conv_body`,
`conv_up1`, `conv_up2`, `conv_hr`, `conv_last`), so its `.pth` state dicts load unchanged. The trunk
runs at the input resolution; two nearest-neighbour x2 upsamplings each followed by a conv make x4.
Real-ESRGAN's x2 (and x1) models feed the trunk a pixel-unshuffled input (space-to-depth by 2 or 4,
so 12 or 48 input channels) and keep the same x4 tail: the output is 2x (1x) the input.
Input and output are RGB in [0, 1].

`base` (not in Real-ESRGAN's RRDBNet; its .pth files convert with "none") adds an interpolated copy of
the input to the output, so the network learns only the residual, as Real-ESRGAN's SRVGGNetCompact
adds a nearest-neighbour copy: the embedded model uses "bicubic", which makes a short CPU training start
from bicubic's picture instead of from grey.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

RESIDUAL_SCALE = 0.2  # ESRGAN §3.2: residual scaling of every dense block and RRDB


@dataclass(frozen=True)
class RRDBConfig:
    """The constructor arguments of Real-ESRGAN's RRDBNet (its defaults are the 16.7 M x4plus model)."""

    scale: int = 4
    num_in_ch: int = 3
    num_out_ch: int = 3
    num_feat: int = 64
    num_block: int = 23
    num_grow_ch: int = 32
    base: str = "none"  # "none" (Real-ESRGAN), "bicubic" or "nearest": added to the output

    def to_dict(self) -> dict:
        return asdict(self)


UNSHUFFLE = {4: 1, 2: 2, 1: 4}  # output scale -> pixel-unshuffle factor of the input


class ResidualDenseBlock(nn.Module):
    """Five 3x3 convs, each seeing the block input and every earlier output (dense connections)."""

    def __init__(self, num_feat: int, num_grow_ch: int) -> None:
        super().__init__()
        g = num_grow_ch
        self.conv1 = nn.Conv2d(num_feat, g, 3, 1, 1)
        self.conv2 = nn.Conv2d(num_feat + g, g, 3, 1, 1)
        self.conv3 = nn.Conv2d(num_feat + 2 * g, g, 3, 1, 1)
        self.conv4 = nn.Conv2d(num_feat + 3 * g, g, 3, 1, 1)
        self.conv5 = nn.Conv2d(num_feat + 4 * g, num_feat, 3, 1, 1)

    def forward(self, x: Tensor) -> Tensor:
        feats = [x]
        for conv in (self.conv1, self.conv2, self.conv3, self.conv4):
            feats.append(F.leaky_relu(conv(torch.cat(feats, 1)), 0.2))
        return self.conv5(torch.cat(feats, 1)) * RESIDUAL_SCALE + x


class RRDB(nn.Module):
    """Residual-in-residual dense block: three dense blocks and a scaled skip around them."""

    def __init__(self, num_feat: int, num_grow_ch: int) -> None:
        super().__init__()
        self.rdb1 = ResidualDenseBlock(num_feat, num_grow_ch)
        self.rdb2 = ResidualDenseBlock(num_feat, num_grow_ch)
        self.rdb3 = ResidualDenseBlock(num_feat, num_grow_ch)

    def forward(self, x: Tensor) -> Tensor:
        return self.rdb3(self.rdb2(self.rdb1(x))) * RESIDUAL_SCALE + x


class RRDBNet(nn.Module):
    """x [B, 3, h, w] in [0, 1] -> [B, 3, scale*h, scale*w] (h, w divisible by 4 / scale)."""

    def __init__(self, cfg: RRDBConfig) -> None:
        super().__init__()
        if cfg.scale not in UNSHUFFLE:
            raise ValueError(f"RRDBNet scale must be 1, 2 or 4, not {cfg.scale}")
        if cfg.base not in ("none", "bicubic", "nearest"):
            raise ValueError(f"RRDBNet base must be none, bicubic or nearest, not {cfg.base!r}")
        self.cfg = cfg
        nf = cfg.num_feat
        self.conv_first = nn.Conv2d(cfg.num_in_ch * UNSHUFFLE[cfg.scale] ** 2, nf, 3, 1, 1)
        self.body = nn.Sequential(*(RRDB(nf, cfg.num_grow_ch) for _ in range(cfg.num_block)))
        self.conv_body = nn.Conv2d(nf, nf, 3, 1, 1)
        self.conv_up1 = nn.Conv2d(nf, nf, 3, 1, 1)
        self.conv_up2 = nn.Conv2d(nf, nf, 3, 1, 1)
        self.conv_hr = nn.Conv2d(nf, nf, 3, 1, 1)
        self.conv_last = nn.Conv2d(nf, cfg.num_out_ch, 3, 1, 1)

    def forward(self, x: Tensor) -> Tensor:
        k = UNSHUFFLE[self.cfg.scale]
        feat = self.conv_first(F.pixel_unshuffle(x, k) if k > 1 else x)
        feat = feat + self.conv_body(self.body(feat))
        feat = F.leaky_relu(self.conv_up1(F.interpolate(feat, scale_factor=2, mode="nearest")), 0.2)
        feat = F.leaky_relu(self.conv_up2(F.interpolate(feat, scale_factor=2, mode="nearest")), 0.2)
        out = self.conv_last(F.leaky_relu(self.conv_hr(feat), 0.2))
        if self.cfg.base == "none":
            return out
        mode = {"bicubic": {"mode": "bicubic", "align_corners": False}, "nearest": {"mode": "nearest"}}[self.cfg.base]
        return out + F.interpolate(x, size=out.shape[-2:], **mode)


def config_from_state_dict(state: dict[str, Tensor]) -> RRDBConfig:
    """Read the architecture off Real-ESRGAN key names and shapes (a .pth carries no config)."""
    try:
        first, last = state["conv_first.weight"], state["conv_last.weight"]
        grow = state["body.0.rdb1.conv1.weight"].shape[0]
    except KeyError as e:
        raise ValueError(f"not an RRDBNet state dict: no {e.args[0]!r}") from None
    blocks = {int(k.split(".")[1]) for k in state if k.startswith("body.")}
    if blocks != set(range(len(blocks))):
        raise ValueError("RRDBNet body blocks are not numbered 0..N-1")
    out_ch = last.shape[0]
    in_ch = first.shape[1]
    for scale, k in UNSHUFFLE.items():
        if in_ch % (k * k) == 0 and in_ch // (k * k) == out_ch:
            return RRDBConfig(scale=scale, num_in_ch=out_ch, num_out_ch=out_ch, num_feat=first.shape[0],
                              num_block=len(blocks), num_grow_ch=grow)
    raise ValueError(f"cannot tell the scale of an RRDBNet with {in_ch} input and {out_ch} output channels")


def pad_to_multiple(x: Tensor, multiple: int) -> tuple[Tensor, tuple[int, int]]:
    """Reflect-pad H and W up to a multiple (pixel-unshuffle needs it); returns the padding added."""
    h, w = x.shape[-2:]
    ph, pw = (-h) % multiple, (-w) % multiple
    if ph or pw:
        x = F.pad(x, (0, pw, 0, ph), mode="reflect" if min(h, w) > max(ph, pw) else "replicate")
    return x, (ph, pw)


@torch.no_grad()
def upscale(net: RRDBNet, image: Tensor) -> Tensor:
    """[B, 3, h, w] in [0, 1] -> [B, 3, s*h, s*w] in [0, 1], any h, w (padded for the unshuffle, then cropped)."""
    s, k = net.cfg.scale, UNSHUFFLE[net.cfg.scale]
    h, w = image.shape[-2:]
    dtype = next(net.parameters()).dtype
    x, _ = pad_to_multiple(image, k)
    out = net(x.to(dtype)).float()
    return out[..., : s * h, : s * w].clamp(0, 1)
