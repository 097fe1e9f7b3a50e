"""The gallery in Debian's chromium (issue 17): pages past the newest 48 with the total, search by prompt
on the server (past the first page, % and _ literal), delete after a confirmation in the card, and a
download that is the served PNG with its metadata chunks. The gallery database is filled directly."""

from __future__ import annotations

import io
import json
import os
from collections.abc import Iterator
from pathlib import Path
from urllib.request import Request, urlopen

import pytest
from PIL import Image

from app.store.gallery import Gallery, ImageRecord
from tests.frontend.test_browser import page, serve  # noqa: F401  (the page fixture)
from tests.frontend.test_browser_view import NAMELESS_OR_REPEATED, NO_SIDEWAYS

pytestmark = [pytest.mark.browser, pytest.mark.slow]
IMAGES = 60
# the oldest images (beyond the first page of 48): what a search must still find
OLD_PROMPTS = ["100% red fox", "100 red foxes", "snake_case cat", "snakecase cat"]


def fill(tmp_path: Path, prompts: list[str]) -> None:
    """Images straight into the gallery database that serve() will open, oldest first."""
    gallery = Gallery(tmp_path / "data" / "gallery")  # where serve() points the studio's data_dir
    for seed, prompt in enumerate(prompts):
        record = ImageRecord(engine="diffusion", params={"prompt": prompt, "steps": 4, "sampler": "ddim",
                                                         "cfg_scale": 5.0, "width": 16, "height": 16}, seed=seed)
        gallery.add(Image.new("RGB", (16, 16), (seed * 4, 80, 160)), record)
    gallery.close()


@pytest.fixture
def server(tiny_diffusion_dir: Path, tiny_clip_dir: Path, tmp_path: Path) -> Iterator[str]:
    fill(tmp_path, OLD_PROMPTS + [f"red heart {i}" for i in range(IMAGES - len(OLD_PROMPTS))])
    yield from serve(tiny_diffusion_dir, tiny_clip_dir, tmp_path)


@pytest.fixture
def token_server(tiny_diffusion_dir: Path, tiny_clip_dir: Path, tmp_path: Path) -> Iterator[str]:
    """Token mode (listening beyond loopback): the page's links and deletes must carry the token."""
    fill(tmp_path, ["red heart", "cat face", "smiling cat"])
    yield from serve(tiny_diffusion_dir, tiny_clip_dir, tmp_path, host="0.0.0.0", token="s3cret")


def open_gallery(pg, url: str, path: str = "/") -> list[str]:
    errors: list[str] = []
    pg.on("pageerror", lambda e: errors.append(str(e)))
    pg.goto(url + path)
    pg.wait_for_selector("#conn[data-state='open']", timeout=20_000)
    pg.wait_for_function("() => document.querySelectorAll('#gallery .card').length > 0")
    return errors


def label_is(pg, text: str) -> None:
    pg.wait_for_function("t => document.getElementById('gallery-count').innerText === t", arg=text)


def prompts_shown(pg) -> list[str]:
    return pg.eval_on_selector_all("#gallery .card .prompt", "ps => ps.map(p => p.innerText)")


def test_pages_past_48_and_search_on_the_server(server: str, page, tmp_path: Path) -> None:  # noqa: F811
    errors = open_gallery(page, server)
    label_is(page, f"1–48 of {IMAGES} images")
    assert page.locator("#gallery .card").count() == 48
    assert page.is_disabled("#gallery-newer") and page.is_enabled("#gallery-older")
    assert prompts_shown(page)[0] == f"red heart {IMAGES - len(OLD_PROMPTS) - 1}"  # newest first

    page.click("#gallery-older")
    label_is(page, f"49–{IMAGES} of {IMAGES} images")
    assert page.locator("#gallery .card").count() == IMAGES - 48
    assert prompts_shown(page)[-4:] == OLD_PROMPTS[::-1]
    assert page.is_enabled("#gallery-newer") and page.is_disabled("#gallery-older")
    names = page.evaluate(NAMELESS_OR_REPEATED)  # buttons of one page differ from each other
    assert names["repeated"] == [] and names["nameless"] == [], names
    assert page.get_attribute("#gallery .card >> nth=0 >> a.download", "aria-label").startswith("download image 49: ")
    page.click("#gallery-newer")
    label_is(page, f"1–48 of {IMAGES} images")

    page.fill("#gallery-search", "fox")  # only on the second page: the search runs on the server
    label_is(page, "1–2 of 2 images matching “fox”")
    assert sorted(prompts_shown(page)) == ["100 red foxes", "100% red fox"]
    assert page.is_disabled("#gallery-newer") and page.is_disabled("#gallery-older")
    page.fill("#gallery-search", "100%")
    label_is(page, "1–1 of 1 image matching “100%”")
    assert prompts_shown(page) == ["100% red fox"]
    page.fill("#gallery-search", "e_c")
    label_is(page, "1–1 of 1 image matching “e_c”")
    assert prompts_shown(page) == ["snake_case cat"]
    page.fill("#gallery-search", "no such thing")
    label_is(page, "no images match “no such thing”")
    assert page.inner_text("#gallery .empty") == "No images match “no such thing”."
    page.focus("#gallery-search")
    page.keyboard.press("Escape")  # clears the search
    label_is(page, f"1–48 of {IMAGES} images")
    assert page.input_value("#gallery-search") == ""

    page.locator("#gallery .card >> nth=1 >> button.delete").click()  # a card asking, beside the others
    for width in (1440, 390, 360):
        page.set_viewport_size({"width": width, "height": 900})
        page.wait_for_function(NO_SIDEWAYS)
        if width != 360:  # NOISESCOPE_SCREENSHOTS=dir keeps them
            shot = Path(os.environ.get("NOISESCOPE_SCREENSHOTS", tmp_path)) / f"gallery-{width}.png"
            page.locator(".gallery-section").screenshot(path=str(shot))
    assert page.inner_text("#errors").strip() == ""
    assert not errors, errors


def test_delete_asks_first_and_download_keeps_the_metadata(server: str, page, tmp_path: Path) -> None:  # noqa: F811
    errors = open_gallery(page, server)
    label_is(page, f"1–48 of {IMAGES} images")
    first = page.locator("#gallery .card").first
    image_id = first.get_attribute("data-id")
    prompt = first.locator(".prompt").inner_text()

    # download: the served bytes, named from the prompt and seed, chunks intact
    with urlopen(f"{server}/api/gallery/{image_id}.png") as res:
        served = res.read()
    with page.expect_download() as info:
        first.get_by_role("link", name=f"download image 1: {prompt}").click()
    download = info.value
    seed = json.loads(Image.open(io.BytesIO(served)).text["noisescope"])["seed"]
    assert download.suggested_filename == f"noisescope-{prompt.replace(' ', '-')}-seed{seed}.png"
    saved = tmp_path / "saved.png"
    download.save_as(saved)
    assert saved.read_bytes() == served
    with Image.open(saved) as img:
        assert img.text["parameters"].startswith(prompt + "\n")
        assert json.loads(img.text["noisescope"])["id"] == image_id

    # delete: the card asks first; "keep" and Esc keep the image
    first.get_by_role("button", name=f"delete image 1: {prompt}").click()
    keep = first.get_by_role("button", name=f"keep image 1: {prompt}")
    assert first.locator(".confirm-text").inner_text() == "Delete this image?"
    assert page.evaluate("() => document.activeElement.classList.contains('keep')"), "the safe answer has the focus"
    names = page.evaluate(NAMELESS_OR_REPEATED)
    assert names["repeated"] == [], names
    keep.click()
    first.get_by_role("button", name=f"delete image 1: {prompt}").click()
    page.keyboard.press("Escape")
    assert first.locator(".confirm").count() == 0 and page.locator("#gallery .card").count() == 48
    first.get_by_role("button", name=f"delete image 1: {prompt}").click()
    first.get_by_role("button", name=f"yes, delete image 1: {prompt}").click()
    label_is(page, f"1–48 of {IMAGES - 1} images")
    assert page.locator(f"#gallery .card[data-id='{image_id}']").count() == 0
    focused = page.evaluate("() => document.activeElement.getAttribute('aria-label')")
    assert focused.startswith("delete image 1: ") and focused != f"delete image 1: {prompt}", focused
    with urlopen(f"{server}/api/gallery?limit=500") as res:
        assert image_id not in {item["id"] for item in json.loads(res.read())}
    assert page.evaluate(f"() => fetch('/api/gallery/{image_id}.png').then(r => r.status)") == 404

    # the last image of the last page: the page falls back to the one before
    page.click("#gallery-older")
    label_is(page, f"49–{IMAGES - 1} of {IMAGES - 1} images")
    while page.locator("#gallery .card").count() > 1:
        before = page.inner_text("#gallery-count")
        card = page.locator("#gallery .card").first
        card.locator("button.delete").click()
        card.locator("button.confirm-delete").click()
        page.wait_for_function("t => document.getElementById('gallery-count').innerText !== t", arg=before)
    card = page.locator("#gallery .card").first
    card.locator("button.delete").click()
    card.locator("button.confirm-delete").click()
    label_is(page, "1–48 of 48 images")
    assert page.is_disabled("#gallery-older")
    assert page.inner_text("#errors").strip() == ""

    # deleted meanwhile elsewhere: the page says so and drops the card
    card = page.locator("#gallery .card").first
    with urlopen(Request(f"{server}/api/gallery/{card.get_attribute('data-id')}", method="DELETE")) as res:
        assert res.status == 204
    card.locator("button.delete").click()
    card.locator("button.confirm-delete").click()
    label_is(page, "1–47 of 47 images")
    assert "delete failed: no such image" in page.inner_text("#errors")
    assert not errors, errors


def test_download_and_delete_in_token_mode(token_server: str, page, tmp_path: Path) -> None:  # noqa: F811
    with pytest.raises(Exception, match="401"):
        urlopen(f"{token_server}/api/gallery")
    errors = open_gallery(page, token_server, "/?token=s3cret")
    label_is(page, "1–3 of 3 images")
    first = page.locator("#gallery .card").first
    image_id = first.get_attribute("data-id")
    with page.expect_download() as info:
        first.locator("a.download").click()
    saved = tmp_path / "saved.png"
    info.value.save_as(saved)
    assert info.value.suggested_filename == "noisescope-smiling-cat-seed2.png"
    with Image.open(saved) as img:
        assert json.loads(img.text["noisescope"])["id"] == image_id and "parameters" in img.text
    first.locator("button.delete").click()
    first.locator("button.confirm-delete").click()
    label_is(page, "1–2 of 2 images")
    with urlopen(Request(f"{token_server}/api/gallery", headers={"authorization": "Bearer s3cret"})) as res:
        assert image_id not in {item["id"] for item in json.loads(res.read())}
    assert page.inner_text("#errors").strip() == ""
    assert not errors, errors
