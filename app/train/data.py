"""Training data for the embedded models: one emoji concept drawn by several art sets, captioned.

Dataset v2 (needs Debian's fonts-noto-color-emoji, npm for the SVG sets, the `emoji` package and
`resvg-py`; see app/train/artsets.py for the sets and their licences)::

    python -m app.train.data build --out data/emoji            # 64 px, every art set
    python -m app.train.data build --out data/emoji256 --size 256   # the same at 256 px
    python -m app.train.data build --out data/emoji256 --size 256 --every 5   # every 5th concept (upscalers)

That writes `emoji64.npz`, `manifest.json` (licences, packages, counts, the held-out rule, and every
image's source file with the sha256 of the source and of the pixels) and `compositional.json`.

A concept is one fully-qualified emoji that Noto draws as one glyph; every other set adds its
drawing of the same code points (Twemoji, by file name) or CLDR name (Fluent). Captions are the
concept's names in six templates (no style word: any style is right), then "NAME, STYLE" and
"NAME in STYLE style" for the row's set. About 5 % of concepts are held out by a fixed rule
(`is_heldout`), every style of them; `compositional.json` lists prompts of known words that name
no emoji (colour + object, object + accessory).

`load_dataset(path, split="train")` is the reader the trainers use; `load_records(path)` gives every
row with its style and split. `path` is the folder, the .npz, or "shapes" / "shapes:N" for the
in-memory procedural set. Rows hold:

- images: uint8 array [N, 64, 64, 3], RGB on white;
- captions: list of N lists of caption strings (all lower case, ASCII words), first = plainest;
- ids: the concept of each row (hex code points joined by '-', e.g. '2764-fe0f'; shapes: 'shape-K');
- styles: the art set of each row (`app.train.artsets.ART_SET_KEYS`); split: 'train' or 'heldout'.
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
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from app.train.artsets import (
    ART_SET_KEYS,
    ART_SETS,
    FONT_PATH,
    MissingArtSet,
    NotoFont,
    fluent_candidates,
    render_svg,
    source_folder,
    svg_finder,
    twemoji_candidates,
)

SIZE = 64
NPZ_NAME = "emoji64.npz"
SOURCE_CACHE = Path("data/sources")
HELDOUT_MOD = 20
CAPTION_LICENCE = "emoji package (PyPI `emoji`, CLDR short names and GitHub/Slack aliases): BSD-3-Clause"

TEMPLATES = ("{n}", "{n} emoji", "an emoji of {a} {n}", "a picture of {a} {n}", "{a} {n} icon", "a cartoon {n}")
STYLE_TEMPLATES = ("{n}, {s}", "{n} in {s} style")
COMPOSITION_COLOURS = ("red", "blue", "green", "yellow", "purple", "orange", "black", "white", "pink", "brown")
COMPOSITION_OBJECTS = ("cat face", "dog face", "heart", "apple", "car", "fish", "star", "house", "flower", "bird",
                       "hat", "umbrella", "balloon", "book", "rocket", "tree", "butterfly", "guitar", "ghost", "cake")
COMPOSITION_ACCESSORIES = ("sunglasses", "a hat", "a crown", "a heart", "a star", "flowers")

Dataset = tuple[np.ndarray, list[list[str]], list[str]]


@dataclass
class Records:
    """Every row of a dataset: images, captions, concept ids, art set and split."""

    images: np.ndarray
    captions: list[list[str]]
    ids: list[str]
    styles: list[str]
    split: list[str]

    def __iter__(self):
        return iter((self.images, self.captions, self.ids))

    def select(self, rows: np.ndarray) -> Records:
        rows = np.asarray(rows, dtype=int)
        return Records(self.images[rows], [self.captions[i] for i in rows], [self.ids[i] for i in rows],
                       [self.styles[i] for i in rows], [self.split[i] for i in rows])


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


def emoji_id(text: str) -> str:
    return "-".join(f"{ord(c):x}" for c in text)


def concept_group(names: list[str]) -> str:
    """The name a concept is held out by: its CLDR name without a skin tone, so that every skin tone of
    a held-out emoji is held out with it."""
    return re.sub(r"\s+(light|medium light|medium|medium dark|dark) skin tone$", "", names[0])


def is_heldout(names: list[str]) -> bool:
    """The fixed held-out rule: a concept group whose sha256 is 0 mod 20 (about 5 % of concepts)."""
    return int(hashlib.sha256(concept_group(names).encode()).hexdigest()[:8], 16) % HELDOUT_MOD == 0


def style_captions(names: list[str], style: str) -> list[str]:
    """Captions that ask for one art set: 'red heart, flat', 'red heart in flat style'."""
    return [t.format(n=n, s=style) for n in names[:2] for t in STYLE_TEMPLATES]


def emoji_concepts(font: NotoFont, limit: int | None = None) -> tuple[list[tuple[str, dict]], dict[str, int]]:
    """The fully-qualified emoji that Noto draws as one glyph (the concepts of the set), and why others are not."""
    import emoji

    concepts, skipped = [], {"not_fully_qualified": 0, "multi_glyph": 0, "missing_glyph": 0}
    for text, entry in emoji.EMOJI_DATA.items():
        if entry.get("status") != emoji.STATUS["fully_qualified"]:
            skipped["not_fully_qualified"] += 1
            continue
        reason = font.why_not(text)
        if reason:
            skipped[reason] += 1
            continue
        concepts.append((text, entry))
        if limit and len(concepts) >= limit:
            break
    return concepts, skipped


def build_emoji(sets: tuple[str, ...] = ART_SET_KEYS, size: int = SIZE, limit: int | None = None,
                cache: Path = SOURCE_CACHE, every: int = 1) -> tuple[Records, list[dict], dict]:
    """Render every concept (every `every`-th, for a sample) in every art set that draws it. Returns the
    records, one manifest row per image (source file, licence, sha256 of the source) and statistics."""
    font = NotoFont()
    concepts, skipped = emoji_concepts(font, limit)
    concepts = concepts[::every]
    arts = [a for a in ART_SETS if a.key in sets]
    finders: dict[str, object] = {}
    for art in arts:
        if art.key == "noto":
            continue
        folder = source_folder(art, cache)
        pick = twemoji_candidates if art.key == "twemoji" else fluent_candidates
        finders[art.key] = (svg_finder(folder, pick), folder)
    images, captions, ids, styles, splits, rows = [], [], [], [], [], []
    per_set = {a.key: 0 for a in arts}
    digests: dict[Path, str] = {}
    for text, entry in concepts:
        names = emoji_names(entry)
        cid = emoji_id(text)
        plain = expand_captions(names)
        split = "heldout" if is_heldout(names) else "train"
        for art in arts:
            if art.key == "noto":
                image, source = font.render(text, size), f"{FONT_PATH.name}:U+{cid}"
                digest = digests.setdefault(FONT_PATH, sha256_file(FONT_PATH))
            else:
                find, folder = finders[art.key]
                key = cid if art.key == "twemoji" else names[0]
                path = find(key)
                if path is None:
                    continue
                image, source = render_svg(path, size), f"{art.package}/{path.relative_to(folder.parent if art.subdir else folder)}"
                digest = sha256_file(path)
            if image is None:
                continue
            images.append(image)
            captions.append(plain + style_captions(names, art.style))
            ids.append(cid)
            styles.append(art.key)
            splits.append(split)
            per_set[art.key] += 1
            rows.append({"id": cid, "style": art.key, "split": split, "source": source, "source_sha256": digest,
                         "image_sha256": hashlib.sha256(image.tobytes()).hexdigest()})
    records = Records(np.stack(images), captions, ids, styles, splits)
    stats = {"skipped_concepts": skipped, "concepts": len(concepts), "images_per_set": per_set}
    return records, rows, stats


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


def save_npz(path: Path, data: Records | Dataset) -> None:
    rec = data if isinstance(data, Records) else Records(*data, ["noto"] * len(data[2]), ["train"] * len(data[2]))
    np.savez_compressed(path, images=rec.images, captions=np.array([json.dumps(c) for c in rec.captions]),
                        ids=np.array(rec.ids), styles=np.array(rec.styles), split=np.array(rec.split))


def load_records(path: str | Path) -> Records:
    """Every row of a dataset with its style and split (shapes: one style, all 'train')."""
    spec = str(path)
    if spec.startswith("shapes"):
        _, _, n = spec.partition(":")
        images, captions, ids = shapes_dataset(int(n) if n else 256)
        return Records(images, captions, ids, ["shapes"] * len(ids), ["train"] * len(ids))
    p = Path(path)
    if p.is_dir():
        p = p / NPZ_NAME
    with np.load(p, allow_pickle=False) as z:
        n = len(z["ids"])
        return Records(z["images"], [json.loads(str(c)) for c in z["captions"]], [str(i) for i in z["ids"]],
                       [str(s) for s in z["styles"]] if "styles" in z else ["noto"] * n,
                       [str(s) for s in z["split"]] if "split" in z else ["train"] * n)


def load_dataset(path: str | Path, split: str = "train") -> Dataset:
    """(images uint8 [N,64,64,3], captions, ids) of one split ('train', 'heldout' or 'all')."""
    rec = load_records(path)
    if split != "all":
        rec = rec.select(np.flatnonzero(np.asarray(rec.split) == split))
    return rec.images, rec.captions, rec.ids


def caption_words(captions: list[list[str]]) -> list[str]:
    """The sorted set of words used by any caption (the tokenizer's whole-word vocabulary)."""
    return sorted({w for caps in captions for c in caps for w in c.split()})


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def compositional_prompts(known_words: set[str], emoji_names_: set[str]) -> list[dict]:
    """Prompts made only of words the training captions use that name no emoji: colour + object and
    object + accessory. Each as {"prompt", "kind", "object", "attribute"} (the 16-way tests pair them)."""
    out = []
    for obj in COMPOSITION_OBJECTS:
        for colour in COMPOSITION_COLOURS:
            out.append({"prompt": f"{colour} {obj}", "kind": "colour", "object": obj, "attribute": colour})
        for acc in COMPOSITION_ACCESSORIES:
            out.append({"prompt": f"{obj} with {acc}", "kind": "accessory", "object": obj, "attribute": acc})
    return [p for p in out if set(p["prompt"].split()) <= known_words and p["prompt"] not in emoji_names_]


def build(out: Path, limit: int | None = None, sets: tuple[str, ...] = ART_SET_KEYS, size: int = SIZE,
          cache: Path = SOURCE_CACHE, every: int = 1) -> dict:
    """Render the multi-style set into `out` and write its manifest. Returns the manifest."""
    t0 = time.time()
    out.mkdir(parents=True, exist_ok=True)
    records, rows, stats = build_emoji(sets, size, limit, cache, every)
    npz = out / (NPZ_NAME if size == SIZE else f"emoji{size}.npz")
    save_npz(npz, records)
    train = [c for c, s in zip(records.captions, records.split) if s == "train"]
    names = {c for caps in records.captions for c in caps}
    composed = compositional_prompts(set(caption_words(train)), names)
    (out / "compositional.json").write_text(json.dumps(composed, indent=0) + "\n")
    heldout_ids = sorted({i for i, s in zip(records.ids, records.split) if s == "heldout"})
    manifest = {
        "file": npz.name, "sha256": sha256_file(npz), "count": int(len(records.ids)),
        "image_shape": list(records.images.shape[1:]), "captions": sum(len(c) for c in records.captions),
        "vocabulary_words": len(caption_words(train)), "styles": {a.key: a.style for a in ART_SETS if a.key in sets},
        "licences": {**{a.key: a.licence for a in ART_SETS if a.key in sets}, "captions": CAPTION_LICENCE},
        "packages": {a.key: a.package for a in ART_SETS if a.key in sets},
        "concept_sample": f"every {every}th concept" if every > 1 else "all",
        "heldout_rule": f"sha256(concept name without skin tone) % {HELDOUT_MOD} == 0",
        "heldout_concepts": len(heldout_ids), "compositional_prompts": len(composed),
        "build_seconds": round(time.time() - t0, 1), **stats, "images": rows,
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    return manifest


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m app.train.data", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("build", help="render the multi-style emoji set")
    b.add_argument("--out", type=Path, default=Path("data/emoji"))
    b.add_argument("--limit", type=int, default=None, help="stop after this many concepts (tests)")
    b.add_argument("--sets", default=",".join(ART_SET_KEYS), help="art sets, comma-separated")
    b.add_argument("--size", type=int, default=SIZE, help="side in pixels (256: the upscaler's targets)")
    b.add_argument("--cache", type=Path, default=SOURCE_CACHE, help="where npm packages are unpacked")
    b.add_argument("--every", type=int, default=1, help="render every Kth concept only (a sample; same split rule)")
    args = parser.parse_args(argv)
    sets = tuple(s for s in args.sets.split(",") if s)
    unknown = set(sets) - set(ART_SET_KEYS)
    if unknown:
        print(f"unknown art sets {sorted(unknown)}; known: {', '.join(ART_SET_KEYS)}", file=sys.stderr)
        return 2
    try:
        manifest = build(args.out, args.limit, sets, args.size, args.cache, max(1, args.every))
    except MissingArtSet as e:
        print(f"cannot build the dataset: {e}", file=sys.stderr)
        return 1
    keys = ("count", "concepts", "images_per_set", "heldout_concepts", "compositional_prompts", "sha256")
    print(json.dumps({k: manifest[k] for k in keys}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

