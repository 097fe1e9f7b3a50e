"""DCGAN behind the GanFamily interface: a seed's z, scaled by the one slider (truncation-like), slerp
between seeds, and a CLIP search over z."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from . import dcgan
from .family import Condition, GanControls, GanFamily
from .folder import read_weights
from .networks import z_from_seed
from .render import SearchCallback, SearchResult, latent_search

if TYPE_CHECKING:
    from app.clip.backend import ClipBackend
    from app.params import GanParams


class DCGANFamily(GanFamily):
    """The PyTorch DCGAN tutorial's generator (app.gan.dcgan)."""

    format = dcgan.FORMAT

    def __init__(self, G: dcgan.DCGANGenerator, device: torch.device) -> None:
        self.G = G.eval().requires_grad_(False)
        self.device = device

    @classmethod
    def load(cls, folder: Path, config: dict[str, Any], device: torch.device) -> DCGANFamily:
        return cls(dcgan.build(config["init_kwargs"], read_weights(folder)).to(device), device)

    @property
    def resolution(self) -> int:
        return int(self.G.img_resolution)

    def controls(self) -> GanControls:
        return GanControls(truncation="z_scale", truncation_range=(0.0, 2.0, 1.0), search="z", walk=("seed",))

    def seed_latent(self, seed: int, cond: Condition) -> torch.Tensor:
        """z [1, nz] of a seed (numpy RandomState, the same draw as the StyleGAN seeds)."""
        return z_from_seed(seed, self.G.z_dim).to(self.device)

    def styles(self, base: torch.Tensor, cond: Condition, p: GanParams,
               mix: torch.Tensor | None = None) -> torch.Tensor:
        return dcgan.z_scaled(base.to(self.device), p.truncation_psi)

    def synthesize(self, styles: torch.Tensor, p: GanParams) -> torch.Tensor:
        return self.G(styles.to(self.device))

    def interpolate(self, a: torch.Tensor, b: torch.Tensor, t: float) -> torch.Tensor:
        return dcgan.slerp(a, b, float(t))

    def search(self, clip: ClipBackend, text: torch.Tensor, weights: torch.Tensor, init: torch.Tensor,
               p: GanParams, callback: SearchCallback | None = None) -> SearchResult:
        """Adam on z; the pull is towards z = 0, the mode of the prior."""
        init = init.to(self.device)
        return latent_search(lambda z: self.G(z), clip, text, init, torch.zeros_like(init), p.search_steps,
                             p.search_lr, p.search_pull, p.search_cutn, callback, weights=weights)
