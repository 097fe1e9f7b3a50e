"""Fixture access for the StyleGAN2 tests: the shared NVIDIA-parity set described in its README."""

from __future__ import annotations

import json
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
