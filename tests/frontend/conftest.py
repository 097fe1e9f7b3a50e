"""Shared by the page's tests: run one node check beside this file and read its JSON; read the gallery."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any
from urllib.request import urlopen

import pytest

HERE = Path(__file__).resolve().parent


def node_check(script: str) -> Any:
    """Run tests/frontend/`script` under node (skip without node); it asserts and exits non-zero on
    failure, and prints JSON for the Python side to check against the server's rules."""
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed")
    proc = subprocess.run([node, str(HERE / script)], check=False, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def gallery(server: str) -> list[dict]:
    """The server's gallery list (newest first), as the page reads it."""
    with urlopen(server + "/api/gallery") as res:
        return json.loads(res.read())
