"""variations.js under node (tests/frontend/variations_check.mjs), its params against the server's rules."""

from __future__ import annotations

import pytest

from app.params import DiffusionParams, strength
from tests.frontend.conftest import node_check


@pytest.fixture(scope="module")
def out() -> dict:
    return node_check("variations_check.mjs")


def test_the_page_s_strength_is_the_one_the_server_records(out: dict) -> None:
    """The strength the gallery records is the chosen one to within a step."""
    for (steps, chosen), skip in zip(out["pairs"], out["skips"], strict=True):
        assert 0 <= skip < steps
        nearest = abs(strength(steps, skip) - chosen) <= 0.5 / steps + 0.005
        assert nearest or skip == steps - 1, (steps, chosen, skip)  # else: at least one step runs


def test_variation_params_are_valid_generate_params(out: dict) -> None:
    params = DiffusionParams.model_validate(out["variation"])
    assert params.batch == 4 and params.init_image == "gallery:0123456789abcdef01234567" and params.skip_steps == 10
