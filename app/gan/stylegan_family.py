"""StyleGAN2 and StyleGAN3 behind the GanFamily interface: seeds -> w (mapping), truncation towards a centre in W,
style mixing, synthesis, and the CLIP search over w+.

The truncation centre of a conditional generator is the condition's own mean w (StyleGAN-XL, Sauer
et al. 2022, Sec. 3), cached here per condition; the engine caches the un-truncated w per seed.
"""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from .family import Condition, GanControls, GanFamily
from .networks import mix_styles, truncate
from .render import SearchCallback, SearchResult, clip_search, conditional_centre, seed_to_w

if TYPE_CHECKING:
    from app.clip.backend import ClipBackend
    from app.params import GanParams

CENTRES = 64


class StyleGAN2Family(GanFamily):
    """NVIDIA StyleGAN2 (stylegan2-ada-pytorch / stylegan3 repo `networks_stylegan2`); c = a CLIP text
    embedding when c_dim > 0 (Noisescope's text-conditioned generators)."""

    format = "noisescope-stylegan2"

    def __init__(self, G: torch.nn.Module, device: torch.device) -> None:
        self.G = G.eval().requires_grad_(False)
        self.device = device
        self._centres: OrderedDict[str, torch.Tensor] = OrderedDict()

    @classmethod
    def load(cls, folder: Path, config: dict[str, Any], device: torch.device) -> StyleGAN2Family:
        from .convert import load_generator

        return cls(load_generator(folder, device), device)

    @property
    def resolution(self) -> int:
        return int(self.G.img_resolution)

    def controls(self) -> GanControls:
        return GanControls(truncation="w_lerp", truncation_range=(-1.0, 2.0, 0.7), truncation_cutoff=True,
                           mixing_layers=int(self.G.num_ws), noise=True,
                           condition="text" if self.G.c_dim else "none", search="w+")

    def info(self) -> dict[str, Any]:
        return {**super().info(), "w_dim": int(self.G.w_dim), "num_ws": int(self.G.num_ws),
                "truncation_centre": "prompt" if self.G.c_dim else "w_avg"}

    def synthesis_kwargs(self, p: GanParams) -> dict[str, Any]:
        """Keyword args of G.synthesis for the control values (StyleGAN2: the noise mode)."""
        return {"noise_mode": p.noise_mode}

    def seed_latent(self, seed: int, cond: Condition) -> torch.Tensor:
        return seed_to_w(self.G, seed, cond.c)

    def centre(self, cond: Condition) -> torch.Tensor:
        """Truncation centre [1, num_ws, w_dim] for a condition (cached per condition key)."""
        if cond.key not in self._centres:
            self._centres[cond.key] = conditional_centre(self.G, cond.c)
            while len(self._centres) > CENTRES:
                self._centres.popitem(last=False)
        self._centres.move_to_end(cond.key)
        return self._centres[cond.key]

    def styles(self, base: torch.Tensor, cond: Condition, p: GanParams,
               mix: torch.Tensor | None = None) -> torch.Tensor:
        centre = self.centre(cond)
        ws = truncate(centre, base, p.truncation_psi, p.truncation_cutoff)
        if mix is not None:
            other = truncate(centre, mix, p.truncation_psi, p.truncation_cutoff)
            ws = mix_styles(ws, other.expand_as(ws), p.mix_layer)
        return ws

    def synthesize(self, styles: torch.Tensor, p: GanParams) -> torch.Tensor:
        return self.G.synthesis(styles.to(self.device), **self.synthesis_kwargs(p))

    def search(self, clip: ClipBackend, text: torch.Tensor, weights: torch.Tensor, init: torch.Tensor,
               p: GanParams, callback: SearchCallback | None = None) -> SearchResult:
        kwargs = self.synthesis_kwargs(p)
        noise_mode = kwargs.pop("noise_mode", "const")
        return clip_search(self.G, clip, text, init, steps=p.search_steps, lr=p.search_lr, pull=p.search_pull,
                           cutn=p.search_cutn, noise_mode=noise_mode, callback=callback, weights=weights,
                           synthesis_kwargs=kwargs)


class StyleGAN3Family(StyleGAN2Family):
    """NVIDIA StyleGAN3 (T and R): StyleGAN2's mapping, truncation and mixing, no noise inputs, and the
    input transform (translate x / y, rotate) of the Fourier features, as the stylegan3 visualizer."""

    format = "noisescope-stylegan3"

    def controls(self) -> GanControls:
        return GanControls(truncation="w_lerp", truncation_range=(-1.0, 2.0, 0.7), truncation_cutoff=True,
                           mixing_layers=int(self.G.num_ws), noise=False, input_transform=True,
                           condition="text" if self.G.c_dim else "none", search="w+")

    def synthesis_kwargs(self, p: GanParams) -> dict[str, Any]:
        from .stylegan3 import make_transform

        kwargs: dict[str, Any] = {"noise_mode": "const"}
        if (p.translate_x, p.translate_y, p.rotate) != (0, 0, 0):
            kwargs["transform"] = make_transform(p.translate_x, p.translate_y, p.rotate).to(self.device)
        return kwargs
