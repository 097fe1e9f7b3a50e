"""Compare generators (diffusion, GAN) on fixed dataset prompts and seeds, scored by the judge (evaluation v2).

A generator is any callable `(prompts, seeds) -> uint8 [N, H, W, 3]` (prompts[i] drawn with seeds[i]),
so the app can score whatever it can run. Every engine sees the same prompts and seeds. Metrics, in
the judge's terms (app/train/judge.py) unless said otherwise:

- R-precision top-1 / top-5: how often the judge's top-k concept classes include the prompted concept
  (Xu et al. 2018, AttnGAN, use the same idea with a retrieval model);
- FID: the Frechet distance between Gaussians fitted to judge features of generated images and of
  the real images (every art style) of the prompted concepts (Heusel et al. 2017), the judge standing
  in for Inception;
- improved precision and recall (Kynkaanniemi et al. 2019) in the same features: fidelity and coverage;
- diversity: mean pairwise distance between L2-normalised judge features of the seeds of one prompt;
- style coverage: for plain prompts (no style word) of concepts drawn in >= 4 art sets, the mean
  number of distinct art styles seen among the seeds by the dedicated style CNN
  (app/train/style_classifier.py, `--style-classifier`) when its files are there, else by the judge's
  style head (the classifier's accuracy on real images of held-out concepts is reported beside it);
- ms per image, measured in the same process for every generator, so their ratio is fair.

Prompt sets: in-distribution = the plain caption of evenly spaced 'train' concepts (one per concept);
held-out = those of 'heldout' concepts (no generator trained on them), reported apart; compositional
= prompts of known words naming no emoji (`compositional.json` beside the data), scored as "R@1 among
16" by the embedded CLIP (the judge has no class for them), also reported apart. The real-image
ceiling cycles each concept's real art styles over the seeds. The GAN's truncation sweep (conditional
centre, psi 0..1.5) is drawn as a fidelity-versus-diversity PNG.

    python -m app.train.evaluate --data data/emoji --judge models/judge --gan models/gan \\
        --clip models/clip --diffusion models/diffusion --json runs/eval/eval.json --plot runs/eval/sweep.png
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from app.measured import weights_manifest
from app.metrics import diversity, fid, precision_recall, r_precision, style_coverage
from app.train.judge import Judge, load_judge, predict, to_float
from app.train.style_classifier import StyleClassifier, load_style_classifier, predict_styles

GeneratorFn = Callable[[list[str], list[int]], np.ndarray]
SWEEP_PSI = (0.0, 0.25, 0.5, 0.75, 1.0, 1.25, 1.5)
SWEEP_KEYS = ("r_precision_top1", "precision", "recall", "diversity", "style_coverage")
MIN_STYLES = 4  # style coverage is measured over concepts drawn in at least this many art sets
CANDIDATES = 16  # compositional R@1 ranks the own prompt among this many


@dataclass(frozen=True)
class PromptSet:
    """Fixed evaluation prompts: one plain caption per concept.

    targets: the judge class each prompt names ([P]); n_styles: how many art sets draw the concept in
    the data ([P]; 0 when unknown); concepts: the concept ids.
    """

    prompts: list[str]
    targets: np.ndarray
    n_styles: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=int))
    concepts: list[str] = field(default_factory=list)


def pick_prompts(captions: Sequence[Sequence[str]], n: int) -> PromptSet:
    """v1 prompts: the plainest caption of evenly spaced rows, the row index as target."""
    idx = np.unique(np.linspace(0, len(captions) - 1, min(n, len(captions))).round().astype(int))
    return PromptSet([captions[i][0] for i in idx], idx, np.ones(len(idx), dtype=int))


def evenly_spaced(items: Sequence, n: int) -> list:
    """n items at evenly spaced positions (all when n >= len)."""
    if n <= 0 or not items:
        return []
    idx = np.unique(np.linspace(0, len(items) - 1, min(n, len(items))).round().astype(int))
    return [items[i] for i in idx]


def concept_rows(ids: Sequence[str]) -> dict[str, np.ndarray]:
    """concept id -> its rows, in first-seen order."""
    rows: dict[str, list[int]] = {}
    for i, c in enumerate(ids):
        rows.setdefault(c, []).append(i)
    return {c: np.array(r) for c, r in rows.items()}


def concept_prompts(captions: Sequence[Sequence[str]], ids: Sequence[str], styles: Sequence[str],
                    split: Sequence[str], classes: Sequence[str], which: str, n: int) -> PromptSet:
    """The plain first caption of n evenly spaced concepts of one split ('train' or 'heldout') that the
    judge has a class for. Prompts are per concept, not per row (a concept repeats across styles)."""
    index = {c: i for i, c in enumerate(classes)}
    rows = concept_rows(ids)
    pool = [c for c, r in rows.items() if split[r[0]] == which and c in index]
    chosen = evenly_spaced(pool, n)
    return PromptSet([captions[rows[c][0]][0] for c in chosen], np.array([index[c] for c in chosen], dtype=int),
                     np.array([len({styles[i] for i in rows[c]}) for c in chosen], dtype=int), chosen)


def generate(fn: GeneratorFn, prompts: list[str], seeds: list[int], batch: int = 32,
             desc: str | None = None) -> tuple[np.ndarray, float]:
    """All (prompt, seed) pairs, prompt-major, in batches. Returns (uint8 images [P*S,H,W,3], seconds).

    With `desc`, a tqdm bar on stderr (its own cost is counted in the seconds; it is tiny).
    """
    from tqdm import tqdm

    pairs = [(p, s) for p in prompts for s in seeds]
    out, t0 = [], time.perf_counter()
    with tqdm(total=len(pairs), desc=desc, disable=desc is None, mininterval=10) as bar:
        for i in range(0, len(pairs), batch):
            chunk = pairs[i:i + batch]
            out.append(np.asarray(fn([p for p, _ in chunk], [s for _, s in chunk])))
            bar.update(len(chunk))
    return np.concatenate(out), time.perf_counter() - t0


def score(judge: Judge, images: np.ndarray, prompt_set: PromptSet, n_seeds: int,
          real_features: torch.Tensor, styler: StyleClassifier | None = None) -> dict[str, float]:
    """Judge metrics of prompt-major images [P*S,H,W,3] of `prompt_set`, against the real features of
    the same concepts. Style coverage is over prompts whose concept has >= MIN_STYLES art sets, styles
    named by `styler` when given, else by the judge's style head (nan, with style_coverage_prompts 0,
    when there are no such prompts or no style classifier at all)."""
    logits, feats, style_logits = predict(judge, images, with_styles=True)
    calls = (predict_styles(styler, images) if styler is not None
             else style_logits.argmax(1) if style_logits is not None else None)
    per_image = np.repeat(prompt_set.targets, n_seeds)
    precision, recall = precision_recall(real_features, feats)
    many = np.flatnonzero(np.asarray(prompt_set.n_styles) >= MIN_STYLES) if calls is not None else []
    styles = calls.view(len(prompt_set.prompts), n_seeds).numpy() if calls is not None else None
    return {
        "r_precision_top1": r_precision(logits, per_image, 1),
        "r_precision_top5": r_precision(logits, per_image, 5),
        "fid_judge": fid(feats.numpy(), real_features.numpy()),
        "diversity": diversity(feats.view(len(prompt_set.prompts), n_seeds, -1)),
        "precision": precision,
        "recall": recall,
        "style_coverage": style_coverage(styles[many]) if len(many) else float("nan"),
        "style_coverage_prompts": len(many),
    }


def evaluate(fn: GeneratorFn, judge: Judge, prompt_set: PromptSet, seeds: list[int], real_features: torch.Tensor,
             batch: int = 32, warmup: bool = True, desc: str | None = None,
             styler: StyleClassifier | None = None) -> dict[str, float]:
    """Generate every (prompt, seed), score it, and time it (after one warm-up batch)."""
    if warmup:
        fn(prompt_set.prompts[:1], seeds[:1])
    images, seconds = generate(fn, prompt_set.prompts, seeds, batch, desc)
    result = score(judge, images, prompt_set, len(seeds), real_features, styler)
    result["ms_per_image"] = 1000 * seconds / len(images)
    result["images"] = len(images)
    return result


def real_generator(images: np.ndarray, rows_by_prompt: dict[str, Sequence[int]]) -> GeneratorFn:
    """The perfect generator: seed s of a prompt is the concept's real image number s mod its count, so the
    seeds cycle through the concept's real art styles (its diversity and style coverage are the data's)."""

    def fn(prompts: list[str], seeds: list[int]) -> np.ndarray:
        return images[[rows_by_prompt[p][s % len(rows_by_prompt[p])] for p, s in zip(prompts, seeds)]]

    return fn


def prompt_rows(prompt_set: PromptSet, ids: Sequence[str]) -> dict[str, np.ndarray]:
    """prompt -> the real rows of its concept (the first concept wins where two share a caption)."""
    rows = concept_rows(ids)
    out: dict[str, np.ndarray] = {}
    for p, c in zip(prompt_set.prompts, prompt_set.concepts):
        out.setdefault(p, rows[c])
    return out


def compositional_candidates(items: Sequence[dict], n: int = CANDIDATES) -> np.ndarray:
    """[P, min(n, P)] prompt indices: each row's own prompt first, then hard negatives, chosen
    deterministically: alternately the same object with another attribute and the same attribute on
    another object, then the remaining prompts (same kind first) in list order."""
    n = min(n, len(items))
    out = []
    for i, it in enumerate(items):
        same_obj = [j for j, o in enumerate(items) if o["object"] == it["object"] and o["attribute"] != it["attribute"]]
        same_att = [j for j, o in enumerate(items) if o["attribute"] == it["attribute"] and o["object"] != it["object"]]
        hard = [j for pair in zip(same_obj, same_att) for j in pair]
        hard += same_obj[len(same_att):] + same_att[len(same_obj):]
        rest = sorted(range(len(items)), key=lambda j: items[j].get("kind") != it.get("kind"))
        picked = list(dict.fromkeys([i, *hard, *rest]))
        out.append(picked[:n])
    return np.array(out, dtype=int).reshape(len(items), n)


def clip_r1(image_emb: torch.Tensor, text_emb: torch.Tensor, candidates: np.ndarray) -> float:
    """Fraction of images whose own prompt (column 0 of candidates [N, K], indices into text_emb [T, D])
    scores strictly above every other candidate; embeddings L2-normalised (cosine similarity)."""
    sims = (image_emb[:, None, :] * text_emb[torch.as_tensor(candidates)]).sum(-1)  # [N, K]
    if sims.shape[1] < 2:
        return float("nan")
    return float((sims[:, 0] > sims[:, 1:].max(dim=1).values).float().mean())


@torch.no_grad()
def clip_image_embeddings(clip, images: np.ndarray, batch: int = 64) -> torch.Tensor:
    """uint8 [N,H,W,3] -> the embedded CLIP's L2-normalised image embeddings [N, D] on CPU."""
    return torch.cat([clip.encode_image(to_float(images[i:i + batch])).float().cpu()
                      for i in range(0, len(images), batch)])


def evaluate_compositional(fn: GeneratorFn, judge: Judge, clip, items: Sequence[dict], chosen: Sequence[int],
                           seeds: list[int], batch: int = 32, desc: str | None = None) -> dict[str, float]:
    """Compositional prompts (no emoji has them), scored by the embedded CLIP since the judge has no
    class for them: clip_r1_16 = fraction of images whose own prompt CLIP ranks first among 16
    (`compositional_candidates`); diversity in judge features as elsewhere."""
    prompts = [items[i]["prompt"] for i in chosen]
    images, _ = generate(fn, prompts, seeds, batch, desc)
    text_emb = clip.encode_text([it["prompt"] for it in items]).float().cpu()
    cand = compositional_candidates(items)[np.repeat(np.asarray(chosen, dtype=int), len(seeds))]
    _, feats = predict(judge, images)
    return {"clip_r1_16": clip_r1(clip_image_embeddings(clip, images), text_emb, cand),
            "diversity": diversity(feats.view(len(prompts), len(seeds), -1)), "images": len(images)}


def load_compositional(data: str) -> list[dict]:
    """compositional.json beside the dataset's npz ([] when there is none, e.g. for 'shapes')."""
    p = Path(data)
    path = (p if p.is_dir() else p.parent) / "compositional.json"
    if str(data).startswith("shapes") or not path.is_file():
        return []
    return [it for it in json.loads(path.read_text()) if {"prompt", "object", "attribute"} <= set(it)]


def to_uint8(images: torch.Tensor, size: int | None = 64) -> np.ndarray:
    """[N,3,H,W] in [-1,1] -> uint8 [N,size,size,3] (area-resized when the side differs)."""
    x = images.float().clamp(-1, 1)
    if size is not None and x.shape[-1] != size:
        x = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    return ((x + 1) * 127.5).round().clamp(0, 255).byte().permute(0, 2, 3, 1).cpu().numpy()


def gan_generator(G: torch.nn.Module, encode_text: Callable[[list[str]], torch.Tensor], psi: float = 1.0,
                  size: int | None = 64, conditional_truncation: int = 0) -> GeneratorFn:
    """StyleGAN2 adapter: c = CLIP text embedding, z from the seed as NVIDIA's gen_images.py draws it.

    Truncation lerps w towards G's global w_avg; with `conditional_truncation=n` it lerps towards
    the prompt's own mean w over n fixed z instead (the class-conditional centre, as in
    Sauer et al. 2022, StyleGAN-XL), which keeps the condition as psi shrinks.
    """
    from app.gan.networks import truncate, z_from_seed
    from app.gan.render import conditional_centre

    device = next(G.parameters()).device
    cache: dict[str, tuple[torch.Tensor, torch.Tensor | None]] = {}

    @torch.no_grad()
    def fn(prompts: list[str], seeds: list[int]) -> np.ndarray:
        missing = sorted(set(prompts) - cache.keys())
        if missing:
            for p, c in zip(missing, encode_text(missing).float().to(device)):
                centre = conditional_centre(G, c[None], conditional_truncation)[0] if conditional_truncation else None
                cache[p] = (c, centre)
        c = torch.stack([cache[p][0] for p in prompts])
        z = torch.cat([z_from_seed(s, G.z_dim) for s in seeds]).to(device)
        if not conditional_truncation:
            return to_uint8(G(z, c, truncation_psi=psi, noise_mode="const"), size)
        centre = torch.stack([cache[p][1] for p in prompts])  # [N, num_ws, w_dim]
        ws = truncate(centre, G.mapping(z, c), psi)
        return to_uint8(G.synthesis(ws, noise_mode="const"), size)

    return fn


def diffusers_generator(folder: str, device: torch.device, steps: int = 25, guidance_scale: float = 5.0,
                        size: int | None = 64) -> GeneratorFn:
    """Fallback diffusion adapter: diffusers' StableDiffusionPipeline (plain CFG), one torch seed per image."""
    from diffusers import StableDiffusionPipeline

    pipe = StableDiffusionPipeline.from_pretrained(folder, safety_checker=None, requires_safety_checker=False)
    pipe = pipe.to(device)
    pipe.set_progress_bar_config(disable=True)

    @torch.no_grad()
    def fn(prompts: list[str], seeds: list[int]) -> np.ndarray:
        gens = [torch.Generator(device="cpu").manual_seed(s) for s in seeds]
        out = pipe(prompts, num_inference_steps=steps, guidance_scale=guidance_scale, generator=gens,
                   output_type="pt").images  # [N,3,H,W] in [0,1]
        return to_uint8(out * 2 - 1, size)

    return fn


def seed_runs(prompts: list[str], seeds: list[int]) -> list[tuple[str, int, int]]:
    """Split pairs into (prompt, first seed, count) runs of one prompt with consecutive seeds:
    the batches app.diffusion.generate draws (image j of a batch uses seed + j)."""
    runs: list[tuple[str, int, int]] = []
    for p, s in zip(prompts, seeds):
        if runs and runs[-1][0] == p and runs[-1][1] + runs[-1][2] == s:
            runs[-1] = (p, runs[-1][1], runs[-1][2] + 1)
        else:
            runs.append((p, s, 1))
    return runs


def app_diffusion_generator(models, steps: int = 25, cfg_scale: float = 5.0, clip_guidance_scale: float = 0.0,
                            sampler: str = "dpmpp_2m", size: int = 64) -> GeneratorFn:
    """The app's own sampler (app.diffusion.generate), with or without CLIP guidance (models.clip)."""
    from app.diffusion.generate import generate as diffusion_generate
    from app.diffusion.previews import full_decode
    from app.params import DiffusionParams

    def fn(prompts: list[str], seeds: list[int]) -> np.ndarray:
        out = []
        for prompt, seed, n in seed_runs(prompts, seeds):
            params = DiffusionParams(prompt=prompt, seed=seed, batch=n, steps=steps, sampler=sampler, width=size,
                                     height=size, cfg_scale=cfg_scale, clip_guidance_scale=clip_guidance_scale)
            latent = diffusion_generate(models, params, live=lambda params=params: params, on_step=lambda info: None)
            with torch.no_grad():
                out.append(to_uint8(full_decode(models.vae, latent) * 2 - 1, size))
        return np.concatenate(out)

    return fn


SERIES_COLOURS = {"precision": (31, 119, 180), "recall": (255, 127, 14), "r_precision_top1": (44, 160, 44),
                  "diversity": (214, 39, 40), "style_coverage": (148, 103, 189)}
SERIES_NAMES = {"precision": "precision", "recall": "recall", "r_precision_top1": "judge R@1",
                "diversity": "diversity", "style_coverage": "styles / 4"}


def _font(size: int):
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1: one bitmap size
        return ImageFont.load_default()


def _nice_max(v: float) -> float:
    return max(1.0, math.ceil(v * 4) / 4)


def _panel(draw, box: tuple[int, int, int, int], series: dict[str, list[tuple[float, float]]],
           x_range: tuple[float, float], y_range: tuple[float, float], x_ticks: Sequence[float], labels: dict,
           point_labels: list[tuple[float, float, str]] = ()) -> None:
    """One line chart inside box (left, top, right, bottom): frame, grid, ticks, axis labels, series."""
    left, top, right, bottom = box
    font, small = _font(15), _font(12)

    def to_px(x: float, y: float) -> tuple[float, float]:
        fx = (x - x_range[0]) / ((x_range[1] - x_range[0]) or 1)
        fy = (y - y_range[0]) / ((y_range[1] - y_range[0]) or 1)
        return left + fx * (right - left), bottom - fy * (bottom - top)

    y_ticks = np.arange(y_range[0], y_range[1] + 1e-9, 0.25 if y_range[1] <= 1.5 else 0.5)
    for y in y_ticks:
        _, py = to_px(x_range[0], y)
        draw.line([(left, py), (right, py)], fill=(230, 230, 230))
        draw.text((left - 8, py), f"{y:g}", fill="black", font=small, anchor="rm")
    for x in x_ticks:
        px, _ = to_px(x, y_range[0])
        draw.line([(px, bottom), (px, bottom + 5)], fill="black")
        draw.text((px, bottom + 8), f"{x:.2f}".rstrip("0").rstrip("."), fill="black", font=small, anchor="mt")
    draw.rectangle(box, outline="black")
    draw.text(((left + right) / 2, top - 10), labels["title"], fill="black", font=font, anchor="md")
    draw.text(((left + right) / 2, bottom + 28), labels["x"], fill="black", font=font, anchor="mt")
    draw.text((left - 45, (top + bottom) / 2), labels["y"], fill="black", font=font, anchor="rm")
    for key, pts in series.items():
        px = [to_px(x, y) for x, y in pts if math.isfinite(x) and math.isfinite(y)]
        if len(px) > 1:
            draw.line(px, fill=SERIES_COLOURS[key], width=3)
        for cx, cy in px:
            draw.ellipse([cx - 4, cy - 4, cx + 4, cy + 4], fill=SERIES_COLOURS[key])
    for x, y, text in point_labels:
        if math.isfinite(x) and math.isfinite(y):
            cx, cy = to_px(x, y)
            draw.text((cx + 6, cy - 6), text, fill=(60, 60, 60), font=small, anchor="ld")


def draw_sweep_plot(sweep: dict[str, dict[str, float]], path: Path,
                    title: str = "GAN truncation sweep (conditional centre)") -> Path:
    """A fidelity-versus-diversity PNG drawn with Pillow (no matplotlib): left, judge R@1, precision,
    recall, diversity and style coverage (divided by 4) against psi; right, precision and R@1 (fidelity)
    against diversity, each point labelled with its psi."""
    from PIL import Image, ImageDraw

    points = sorted((float(k), v) for k, v in sweep.items())
    psis = [p for p, _ in points]

    def val(row: dict, key: str) -> float:
        v = row.get(key)
        v = float("nan") if v is None else float(v)
        return v / MIN_STYLES if key == "style_coverage" else v

    keys = [k for k in SERIES_COLOURS if any(math.isfinite(val(r, k)) for _, r in points)]
    finite = [val(r, k) for _, r in points for k in keys if math.isfinite(val(r, k))]
    img = Image.new("RGB", (1100, 520), "white")
    draw = ImageDraw.Draw(img)
    draw.text((550, 18), title, fill="black", font=_font(18), anchor="mt")
    x_range = (min(psis), max(psis)) if psis else (0.0, 1.0)
    left = {k: [(p, val(r, k)) for p, r in points] for k in keys}
    _panel(draw, (110, 80, 520, 400), left, x_range, (0.0, _nice_max(max(finite, default=1.0))), psis,
           {"title": "metrics vs psi", "x": "psi (truncation)", "y": "value"})
    div = [val(r, "diversity") for _, r in points]
    fin_div = [d for d in div if math.isfinite(d)] or [0.0, 1.0]
    lo, hi = min(fin_div), max(fin_div)
    pad = (hi - lo) * 0.08 or 0.05
    d_range = (max(0.0, lo - pad), hi + pad)
    right = {k: [(val(r, "diversity"), val(r, k)) for _, r in points] for k in ("precision", "r_precision_top1")
             if k in keys}
    fid_max = _nice_max(max((y for pts in right.values() for _, y in pts if math.isfinite(y)), default=1.0))
    _panel(draw, (640, 80, 1010, 400), right, d_range, (0.0, fid_max), np.linspace(*d_range, 5),
           {"title": "fidelity vs diversity", "x": "diversity (judge features)", "y": "fidelity"},
           [(val(r, "diversity"), val(r, "precision"), f"psi {p:g}") for p, r in points])
    x = 110
    for k in keys:  # the legend, in one row under both panels
        draw.rectangle([x, 468, x + 22, 480], fill=SERIES_COLOURS[k])
        draw.text((x + 28, 474), SERIES_NAMES[k], fill="black", font=_font(14), anchor="lm")
        x += 40 + int(draw.textlength(SERIES_NAMES[k], font=_font(14)))
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path)
    return path


def markdown_table(rows: dict[str, dict[str, float]]) -> str:
    cols = [("R@1", "r_precision_top1", "{:.3f}"), ("R@5", "r_precision_top5", "{:.3f}"),
            ("FID (judge)", "fid_judge", "{:.2f}"), ("precision", "precision", "{:.3f}"),
            ("recall", "recall", "{:.3f}"), ("diversity", "diversity", "{:.3f}"),
            ("styles / prompt", "style_coverage", "{:.2f}"), ("style prompts", "style_coverage_prompts", "{:d}"),
            ("CLIP R@1 of 16", "clip_r1_16", "{:.3f}"), ("ms/image", "ms_per_image", "{:.1f}"),
            ("images", "images", "{:d}")]
    cols = [c for c in cols if any(c[1] in r for r in rows.values())]
    lines = ["| generator | " + " | ".join(c[0] for c in cols) + " |", "|---" * (len(cols) + 1) + "|"]
    for name, r in rows.items():
        cells = [fmt.format(r[key]) if r.get(key) is not None and r[key] == r[key] else "-" for _, key, fmt in cols]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def finite_json(value):
    """NaN and infinities -> None, recursively (JSON has no NaN; the page reads this file)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: finite_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite_json(v) for v in value]
    return value


@dataclass
class Engine:
    """One generator row: its label, adapter, in-distribution prompts and seeds."""

    label: str
    fn: GeneratorFn
    prompt_set: PromptSet
    seeds: list[int]
    desc: str | None = None


MERGED = ("rows", "heldout", "compositional", "studio_rows", "models")


def merge_results(parts: list[dict]) -> dict:
    """One evaluation JSON from runs of the same prompts, seeds, data and judge that each measured some
    engines (e.g. diffusion and GAN in two processes at once, one core each). Refuses runs that differ
    in what they measured on; rows, the weights each run recorded and the sweep are joined."""
    same = ("data", "prompts", "seeds", "heldout_prompts", "compositional_prompts", "judge_accuracy_real")
    for key in same:
        if len({json.dumps(part.get(key)) for part in parts}) > 1:
            raise ValueError(f"the runs differ in {key}: they cannot be merged")
    out = {k: v for part in parts for k, v in part.items() if k not in MERGED}
    for key in MERGED:
        out[key] = {k: v for part in parts for k, v in (part.get(key) or {}).items() if v is not None}
    out["argv"] = [part.get("argv") for part in parts]
    out["merged_from"] = len(parts)
    diff = [r["ms_per_image"] for k, r in out["rows"].items() if k.startswith("diffusion")]
    gan = [r["ms_per_image"] for k, r in out["rows"].items() if k.startswith("GAN")]
    if diff and gan:
        out["ms_ratio_diffusion_over_gan"] = diff[0] / gan[0]
    return out


def main(argv: list[str] | None = None) -> int:
    from app.train.data import load_records

    argv = list(sys.argv[1:] if argv is None else argv)
    if "--upscale" in argv:  # the upscalers' evaluation (app/train/upscale_eval.py)
        from app.train.upscale_eval import main as upscale_main

        return upscale_main([a for a in argv if a != "--upscale"])
    p = argparse.ArgumentParser(prog="python -m app.train.evaluate", description=__doc__.splitlines()[0])
    p.add_argument("--data", default="data/emoji")
    p.add_argument("--judge", default="models/judge")
    p.add_argument("--style-classifier", default=None,
                   help="folder of style.safetensors + style.json (the style CNN; default: the --judge folder); "
                        "where they are absent, or with '', the judge's style head names the styles")
    p.add_argument("--gan", default="models/gan", help="'' to skip")
    p.add_argument("--clip", default="models/clip", help="the CLIP that makes the GAN's c and scores compositions")
    p.add_argument("--diffusion", default="models/diffusion", help="'' to skip")
    p.add_argument("--diffusion-steps", type=int, default=25)
    p.add_argument("--guidance-scale", type=float, default=5.0, help="classifier-free guidance scale")
    p.add_argument("--clip-guidance-scale", type=float, default=500.0, help="0 skips the CLIP-guided row")
    p.add_argument("--guided-seeds", type=int, default=None, help="fewer seeds for the CLIP-guided row")
    p.add_argument("--diffusion-seeds", type=int, default=None, help="fewer seeds for the plain diffusion row")
    p.add_argument("--sampler", default="dpmpp_2m")
    p.add_argument("--diffusers", action="store_true", help="use diffusers' pipeline instead of app.diffusion")
    p.add_argument("--prompts", type=int, default=256, help="in-distribution prompts (train concepts)")
    p.add_argument("--heldout-prompts", type=int, default=64, help="prompts of held-out concepts; 0 skips")
    p.add_argument("--compositional-prompts", type=int, default=64, help="compositional prompts; 0 skips")
    p.add_argument("--seeds", type=int, default=8)
    p.add_argument("--diffusion-prompts", type=int, default=None, help="fewer prompts for the slow diffusion rows")
    p.add_argument("--sweep", default=",".join(f"{v:g}" for v in SWEEP_PSI), help="GAN truncation psi values; '' skips")
    p.add_argument("--sweep-seeds", type=int, default=8)
    p.add_argument("--gan-psis", default="1,0.7", help="GAN rows with truncation towards the global w_avg")
    p.add_argument("--global-sweep", action=argparse.BooleanOptionalAction, default=True,
                   help="also sweep psi towards the global w_avg (truncation_sweep)")
    p.add_argument("--centre-samples", type=int, default=256, help="z per prompt for the conditional w centre")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--device", default="cpu")
    p.add_argument("--json", type=Path, default=Path("runs/eval/eval.json"))
    p.add_argument("--plot", type=Path, default=Path("models/truncation_sweep.png"),
                   help="the sweep's PNG (the studio shows it when it lies in the JSON's folder)")
    p.add_argument("--merge", nargs="+", type=Path, default=None,
                   help="join these evaluation JSONs (same prompts and seeds, other engines) into --json; "
                        "the truncation plot must already be beside --json")
    args = p.parse_args(argv)
    if args.merge:
        merged = merge_results([json.loads(f.read_text()) for f in args.merge])
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(finite_json(merged), indent=1) + "\n")
        print(markdown_table(merged["rows"]))
        return 0

    device = torch.device(args.device)
    rec = load_records(args.data)
    judge = load_judge(args.judge, device)
    classes = judge.cfg.ids
    index = {c: i for i, c in enumerate(classes)}
    real_logits, real_features, real_styles = predict(judge, rec.images, with_styles=True)
    known = np.array([c in index for c in rec.ids])
    labels = np.array([index.get(c, -1) for c in rec.ids])
    heldout_rows = np.flatnonzero(np.asarray(rec.split) == "heldout")
    style_folder = args.judge if args.style_classifier is None else args.style_classifier
    styler = load_style_classifier(style_folder, device) if style_folder else None
    style_names = styler.cfg.styles if styler is not None else judge.cfg.styles
    style_acc = None
    if (styler is not None or real_styles is not None) and len(heldout_rows):
        calls = (predict_styles(styler, rec.images[heldout_rows]) if styler is not None
                 else real_styles[heldout_rows].argmax(1)).numpy()
        style_acc = float((np.array(style_names)[calls] == np.asarray(rec.styles)[heldout_rows]).mean())

    def prompts_of(split: str, n: int) -> PromptSet:
        return concept_prompts(rec.captions, rec.ids, rec.styles, rec.split, classes, split, n)

    def real_of(ps: PromptSet) -> torch.Tensor:
        rows = concept_rows(rec.ids)
        return real_features[np.concatenate([rows[c] for c in ps.concepts])] if ps.concepts else real_features

    prompt_set = prompts_of("train", args.prompts)
    heldout_set = prompts_of("heldout", args.heldout_prompts)
    items = load_compositional(args.data) if args.compositional_prompts else []
    chosen = [int(i) for i in evenly_spaced(range(len(items)), args.compositional_prompts)]
    seeds = list(range(args.seeds))
    results: dict = {"prompts": len(prompt_set.prompts), "seeds": args.seeds, "data": args.data,
                     "heldout_prompts": len(heldout_set.prompts), "compositional_prompts": len(chosen),
                     "judge_accuracy_real": r_precision(real_logits[known], labels[known], 1) if known.any() else None,
                     "style_classifier_accuracy_heldout": style_acc, "judge_styles": judge.cfg.styles,
                     "style_classifier": "style CNN" if styler is not None else "judge head" if real_styles is not None
                     else None, "style_classifier_styles": style_names,
                     "device": str(device), "torch": torch.__version__,
                     "argv": list(sys.argv[1:] if argv is None else argv),
                     # The studio shows these rows only beside the very weights they were measured on.
                     "models": {"diffusion": weights_manifest(args.diffusion), "gan": weights_manifest(args.gan),
                                "clip": weights_manifest(args.clip)},
                     "studio_rows": {}}
    clip = None
    if args.clip and (args.gan or (args.diffusion and not args.diffusers) or chosen):
        from app.clip.backend import load_clip

        clip = load_clip(args.clip, device)

    engines: list[Engine] = []
    if args.diffusion:
        dp = prompts_of("train", args.diffusion_prompts) if args.diffusion_prompts else prompt_set
        label = f"diffusion {args.sampler} {args.diffusion_steps} steps, CFG {args.guidance_scale:g}"
        if args.diffusers:
            fn = diffusers_generator(args.diffusion, device, args.diffusion_steps, args.guidance_scale)
            engines.append(Engine(label + " (diffusers)", fn, dp, seeds[:args.diffusion_seeds]))
        else:
            from app.diffusion.generate import load_diffusion_models

            models = load_diffusion_models(args.diffusion, device, torch.float32, clip=clip)
            for scale in (0.0, *([args.clip_guidance_scale] if args.clip_guidance_scale else [])):
                fn = app_diffusion_generator(models, args.diffusion_steps, args.guidance_scale, scale, args.sampler)
                name = label + (f" + CLIP guidance {scale:g}" if scale else "")
                results["studio_rows"].setdefault("diffusion", name)  # the studio's default: no CLIP guidance
                engines.append(Engine(name, fn, dp, seeds[:args.guided_seeds if scale else args.diffusion_seeds], name))
    G = None
    if args.gan:
        from app.gan.convert import load_generator

        G = load_generator(args.gan, device)
        for psi in [float(v) for v in args.gan_psis.split(",") if v]:
            engines.append(Engine(f"GAN psi={psi:g}", gan_generator(G, clip.encode_text, psi), prompt_set, seeds))
        results["studio_rows"]["gan"] = "GAN psi=0.7, conditional centre"  # the studio's default truncation
        engines.append(Engine("GAN psi=0.7, conditional centre",
                              gan_generator(G, clip.encode_text, 0.7, conditional_truncation=args.centre_samples),
                              prompt_set, seeds))

    ceiling = "real images (ceiling)"
    rows = {ceiling: evaluate(real_generator(rec.images, prompt_rows(prompt_set, rec.ids)), judge, prompt_set, seeds,
                              real_of(prompt_set), styler=styler)}
    heldout: dict[str, dict] = {}
    if heldout_set.prompts:
        heldout[ceiling] = evaluate(real_generator(rec.images, prompt_rows(heldout_set, rec.ids)), judge, heldout_set,
                                    seeds, real_of(heldout_set), styler=styler)
    compositional: dict[str, dict] = {}
    for e in engines:
        rows[e.label] = evaluate(e.fn, judge, e.prompt_set, e.seeds, real_of(e.prompt_set), args.batch, desc=e.desc,
                                 styler=styler)
        if heldout_set.prompts:
            heldout[e.label] = evaluate(e.fn, judge, heldout_set, e.seeds, real_of(heldout_set), args.batch,
                                        warmup=False, desc=e.desc and e.desc + " (held-out)", styler=styler)
        if chosen and clip is not None:
            compositional[e.label] = evaluate_compositional(e.fn, judge, clip, items, chosen, e.seeds, args.batch,
                                                            desc=e.desc and e.desc + " (compositional)")
    psis = [float(v) for v in args.sweep.split(",") if v]
    if G is not None and psis:
        sweeps = [("truncation_sweep_conditional", args.centre_samples)]
        sweeps += [("truncation_sweep", 0)] if args.global_sweep else []
        for key, n in sweeps:
            sweep = {}
            for psi in psis:
                r = evaluate(gan_generator(G, clip.encode_text, psi, conditional_truncation=n), judge, prompt_set,
                             list(range(args.sweep_seeds)), real_of(prompt_set), args.batch, warmup=False,
                             styler=styler)
                sweep[f"{psi:g}"] = {k: r[k] for k in SWEEP_KEYS}
            results[key] = sweep
        plot = draw_sweep_plot(results["truncation_sweep_conditional"], args.plot)
        json_dir = args.json.resolve().parent
        inside = plot.resolve().parent == json_dir
        results["truncation_plot"] = plot.name if inside else str(plot)
        if not inside:
            print(f"note: {plot} is not beside {args.json}; the studio shows the plot only from the JSON's folder",
                  file=sys.stderr)
    results["rows"], results["heldout"], results["compositional"] = rows, heldout, compositional
    diff = [r["ms_per_image"] for k, r in rows.items() if k.startswith("diffusion")]
    gan = [r["ms_per_image"] for k, r in rows.items() if k.startswith("GAN")]
    if diff and gan:
        results["ms_ratio_diffusion_over_gan"] = diff[0] / gan[0]
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(finite_json(results), indent=1) + "\n")
    acc = results["judge_accuracy_real"]
    print(f"judge top-1 accuracy on the real images: {acc:.3f}" if acc is not None else "judge knows no concept")
    if style_acc is not None:
        print(f"{results['style_classifier']} accuracy on real images of held-out concepts: {style_acc:.3f}")
    print(markdown_table(rows))
    if heldout:
        print(f"\nheld-out concepts ({len(heldout_set.prompts)} prompts):")
        print(markdown_table(heldout))
    if compositional:
        print(f"\ncompositional prompts ({len(chosen)}; R@1 among {CANDIDATES} by the embedded CLIP):")
        print(markdown_table(compositional))
    for key, label in (("truncation_sweep_conditional", "conditional"), ("truncation_sweep", "global")):
        if results.get(key):
            print(markdown_table({f"GAN psi={k} ({label} centre)": v for k, v in results[key].items()}))
    if "ms_ratio_diffusion_over_gan" in results:
        print(f"diffusion / GAN time per image: {results['ms_ratio_diffusion_over_gan']:.1f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
