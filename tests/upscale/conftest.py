"""Fixtures of the upscaler tests: tiny upscalers and a tiny 256 px set, in the real formats."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest


@pytest.fixture(scope="session")
def tiny_base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from app.demo_models import build_tiny_upscalers

    return build_tiny_upscalers(tmp_path_factory.mktemp("base"))[1]


@pytest.fixture(scope="session")
def tiny_hr(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 256 px set in the real format (emoji256.npz), 64 px pictures: three training rows, one held out."""
    from app.train.data import Records, save_npz

    folder = tmp_path_factory.mktemp("hr")
    rng = np.random.default_rng(0)
    save_npz(folder / "emoji256.npz", Records(rng.integers(0, 256, (4, 64, 64, 3), dtype=np.uint8),
                                              [["a red square"], ["a blue dot"]] * 2, ["a", "b", "c", "d"],
                                              ["noto"] * 4, ["train", "train", "train", "heldout"]))
    return folder
