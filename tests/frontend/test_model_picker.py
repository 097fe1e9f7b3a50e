"""The model picker (frontend/js/models.js): its option groups and progress line under node, and in
Debian's chromium a model of --models-dir loaded from the page, with the page's settings kept, the
next run drawn by it, and a broken model's error shown while the loaded one stays."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from app.demo_models import build_tiny_diffusion
from tests.frontend.conftest import gallery, node_check
from tests.frontend.test_browser import page, serve  # noqa: F401  (fixtures)
from tests.frontend.test_replay_browser import cards, set_range


def test_option_groups_and_progress_text() -> None:
    assert node_check("models_check.mjs") == {"ok": True}


@pytest.fixture
def picker_server(tiny_clip_dir: Path, tmp_path: Path) -> Iterator[str]:
    root = tmp_path / "models"
    build_tiny_diffusion(root / "fox-a", seed=0)
    build_tiny_diffusion(root / "fox-b", seed=1)
    save_file({"lora_unet_x.lora_down.weight": torch.zeros(2, 2)}, root / "style.safetensors")
    (root / "broken").mkdir()
    (root / "broken" / "model_index.json").write_text(json.dumps({"_class_name": "StableDiffusionPipeline"}))
    yield from serve(root / "fox-a", tiny_clip_dir, tmp_path, models_dir=root)


@pytest.mark.browser
@pytest.mark.slow
def test_a_model_is_loaded_from_the_page(picker_server: str, page) -> None:  # noqa: F811
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(picker_server + "/")
    page.wait_for_selector("#conn[data-state='open']", timeout=20_000)
    page.wait_for_selector("#model-picker:not([hidden])")
    options = page.eval_on_selector("#model-pick", "el => [...el.options].map(o => [o.value, o.disabled, o.title])")
    by_value = {v: (disabled, title) for v, disabled, title in options}
    assert by_value["fox-a"][0] and not by_value["fox-b"][0]  # the loaded one is not offered again
    assert by_value["style.safetensors"] == (True, "a LoRA: start the studio with --lora-dir on its folder")
    assert page.is_disabled("#model-load")
    other = page.context.browser.new_page()  # another page on the same studio: it hears of the swap
    other.on("pageerror", lambda e: errors.append(str(e)))
    other.goto(picker_server + "/")
    other.wait_for_selector("#conn[data-state='open']", timeout=20_000)
    other.wait_for_function("() => document.getElementById('models').innerText.includes('diffusion: fox-a')")

    set_range(page, "#d-steps", 7)
    page.fill("#prompt", "cat face")
    page.select_option("#model-pick", "fox-b")
    page.click("#model-load")
    page.wait_for_function("() => /fox-b loaded in/.test(document.getElementById('model-status').innerText)",
                           timeout=60_000)
    page.wait_for_function("() => document.getElementById('models').innerText.includes('diffusion: fox-b')")
    assert page.input_value("#d-steps") == "7", "the page's settings stay across the swap"
    disabled = page.eval_on_selector("#model-pick", "el => [...el.options].filter(o => o.disabled).map(o => o.value)")
    assert "fox-b" in disabled and "fox-a" not in disabled
    other.wait_for_function("() => document.getElementById('models').innerText.includes('diffusion: fox-b')",
                            timeout=20_000)
    other.wait_for_function("() => document.querySelector('#model-pick option[value=\"fox-b\"]')?.disabled === true")
    other.close()

    page.click("#generate")
    cards(page, 1)
    assert gallery(picker_server)[0]["models"]["diffusion"] == "fox-b"

    page.select_option("#model-pick", "broken")
    page.click("#model-load")
    page.wait_for_function("() => document.getElementById('model-status').dataset.state === 'failed'", timeout=60_000)
    assert "broken could not be loaded" in page.inner_text("#errors")
    assert "the loaded model stays" in page.inner_text("#model-status")
    assert "diffusion: fox-b" in page.inner_text("#models")
    assert not errors, errors
