"""The live CLIP score and diversity both engines report, on the tiny CLIP."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from PIL import Image

from app.clip.backend import load_clip
from app.engine.scores import image_scores


@pytest.fixture(scope="module")
def clip(tiny_clip_dir: Path):
    return load_clip(str(tiny_clip_dir), torch.device("cpu"))


def test_score_depends_on_the_prompt_and_weights(clip) -> None:
    img = Image.new("RGB", (40, 24), (10, 200, 30))
    green, _ = image_scores(clip, [img], "green")
    purple, _ = image_scores(clip, [img], "purple")
    assert -1.0 <= green <= 1.0 and green != purple
    # "green:1 | purple:-1" weights sum to 0, so they are used as given: the difference of the two.
    both, _ = image_scores(clip, [img], "green:1 | purple:-1")
    assert both == pytest.approx(green - purple, abs=2e-4)


def test_diversity_is_zero_for_copies_positive_for_different_images(clip) -> None:
    red, blue = Image.new("RGB", (32, 32), (220, 20, 20)), Image.new("RGB", (32, 32), (20, 20, 220))
    _, same = image_scores(clip, [red, red, red], "x")
    _, spread = image_scores(clip, [red, blue], "x")
    assert same == pytest.approx(0.0, abs=1e-3)
    assert 0 < spread <= 2 ** 0.5 + 1e-6


def test_what_does_not_apply_is_none(clip) -> None:
    img = Image.new("RGB", (32, 32), (220, 20, 20))
    assert image_scores(clip, [img], "red")[1] is None  # one image has no spread
    assert image_scores(clip, [img, img], "")[0] is None  # a GAN render may have no prompt
    assert image_scores(None, [img, img], "red") == (None, None)
