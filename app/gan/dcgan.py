"""DCGAN generator (Radford et al. 2016) in the PyTorch DCGAN tutorial's state-dict layout.

    main.0  ConvTranspose2d(nz, c1, 4, 1, 0)    z [N, nz, 1, 1] -> [N, c1, 4, 4]
    main.1  BatchNorm2d(c1), main.2 ReLU
    main.3  ConvTranspose2d(c1, c2, 4, 2, 1)    x2 per block, then BatchNorm2d + ReLU
    ...
    main.3k ConvTranspose2d(c_k, nc, 4, 2, 1), main.3k+1 Tanh

The channel list is read from the checkpoint's own weight shapes, so the tutorial's 64x64 faces
generator (nz 100, ngf 64: 512, 256, 128, 64, 3) and any other depth or width of this stack load.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .folder import read_config, read_weights, write_folder
from .torch_checkpoint import find_state_dict, read_checkpoint

FORMAT = "noisescope-dcgan"
CHECKPOINT_KEYS = ("netG_state_dict", "generator", "netG", "G")


class DCGANGenerator(nn.Module):
    """G(z): z [N, nz] or [N, nz, 1, 1] -> image [N, nc, R, R] in [-1, 1], R = 4 * 2 ** (len(channels) - 2)."""

    def __init__(self, channels: list[int], bias: bool = False) -> None:
        if len(channels) < 3 or any(int(c) < 1 for c in channels):
            raise ValueError(f"channels must list nz, at least one feature width and nc, got {channels!r}")
        super().__init__()
        self.channels = [int(c) for c in channels]
        layers: list[nn.Module] = []
        pairs = list(zip(self.channels[:-1], self.channels[1:]))
        for i, (cin, cout) in enumerate(pairs):
            first, last = i == 0, i == len(pairs) - 1
            layers.append(nn.ConvTranspose2d(cin, cout, 4, 1 if first else 2, 0 if first else 1, bias=bias))
            if last:
                layers.append(nn.Tanh())
            else:
                layers += [nn.BatchNorm2d(cout), nn.ReLU(True)]
        self.main = nn.Sequential(*layers)
        self.z_dim = self.channels[0]
        self.img_channels = self.channels[-1]
        self.img_resolution = 4 * 2 ** (len(self.channels) - 2)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        if z.ndim == 2:
            z = z[:, :, None, None]
        return self.main(z.to(torch.float32))


def config_from_state_dict(sd: dict[str, torch.Tensor]) -> dict[str, Any]:
    """init_kwargs of the DCGANGenerator a `main.N.*` state dict was saved from."""
    convs = sorted((int(k.split(".")[1]), v) for k, v in sd.items()
                   if k.startswith("main.") and k.endswith(".weight") and v.ndim == 4)
    if not convs or convs[0][0] != 0:
        raise ValueError("not a DCGAN generator: no main.0.weight ConvTranspose2d kernel [nz, c, 4, 4]")
    if [i for i, _ in convs] != [3 * j for j in range(len(convs))]:
        raise ValueError(f"unexpected layer indices {[i for i, _ in convs]}: expected main.0, main.3, main.6, ...")
    channels = [convs[0][1].shape[0]] + [w.shape[1] for _, w in convs]
    return {"channels": channels, "bias": "main.0.bias" in sd}


def build(init_kwargs: dict[str, Any], state_dict: dict[str, torch.Tensor]) -> DCGANGenerator:
    """DCGANGenerator(**init_kwargs) with the weights loaded strictly, eval mode, gradients off."""
    G = DCGANGenerator(**init_kwargs)
    G.load_state_dict(state_dict, strict=True)
    return G.eval().requires_grad_(False)


def convert_checkpoint(path: str | Path, outdir: str | Path, overwrite: bool = False,
                       state_dict: dict[str, torch.Tensor] | None = None) -> Path:
    """A torch checkpoint (tensors only; `netG_state_dict` inside or a bare state dict) -> the served folder."""
    sd = state_dict if state_dict is not None else find_state_dict(read_checkpoint(path), CHECKPOINT_KEYS)
    init_kwargs = config_from_state_dict(sd)
    G = build(init_kwargs, sd)  # checks every key and shape before anything is written
    tensors = {k: v.to(torch.float32) if v.is_floating_point() else v for k, v in G.state_dict().items()}
    return write_folder(outdir, tensors, {"format": FORMAT, "class_name": "DCGANGenerator",
                                          "init_kwargs": init_kwargs, "source": Path(path).name},
                        overwrite=overwrite)


def load(path: str | Path, device: str | torch.device = "cpu") -> DCGANGenerator:
    """A converted DCGAN folder (safetensors + config.json) on `device`."""
    cfg = read_config(path)
    if cfg.get("format") != FORMAT:
        raise ValueError(f"{path}: not a converted DCGAN (config.json format {cfg.get('format')!r})")
    return build(cfg["init_kwargs"], read_weights(path)).to(device)


def slerp(z0: torch.Tensor, z1: torch.Tensor, t: float) -> torch.Tensor:
    """Spherical interpolation between Gaussian latents (White 2016, "Sampling Generative Networks"):
    keeps the norm a Gaussian z has, where a straight line passes through low-norm, atypical z."""
    a, b = z0.flatten(1), z1.flatten(1)
    cos = (a * b).sum(1, keepdim=True) / (a.norm(dim=1, keepdim=True) * b.norm(dim=1, keepdim=True)).clamp_min(1e-12)
    omega = cos.clamp(-1, 1).arccos()
    so = omega.sin()
    if float(so.abs().min()) < 1e-6:  # (anti)parallel: the straight line is as good as any arc
        return torch.lerp(z0, z1, t)
    out = (torch.sin((1 - t) * omega) * a + torch.sin(t * omega) * b) / so
    return out.reshape(z0.shape)


def z_scaled(z: torch.Tensor, scale: float) -> torch.Tensor:
    """z * scale: a smaller z stays nearer the mode, fidelity for diversity (the truncation idea,
    Brock et al. 2019 Sec. 3.1, done by shrinking instead of resampling)."""
    if not math.isfinite(scale):
        raise ValueError("z scale must be finite")
    return z * scale
