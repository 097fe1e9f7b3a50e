"""Issue 17 in Debian's chromium: a queue you can see, Cancel / Esc stop the run on screen, one run
per double-click, forks listed until they start, messages in words, Enter / Shift+Enter, the tab
title, pace and time left, and "reuse seed". No timed assertions: every wait is for a state."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.frontend.test_browser import page, serve  # noqa: F401 (the page fixture)

pytestmark = [pytest.mark.browser, pytest.mark.slow]

LONG = 3000  # steps: a run that is still going while the test acts; every test cancels its runs
SEED_RULE = "seed: must be a whole number from 0 to 4294967295; leave it empty for a random seed"


@pytest.fixture
def server(tiny_diffusion_dir: Path, tiny_clip_dir: Path, tmp_path: Path) -> Iterator[str]:
    yield from serve(tiny_diffusion_dir, tiny_clip_dir, tmp_path, max_steps=LONG)


def open_studio(page, server: str) -> None:  # noqa: F811
    page.goto(server + "/")
    page.wait_for_selector("#conn[data-state='open']", timeout=20_000)


def set_steps(page, n: int) -> None:  # noqa: F811
    page.eval_on_selector("#d-steps", "(el, n) => { el.max = n; el.value = n; "
                                      "el.dispatchEvent(new Event('input', { bubbles: true })); }", n)


def runs(page) -> list[dict]:  # noqa: F811
    return page.evaluate("() => noisescope.runs.list('diffusion').map(r => ({ id: r.id, number: r.number, "
                         "status: r.status, parent: r.parent, seed: r.seed, prompt: r.prompt }))")


def wait_status(page, number: int, status: str) -> None:  # noqa: F811
    page.wait_for_function("([n, s]) => noisescope.runs.list('diffusion').some(r => r.number === n && r.status === s)",
                           arg=[number, status], timeout=60_000)


def wait_step(page, number: int, index: int) -> None:  # noqa: F811
    page.wait_for_function("([n, i]) => noisescope.runs.list('diffusion').some(r => r.number === n && r.index >= i)",
                           arg=[number, index], timeout=60_000)


def test_twelve_clicks_queue_one_run_and_cancel_stops_the_run_on_screen(server: str, page) -> None:  # noqa: F811
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    open_studio(page, server)
    page.fill("#prompt", "a red fox")
    page.fill("#d-seed", "11")
    set_steps(page, LONG)
    page.click("#generate", click_count=12)
    wait_status(page, 1, "running")
    # the same settings cannot be queued again; the button says why
    assert page.is_disabled("#generate")
    assert "already queued or running" in page.inner_text("#generate-hint")

    page.fill("#d-seed", "12")  # other settings: Generate becomes a deliberate "Add to queue"
    assert page.inner_text("#generate") == "Add to queue"
    page.dblclick("#generate")
    wait_status(page, 2, "queued")
    row = page.locator("#queue-list li[data-status='queued']")
    row.filter(has_text="next in line").wait_for()
    assert "“a red fox”" in row.inner_text() and "#2" in row.inner_text()
    assert page.locator("#queue-list li").count() == 2

    page.click("#cancel")  # the run on screen (#1, running) stops and #2 starts
    wait_status(page, 1, "cancelled")
    wait_status(page, 2, "running")
    assert [r["number"] for r in runs(page)] == [1, 2], "12 clicks and a double-click queued one run each"
    page.wait_for_function("() => noisescope.runs.list('diffusion')[1].id === noisescope.diffusion.viewed")

    page.keyboard.press("Escape")  # Esc does the same
    wait_status(page, 2, "cancelled")
    page.wait_for_selector("#queue", state="hidden")
    assert page.title() == "Noisescope"
    assert page.inner_text("#generate") == "Generate" and page.is_enabled("#generate")
    assert not errors, errors


def test_queue_rows_cancel_their_own_run_and_show_pace(server: str, page) -> None:  # noqa: F811
    open_studio(page, server)
    page.fill("#prompt", "a lighthouse")
    set_steps(page, LONG)
    for seed in ("1", "2", "3"):
        page.fill("#d-seed", seed)
        page.click("#generate")
        page.wait_for_function("() => !noisescope.diffusion.sending")
    wait_status(page, 1, "running")
    page.locator("#queue-list li", has_text="#3").filter(has_text="1 run ahead").wait_for()
    wait_step(page, 1, 2)
    running = page.locator("#queue-list li[data-status='running']")
    running.filter(has_text="steps/s").filter(has_text="left").wait_for()
    page.wait_for_function("() => /^\\d+% · Noisescope$/.test(document.title)")

    page.click("#queue-list button[aria-label='cancel run #2']")  # a waiting run, by its own button
    wait_status(page, 2, "cancelled")
    page.locator("#queue-list li", has_text="#3").filter(has_text="next in line").wait_for()
    assert runs(page)[0]["status"] == "running", "cancelling a waiting run leaves the running one alone"

    page.click("#queue-list button[aria-label='cancel run #1']")
    wait_status(page, 3, "running")
    page.click("#queue-list button[aria-label='cancel run #3']")
    wait_status(page, 3, "cancelled")
    page.wait_for_selector("#queue", state="hidden")
    assert page.title() == "Noisescope"


def test_a_fork_made_while_a_run_goes_waits_in_the_list(server: str, page) -> None:  # noqa: F811
    open_studio(page, server)
    page.fill("#prompt", "a cat face")
    page.fill("#d-seed", "5")
    set_steps(page, LONG)
    page.click("#generate")
    wait_step(page, 1, 3)
    page.click("#d-fork")
    wait_status(page, 2, "queued")
    fork_row = page.locator("#queue-list li", has_text="fork of #1")
    fork_row.wait_for()
    parent, fork = runs(page)
    assert fork["parent"] == parent["id"]
    # the view stays on the running parent: no "step 0/0"
    assert page.evaluate("() => noisescope.diffusion.viewed") == parent["id"]
    assert page.inner_text("#d-scrub-label") != "step 0/0"
    assert page.locator("#d-branches .branch").count() == 2

    page.click("#cancel")  # stops the parent on screen; the fork starts and is shown
    wait_status(page, 2, "running")
    page.wait_for_function("id => noisescope.diffusion.viewed === id", arg=fork["id"])
    assert runs(page)[0]["status"] == "cancelled"
    page.keyboard.press("Escape")
    wait_status(page, 2, "cancelled")


def test_words_keys_and_reuse_seed(server: str, page) -> None:  # noqa: F811
    open_studio(page, server)
    shortcuts = page.inner_text("#shortcuts")
    assert all(k in shortcuts for k in ("Enter", "Shift", "Esc")), shortcuts

    for bad in ("-5", "3.7", "4294967296"):  # refused at the input, never rounded or clamped
        page.fill("#d-seed", bad)
        assert page.inner_text("#d-seed-problem") == SEED_RULE
        assert page.input_value("#d-seed") == bad
    page.fill("#prompt", "a red fox")
    page.press("#prompt", "Enter")
    assert SEED_RULE in page.inner_text("#errors")
    assert runs(page) == [] and page.input_value("#prompt") == "a red fox"

    page.evaluate("() => noisescope.socket.ws.close()")  # a reconnect clears what is stale
    page.wait_for_selector("#conn[data-state='open']", timeout=20_000)
    page.wait_for_function("() => document.getElementById('errors').children.length === 0")

    page.fill("#d-seed", "")
    page.fill("#prompt", "")
    page.press("#prompt", "Enter")
    assert "Enter a prompt first." in page.inner_text("#errors")
    page.fill("#d-seed", "5")
    assert page.is_hidden("#d-seed-problem")
    set_steps(page, 4)
    page.fill("#prompt", "a red")
    page.press("#prompt", "Shift+Enter")
    page.type("#prompt", "fox")
    assert page.input_value("#prompt") == "a red\nfox"
    page.press("#prompt", "Enter")  # generates; the stale error goes
    page.wait_for_selector("#gallery .card", timeout=120_000)
    assert page.inner_text("#errors").strip() == ""
    assert page.input_value("#prompt") == "a red\nfox"
    assert page.inner_text("#gallery .card .prompt") == "a red fox", "no newline in the saved prompt"
    assert runs(page)[0]["prompt"] == "a red fox"

    page.fill("#d-seed", "")
    page.click("#d-reuse-seed")
    assert page.input_value("#d-seed") == "5"
