"""Issue 17's batch and variations in Debian's chromium: the batch control draws a grid with its variety,
"variations" (viewer and gallery card) queues one img2img batch of four whose gallery cards name their
source and strength, and "use these settings" on a batch image restores the whole batch. No timed
assertions: every wait is for a state."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.frontend.conftest import gallery
from tests.frontend.test_browser import page, serve, server  # noqa: F401  (fixtures)

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def set_range(pg, selector: str, value: float) -> None:
    pg.eval_on_selector(selector, f"el => {{ el.value = {value}; el.dispatchEvent(new Event('input', "
                                  "{ bubbles: true })); }")


def cards(pg, n: int) -> None:
    pg.wait_for_function(f"() => document.querySelectorAll('#gallery .card').length === {n}", timeout=180_000)


def runs(pg) -> list[dict]:
    return pg.evaluate("() => noisescope.runs.list('diffusion').map(r => ({ status: r.status, label: r.label, "
                       "batch: r.batch, ids: r.imageIds, final: r.final && r.final.meta.width }))")


def test_batch_grid_variations_and_their_labels(server: str, page) -> None:  # noqa: F811
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(server + "/")
    page.wait_for_selector("#conn[data-state='open']", timeout=20_000)
    assert page.get_attribute("#d-batch", "max") == "4", "the batch control's range comes from /api/info"
    assert "different" in page.get_attribute("#d-stat-div-label", "title")
    assert page.inner_text("#d-stat-div-label") == "variety"
    page.fill("#prompt", "cat face")
    page.fill("#d-seed", "40")
    set_range(page, "#d-steps", 10)
    set_range(page, "#d-batch", 4)
    page.click("#generate")
    cards(page, 4)

    # the finished batch is a grid of its four images, with its variety in the stats
    page.wait_for_selector("#d-tiles button >> nth=3")
    assert page.locator("#d-tiles button").count() == 4 and page.is_hidden("#d-image")
    width = int(page.input_value("#d-width"))
    assert runs(page)[0]["final"] == 4 * width, "the final frame is the grid too"
    assert float(page.inner_text("#d-stat-div")) > 0
    batch = runs(page)[0]["ids"]
    items = {item["id"]: item for item in gallery(server)}
    assert [items[i]["seed"] for i in batch] == [40, 41, 42, 43]
    assert "image 3 of 4" in page.locator(f"#gallery .card[data-id='{batch[2]}']").inner_text()

    # pick the third image and ask for its variations at strength 0.3
    page.click("#d-tiles button >> nth=2")
    assert page.get_attribute("#d-tiles button >> nth=2", "aria-pressed") == "true"
    set_range(page, "#d-var-strength", 0.3)
    assert page.inner_text("#d-var-strength-out") == "0.30"
    page.click("#d-variations")
    cards(page, 8)
    variation = runs(page)[1]
    assert variation["label"] == "variations of image 3 of run #1 · strength 0.3" and variation["batch"] == 4
    items = {item["id"]: item for item in gallery(server)}
    for image_id in variation["ids"]:
        assert items[image_id]["lineage"] == {"source_image": batch[2], "strength": 0.3}
        assert items[image_id]["params"]["init_image"] == f"gallery:{batch[2]}"
        card = page.locator(f"#gallery .card[data-id='{image_id}']")
        assert f"variation of image {batch[2][-8:]} · strength 0.3" in card.inner_text()

    # a gallery card's own button: variations of the first image, at strength 0.8
    set_range(page, "#d-var-strength", 0.8)
    page.locator(f"#gallery .card[data-id='{batch[0]}']").get_by_role("button", name="variations").click()
    cards(page, 12)
    third = runs(page)[2]
    assert third["label"].startswith(f"variations of gallery image {batch[0][-8:]}"), third
    items = {item["id"]: item for item in gallery(server)}
    assert {items[i]["lineage"]["strength"] for i in third["ids"]} == {0.8}
    assert len({items[i]["seed"] for i in third["ids"]}) == 4

    # "use these settings" on one image of the first batch restores the whole batch
    page.fill("#d-seed", "")
    set_range(page, "#d-batch", 1)
    page.locator(f"#gallery .card[data-id='{batch[1]}']").get_by_role("button", name="use these settings").click()
    assert page.input_value("#d-seed") == "40" and page.input_value("#d-batch") == "4"
    assert "batch of 4 from seed 40" in page.inner_text("#notice")
    assert not errors, errors


LONG = 3000  # steps: a run still going while the test acts; the test cancels it


@pytest.fixture
def long_server(tiny_diffusion_dir: Path, tiny_clip_dir: Path, tmp_path: Path) -> Iterator[str]:
    yield from serve(tiny_diffusion_dir, tiny_clip_dir, tmp_path, max_steps=LONG)


def test_the_queue_lists_batches_and_variations(long_server: str, page) -> None:  # noqa: F811
    page.goto(long_server + "/")
    page.wait_for_selector("#conn[data-state='open']", timeout=20_000)
    page.fill("#prompt", "cat face")
    page.fill("#d-seed", "3")
    set_range(page, "#d-steps", 4)
    page.click("#generate")
    cards(page, 1)

    page.eval_on_selector("#d-steps", f"el => {{ el.max = {LONG}; }}")
    set_range(page, "#d-steps", LONG)
    set_range(page, "#d-batch", 2)
    page.click("#generate")
    page.wait_for_function("() => noisescope.runs.list('diffusion').some(r => r.number === 2 && r.index >= 1)",
                           timeout=60_000)
    page.locator("#gallery .card").first.get_by_role("button", name="variations").click()
    waiting = page.locator("#queue-list li[data-status='queued']")
    waiting.filter(has_text="variations of gallery image").filter(has_text="×4").wait_for()
    assert "“cat face” ×2" in page.inner_text("#queue-list li[data-status='running']")
    page.click("#queue-list button[aria-label='cancel run #2']")
    cards(page, 5)  # the variations ran after the cancelled batch
    page.wait_for_selector("#queue", state="hidden")
    assert runs(page)[1]["status"] == "cancelled" and runs(page)[2]["status"] == "done"
