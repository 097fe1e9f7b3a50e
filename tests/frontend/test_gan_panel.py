"""The GAN panel in Debian's chromium against the real server on tiny models: sliders never start a
CLIP search, the search runs from its own button with streamed progress and its own stop, and an
empty prompt is refused (text-conditioned generator) or rendered and labelled as the unconditional
sample (unconditional generator)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.frontend.test_browser import page, serve, server_with_gan  # noqa: F401  (fixtures)

pytestmark = [pytest.mark.browser, pytest.mark.slow]

# Records every message the page sends and every text the GAN panel's figures take.
RECORD = """() => {
  const s = window.noisescope.socket;
  const send = s.send.bind(s);
  window.__sent = [];
  s.send = (m) => { window.__sent.push(m); return send(m); };
  window.__texts = {};
  for (const id of ['g-stat-steps', 'g-stat-time', 'g-search-status']) {
    const node = document.getElementById(id);
    window.__texts[id] = [];
    new MutationObserver((records) => {
      for (const r of records) for (const n of r.addedNodes) window.__texts[id].push(n.textContent);
    }).observe(node, { childList: true });
  }
}"""


def slide(pg, selector: str, value: float) -> None:
    pg.eval_on_selector(selector, f"el => {{ el.value = {value}; el.dispatchEvent(new Event('input')); }}")


def sent(pg) -> list[dict]:
    return [m for m in pg.evaluate("() => window.__sent") if m["type"] == "generate_gan"]


def open_panel(pg, url: str) -> None:
    pg.goto(url + "/")
    pg.wait_for_selector("#conn[data-state='open']", timeout=20_000)
    pg.wait_for_function("() => !document.getElementById('g-render').disabled")
    pg.evaluate(RECORD)


def test_sliders_never_search_and_the_search_streams_progress(server_with_gan: str, page) -> None:  # noqa: F811
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    open_panel(page, server_with_gan)
    assert "Text-conditioned" in page.inner_text("#g-note")

    # An empty prompt: this generator draws the prompt, so nothing is sent, as Generate refuses.
    page.fill("#prompt", "")
    slide(page, "#g-truncation_psi", 0.4)
    assert "Type a prompt" in page.inner_text("#g-hint")
    page.click("#g-render")
    page.click("#g-search")
    assert "Enter a prompt first" in page.inner_text("#errors")
    assert sent(page) == []
    page.click("#errors .error button")
    page.click("#errors .error button")

    page.fill("#prompt", "red heart")
    slide(page, "#g-search_steps", 5)
    assert sent(page) == [], "a search slider only sets up the search button"
    assert page.inner_text("#g-search") == "CLIP search (5 steps)"
    slide(page, "#g-truncation_psi", 0.3)
    drag = sent(page)
    assert len(drag) == 1 and drag[0]["params"]["search_steps"] == 0 and drag[0]["params"]["save"] is False
    page.wait_for_function("() => document.getElementById('g-stat-clip').innerText !== '–'")  # the score follows
    assert page.inner_text("#g-stat-steps") == "1/1" and page.is_visible("#g-image")
    assert page.inner_text("#g-hint") == ""

    page.click("#g-render")
    page.wait_for_selector("#gallery .card", timeout=60_000)
    render = sent(page)[-1]["params"]
    assert render["search_steps"] == 0 and render["save"] is True, "Render renders; it does not search"

    page.click("#g-search")
    page.wait_for_function("() => /search done/.test(document.getElementById('g-search-status').innerText)",
                           timeout=60_000)
    search = sent(page)[-1]["params"]
    assert search["search_steps"] == 5 and search["save"] is True and len(sent(page)) == 3
    texts = page.evaluate("() => window.__texts")
    for i in range(1, 6):
        assert f"{i}/5" in texts["g-stat-steps"], texts["g-stat-steps"]
    assert "0 ms" not in texts["g-stat-time"], texts["g-stat-time"]
    progress = [t for t in texts["g-search-status"] if t.startswith("search step")]
    assert any(re.fullmatch(r"search step 5/5 · CLIP -?\d\.\d{3} \(from -?\d\.\d{3}\)", t) for t in progress), progress
    assert "search queued" in texts["g-search-status"]
    assert page.inner_text("#g-stat-steps") == "5/5" and page.inner_text("#g-stat-time") not in ("–", "0 ms")
    page.wait_for_function("() => document.querySelectorAll('#gallery .card').length === 2")
    assert "search 5" in page.locator("#gallery .card").first.inner_text()
    assert page.inner_text("#errors").strip() == ""
    assert not errors, errors


def test_the_search_has_its_own_stop(server_with_gan: str, page) -> None:  # noqa: F811
    open_panel(page, server_with_gan)
    page.fill("#prompt", "pizza")
    page.evaluate("() => window.noisescope.gan.controls.set({ search_steps: 500 })")
    page.click("#g-search")
    page.wait_for_function("() => /search step \\d+\\/500/.test(document.getElementById('g-search-status').innerText)",
                           timeout=60_000)
    assert page.is_disabled("#g-search") and page.is_enabled("#g-search-stop")
    page.click("#g-search-stop")
    page.wait_for_function("() => /search stopped at step/.test(document.getElementById('g-search-status').innerText)",
                           timeout=60_000)
    assert page.is_enabled("#g-search") and page.is_disabled("#g-search-stop")
    cancels = [m for m in page.evaluate("() => window.__sent") if m["type"] == "cancel"]
    assert len(cancels) == 1
    assert page.locator("#gallery .card").count() == 0, "a stopped search keeps nothing"
    assert page.inner_text("#errors").strip() == ""


@pytest.fixture
def server_with_unconditional_gan(tiny_diffusion_dir: Path, tiny_clip_dir: Path, tmp_path: Path) -> Iterator[str]:
    import torch

    from app.gan.convert import save_generator
    from app.gan.networks import Generator

    kwargs = {"z_dim": 16, "c_dim": 0, "w_dim": 16, "img_resolution": 16, "img_channels": 3,
              "mapping_kwargs": {"num_layers": 2}, "channel_base": 128, "channel_max": 16}
    torch.manual_seed(0)
    gan = save_generator(tmp_path / "gan0", kwargs, Generator(**kwargs).state_dict())
    yield from serve(tiny_diffusion_dir, tiny_clip_dir, tmp_path, gan_model=str(gan))


def test_an_unconditional_gan_renders_an_empty_prompt_labelled_so(server_with_unconditional_gan: str,
                                                                   page) -> None:  # noqa: F811
    open_panel(page, server_with_unconditional_gan)
    assert "Unconditional" in page.inner_text("#g-note")
    page.fill("#prompt", "")
    page.click("#g-render")
    page.wait_for_selector("#gallery .card", timeout=60_000)
    assert "unconditional sample (no prompt)" in page.inner_text("#gallery .card")
    assert sent(page)[0]["params"]["prompt"] == ""
    page.fill("#prompt", "pizza")
    page.click("#g-render")
    page.wait_for_function("() => document.querySelectorAll('#gallery .card').length === 2", timeout=60_000)
    assert "pizza (unconditional GAN: the prompt only scored it)" in page.locator("#gallery .card").first.inner_text()
    assert page.inner_text("#errors").strip() == ""


@pytest.fixture
def server_with_stylegan3(tiny_diffusion_dir: Path, tiny_clip_dir: Path, tmp_path: Path) -> Iterator[str]:
    import torch

    from app.gan.convert import FORMAT_SG3, save_generator
    from app.gan.stylegan3 import Generator

    kwargs = {"z_dim": 8, "c_dim": 0, "w_dim": 8, "img_resolution": 16, "img_channels": 3,
              "mapping_kwargs": {"num_layers": 2}, "channel_base": 64, "channel_max": 8, "num_layers": 4,
              "num_critical": 1, "margin_size": 2}
    torch.manual_seed(0)
    gan = save_generator(tmp_path / "sg3", kwargs, Generator(**kwargs).state_dict(), fmt=FORMAT_SG3)
    yield from serve(tiny_diffusion_dir, tiny_clip_dir, tmp_path, gan_model=str(gan))


TRANSFORM = ("#g-translate_x", "#g-translate_y", "#g-rotate")


def test_the_panel_shows_a_stylegan3s_input_transform_live(server_with_stylegan3: str, page) -> None:  # noqa: F811
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    open_panel(page, server_with_stylegan3)
    for sel in TRANSFORM + ("#g-truncation_psi", "#g-mix_seed", "#g-mix_layer"):
        assert page.is_visible(sel), sel
    assert not page.is_visible("#g-noise_mode"), "StyleGAN3 has no noise inputs"
    assert not page.is_visible("#g-class_index")
    assert page.get_attribute("#g-mix_layer", "max") == "5"  # num_ws = 4 layers + 2 rows
    slide(page, "#g-rotate", 30)
    page.wait_for_function("() => document.getElementById('g-stat-steps').innerText === '1/1'", timeout=60_000)
    first = sent(page)[-1]["params"]
    assert first["rotate"] == 30 and first["save"] is False and "noise_mode" not in first
    before = page.get_attribute("#g-image", "src")
    slide(page, "#g-translate_x", 0.25)
    page.wait_for_function("(src) => document.getElementById('g-image').src !== src", arg=before, timeout=60_000)
    assert sent(page)[-1]["params"]["translate_x"] == 0.25
    assert page.inner_text("#errors").strip() == ""
    assert not errors, errors


def test_the_panel_hides_what_a_stylegan2_lacks(server_with_unconditional_gan: str, page) -> None:  # noqa: F811
    open_panel(page, server_with_unconditional_gan)
    for sel in TRANSFORM + ("#g-class_index",):
        assert not page.is_visible(sel), sel
    for sel in ("#g-noise_mode", "#g-truncation_psi", "#g-mix_layer", "#g-search"):
        assert page.is_visible(sel), sel
    page.fill("#prompt", "")
    page.click("#g-render")
    page.wait_for_selector("#gallery .card", timeout=60_000)
    params = sent(page)[-1]["params"]
    assert not {"translate_x", "translate_y", "rotate", "class_index"} & params.keys()
    assert params["noise_mode"] == "const"


def test_a_latent_walk_streams_and_is_offered_as_an_animated_webp(server_with_stylegan3: str, page) -> None:  # noqa: F811
    open_panel(page, server_with_stylegan3)
    page.evaluate("() => window.noisescope.gan.controls.set({ seed: 3, walk_seed: 8, walk_frames: 4, walk_fps: 8 })")
    assert sent(page) == [], "the walk's controls only set up its button"
    assert not page.is_visible("#g-walk-save")
    page.click("#g-walk")
    page.wait_for_function("() => document.getElementById('g-walk-status').innerText === 'walk done: 4 frames'",
                           timeout=60_000)
    walk = sent(page)[-1]["params"]
    assert (walk["walk_frames"], walk["walk_seed"], walk["walk_fps"], walk["seed"]) == (4, 8, 8, 3)
    assert page.is_visible("#g-walk-save") and page.get_attribute("#g-walk-save", "download").endswith(".webp")
    frame = page.evaluate("""() => {
      const run = window.noisescope.runs.list('gan').filter((r) => r.walk).at(-1);
      return [run.latestFrame.meta.format, run.latestFrame.meta.frames, run.latestFrame.url];
    }""")
    assert frame[:2] == ["webp", 4] and frame[2] == page.get_attribute("#g-walk-save", "href")
    page.wait_for_function("() => document.getElementById('g-image').complete")
    assert page.evaluate("() => document.getElementById('g-image').naturalWidth") == 16, "the browser decodes it"
    assert page.get_attribute("#g-image", "src") == page.get_attribute("#g-walk-save", "href"), "the walk loops in place"
    assert page.inner_text("#errors").strip() == ""
