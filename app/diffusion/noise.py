"""Deterministic Gaussian noise addressed by (seed, stream, index).

Each image of a batch has its own seed, and each sampler step its own index, so the noise of
step k never depends on how many draws happened before it: a run forked at step k sees the
same noise as the original, and image j of a batch equals a single run with seed j.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor

INITIAL, STEP, CUTS = 1, 2, 3  # streams
_MASK = (1 << 64) - 1


def mix(seed: int, stream: int, index: int) -> int:
    """A 63-bit generator seed from three integers (SplitMix64 finaliser, Steele et al. 2014)."""
    z = (seed * 0x9E3779B97F4A7C15 + stream * 0xBF58476D1CE4E5B9 + index * 0x94D049BB133111EB + 1) & _MASK
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK
    return (z ^ (z >> 31)) & ((1 << 63) - 1)


def generator(seed: int, stream: int, index: int) -> torch.Generator:
    return torch.Generator("cpu").manual_seed(mix(seed, stream, index))


def gaussian(seeds: Sequence[int], shape: Sequence[int], stream: int, index: int,
             device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32) -> Tensor:
    """[len(seeds), *shape] standard normal, drawn on the CPU so it is the same on every device."""
    out = [torch.randn(tuple(shape), generator=generator(s, stream, index), dtype=torch.float32) for s in seeds]
    return torch.stack(out).to(device, dtype)


def initial_noise(seeds: Sequence[int], shape: Sequence[int], device: torch.device | str = "cpu",
                  dtype: torch.dtype = torch.float32) -> Tensor:
    return gaussian(seeds, shape, INITIAL, 0, device, dtype)


def step_noise(seeds: Sequence[int], shape: Sequence[int], device: torch.device | str = "cpu",
               dtype: torch.dtype = torch.float32) -> Callable[[int], Tensor]:
    """`noise(i)`: the fresh noise a stochastic sampler adds at step i."""
    return lambda i: gaussian(seeds, shape, STEP, i, device, dtype)
