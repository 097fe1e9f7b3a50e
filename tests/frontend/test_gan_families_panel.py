"""The GAN panel drawn from the loaded family's description, in Debian's chromium against the real server:
a tiny DCGAN shows a z-scale slider and a walk between seeds (no classes, noise, mixing or transform);
a tiny BigGAN shows a searchable class picker, the truncated-normal slider in (0, 1] and a walk between
classes; the walk-position slider renders one point of the walk live, and what the page sends renders."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.frontend.test_browser import page, serve  # noqa: F401  (fixtures)
from tests.frontend.test_gan_panel import open_panel, sent

pytestmark = [pytest.mark.browser, pytest.mark.slow]

KEYS = ["class_index", "truncation_psi", "noise_mode", "mix_seed", "mix_layer", "translate_x", "rotate",
        "walk_seed", "walk_class", "walk_t", "search_steps"]


def shown(pg) -> dict[str, bool]:
    return {k: pg.evaluate(f"() => window.noisescope.gan.controls.shown('{k}')") for k in KEYS}


def label(pg, key: str) -> str:
    return pg.inner_text(f"label[for='g-{key}'] .head > span")


@pytest.fixture
def server_with_dcgan(tiny_diffusion_dir: Path, tiny_clip_dir: Path, tiny_dcgan_dir: Path,
                      tmp_path: Path) -> Iterator[str]:
    yield from serve(tiny_diffusion_dir, tiny_clip_dir, tmp_path, gan_model=str(tiny_dcgan_dir))


@pytest.fixture
def server_with_biggan(tiny_diffusion_dir: Path, tiny_clip_dir: Path, tiny_biggan_dir: Path,
                       tmp_path: Path) -> Iterator[str]:
    yield from serve(tiny_diffusion_dir, tiny_clip_dir, tmp_path, gan_model=str(tiny_biggan_dir))


def test_dcgan_panel(server_with_dcgan: str, page) -> None:  # noqa: F811
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    open_panel(page, server_with_dcgan)
    assert shown(page) == {"class_index": False, "truncation_psi": True, "noise_mode": False, "mix_seed": False,
                           "mix_layer": False, "translate_x": False, "rotate": False, "walk_seed": True,
                           "walk_class": False, "walk_t": True, "search_steps": True}
    assert label(page, "truncation_psi") == "z scale"
    assert page.eval_on_selector("#g-truncation_psi", "el => [el.min, el.max, el.value]") == ["0", "2", "1"]
    page.fill("#g-seed", "3")
    page.fill("#g-walk_seed", "8")
    page.eval_on_selector("#g-walk_t", "el => { el.value = 0.3; el.dispatchEvent(new Event('input')); }")
    page.wait_for_function("() => window.__sent.some((m) => m.params?.walk_t === 0.3)", timeout=30_000)
    page.click("#g-render")
    page.wait_for_selector("#gallery .card", timeout=60_000)
    params = sent(page)[-1]["params"]
    assert params["seed"] == 3 and params["walk_seed"] == 8 and params["walk_t"] == 0.3
    assert not {"class_index", "noise_mode", "mix_seed", "rotate", "walk_class", "walk_frames"} & set(params)
    assert page.inner_text("#errors").strip() == ""
    assert not errors, errors


def test_biggan_panel(server_with_biggan: str, page) -> None:  # noqa: F811
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    open_panel(page, server_with_biggan)
    assert shown(page) == {"class_index": True, "truncation_psi": True, "noise_mode": False, "mix_seed": False,
                           "mix_layer": False, "translate_x": False, "rotate": False, "walk_seed": True,
                           "walk_class": True, "walk_t": True, "search_steps": True}
    assert label(page, "truncation_psi") == "truncation (truncated normal)"
    assert page.eval_on_selector("#g-truncation_psi", "el => [el.min, el.max, el.value]") == ["0.05", "1", "0.4"]
    options = page.eval_on_selector_all("#g-class_index-options option", "els => els.map(e => e.value)")
    assert options == ["tench", "goldfish", "great white shark", "tiger shark", "hammerhead"]
    assert page.input_value("#g-class_index") == "tench"  # a class is picked from the start
    assert "Class-conditional" in page.inner_text("#g-note")

    page.fill("#g-class_index", "tiger shark")
    page.dispatch_event("#g-class_index", "change")
    page.wait_for_function("() => window.__sent.some((m) => m.type === 'generate_gan')", timeout=30_000)
    assert sent(page)[-1]["params"]["class_index"] == 3
    walk_options = page.eval_on_selector_all("#g-walk_class-options option", "els => els.map(e => e.value)")
    assert walk_options == options
    page.fill("#g-seed", "5")
    page.fill("#g-walk_seed", "5")
    page.fill("#g-walk_class", "goldfish")
    page.dispatch_event("#g-walk_class", "change")
    page.eval_on_selector("#g-walk_t", "el => { el.value = 0.5; el.dispatchEvent(new Event('input')); }")
    page.click("#g-render")
    page.wait_for_selector("#gallery .card", timeout=60_000)
    params = sent(page)[-1]["params"]
    assert params["class_index"] == 3 and params["walk_class"] == 1 and params["walk_seed"] == 5
    assert params["walk_t"] == 0.5 and params["truncation_psi"] == 0.4
    assert not {"noise_mode", "mix_seed", "rotate"} & set(params)
    assert "tiger shark" in page.locator("#gallery .card").first.inner_text()
    assert page.inner_text("#errors").strip() == ""
    assert not errors, errors
