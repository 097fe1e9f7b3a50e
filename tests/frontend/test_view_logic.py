"""The page's plot scales, size menus and prompt-hint helpers (frontend/js plot.js, sizes.js,
prompt_hints.js) under node; view_check.mjs asserts and exits non-zero on failure."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent


def test_view_helpers_under_node() -> None:
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed")
    proc = subprocess.run([node, str(HERE / "view_check.mjs")], check=False, capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == {"ok": True}
