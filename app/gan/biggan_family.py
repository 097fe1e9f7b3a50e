"""BigGAN behind the GanFamily interface: a class picker, the truncated normal, class interpolation and a
CLIP search over z and the class embedding together.

styles = [truncation * z, e(y)] ([N, 2 * z_dim]): what the generator's first layer and every
conditional batch norm read. A linear walk between two styles of one seed is the lerp of the two
class embeddings (BigGAN Sec. 5 / Fig. 8's class interpolation); between seeds it is a line in z.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from . import biggan
from .family import Condition, GanControls, GanFamily
from .folder import read_weights
from .render import SearchCallback, SearchResult, latent_search

if TYPE_CHECKING:
    from app.clip.backend import ClipBackend
    from app.params import GanParams


class BigGANFamily(GanFamily):
    """BigGAN-deep from the `pytorch_pretrained_biggan` layout (app.gan.biggan)."""

    format = biggan.FORMAT

    def __init__(self, G: biggan.BigGAN, class_names: list[str] | None, device: torch.device) -> None:
        self.G = G.eval().requires_grad_(False)
        self.device = device
        self.class_names = class_names

    @classmethod
    def load(cls, folder: Path, config: dict[str, Any], device: torch.device) -> BigGANFamily:
        G = biggan.build(config["init_kwargs"], read_weights(folder)).to(device)
        names = config.get("class_names")
        if names is not None and len(names) != G.num_classes:
            raise ValueError(f"config.json lists {len(names)} class names for {G.num_classes} classes")
        return cls(G, names, device)

    @property
    def resolution(self) -> int:
        return int(self.G.img_resolution)

    def controls(self) -> GanControls:
        # Without a names file the picker lists the ids; a name or "#id" picks a class.
        names = tuple(self.class_names) if self.class_names else tuple(str(i) for i in range(self.G.num_classes))
        # The slider stops at 0.05 (its step); requests may go down to any value above 0.
        return GanControls(truncation="truncated_normal", truncation_range=(0.05, 1.0, 0.4), condition="class",
                           classes=names, search="z+class", walk=("seed", "class"))

    def info(self) -> dict[str, Any]:
        return {**super().info(), "num_classes": self.G.num_classes,
                "class_names": "names" if self.class_names else "ids",
                "truncation_threshold": biggan.TRUNCATION_THRESHOLD}

    def class_condition(self, index: int) -> torch.Tensor:
        return self.G.class_embedding([index])

    def problem(self, p: GanParams) -> str | None:
        if not 0 < p.truncation_psi <= 1:
            return "truncation_psi must be in (0, 1] for BigGAN (it scales the truncated normal and picks the " \
                   "batch-norm statistics)"
        return None

    def seed_latent(self, seed: int, cond: Condition) -> torch.Tensor:
        """The seed's truncated-normal z at truncation 1 (the truncation value scales it in `styles`)."""
        return biggan.truncated_z(seed, self.G.z_dim, 1.0).to(self.device)

    def styles(self, base: torch.Tensor, cond: Condition, p: GanParams,
               mix: torch.Tensor | None = None) -> torch.Tensor:
        if cond.c is None:
            raise ValueError("BigGAN needs a class")
        z = base.to(self.device) * p.truncation_psi
        return torch.cat([z, cond.c.to(self.device).expand(z.shape[0], -1)], dim=1)

    def synthesize(self, styles: torch.Tensor, p: GanParams) -> torch.Tensor:
        z, e = styles.to(self.device).split(self.G.z_dim, dim=1)
        return self.G.synthesize(z, e, p.truncation_psi)

    def search(self, clip: ClipBackend, text: torch.Tensor, weights: torch.Tensor, init: torch.Tensor,
               p: GanParams, callback: SearchCallback | None = None) -> SearchResult:
        """Adam on z and e(y) together; the pull is towards z = 0 (the truncation's centre) and the
        starting class embedding."""
        init = init.to(self.device)
        centre = torch.cat([torch.zeros_like(init[:, :self.G.z_dim]), init[:, self.G.z_dim:]], dim=1)
        return latent_search(lambda s: self.synthesize(s, p), clip, text, init, centre, p.search_steps,
                             p.search_lr, p.search_pull, p.search_cutn, callback, weights=weights)
