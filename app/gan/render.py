"""Pure functions the engine calls on a StyleGAN generator: z -> w, truncation, rendering, CLIP search.

Mapping and truncation are separate so a caller can cache the un-truncated ws of a seed and move the
psi slider without re-running the mapping network.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from app.clip.backend import ClipBackend

from .networks import Generator, z_from_seed
from .networks import truncate as _truncate_rows

# callback(i, image uint8 [N, H, W, C], loss) -> False to stop; None or True to go on.
SearchCallback = Callable[[int, torch.Tensor, float], "bool | None"]


def _labels(G: Generator, c: torch.Tensor | None, n: int, device: torch.device) -> torch.Tensor:
    if c is None:
        if G.c_dim > 0:
            raise ValueError(f"this generator is conditional: c must be [N, {G.c_dim}]")
        return torch.zeros([n, 0], device=device)
    c = c.to(device, torch.float32)
    return c.expand(n, -1) if c.shape[0] == 1 else c


@torch.no_grad()
def map_to_w(G: Generator, z: torch.Tensor, c: torch.Tensor | None = None) -> torch.Tensor:
    """Un-truncated ws [N, num_ws, w_dim] for z [N, z_dim] and optional labels/embeddings c [N or 1, c_dim]."""
    device = G.mapping.w_avg.device
    z = z.to(device, torch.float32)
    return G.mapping(z, _labels(G, c, z.shape[0], device), truncation_psi=1)


def seed_to_w(G: Generator, seed: int, c: torch.Tensor | None = None) -> torch.Tensor:
    """Un-truncated ws [1, num_ws, w_dim] of a seed (the same z as NVIDIA's gen_images.py)."""
    return map_to_w(G, z_from_seed(seed, G.z_dim), c)


def truncate(G: Generator, ws: torch.Tensor, psi: float, cutoff: int | None = None) -> torch.Tensor:
    """Truncation trick towards G's w_avg (Karras et al. 2019, Sec. 3.2) on rows [:cutoff] (all if None)."""
    return _truncate_rows(G.mapping.w_avg.to(ws.device), ws, psi, cutoff)


@torch.no_grad()
def conditional_centre(G: Generator, c: torch.Tensor | None, n: int = 256, seed: int = 0) -> torch.Tensor:
    """The truncation centre [1, num_ws, w_dim] for a condition: the mean w of c over n fixed z.

    Lerping towards the global w_avg blurs a conditional generator's condition away as psi shrinks;
    the condition's own mean keeps it (Sauer et al. 2022, StyleGAN-XL, Sec. 3). For an
    unconditional generator this is G's w_avg broadcast over the rows.
    """
    if not G.c_dim:
        return G.mapping.w_avg.view(1, 1, -1).expand(1, G.num_ws, -1)
    z = torch.randn(n, G.z_dim, generator=torch.Generator().manual_seed(seed))
    return map_to_w(G, z, c).mean(0, keepdim=True)


def to_uint8(img: torch.Tensor) -> torch.Tensor:
    """Generator output [N, C, H, W] in about [-1, 1] -> uint8 [N, H, W, C] (NVIDIA's 127.5x + 128 mapping)."""
    return (img.detach().permute(0, 2, 3, 1) * 127.5 + 128).clamp(0, 255).to(torch.uint8)


@torch.no_grad()
def render(G: Generator, ws: torch.Tensor, noise_mode: str = "const") -> torch.Tensor:
    """Synthesise ws [N, num_ws, w_dim] to a uint8 image tensor [N, H, W, C] on G's device."""
    return to_uint8(G.synthesis(ws.to(G.mapping.w_avg.device), noise_mode=noise_mode))


def make_cutouts(images: torch.Tensor, cutn: int, size: int, cut_pow: float = 1.0,
                 generator: torch.Generator | None = None) -> torch.Tensor:
    """[N, C, H, W] -> [cutn * N, C, size, size]: one whole-image overview, then random square crops.

    Crop sides are drawn as min_side + (side - min_side) * u ** cut_pow (the CLIP-guided-diffusion
    recipe; cut_pow > 1 favours small crops). Each cutout is resized to `size`.
    """
    side = min(images.shape[-2:])
    min_side = min(side, max(1, side // 4))
    cuts = [_resize(images, size)]
    for _ in range(cutn - 1):
        u = torch.rand([3], generator=generator)
        s = int(min_side + (side - min_side) * float(u[0]) ** cut_pow)
        y = int(float(u[1]) * (images.shape[-2] - s + 1))
        x = int(float(u[2]) * (images.shape[-1] - s + 1))
        cuts.append(_resize(images[:, :, y:y + s, x:x + s], size))
    return torch.cat(cuts)


def _resize(images: torch.Tensor, size: int) -> torch.Tensor:
    if images.shape[-2:] == (size, size):
        return images
    down = images.shape[-1] > size
    return F.interpolate(images, size=(size, size), mode="bilinear", align_corners=False, antialias=down)


def spherical_dist(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Squared great-circle distance between unit vectors: 2 * asin(|x - y| / 2) ** 2."""
    return (x - y).norm(dim=-1).div(2).clamp(max=1).arcsin().pow(2).mul(2)


@dataclass(frozen=True)
class SearchResult:
    ws: torch.Tensor  # [N, num_ws, w_dim], detached
    losses: list[float]
    stopped: bool  # True when the callback cancelled the search


def latent_search(synthesize: Callable[[torch.Tensor], torch.Tensor], clip: ClipBackend, text_emb: torch.Tensor,
                  init: torch.Tensor, centre: torch.Tensor | None = None, steps: int = 100, lr: float = 0.05,
                  pull: float = 0.0, cutn: int = 8, callback: SearchCallback | None = None, *, cut_pow: float = 1.0,
                  generator: torch.Generator | None = None, weights: torch.Tensor | None = None) -> SearchResult:
    """CLIP-guided latent optimisation with Adam (StyleCLIP, Patashnik et al. 2021, Sec. 4, Eq. 1), any family.

    loss = mean over cutouts of the prompts' weighted sum of spherical_dist(CLIP(cutout), text_emb)
           + pull * mean((x - centre) ** 2)
    `synthesize(x)` renders the latent x (same shape as `init`) to [N, C, H, W] in about [-1, 1]. The
    pull term is a per-element mean so `pull` means the same at any latent size. weights: [T] (a
    negative one pushes away from its prompt), as the CLIP score weighs the prompts; None weighs T
    prompts 1/T each. text_emb: [T, D] or [D], L2-normalised. The callback sees the render of
    iteration i and its loss, before that iteration's update. Returns the optimised x in `ws`.
    """
    device = init.device
    text = F.normalize(text_emb.to(device, torch.float32).reshape(-1, text_emb.shape[-1]), dim=-1)
    if weights is None:
        weights = torch.full([text.shape[0]], 1 / text.shape[0])
    weights = weights.to(device, torch.float32).reshape(-1)
    x = init.detach().to(device, torch.float32).clone().requires_grad_(True)
    opt = torch.optim.Adam([x], lr=lr, betas=(0.9, 0.999))
    losses: list[float] = []
    stopped = False
    for i in range(steps):
        img = synthesize(x)
        pixels = ((img + 1) / 2).clamp(0, 1)
        emb = clip.encode_image(make_cutouts(pixels, cutn, clip.image_size, cut_pow, generator))
        loss = (spherical_dist(emb[:, None, :], text[None, :, :]) * weights).sum(-1).mean()
        if pull and centre is not None:
            loss = loss + pull * (x - centre.detach()).square().mean()
        losses.append(float(loss.detach()))
        if callback is not None and callback(i, to_uint8(img), losses[-1]) is False:
            stopped = True
            break
        # autograd.grad keeps gradients out of G's parameters, whatever their requires_grad.
        (x.grad,) = torch.autograd.grad(loss, [x])
        opt.step()
    return SearchResult(ws=x.detach(), losses=losses, stopped=stopped)


def clip_search(G: Generator, clip: ClipBackend, text_emb: torch.Tensor, w_init: torch.Tensor, steps: int = 100,
                lr: float = 0.05, pull: float = 0.0, cutn: int = 8, callback: SearchCallback | None = None, *,
                w_plus: bool = True, noise_mode: str = "const", cut_pow: float = 1.0,
                generator: torch.Generator | None = None, weights: torch.Tensor | None = None,
                synthesis_kwargs: dict | None = None) -> SearchResult:
    """StyleCLIP-style search on a StyleGAN's w or w+ (`latent_search` with the pull towards w_avg).

    w_init: [N, num_ws, w_dim] or [N, w_dim]. With w_plus=False a single w per sample is optimised
    (row 0 of a ws init). `synthesis_kwargs` go to G.synthesis (e.g. a StyleGAN3 input transform).
    Returns ws [N, num_ws, w_dim].
    """
    device = G.mapping.w_avg.device
    w_init = w_init.detach().to(device, torch.float32)
    extra = dict(synthesis_kwargs or {})
    if w_plus:
        init = w_init if w_init.ndim == 3 else w_init.unsqueeze(1).repeat(1, G.num_ws, 1)
    else:
        init = w_init[:, 0] if w_init.ndim == 3 else w_init

    def expand(w: torch.Tensor) -> torch.Tensor:
        return w if w_plus else w.unsqueeze(1).repeat(1, G.num_ws, 1)

    def synthesize(w: torch.Tensor) -> torch.Tensor:
        return G.synthesis(expand(w), noise_mode=noise_mode, **extra)

    result = latent_search(synthesize, clip, text_emb, init, G.mapping.w_avg.detach(), steps, lr, pull, cutn, callback,
                           cut_pow=cut_pow, generator=generator, weights=weights)
    return SearchResult(ws=expand(result.ws), losses=result.losses, stopped=result.stopped)
