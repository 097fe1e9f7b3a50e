"""Issue 17 in Debian's chromium: "use these settings" replays a fork's schedule with visible feedback
and the same pixels; opening or dropping a PNG (AUTOMATIC1111's or Noisescope's) restores the
controls; "send to init image" from a gallery card and from the viewer."""

from __future__ import annotations

import base64
import io
from pathlib import Path
from urllib.request import urlopen

import numpy as np
import pytest
from PIL import Image

from app.params import DiffusionParams
from app.store.gallery import Gallery, ImageRecord
from tests.frontend.conftest import gallery
from tests.frontend.test_browser import page, server  # noqa: F401  (fixtures)
from tests.store.test_readback import A1111_TEXT, a1111_png

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def pixels(base: str, url: str) -> np.ndarray:
    with urlopen(base + url) as res:
        return np.asarray(Image.open(io.BytesIO(res.read())).convert("RGB"))


def set_range(pg, selector: str, value: float) -> None:
    pg.eval_on_selector(selector, f"el => {{ el.value = {value}; el.dispatchEvent(new Event('input')); }}")


def cards(pg, n: int) -> None:
    pg.wait_for_function(f"() => document.querySelectorAll('#gallery .card').length === {n}", timeout=120_000)


def test_use_these_settings_replays_a_fork_and_sends_to_init(server: str, page) -> None:  # noqa: F811
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(server + "/")
    page.wait_for_selector("#conn[data-state='open']", timeout=20_000)
    page.fill("#prompt", "cat face")
    page.fill("#d-seed", "1234")
    page.select_option("#d-sampler", "euler_a")
    set_range(page, "#d-steps", 10)
    page.click("#generate")
    cards(page, 1)

    set_range(page, "#d-scrub", 4)  # fork at step 4 with CFG 0: a recorded change of schedule
    set_range(page, "#d-cfg_scale", 0)
    page.click("#d-fork")
    cards(page, 2)
    fork_card = page.locator("#gallery .card").first
    assert "fork @4" in fork_card.inner_text() and "step 4: cfg 0" in fork_card.inner_text()

    page.fill("#prompt", "something else")
    set_range(page, "#d-cfg_scale", 12)
    assert page.is_hidden("#notice") and page.is_hidden("#replay")
    fork_card.get_by_role("button", name="use these settings").click()
    notice = page.inner_text("#notice")
    assert "Diffusion settings restored from gallery image" in notice, notice
    assert "schedule: 1 change (step 4: cfg 0)" in notice and "fork of run" in notice, notice
    assert "seed 1234" in notice and "10 steps" in notice and "CFG 5" in notice, notice
    assert page.input_value("#prompt") == "cat face"
    assert page.input_value("#d-cfg_scale") == "5", "the starting value, not the last one"
    assert page.is_visible("#replay") and "schedule: 1 change" in page.inner_text("#replay")

    page.click("#generate")  # the replay from scratch
    cards(page, 3)
    items = gallery(server)
    replay, fork = items[0], items[1]
    assert replay["schedule"] == fork["schedule"] == [{"step": 4, "changes": {"cfg_scale": 0.0}}]
    assert replay["lineage"] is None and fork["lineage"]["from_step"] == 4
    assert np.array_equal(pixels(server, replay["url"]), pixels(server, fork["url"])), "the replay differs"

    page.click("#replay-clear")
    assert page.is_hidden("#replay")

    # send to init image: from a gallery card, then from the viewer's finished image
    page.locator("#gallery .card").nth(2).get_by_role("button", name="send to init image").click()
    page.wait_for_function("() => /from gallery image/.test(document.getElementById('d-init-status').innerText)")
    assert "Init image set" in page.inner_text("#notice")
    assert page.input_value("#d-skip_steps") == "5" and page.is_visible(".init-preview")
    page.wait_for_function("() => !document.getElementById('d-to-init').disabled")
    page.click("#d-to-init")
    page.wait_for_function("() => /from the final image of run/.test(document.getElementById('d-init-status').innerText)")
    page.click("#generate")
    cards(page, 4)
    newest = gallery(server)[0]
    assert newest["params"]["init_image"] and newest["params"]["skip_steps"] == 5
    assert page.inner_text("#errors").strip() == ""
    assert not errors, errors


DROP = """async ([b64, name]) => {
  const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
  const dt = new DataTransfer();
  dt.items.add(new File([bytes], name, { type: 'image/png' }));
  document.body.dispatchEvent(new DragEvent('dragover', { dataTransfer: dt, bubbles: true, cancelable: true }));
  document.body.dispatchEvent(new DragEvent('drop', { dataTransfer: dt, bubbles: true, cancelable: true }));
}"""


def test_open_and_drop_png_restore_the_controls(server: str, page, tmp_path: Path) -> None:  # noqa: F811
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(server + "/")
    page.wait_for_selector("#conn[data-state='open']", timeout=20_000)

    page.set_input_files("#open-png-file", files=[{"name": "a1111.png", "mimeType": "image/png",
                                                    "buffer": a1111_png(A1111_TEXT)}])
    page.wait_for_function("() => !document.getElementById('notice').hidden")
    notice = page.inner_text("#notice")
    assert "restored from “a1111.png”" in notice, notice
    assert "'DPM++ SDE Karras' is not in the studio: using the nearest, euler_a" in notice, notice
    assert page.input_value("#prompt").startswith("masterpiece, a cat face")
    assert page.input_value("#negative_prompt") == "blurry, lowres"
    assert page.input_value("#d-seed") == "3141592653"
    assert page.input_value("#d-steps") == "28" and page.input_value("#d-cfg_scale") == "7.5"
    assert page.input_value("#d-sampler") == "euler_a" and page.is_checked("#d-karras")
    assert page.input_value("#d-width") == "512" and page.input_value("#d-height") == "768"
    assert page.is_hidden("#replay")

    # a Noisescope PNG (built here through the gallery's writer) dropped on the page
    store = Gallery(tmp_path / "made-elsewhere")
    params = DiffusionParams(prompt="red heart", seed=77, steps=40, cfg_scale=6.0, sampler="ddim", karras=False,
                             width=32, height=48)
    schedule = [{"step": 10, "changes": {"cfg_scale": 0.0}}, {"step": 20, "changes": {"eta": 0.5}}]
    image_id = store.add(Image.new("RGB", (32, 48), "red"), ImageRecord(
        engine="diffusion", params=params.model_dump(exclude={"schedule"}), seed=77, schedule=schedule))
    data = store.path_for(image_id).read_bytes()
    store.close()
    page.evaluate(DROP, [base64.b64encode(data).decode(), "heart.png"])
    page.wait_for_function("() => /heart\\.png/.test(document.getElementById('notice').innerText)")
    notice = page.inner_text("#notice")
    assert "schedule: 2 changes (step 10: cfg 0; step 20: eta 0.5)" in notice, notice
    assert page.input_value("#prompt") == "red heart" and page.input_value("#d-seed") == "77"
    assert page.input_value("#d-steps") == "40" and page.input_value("#d-sampler") == "ddim"
    assert page.input_value("#d-cfg_scale") == "6" and not page.is_checked("#d-karras")
    assert "schedule: 2 changes" in page.inner_text("#replay")

    # a PNG without settings is refused in words
    plain = io.BytesIO()
    Image.new("RGB", (4, 4)).save(plain, format="PNG")
    page.evaluate(DROP, [base64.b64encode(plain.getvalue()).decode(), "plain.png"])
    page.wait_for_function("() => /plain\\.png/.test(document.getElementById('errors').innerText)")
    assert "no Noisescope or AUTOMATIC1111 settings" in page.inner_text("#errors")
    assert not errors, errors
