"""The page's plot scales, size menus and prompt-hint helpers (frontend/js plot.js, sizes.js,
prompt_hints.js) under node; view_check.mjs asserts and exits non-zero on failure."""

from __future__ import annotations

from tests.frontend.conftest import node_check


def test_view_helpers_under_node() -> None:
    assert node_check("view_check.mjs") == {"ok": True}
