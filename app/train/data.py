"""Training data for the embedded models: rendered emoji with captions, and a procedural shapes set.

Build the emoji set (needs Debian's fonts-noto-color-emoji and the `emoji` package)::

    python -m app.train.data build --out data/emoji

That writes `data/emoji/emoji64.npz` and `data/emoji/manifest.json` (counts, licences, sha256).

`load_dataset(path)` is the one reader the trainers and evaluators use. `path` is the folder, the
.npz itself, or the string "shapes" / "shapes:N" for the in-memory procedural set. It returns
`(images, captions, ids)`:

- images: uint8 array [N, 64, 64, 3], RGB on white;
- captions: list of N lists of caption strings (all lower case, ASCII words), first = plainest;
- ids: list of N strings (emoji: hex code points joined by '-', e.g. '2764-fe0f'; shapes: 'shape-K').
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import re
import sys
import time
import unicodedata
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

SIZE = 64
FONT_PATH = Path("/usr/share/fonts/truetype/noto/NotoColorEmoji.ttf")
FONT_PX = 109  # the only size NotoColorEmoji's CBDT bitmaps come in (136x128 glyphs)
NPZ_NAME = "emoji64.npz"

LICENCES = {
    "images": "Noto Color Emoji (Debian fonts-noto-color-emoji): font under OFL-1.1, emoji images Apache-2.0",
    "captions": "emoji package (PyPI `emoji`, CLDR short names and GitHub/Slack aliases): BSD-3-Clause",
}

TEMPLATES = ("{n}", "{n} emoji", "an emoji of {a} {n}", "a picture of {a} {n}", "{a} {n} icon", "a cartoon {n}")

Dataset = tuple[np.ndarray, list[list[str]], list[str]]


def clean_name(raw: str) -> str:
    """':man’s_shoe:' -> 'mans shoe': lower-case ASCII words, nothing else."""
    text = raw.strip(":").replace("_", " ").replace("’", "").replace("'", "")
    text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    return " ".join(re.findall(r"[a-z0-9#*]+", text.lower()))


def article(name: str) -> str:
    return "an" if name[:1] in "aeiou" else "a"


def expand_captions(names: list[str]) -> list[str]:
    """Every name in every template; the first caption is the first name alone."""
    out: list[str] = []
    for n in names:
        for t in TEMPLATES:
            cap = t.format(n=n, a=article(n))
            if cap not in out:
                out.append(cap)
    return out


def emoji_names(entry: dict) -> list[str]:
    """CLDR name first, then aliases; skin-tone variants also get their base name as a keyword."""
    names = [clean_name(entry["en"])] + [clean_name(a) for a in entry.get("alias", [])]
    base = re.sub(r"\s*(light|medium light|medium|medium dark|dark)( skin tone)?(\s|$).*$", "", names[0])
    if "skin tone" in names[0] and base and base != names[0]:
        names.append(base)
    return list(dict.fromkeys(n for n in names if n))


def _glyph_rgba(text: str, font) -> Image.Image | None:

    canvas = Image.new("RGBA", (160, 160), (255, 255, 255, 0))
    ImageDraw.Draw(canvas).text((4, 4), text, font=font, embedded_color=True)
    box = canvas.getbbox()
    return canvas.crop(box) if box else None


def render_emoji(text: str, font, size: int = SIZE, margin: float = 0.04) -> np.ndarray | None:
    """One emoji, centred on white, its longer side filling the square less a small margin."""
    from PIL import Image

    glyph = _glyph_rgba(text, font)
    if glyph is None:
        return None
    side = int(max(glyph.size) * (1 + 2 * margin))
    square = Image.new("RGBA", (side, side), (255, 255, 255, 255))
    square.alpha_composite(glyph, ((side - glyph.width) // 2, (side - glyph.height) // 2))
    return np.asarray(square.convert("RGB").resize((size, size), Image.Resampling.LANCZOS), dtype=np.uint8)


def emoji_id(text: str) -> str:
    return "-".join(f"{ord(c):x}" for c in text)


def build_emoji(font_path: Path = FONT_PATH, limit: int | None = None) -> tuple[Dataset, dict]:
    """Render every fully-qualified emoji the font draws as a single glyph. Returns data and stats."""
    import emoji
    from PIL import ImageFont

    font = ImageFont.truetype(str(font_path), FONT_PX)
    single = font.getlength("\U0001F600") * 1.2
    tofu = _glyph_rgba("\U000E0000", font)
    tofu_bytes = tofu.tobytes() if tofu is not None else b""
    images, captions, ids = [], [], []
    skipped = {"not_fully_qualified": 0, "multi_glyph": 0, "missing_glyph": 0}
    for text, entry in emoji.EMOJI_DATA.items():
        if entry.get("status") != emoji.STATUS["fully_qualified"]:
            skipped["not_fully_qualified"] += 1
            continue
        if font.getlength(text) > single:
            skipped["multi_glyph"] += 1
            continue
        glyph = _glyph_rgba(text, font)
        if glyph is None or glyph.tobytes() == tofu_bytes:
            skipped["missing_glyph"] += 1
            continue
        images.append(render_emoji(text, font))
        captions.append(expand_captions(emoji_names(entry)))
        ids.append(emoji_id(text))
        if limit and len(ids) >= limit:
            break
    stats = {"emoji_package": emoji.__version__, "skipped": skipped}
    return (np.stack(images), captions, ids), stats


def shapes_dataset(n: int = 256, seed: int = 0, size: int = SIZE) -> Dataset:
    """Coloured shapes with compositional captions ('a small red circle on a blue background')."""
    from PIL import Image, ImageDraw

    colours = {"red": (220, 30, 30), "green": (30, 170, 60), "blue": (40, 70, 220), "yellow": (240, 210, 30),
               "purple": (140, 50, 180), "orange": (250, 140, 20), "black": (20, 20, 20), "white": (255, 255, 255)}
    shapes = ("circle", "square", "triangle")
    rng = random.Random(seed)
    images, captions, ids = [], [], []
    for k in range(n):
        fg, bg = rng.sample(list(colours), 2)
        shape, big = rng.choice(shapes), rng.random() < 0.5
        r = size * (0.38 if big else 0.2)
        cx, cy = rng.uniform(r, size - r), rng.uniform(r, size - r)
        im = Image.new("RGB", (size, size), colours[bg])
        draw = ImageDraw.Draw(im)
        box = (cx - r, cy - r, cx + r, cy + r)
        if shape == "circle":
            draw.ellipse(box, fill=colours[fg])
        elif shape == "square":
            draw.rectangle(box, fill=colours[fg])
        else:
            draw.polygon([(cx, cy - r), (cx - r, cy + r), (cx + r, cy + r)], fill=colours[fg])
        sz = "large" if big else "small"
        captions.append([f"a {sz} {fg} {shape} on a {bg} background", f"{fg} {shape}", f"a {fg} {shape}",
                         f"a {sz} {shape}", f"{fg} {shape} on {bg}"])
        images.append(np.asarray(im, dtype=np.uint8))
        ids.append(f"shape-{k}")
    return np.stack(images), captions, ids


def save_npz(path: Path, data: Dataset) -> None:
    images, captions, ids = data
    np.savez_compressed(path, images=images, captions=np.array([json.dumps(c) for c in captions]),
                        ids=np.array(ids))


def load_dataset(path: str | Path) -> Dataset:
    """(images uint8 [N,64,64,3], captions list[list[str]], ids list[str]); see the module docstring."""
    spec = str(path)
    if spec.startswith("shapes"):
        _, _, n = spec.partition(":")
        return shapes_dataset(int(n) if n else 256)
    p = Path(path)
    if p.is_dir():
        p = p / NPZ_NAME
    with np.load(p, allow_pickle=False) as z:
        images = z["images"]
        captions = [json.loads(str(c)) for c in z["captions"]]
        ids = [str(i) for i in z["ids"]]
    return images, captions, ids


def caption_words(captions: list[list[str]]) -> list[str]:
    """The sorted set of words used by any caption (the tokenizer's whole-word vocabulary)."""
    return sorted({w for caps in captions for c in caps for w in c.split()})


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def build(out: Path, limit: int | None = None) -> dict:
    """Render the emoji set into `out` and write its manifest. Returns the manifest."""
    t0 = time.time()
    out.mkdir(parents=True, exist_ok=True)
    data, stats = build_emoji(limit=limit)
    npz = out / NPZ_NAME
    save_npz(npz, data)
    images, captions, _ = data
    manifest = {
        "file": NPZ_NAME, "sha256": sha256_file(npz), "count": int(len(images)),
        "image_shape": list(images.shape[1:]), "captions": sum(len(c) for c in captions),
        "vocabulary_words": len(caption_words(captions)), "font": str(FONT_PATH), "font_px": FONT_PX,
        "licences": LICENCES, "build_seconds": round(time.time() - t0, 1), **stats,
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m app.train.data", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("build", help="render the emoji set")
    b.add_argument("--out", type=Path, default=Path("data/emoji"))
    b.add_argument("--limit", type=int, default=None, help="stop after this many emoji (tests)")
    args = parser.parse_args(argv)
    if not FONT_PATH.exists():
        print(f"missing {FONT_PATH}: apt-get install fonts-noto-color-emoji", file=sys.stderr)
        return 1
    manifest = build(args.out, args.limit)
    print(json.dumps({k: manifest[k] for k in ("count", "captions", "vocabulary_words", "sha256", "skipped")}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
