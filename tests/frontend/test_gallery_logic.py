"""The gallery's DOM-free helpers (frontend/js/gallery_paging.js) under node: page queries, the pager's
words and buttons, download file names; gallery_check.mjs asserts and exits non-zero on failure."""

from __future__ import annotations

from app.store.search import MAX_QUERY_CHARS
from tests.frontend.conftest import HERE, node_check


def test_gallery_helpers_under_node() -> None:
    assert node_check("gallery_check.mjs") == {"ok": True}


def test_the_page_caps_the_search_as_the_server_does() -> None:
    source = (HERE.parents[1] / "frontend" / "js" / "gallery_paging.js").read_text(encoding="utf-8")
    assert f"export const MAX_QUERY_CHARS = {MAX_QUERY_CHARS};" in source
