"""The page's DOM-free modules (runs.js, specs.js, compare.js) under node; their messages against the schemas."""

from __future__ import annotations

import pytest

from app.api.protocol import client_message
from app.params import DiffusionParams, GanParams, LiveParams
from tests.frontend.conftest import node_check


@pytest.fixture(scope="module")
def out() -> dict:
    return node_check("logic_check.mjs")


def test_run_store_assertions_pass(out: dict) -> None:
    assert out  # logic_check.mjs asserts the RunStore behaviour and exits non-zero on failure


def test_live_keys_match_live_params(out: dict) -> None:
    assert out["live_keys"] == sorted(LiveParams.model_fields)


def test_diffusion_params_from_controls_validate(out: dict) -> None:
    p = DiffusionParams.model_validate(out["diffusion_defaults"])
    assert p.seed is None and p.init_image is None and p.skip_steps == 0
    # The page always sends a number for eta (its sampler's customary one, 0 for dpmpp_2m, which
    # ignores it); the schema's None means the same thing.
    skip = {"prompt", "negative_prompt", "seed", "init_image", "batch", "eta"}
    assert p.model_dump(exclude=skip) == DiffusionParams(prompt="x").model_dump(exclude=skip)
    assert p.eta == 0
    seeded = DiffusionParams.model_validate(out["diffusion_seeded"])
    assert (seeded.seed, seeded.skip_steps, seeded.init_image, seeded.negative_prompt) == (7, 5, "abc123", "blur")
    client_message.validate_python({"type": "generate", "params": out["diffusion_seeded"]})


def test_gan_params_from_controls_validate(out: dict) -> None:
    g = GanParams.model_validate(out["gan_defaults"])
    assert g.grid == 1 and g.seed == 0
    grid = GanParams.model_validate(out["gan_grid"])
    assert grid.grid == 8 and grid.seed is None and grid.mix_seed == 3
    client_message.validate_python({"type": "generate_gan", "params": out["gan_grid"]})
    assert g.search_steps == 0 and g.supersedable is False, "Render renders and is kept"
    search = GanParams.model_validate(out["gan_search"])
    assert search.search_steps == 50 and search.save and not search.supersedable  # the search button
    walk = GanParams.model_validate(out["gan_walk"])
    assert (walk.walk_frames, walk.walk_seed, walk.grid, walk.search_steps) == (8, 9, 1, 0) and not walk.supersedable
    sg3 = GanParams.model_validate(out["gan_sg3"])
    assert sg3.rotate == 30 and sg3.supersedable


def test_compare_table_shows_evaluation_v2_rows(out: dict) -> None:
    # logic_check.mjs checks the cells; here, that the table keeps its older rows and adds the new ones in order
    assert out["compare_v2_rows"] == ["R@1 / R@5 (judge)", "FID (judge)", "diversity (judge)", "ms / image",
                                      "precision / recall (judge)", "style coverage (of 4)", "held-out concepts R@1",
                                      "compositional R@1 of 16"]


def test_page_secret_is_a_valid_hello(out: dict) -> None:
    msg = client_message.validate_python({"type": "hello", "owner": out["owner_secret"]})
    assert msg.type == "hello"
