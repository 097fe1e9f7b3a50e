"""Issue 20's Upscale panel in Debian's chromium on tiny random upscalers: "upscale" on a gallery card with
"both" shows the GAN and diffusion results side by side with their times, the diffusion upscale's
previews arrive, the before/after slider moves the divider, and the results reach the gallery with
their lineage. No timed assertions: every wait is for a state."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.frontend.conftest import gallery
from tests.frontend.test_browser import page, serve  # noqa: F401  (fixtures)

pytestmark = [pytest.mark.browser, pytest.mark.slow]


@pytest.fixture
def upscale_server(tiny_diffusion_dir: Path, tiny_clip_dir: Path, tmp_path: Path) -> Iterator[str]:
    from app.demo_models import build_tiny_upscalers

    gan, diffusion = build_tiny_upscalers(tmp_path / "upscalers")
    yield from serve(tiny_diffusion_dir, tiny_clip_dir, tmp_path, upscaler_gan=str(gan),
                     upscaler_diffusion=str(diffusion))


def test_upscale_button_side_by_side_and_compare_slider(upscale_server: str, page) -> None:  # noqa: F811
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(upscale_server + "/")
    page.wait_for_selector("#conn[data-state='open']", timeout=20_000)
    page.wait_for_function("() => !document.querySelector('#upscaler option[value=both]').disabled")
    page.fill("#prompt", "cat face")
    page.fill("#d-seed", "4")
    page.eval_on_selector("#d-steps", "el => { el.value = 4; el.dispatchEvent(new Event('input', { bubbles: true })); }")
    page.click("#generate")
    page.wait_for_selector("#gallery .card button.upscale", timeout=180_000)
    source = gallery(upscale_server)[0]["id"]

    page.select_option("#upscaler", "both")
    page.fill("#upscale-steps", "4")
    page.click(f"#gallery .card[data-id='{source}'] button.upscale")
    page.wait_for_selector(".upscale-result[data-upscaler=gan][data-state=done]", timeout=180_000)
    page.wait_for_selector(".upscale-result[data-upscaler=diffusion][data-state=done]", timeout=180_000)
    figures = page.locator(".upscale-result")
    assert figures.count() == 2, "both upscalers side by side"
    for which in ("gan", "diffusion"):
        fig = page.locator(f".upscale-result[data-upscaler={which}]")
        assert fig.locator(".time").inner_text().endswith("ms") or "s" in fig.locator(".time").inner_text()
        assert fig.locator("img.after").get_attribute("src").startswith("blob:")
        assert fig.locator("img.before").get_attribute("src")
    assert "source: gallery image" in page.inner_text("#upscale-source")

    # the compare slider moves the divider between before and after
    after = ".upscale-result[data-upscaler=gan] img.after"
    assert page.eval_on_selector(after, "el => el.style.clipPath") == "inset(0px 0px 0px 50%)"
    page.eval_on_selector(".upscale-result[data-upscaler=gan] .compare-range",
                          "el => { el.value = 20; el.dispatchEvent(new Event('input', { bubbles: true })); }")
    assert page.eval_on_selector(after, "el => el.style.clipPath") == "inset(0px 0px 0px 20%)"
    page.focus(".upscale-result[data-upscaler=gan] .compare-range")
    page.keyboard.press("ArrowRight")
    assert page.eval_on_selector(after, "el => el.style.clipPath") == "inset(0px 0px 0px 21%)"

    # both results are in the gallery with their lineage
    page.wait_for_function("() => document.querySelectorAll('#gallery .card').length === 3", timeout=60_000)
    items = gallery(upscale_server)
    ups = {i["lineage"]["upscaler"]: i for i in items if (i.get("lineage") or {}).get("upscaler")}
    assert set(ups) == {"gan", "diffusion"} and all(u["lineage"]["source_image"] == source for u in ups.values())
    src = next(i for i in items if i["id"] == source)
    assert all((u["width"], u["height"]) == (4 * src["width"], 4 * src["height"]) for u in ups.values())
    text = page.locator(f"#gallery .card[data-id='{ups['diffusion']['id']}'] .lineage").inner_text()
    assert text == f"upscaled ×4 from image {source[-8:]} by the diffusion upscaler (4 steps, noise 20)"
    assert not errors, errors
