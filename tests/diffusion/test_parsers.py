from __future__ import annotations

import pytest

from app.diffusion.prompts import MAX_PROMPTS, MAX_WEIGHT, parse_prompt
from app.diffusion.schedules import LENGTH, at_step, parse_schedule


def test_prompt_weights() -> None:
    assert parse_prompt("a red fox:1 | blurry:-0.5") == [("a red fox", 1.0), ("blurry", -0.5)]
    assert parse_prompt("a red fox") == [("a red fox", 1.0)]
    assert parse_prompt("a photo: at dusk|night: 2.5") == [("a photo: at dusk", 1.0), ("night", 2.5)]
    assert parse_prompt("at 12:30:1") == [("at 12:30", 1.0)]
    assert parse_prompt("x:.5 | | y:1e-1 |z:") == [("x", 0.5), ("y", 0.1), ("z:", 1.0)]
    assert parse_prompt("a:b:c") == [("a:b:c", 1.0)]
    assert parse_prompt(f"a:{MAX_WEIGHT} | b:-{MAX_WEIGHT}") == [("a", MAX_WEIGHT), ("b", -MAX_WEIGHT)]


def test_prompt_refusals() -> None:
    for bad in ("", " | ", ":1", "|:2|", "x:1e999", "x:-1e999", "x | y:101", "x:-100.5"):
        with pytest.raises(ValueError):
            parse_prompt(bad)
    with pytest.raises(ValueError):
        parse_prompt("|".join(["a"] * (MAX_PROMPTS + 1)))


def test_schedule_forms() -> None:
    s = parse_schedule("[12]*400+[4]*600")
    assert len(s) == LENGTH and s[0] == 12 and s[399] == 12 and s[400] == 4 and s[-1] == 4
    assert parse_schedule("[0.2]*400+[0]*600")[0] == 0.2
    short = parse_schedule("[1, 2]*3")
    assert short[:6] == (1, 2, 1, 2, 1, 2) and short[-1] == 2 and len(short) == LENGTH
    assert parse_schedule(" [ 5 ] * 1000 ") == (5.0,) * LENGTH
    assert at_step(s, 0, 10) == 12 and at_step(s, 3, 10) == 12 and at_step(s, 4, 10) == 4 and at_step(s, 9, 10) == 4


@pytest.mark.parametrize("bad", [
    "", "[]", "[1]*1001", "[1]*400+[2]*601", "[1]*99999999999", "[1]**1000", "[1]*10**9",
    "__import__('os').system('id')", "[1]*(10)", "[[1]]", "[-1]*1000", "[1e9]", "1*1000", "[1]+",
    "[" * 150 + "1" + "]" * 50, "[1]*1+" * 40, "[1]*1000; import os",
])
def test_schedule_refuses(bad: str) -> None:
    with pytest.raises(ValueError):
        parse_schedule(bad)
