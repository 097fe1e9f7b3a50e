"""queue.js and input.js under node (tests/frontend/queue_check.mjs); their rules against the server's."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from app.api.messages import SEED_RULE
from app.params import one_line

HERE = Path(__file__).resolve().parent


@pytest.fixture(scope="module")
def out() -> dict:
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed")
    proc = subprocess.run([node, str(HERE / "queue_check.mjs")], check=False, capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def test_page_and_server_make_the_same_one_line_prompt(out: dict) -> None:
    assert out["one_line"] == [one_line(text) for text in out["lines"]]
    assert not any("\n" in text for text in out["one_line"])


def test_page_and_server_state_the_same_seed_rule(out: dict) -> None:
    assert out["seed_rule"] == SEED_RULE
