"""The page in Debian's chromium against the real server on the tiny models."""

from __future__ import annotations

import importlib.util
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from app.devtools import CHROMIUM, CHROMIUM_ARGS, free_port

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def serve(tiny_diffusion_dir: Path, tiny_clip_dir: Path, tmp_path: Path, **overrides) -> Iterator[str]:
    """uvicorn serving create_app(settings) on a free loopback port, in a thread."""
    if importlib.util.find_spec("app.diffusion.generate") is None:
        pytest.skip("the diffusion engine (app.diffusion.generate) is not in this checkout yet")
    import uvicorn

    from app.main import create_app
    from app.settings import Settings

    port = free_port()
    settings = Settings(**{"diffusion_model": str(tiny_diffusion_dir), "clip_model": str(tiny_clip_dir),
                           "gan_model": None, "upscaler_gan": "", "upscaler_diffusion": "", "device": "cpu", "data_dir": tmp_path / "data", "host": "127.0.0.1",
                           "port": port, **overrides})
    config = uvicorn.Config(create_app(settings), host="127.0.0.1", port=port, log_level="warning",
                            ws_per_message_deflate=False, lifespan="on")
    srv = uvicorn.Server(config)
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 120
    while not srv.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            pytest.fail("the server did not start")
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    srv.should_exit = True
    thread.join(timeout=30)


@pytest.fixture
def server(tiny_diffusion_dir: Path, tiny_clip_dir: Path, tmp_path: Path) -> Iterator[str]:
    yield from serve(tiny_diffusion_dir, tiny_clip_dir, tmp_path)


@pytest.fixture
def server_with_gan(tiny_diffusion_dir: Path, tiny_clip_dir: Path, tmp_path: Path) -> Iterator[str]:
    """Both engines, and an evaluation file that describes exactly these weights."""
    import json

    import torch

    from app.gan.convert import save_generator
    from app.gan.networks import Generator
    from app.measured import weights_manifest

    kwargs = {"z_dim": 16, "c_dim": 32, "w_dim": 16, "img_resolution": 16, "img_channels": 3,
              "mapping_kwargs": {"num_layers": 2}, "channel_base": 128, "channel_max": 16}
    torch.manual_seed(0)
    gan = save_generator(tmp_path / "gan", kwargs, Generator(**kwargs).state_dict())
    from PIL import Image

    rows = {"diffusion row": {"r_precision_top1": 0.25, "r_precision_top5": 0.5, "fid_judge": 80.0,
                              "diversity": 0.2, "ms_per_image": 300.0, "precision": 0.6, "recall": 0.3},
            "GAN row": {"r_precision_top1": 0.75, "r_precision_top5": 1.0, "fid_judge": 60.0, "diversity": 0.1,
                        "ms_per_image": 20.0, "precision": 0.7, "recall": 0.4, "style_coverage": 1.5}}
    models = {k: weights_manifest(str(v)) for k, v in
              (("diffusion", tiny_diffusion_dir), ("gan", gan), ("clip", tiny_clip_dir))}
    sweep = {f"{psi:g}": {"r_precision_top1": 0.8 - psi / 10, "recall": psi / 3} for psi in (0, 0.7, 1.5)}
    evaluation = tmp_path / "eval.json"
    evaluation.write_text(json.dumps({"prompts": 3, "seeds": 2, "device": "cpu", "rows": rows, "models": models,
                                      "studio_rows": {"diffusion": "diffusion row", "gan": "GAN row"},
                                      "heldout": {"GAN row": {"r_precision_top1": 0.5}},
                                      "truncation_sweep_conditional": sweep, "truncation_plot": "sweep.png"}))
    Image.new("RGB", (40, 30), "navy").save(tmp_path / "sweep.png")  # evaluation v2's plot, beside the JSON
    yield from serve(tiny_diffusion_dir, tiny_clip_dir, tmp_path, gan_model=str(gan), evaluation=evaluation)


@pytest.fixture
def page() -> Iterator[object]:
    if not CHROMIUM.exists():
        pytest.skip("/usr/bin/chromium is not installed")
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=list(CHROMIUM_ARGS))
        pg = browser.new_page(viewport={"width": 1280, "height": 1000})
        yield pg
        browser.close()


# Counts every distinct src the live image takes, including ones replaced before a poll could see them.
WATCH_IMAGE = """() => {
  const img = document.getElementById('d-image');
  window.__srcs = new Set();
  new MutationObserver(() => window.__srcs.add(img.src)).observe(img, { attributes: true, attributeFilter: ['src'] });
}"""


def watch_csp(page) -> list[str]:
    """Chromium reports every resource the page's Content-Security-Policy blocks on the console."""
    blocked: list[str] = []
    page.on("console", lambda m: blocked.append(m.text) if "Content Security Policy" in m.text else None)
    return blocked


def test_generate_streams_previews_and_fills_gallery(server: str, page) -> None:
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    blocked = watch_csp(page)
    page.goto(server + "/")
    page.wait_for_selector("#conn[data-state='open']", timeout=20_000)
    assert page.is_visible("#g-missing") and page.inner_text("#g-missing") == "no GAN model loaded"
    assert page.is_hidden("#demo-banner"), "the test models are not the embedded demo weights"
    assert page.locator("#gallery .card").count() == 0

    page.evaluate(WATCH_IMAGE)
    page.fill("#prompt", "a red fox in the snow")
    page.click("#generate")

    page.wait_for_selector("#gallery .card", timeout=120_000)
    changes = page.evaluate("() => window.__srcs.size")
    assert changes >= 5, f"the live image changed only {changes} times"
    assert page.inner_text("#d-stat-steps") == "30/30"
    assert page.locator("#gallery .card").count() == 1
    assert "a red fox in the snow" in page.inner_text("#gallery .card")
    assert page.inner_text("#errors").strip() == ""
    compare = page.inner_text("#compare")
    assert "a red fox in the snow" in compare and "R@1" not in compare, compare
    assert "weights" in page.inner_text("#compare-caption")  # why there are no measured figures
    assert page.is_hidden("#compare-plot")
    assert not errors, errors
    assert not blocked, blocked


def test_both_fills_the_comparison(server_with_gan: str, page) -> None:
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    blocked = watch_csp(page)
    page.goto(server_with_gan + "/")
    page.wait_for_selector("#conn[data-state='open']", timeout=20_000)
    page.wait_for_function("() => !document.getElementById('g-render').disabled")
    page.fill("#prompt", "red heart")
    page.eval_on_selector("#d-steps", "el => { el.value = 6; el.dispatchEvent(new Event('input')); }")
    page.click("#both")
    page.wait_for_function("() => document.querySelectorAll('#gallery .card').length === 2", timeout=120_000)
    page.wait_for_function("() => /faster/.test(document.getElementById('compare').innerText)")
    rows = {r[0]: r[1:] for r in page.eval_on_selector_all(
        "#compare tbody tr", "trs => trs.map(tr => [...tr.cells].map(td => td.innerText))")}
    assert rows["prompt"][:2] == ["red heart", "red heart"] and rows["prompt"][2] == ""
    assert "faster" in rows["time / image"][2]
    assert rows["R@1 / R@5 (judge)"][:2] == ["0.25 / 0.50", "0.75 / 1.00"]
    assert rows["ms / image"][2] == "15.0× in one run"
    assert "3 prompts × 2 seeds" in page.inner_text("#compare-caption")
    assert rows["precision / recall (judge)"][:2] == ["0.60 / 0.30", "0.70 / 0.40"]
    assert rows["style coverage (of 4)"][:2] == ["–", "1.50"] and rows["held-out concepts R@1"][:2] == ["–", "0.50"]
    assert "compositional R@1 of 16" not in rows  # not in this file
    page.wait_for_function("() => document.querySelector('#compare-plot img').naturalWidth === 40")
    assert page.is_visible("#compare-plot")
    assert "ψ from 0 to 1.5" in page.inner_text("#compare-plot figcaption")

    page.click("#g-diversity")  # 8 seeds: the GAN panel and the table get a diversity figure
    page.wait_for_function("() => document.getElementById('g-stat-div').innerText !== '–'", timeout=60_000)
    assert float(page.inner_text("#g-stat-div")) > 0
    assert page.inner_text("#errors").strip() == ""
    assert not errors, errors
    assert not blocked, blocked


def test_use_these_settings_restores_controls(server: str, page) -> None:
    page.goto(server + "/")
    page.wait_for_selector("#conn[data-state='open']", timeout=20_000)
    page.fill("#prompt", "a blue bird")
    page.fill("#d-seed", "1234")
    page.select_option("#d-sampler", "euler_a")
    page.eval_on_selector("#d-steps", "el => { el.value = 6; el.dispatchEvent(new Event('input')); }")
    page.click("#generate")
    page.wait_for_selector("#gallery .card", timeout=120_000)

    page.fill("#prompt", "something else")
    page.fill("#d-seed", "")
    page.select_option("#d-sampler", "ddim")
    page.click("#gallery .card button")
    assert page.input_value("#prompt") == "a blue bird"
    assert page.input_value("#d-seed") == "1234"
    assert page.input_value("#d-sampler") == "euler_a"
    assert page.input_value("#d-steps") == "6"


def test_scrub_and_fork_keeps_both_branches(server: str, page) -> None:
    page.goto(server + "/")
    page.wait_for_selector("#conn[data-state='open']", timeout=20_000)
    page.fill("#prompt", "a lighthouse")
    page.eval_on_selector("#d-steps", "el => { el.value = 8; el.dispatchEvent(new Event('input')); }")
    page.click("#generate")
    page.wait_for_selector("#gallery .card", timeout=120_000)

    page.eval_on_selector("#d-scrub", "el => { el.value = 3; el.dispatchEvent(new Event('input')); }")
    assert page.inner_text("#d-scrub-label") == "step 3/8"
    page.eval_on_selector("#d-cfg_scale", "el => { el.value = 9; el.dispatchEvent(new Event('input')); }")
    page.click("#d-fork")
    page.wait_for_function("() => document.querySelectorAll('#gallery .card').length === 2", timeout=120_000)
    chips = page.locator("#d-branches .branch").all_inner_texts()
    assert len(chips) == 2 and "#1@3" in chips[1], chips
    newest = page.locator("#gallery .card").first.inner_text()
    assert "cfg 9" in newest, newest

    page.click("#d-branches .branch >> nth=0")  # the earlier branch is still viewable
    page.eval_on_selector("#d-scrub", "el => { el.value = 6; el.dispatchEvent(new Event('input')); }")
    page.wait_for_function("() => document.getElementById('d-image').src.startsWith('blob:')")
    assert page.inner_text("#errors").strip() == ""
