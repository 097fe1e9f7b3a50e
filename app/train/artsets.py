"""The emoji art sets of dataset v2: where each comes from, its licence, and how one emoji is drawn.

Each set draws the same Unicode emoji in its own style. A set is fetched through its own package
client (Debian's apt for the Noto font, npm for the SVG sets), never downloaded by hand, and
cached under `data/sources/`. SVGs are rasterised by resvg (the `resvg-py` wheel).

| key | package | licence of the images | style word in captions |
| --- | --- | --- | --- |
| noto | Debian `fonts-noto-color-emoji` | Apache-2.0 (font OFL-1.1) | noto |
| twemoji | npm `@twemoji/svg` 15.0.0 | CC-BY-4.0 (code MIT) | twemoji |
| fluent-flat | npm `fluentui-emoji` 1.3.0, `icons/flat` | MIT (Microsoft Fluent UI Emoji) | flat |
| fluent-color | npm `fluentui-emoji` 1.3.0, `icons/modern` | MIT (Microsoft Fluent UI Emoji) | fluent |
"""

from __future__ import annotations

import io
import re
import shutil
import subprocess
import tarfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

FONT_PATH = Path("/usr/share/fonts/truetype/noto/NotoColorEmoji.ttf")
FONT_PX = 109  # the only size NotoColorEmoji's CBDT bitmaps come in (136x128 glyphs)
SVG_RENDER_PX = 256  # SVGs are drawn at least this large (and twice the target), cropped, then resized


class MissingArtSet(RuntimeError):
    """An art set's package cannot be had; the message names the package and how to get it."""


@dataclass(frozen=True)
class ArtSet:
    key: str
    style: str  # the word or phrase captions use to ask for this style
    package: str  # how it is installed: "apt:NAME" or "npm:NAME@VERSION"
    licence: str
    subdir: str = ""  # inside the npm package


ART_SETS: tuple[ArtSet, ...] = (
    ArtSet("noto", "noto", "apt:fonts-noto-color-emoji",
           "Noto Color Emoji: emoji images Apache-2.0, font OFL-1.1 (Google)"),
    ArtSet("twemoji", "twemoji", "npm:@twemoji/svg@15.0.0",
           "Twemoji graphics CC-BY-4.0 (Twitter, Inc and other contributors; jdecked/twemoji), code MIT", ""),
    ArtSet("fluent-flat", "flat", "npm:fluentui-emoji@1.3.0",
           "Microsoft Fluent UI Emoji, MIT (repackaged on npm by Mohammad Abu Mattar, MIT)", "icons/flat"),
    ArtSet("fluent-color", "fluent", "npm:fluentui-emoji@1.3.0",
           "Microsoft Fluent UI Emoji, MIT (repackaged on npm by Mohammad Abu Mattar, MIT)", "icons/modern"),
)
ART_SET_KEYS = tuple(a.key for a in ART_SETS)


def npm_package(spec: str, cache: Path) -> Path:
    """`npm pack NAME@VERSION` into `cache` once and unpack it; returns the package folder."""
    name, _, version = spec.rpartition("@")
    folder = cache / f"{name.strip('@').replace('/', '+')}-{version}"
    if (folder / "package" / "package.json").exists():
        return folder / "package"
    if shutil.which("npm") is None:
        raise MissingArtSet(f"the npm package {spec} is needed and npm is missing: apt-get install npm")
    cache.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(["npm", "pack", spec, "--pack-destination", str(cache.resolve()), "--silent"],
                          capture_output=True, text=True, timeout=600)
    if done.returncode != 0:
        raise MissingArtSet(f"npm could not fetch {spec}: {done.stderr.strip()[-300:]}")
    tarball = cache / done.stdout.strip().splitlines()[-1]
    with tarfile.open(tarball) as tar:
        tar.extractall(folder, filter="data")
    tarball.unlink()
    return folder / "package"


def source_folder(art: ArtSet, cache: Path) -> Path:
    """The folder (or, for the font, the file) an art set is drawn from; MissingArtSet if it cannot be had."""
    kind, _, spec = art.package.partition(":")
    if kind == "apt":
        if not FONT_PATH.exists():
            raise MissingArtSet(f"art set '{art.key}' needs {FONT_PATH}: apt-get install {spec}")
        return FONT_PATH
    return npm_package(spec, cache) / art.subdir


def square_on_white(rgba: Image.Image, size: int, margin: float = 0.04) -> np.ndarray | None:
    """Crop to the drawn pixels, centre on a white square with a margin, Lanczos-resize to `size`."""
    box = rgba.getbbox()
    if box is None:
        return None
    glyph = rgba.crop(box)
    side = int(max(glyph.size) * (1 + 2 * margin))
    square = Image.new("RGBA", (side, side), (255, 255, 255, 255))
    square.alpha_composite(glyph, ((side - glyph.width) // 2, (side - glyph.height) // 2))
    return np.asarray(square.convert("RGB").resize((size, size), Image.Resampling.LANCZOS), dtype=np.uint8)


def render_svg(path: Path, size: int) -> np.ndarray | None:
    import resvg_py

    png = resvg_py.svg_to_bytes(svg_path=str(path), width=max(SVG_RENDER_PX, 2 * size),
                                height=max(SVG_RENDER_PX, 2 * size))
    return square_on_white(Image.open(io.BytesIO(bytes(png))).convert("RGBA"), size)


class NotoFont:
    """Draws one emoji with Debian's Noto Color Emoji (bitmaps up to 136 px: a 256 px render is upscaled)."""

    def __init__(self, path: Path = FONT_PATH) -> None:
        self.font = ImageFont.truetype(str(path), FONT_PX)
        self.single = self.font.getlength("\U0001F600") * 1.2
        tofu = self.glyph("\U000E0000")
        self.tofu = tofu.tobytes() if tofu is not None else b""

    def glyph(self, text: str) -> Image.Image | None:
        canvas = Image.new("RGBA", (160, 160), (255, 255, 255, 0))
        ImageDraw.Draw(canvas).text((4, 4), text, font=self.font, embedded_color=True)
        box = canvas.getbbox()
        return canvas.crop(box) if box else None

    def why_not(self, text: str) -> str | None:
        """None if the font draws `text` as one glyph, else the reason it is left out."""
        if self.font.getlength(text) > self.single:
            return "multi_glyph"
        g = self.glyph(text)
        if g is None or g.tobytes() == self.tofu:
            return "missing_glyph"
        return None

    def render(self, text: str, size: int) -> np.ndarray | None:
        g = self.glyph(text)
        return None if g is None else square_on_white(g, size)


SKIN_TONES = ("medium light", "medium dark", "light", "medium", "dark")


def slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


def fluent_candidates(name: str) -> list[str]:
    """File stems Fluent UI Emoji may use for a CLDR name: 'waving hand medium light skin tone' ->
    'waving-hand-medium-light'; a base name may carry '-default'."""
    m = re.match(r"^(.*?)\s+(" + "|".join(SKIN_TONES) + r") skin tone$", name)
    if m:
        return [f"{slug(m.group(1))}-{slug(m.group(2))}"]
    return [slug(name), slug(name) + "-default"]


def twemoji_candidates(emoji_id: str) -> list[str]:
    """Twemoji file stems: the code points in hex, usually without the FE0F variation selector."""
    bare = "-".join(p for p in emoji_id.split("-") if p != "fe0f")
    return [emoji_id, bare] if bare != emoji_id else [emoji_id]


def svg_finder(folder: Path, candidates: Callable[[str], list[str]]) -> Callable[[str], Path | None]:
    names = {p.stem: p for p in folder.glob("*.svg")}

    def find(key: str) -> Path | None:
        return next((names[c] for c in candidates(key) if c in names), None)

    return find
