"""Drive the studio in Debian's Chromium and keep what it shows: one row per prompt (diffusion | GAN,
as the panels drew them after "Both"), and the whole page with the Compare table of the last prompt.

    python scripts/studio_screenshot.py --out models/studio_four_prompts.png --page models/studio_compare.png

It starts `python -m app` on a free loopback port with the default (embedded) models and a
throw-away data folder, so the gallery it fills is discarded.
"""

from __future__ import annotations

import argparse
import io
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from app.devtools import CHROMIUM, CHROMIUM_ARGS, free_port  # noqa: E402 (after the sys.path line)

PROMPTS = ("red heart", "pizza", "cat face", "smiling face with sunglasses")


def wait_for(url: str, proc: subprocess.Popen, seconds: float = 180) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError("the studio exited while starting")
        try:
            urllib.request.urlopen(url, timeout=2).close()
            return
        except OSError:
            time.sleep(0.5)
    raise TimeoutError(f"{url} did not answer")


def both(page, prompt: str, seed: int, done_before: int) -> tuple[Image.Image, Image.Image]:
    """Run one prompt on both engines with a fixed seed; returns the two panels' images."""
    page.fill("#prompt", prompt)
    page.fill("#d-seed", str(seed))
    page.fill("#g-seed", str(seed))
    page.click("#both")
    page.wait_for_function(f"() => document.querySelectorAll('#gallery .card').length >= {done_before + 2}",
                           timeout=300_000)
    page.wait_for_function("() => document.getElementById('d-stat-steps').innerText.split('/')[0] === "
                           "document.getElementById('d-stat-steps').innerText.split('/')[1]")
    shots = []
    for sel in ("#d-image", "#g-image"):
        png = page.locator(sel).screenshot()
        shots.append(Image.open(io.BytesIO(png)).convert("RGB"))
    return shots[0], shots[1]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=REPO / "models" / "studio_four_prompts.png")
    p.add_argument("--page", type=Path, default=None, help="also keep a screenshot of the whole page")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--chromium", default=str(CHROMIUM))
    args = p.parse_args()
    from playwright.sync_api import sync_playwright

    port = free_port()
    with tempfile.TemporaryDirectory() as data:
        proc = subprocess.Popen([sys.executable, "-m", "app", "--port", str(port), "--data-dir", data], cwd=REPO)
        try:
            url = f"http://127.0.0.1:{port}/"
            wait_for(url, proc)
            with sync_playwright() as pw:
                browser = pw.chromium.launch(executable_path=args.chromium, args=list(CHROMIUM_ARGS))
                page = browser.new_page(viewport={"width": 1280, "height": 1400})
                page.goto(url)
                page.wait_for_selector("#conn[data-state='open']", timeout=60_000)
                page.wait_for_function("() => !document.getElementById('g-render').disabled")
                rows = [both(page, prompt, args.seed, 2 * i) for i, prompt in enumerate(PROMPTS)]
                if args.page is not None:
                    page.locator(".compare-section").scroll_into_view_if_needed()
                    page.screenshot(path=str(args.page), full_page=True)
                browser.close()
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    w, h = rows[0][0].size
    sheet = Image.new("RGB", (2 * w + 6, len(rows) * h), "white")
    for i, (d, g) in enumerate(rows):
        sheet.paste(d.resize((w, h)), (0, i * h))
        sheet.paste(g.resize((w, h)), (w + 6, i * h))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(args.out)
    print(f"wrote {args.out}" + (f" and {args.page}" if args.page else ""))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
