"""Model-aware controls, the plot and the layout, in Debian's chromium against the real server on tiny models:
sizes from the model with a warning, a viewer that clears for a new run, one CLIP score in the header and
the plot, tokenizer hints and completions, no sideways scroll at 390 and 1440 px, keyboard reach and
distinct names for repeated buttons."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.frontend.test_browser import page, serve, server  # noqa: F401  (fixtures)

pytestmark = [pytest.mark.browser, pytest.mark.slow]

WORDS = ["cat", "castle", "cactus", "face", "red", "heart", "smiling", "dark"]


@pytest.fixture
def server_words(tmp_path: Path, tiny_clip_dir: Path) -> Iterator[str]:
    """A tiny pipeline whose tokenizer knows a few words whole (the default tiny one knows none)."""
    from app.demo_models import build_tiny_diffusion

    folder = build_tiny_diffusion(tmp_path / "sd-words", seed=0, words=WORDS)
    yield from serve(folder, tiny_clip_dir, tmp_path)


def open_page(pg, url: str) -> list[str]:
    errors: list[str] = []
    pg.on("pageerror", lambda e: errors.append(str(e)))
    pg.goto(url + "/")
    pg.wait_for_selector("#conn[data-state='open']", timeout=20_000)
    pg.wait_for_function("() => document.querySelectorAll('#d-width option').length > 0 && "
                         "[...document.querySelectorAll('#d-width option')].some(o => /trained/.test(o.text))")
    return errors


def set_range(pg, selector: str, value: int) -> None:
    pg.eval_on_selector(selector, f"el => {{ el.value = {value}; el.dispatchEvent(new Event('input')); }}")


def run_once(pg, prompt: str, steps: int) -> None:
    before = pg.locator("#gallery .card").count()
    pg.fill("#prompt", prompt)
    set_range(pg, "#d-steps", steps)
    pg.click("#generate")
    pg.wait_for_function(f"() => document.querySelectorAll('#gallery .card').length > {before}", timeout=120_000)
    pg.wait_for_function(f"() => document.getElementById('d-stat-steps').innerText === '{steps}/{steps}'")


NO_SIDEWAYS = "() => document.documentElement.scrollWidth <= window.innerWidth"
IN_VIEW = """sel => { const r = document.querySelector(sel).getBoundingClientRect();
  return r.width > 0 && r.left >= 0 && r.right <= window.innerWidth; }"""
NAMELESS_OR_REPEATED = """() => {
  const shown = (n) => n.offsetParent !== null || n.getClientRects().length > 0;
  const name = (n) => (n.getAttribute('aria-label') || (n.labels && [...n.labels].map(l => l.innerText).join(' '))
                       || n.innerText || n.title || '').trim();
  const buttons = [...document.querySelectorAll('button')].filter(shown).map(name);
  const repeated = buttons.filter((b, i) => buttons.indexOf(b) !== i);
  const fields = [...document.querySelectorAll('input, select, textarea')].filter(shown)
    .filter(n => !name(n)).map(n => n.id || n.outerHTML.slice(0, 60));
  return { repeated, nameless: fields, count: buttons.length };
}"""


def test_phone_and_desktop_layout(server: str, page, tmp_path: Path) -> None:  # noqa: F811
    errors = open_page(page, server)
    for width in (390, 1440, 360, 2560):
        page.set_viewport_size({"width": width, "height": 900})
        page.wait_for_function(NO_SIDEWAYS)
        if width == 390:
            run_once(page, "red heart", 6)
        set_range(page, "#d-scrub", 3)
        assert page.evaluate(NO_SIDEWAYS), f"sideways scroll at {width} px"
        for sel in ("#generate", "#d-fork", "#d-stat-clip", "#d-stat-steps", "#d-steps", "#d-cfg_scale",
                    "#d-scrub", "#d-plot", "#d-width", "#d-init-file"):
            page.locator(sel).scroll_into_view_if_needed()
            assert page.evaluate(IN_VIEW, sel), f"{sel} is clipped at {width} px"
        page.locator("#d-fork").click(trial=True)  # visible, enabled and not covered
        if width in (390, 1440):  # the two widths; NOISESCOPE_SCREENSHOTS=dir keeps them
            shot = Path(os.environ.get("NOISESCOPE_SCREENSHOTS", tmp_path)) / f"studio-{width}.png"
            page.screenshot(path=str(shot), full_page=True)
            assert shot.stat().st_size > 10_000
        if width == 390:
            columns = page.eval_on_selector("#gallery", "g => getComputedStyle(g).gridTemplateColumns.split(' ').length")
            assert columns == 2, "a phone shows the gallery in two columns, not one tall column"
            page.click("#d-fork")  # forking works at phone width
            page.wait_for_function("() => document.querySelectorAll('#gallery .card').length === 2", timeout=120_000)
    names = page.evaluate(NAMELESS_OR_REPEATED)
    assert names["count"] > 10 and names["repeated"] == [] and names["nameless"] == [], names
    assert page.inner_text("#errors").strip() == ""
    assert not errors, errors


def test_every_control_reachable_by_keyboard(server: str, page) -> None:  # noqa: F811
    open_page(page, server)
    page.focus("#prompt")
    reached: list[str] = []
    for _ in range(150):
        page.keyboard.press("Tab")
        reached.append(page.evaluate("() => document.activeElement.id || document.activeElement.tagName"))
    focusable = page.evaluate("""() => [...document.querySelectorAll('button, input, select, textarea, a[href]')]
        .filter(n => !n.disabled && (n.offsetParent !== null || n.getClientRects().length > 0)).map(n => n.id)
        .filter(Boolean)""")
    missing = [i for i in focusable if i not in reached and i != "prompt"]
    assert missing == [], missing
    for wanted in ("generate", "d-width", "d-init-file", "d-scrub", "d-live", "gallery-refresh", "d-cfg_scale"):
        assert wanted in reached
    assert page.evaluate("() => document.querySelector('label[for=\"d-init-file\"]').innerText") == "init image"


def test_sizes_viewer_and_one_clip_score(server: str, page) -> None:  # noqa: F811
    errors = open_page(page, server)
    options = page.eval_on_selector_all("#d-width option", "os => os.map(o => [o.value, o.text])")
    values = [int(v) for v, _ in options]
    # the tiny model: trained at 32 px, latent grid 8 px: 16..128, nothing that only gives noise
    assert values[0] == 16 and values[-1] == 128 and all(v % 8 == 0 for v in values)
    assert ["32", "32 (trained size)"] in options and 8 not in values and 1024 not in values
    assert page.input_value("#d-width") == "64" or int(page.input_value("#d-width")) in values
    page.select_option("#d-width", "32")
    page.select_option("#d-height", "32")
    assert page.is_hidden("#d-size-warning")
    page.select_option("#d-width", "64")
    assert page.is_visible("#d-size-warning") and "above the 32 px" in page.inner_text("#d-size-warning")
    page.select_option("#d-width", "32")
    assert page.is_hidden("#d-size-warning")

    set_range(page, "#d-full_decode_every", 2)
    run_once(page, "red heart", 6)
    header = page.inner_text("#d-stat-clip")
    label = page.get_attribute("#d-plot", "aria-label")
    assert f"CLIP score {header} at step 6" in label, (header, label)  # one score: the header is the plot's last
    scored = page.evaluate("""() => { const r = window.noisescope.diffusion.runs.list('diffusion').at(-1);
        return [...r.stats].filter(([, s]) => s.clip_score !== null).map(([i]) => i); }""")
    assert scored == [2, 4, 6]
    assert "cosine similarity" in page.get_attribute("#d-plot", "title")
    assert "cosine similarity" in page.eval_on_selector("#d-stat-clip", "dd => dd.previousElementSibling.title")
    assert page.is_visible("#d-image")

    # a new run: the previous picture leaves the viewer before the new run's first frame
    page.evaluate("""() => { const d = window.noisescope.diffusion; const orig = d.onEvent.bind(d);
        window.__viewer = [];
        d.onEvent = (ev) => { orig(ev); if (ev.type === 'queued' || ev.type === 'started')
          window.__viewer.push([ev.type, d.img.hidden, document.getElementById('d-placeholder').innerText,
                                document.getElementById('d-scrub-label').innerText]); }; }""")
    run_once(page, "cat face", 4)
    seen = page.evaluate("() => window.__viewer")
    assert [s[0] for s in seen] == ["queued", "started"]
    for _, hidden, text, _label in seen:
        assert hidden and text.startswith("Waiting for step 1"), seen
    assert page.is_visible("#d-image") and page.is_hidden("#d-placeholder")
    assert not errors, errors


def test_prompt_marks_unknown_words_and_completes(server_words: str, page) -> None:  # noqa: F811
    errors = open_page(page, server_words)
    page.fill("#prompt", "smiling lighthouse")
    page.wait_for_function("() => document.querySelector('#prompt-hints mark') !== null")
    marks = page.eval_on_selector_all("#prompt-hints mark", "ms => ms.map(m => [m.innerText, m.className])")
    assert marks == [["lighthouse", "tok-letters"]]
    assert "l · i · g" in page.inner_text("#prompt-hints")
    assert page.get_attribute("#prompt", "aria-describedby") == "prompt-hints"

    page.fill("#prompt", "red ca")
    page.wait_for_function("() => document.querySelectorAll('#prompt-suggestions button').length >= 3")
    words = page.locator("#prompt-suggestions button").all_inner_texts()
    assert set(words) == {"cat", "castle", "cactus"}, words
    assert page.get_attribute("#prompt-suggestions button >> nth=0", "aria-label").startswith("complete the prompt")
    page.focus("#prompt")
    page.keyboard.press("Tab")  # the completions come right after the box
    first = page.evaluate("() => document.activeElement.innerText")
    page.keyboard.press("Enter")
    assert page.input_value("#prompt") == f"red {first} "
    page.wait_for_function("() => document.getElementById('prompt-suggestions').hidden")
    assert page.evaluate("() => document.activeElement.id") == "prompt"
    page.fill("#prompt", "red " + "abcdefghij" * 8)  # one part longer than the 75 tokens CLIP reads
    page.wait_for_function("() => /reads the first 75/.test(document.getElementById('prompt-hints').innerText)")
    # nothing is marked when every word is known; the placeholder is made of known words
    page.fill("#prompt", "red heart")
    page.wait_for_function("() => document.getElementById('prompt-hints').dataset.marked === '0'")
    assert page.get_attribute("#prompt", "placeholder") == "smiling cat face:1 | dark:-0.5"
    assert not errors, errors
