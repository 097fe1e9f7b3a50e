"""Fixture access for the StyleGAN2 tests: the shared NVIDIA-parity set described in its README."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file


@dataclass(frozen=True)
class GanSet:
    name: str
    folder: Path
    prefix: str
    generator_file: Path
    pickle_file: Path
    init_kwargs: dict
    key_order: list[str]
    mixing_index: int
    ref: dict[str, torch.Tensor]

    def r(self, key: str) -> torch.Tensor | None:
        return self.ref.get(self.prefix + key)


@pytest.fixture(scope="session")
def gan_fixture_dir(shared_dir: Path) -> Path:
    folder = shared_dir / "fixtures" / "stylegan2"
    if not (folder / "config.json").is_file():
        pytest.skip("stylegan2 fixture missing")
    return folder


@pytest.fixture(scope="session")
def gan_sets(gan_fixture_dir: Path) -> dict[str, GanSet]:
    cfg = json.loads((gan_fixture_dir / "config.json").read_text())
    ref = load_file(gan_fixture_dir / cfg["reference_file"])
    sets = {}
    for name, s in cfg["sets"].items():
        sets[name] = GanSet(
            name=name, folder=gan_fixture_dir, prefix=s["reference_key_prefix"],
            generator_file=gan_fixture_dir / s["generator_file"], pickle_file=gan_fixture_dir / s["pickle_file"],
            init_kwargs=s["init_kwargs"], key_order=[k[0] for k in s["keys"]], mixing_index=s["mixing_index"], ref=ref,
        )
    return sets


@pytest.fixture(params=["uncond", "cond"])
def gan_set(request: pytest.FixtureRequest, gan_sets: dict[str, GanSet]) -> GanSet:
    return gan_sets[request.param]


def _close(actual: torch.Tensor, expected: torch.Tensor) -> None:
    assert actual.shape == expected.shape and actual.dtype == torch.float32
    torch.testing.assert_close(actual, expected, atol=1e-4, rtol=0)


@torch.no_grad()
def check_reference_cases(G: torch.nn.Module, s: GanSet) -> None:
    """Every reference case of the README: ws_psi07, img_psi07, ws/img_psi10, ws2, mixed, psi05_cutoff2, noise_none."""
    from app.gan.networks import mix_styles

    r = s.r
    c, c2 = r("c"), r("c2")

    def synth(ws: torch.Tensor, mode: str = "const") -> torch.Tensor:
        return G.synthesis(ws, noise_mode=mode, force_fp32=True)

    ws07 = G.mapping(r("z"), c, truncation_psi=0.7, truncation_cutoff=None)
    _close(ws07, r("ws_psi07"))
    _close(synth(ws07), r("img_psi07"))
    ws10 = G.mapping(r("z"), c, truncation_psi=1.0)
    _close(ws10, r("ws_psi10"))
    _close(synth(ws10), r("img_psi10"))
    ws2 = G.mapping(r("z2"), c2, truncation_psi=0.7)
    _close(ws2, r("ws2"))
    mixed = mix_styles(ws07, ws2, s.mixing_index)
    _close(mixed, r("ws_mixed"))
    _close(synth(mixed), r("img_mixed"))
    ws05 = G.mapping(r("z"), c, truncation_psi=0.5, truncation_cutoff=2)
    _close(ws05, r("ws_psi05_cutoff2"))
    _close(synth(ws05), r("img_psi05_cutoff2"))
    _close(synth(ws07, "none"), r("img_psi07_noise_none"))


@pytest.fixture(scope="session")
def reference_cases() -> Callable[[torch.nn.Module, GanSet], None]:
    return check_reference_cases
