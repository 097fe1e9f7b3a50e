"""queue.js and input.js under node (tests/frontend/queue_check.mjs); their rules against the server's."""

from __future__ import annotations

import pytest

from app.api.messages import SEED_RULE
from app.params import one_line
from tests.frontend.conftest import node_check


@pytest.fixture(scope="module")
def out() -> dict:
    return node_check("queue_check.mjs")


def test_page_and_server_make_the_same_one_line_prompt(out: dict) -> None:
    assert out["one_line"] == [one_line(text) for text in out["lines"]]
    assert not any("\n" in text for text in out["one_line"])


def test_page_and_server_state_the_same_seed_rule(out: dict) -> None:
    assert out["seed_rule"] == SEED_RULE
