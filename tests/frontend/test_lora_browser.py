"""Issue 18 in Debian's chromium: one live weight slider per loaded LoRA (from /api/info), moved during a
run and before a fork, recorded in the schedule and restored by "use these settings" for a bit-exact
replay; the preview-frames choice offers the tiny decoder the server loaded."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from tests.diffusion.test_lora import random_lora, write_kohya
from tests.diffusion.test_tiny_decoder import build_tiny_taesd
from tests.frontend.conftest import gallery
from tests.frontend.test_browser import page, serve  # noqa: F401  (fixtures)
from tests.frontend.test_replay_browser import cards, pixels, set_range

pytestmark = [pytest.mark.browser, pytest.mark.slow]


@pytest.fixture
def lora_server(tiny_diffusion_dir: Path, tiny_clip_dir: Path, tmp_path: Path) -> Iterator[str]:
    from diffusers import UNet2DConditionModel

    unet = UNet2DConditionModel.from_pretrained(tiny_diffusion_dir, subfolder="unet")
    lora = write_kohya(tmp_path / "style.safetensors", random_lora(unet, 1), {})
    yield from serve(tiny_diffusion_dir, tiny_clip_dir, tmp_path, lora=[lora], lora_weight=0.8,
                     preview_decoder=str(build_tiny_taesd(tmp_path / "taesd")))


def test_lora_slider_is_live_recorded_and_replayed(lora_server: str, page) -> None:  # noqa: F811
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(lora_server + "/")
    page.wait_for_selector("#conn[data-state='open']", timeout=20_000)
    slider = "input[data-lora='style']"
    page.wait_for_selector(slider)
    assert page.input_value(slider) == "0.8"
    options = page.eval_on_selector("#d-preview_decoder", "el => [...el.options].map(o => o.value)")
    assert options == ["linear", "tiny", "full"]
    page.select_option("#d-preview_decoder", "tiny")

    # moved while the run goes: an `update`, recorded at the step it took effect
    page.fill("#prompt", "cat face")
    page.fill("#d-seed", "7")
    set_range(page, "#d-steps", 300)
    page.click("#generate")
    page.wait_for_function("() => { const m = /^(\\d+)\\/300$/.exec(document.getElementById('d-stat-steps').innerText);"
                           " return m && Number(m[1]) >= 2; }", timeout=120_000)
    set_range(page, slider, -0.5)
    cards(page, 1)
    live = gallery(lora_server)[0]
    assert live["params"]["lora_weights"] == {"style": 0.8} and live["params"]["preview_decoder"] == "tiny"
    entries = [e for e in live["schedule"] if "lora_weights" in e["changes"]]
    assert [e["changes"]["lora_weights"] for e in entries] == [{"style": -0.5}], live["schedule"]
    assert 2 <= entries[0]["step"] < 300

    # a short run, then a fork from step 4 with the slider moved: the fork's schedule says so
    set_range(page, "#d-steps", 10)
    set_range(page, slider, 0.8)
    page.click("#generate")
    cards(page, 2)
    set_range(page, "#d-scrub", 4)
    set_range(page, slider, 1.5)
    page.click("#d-fork")
    cards(page, 3)
    fork = gallery(lora_server)[0]
    assert fork["schedule"] == [{"step": 4, "changes": {"lora_weights": {"style": 1.5}}}], fork["schedule"]
    fork_card = page.locator("#gallery .card").first
    assert "LoRA style 1.5" in fork_card.inner_text()

    set_range(page, slider, 0)
    fork_card.get_by_role("button", name="use these settings").click()
    assert page.input_value(slider) == "0.8", "the starting weight, not the last one"
    assert "LoRA style 1.5" in page.inner_text("#replay")
    page.click("#generate")
    cards(page, 4)
    replay = gallery(lora_server)[0]
    assert replay["schedule"] == fork["schedule"]
    assert np.array_equal(pixels(lora_server, replay["url"]), pixels(lora_server, fork["url"])), "the replay differs"
    assert page.inner_text("#errors").strip() == ""
    assert not errors, errors
