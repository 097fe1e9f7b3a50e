"""Prompt search for the gallery: a substring as a SQL LIKE pattern whose wildcards are literal."""

from __future__ import annotations

MAX_QUERY_CHARS = 200  # longer than any prompt worth searching for; the HTTP edge refuses more
LIKE_ESCAPE = "\\"
# Matches a row whose prompt (the `prompt` of its params JSON) contains the pattern; ASCII letters
# compare case-insensitively (SQLite's LIKE), other characters exactly.
PROMPT_LIKE = "json_extract(params, '$.prompt') LIKE ? ESCAPE '\\'"


def like_pattern(text: str) -> str:
    """`%text%` with `\\`, `%` and `_` escaped, so a query such as `100%_cat` matches only itself."""
    escaped = (text.replace(LIKE_ESCAPE, LIKE_ESCAPE * 2)
               .replace("%", LIKE_ESCAPE + "%").replace("_", LIKE_ESCAPE + "_"))
    return f"%{escaped}%"


def normalise_query(q: str | None) -> str | None:
    """The search text with outer spaces removed; None (match everything) when nothing is left."""
    if q is None:
        return None
    q = q.strip()
    return q or None
