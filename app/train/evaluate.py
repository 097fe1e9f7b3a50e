"""Compare generators (diffusion, GAN) on one fixed list of dataset prompts, scored by the judge.

A generator is any callable `(prompts, seeds) -> uint8 [N, H, W, 3]` (prompts[i] drawn with seeds[i]),
so the app can score whatever it can run. Metrics, all in the judge's terms (app/train/judge.py):

- R-precision top-1 / top-5: how often the judge's top-k classes include the prompted item
  (Xu et al. 2018, AttnGAN, use the same idea with a retrieval model);
- FID: the Frechet distance between Gaussians fitted to judge features of generated and real
  images (Heusel et al. 2017), with the judge standing in for Inception;
- diversity: mean pairwise distance between L2-normalised judge features of the seeds of one prompt;
- ms per image, measured in the same process for every generator, so their ratio is fair.

    python -m app.train.evaluate --data data/emoji --judge models/judge --gan models/gan \\
        --clip models/clip --diffusion models/diffusion --json runs/eval/eval.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from app.measured import weights_manifest
from app.metrics import diversity, fid, r_precision
from app.train.judge import Judge, load_judge, predict

GeneratorFn = Callable[[list[str], list[int]], np.ndarray]
SWEEP_PSI = (0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)


@dataclass(frozen=True)
class PromptSet:
    """The fixed evaluation prompts: the plainest caption of evenly spaced dataset items."""

    prompts: list[str]
    targets: np.ndarray  # [P] item index each prompt names


def pick_prompts(captions: Sequence[Sequence[str]], n: int) -> PromptSet:
    idx = np.unique(np.linspace(0, len(captions) - 1, min(n, len(captions))).round().astype(int))
    return PromptSet([captions[i][0] for i in idx], idx)


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


def score(judge: Judge, images: np.ndarray, targets: np.ndarray, n_seeds: int,
          real_features: torch.Tensor) -> dict[str, float]:
    """Judge metrics of prompt-major images [P*S,H,W,3] whose prompts name items `targets` [P]."""
    logits, feats = predict(judge, images)
    per_image = np.repeat(targets, n_seeds)
    return {
        "r_precision_top1": r_precision(logits, per_image, 1),
        "r_precision_top5": r_precision(logits, per_image, 5),
        "fid_judge": fid(feats.numpy(), real_features.numpy()),
        "diversity": diversity(feats.view(len(targets), n_seeds, -1)),
    }


def evaluate(fn: GeneratorFn, judge: Judge, prompt_set: PromptSet, seeds: list[int], real_features: torch.Tensor,
             batch: int = 32, warmup: bool = True, desc: str | None = None) -> dict[str, float]:
    """Generate every (prompt, seed), score it, and time it (after one warm-up batch)."""
    if warmup:
        fn(prompt_set.prompts[:1], seeds[:1])
    images, seconds = generate(fn, prompt_set.prompts, seeds, batch, desc)
    result = score(judge, images, prompt_set.targets, len(seeds), real_features)
    result["ms_per_image"] = 1000 * seconds / len(images)
    result["images"] = len(images)
    return result


def real_generator(images: np.ndarray, captions: Sequence[Sequence[str]]) -> GeneratorFn:
    """The perfect generator: the real image of the item a prompt names, whatever the seed."""
    lookup = {caps[0]: i for i, caps in enumerate(captions)}
    for i, caps in enumerate(captions):
        for c in caps:
            lookup.setdefault(c, i)

    def fn(prompts: list[str], seeds: list[int]) -> np.ndarray:
        return images[[lookup[p] for p in prompts]]

    return fn


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
            latent = diffusion_generate(models, params, live=lambda: params, on_step=lambda info: None)
            with torch.no_grad():
                out.append(to_uint8(full_decode(models.vae, latent) * 2 - 1, size))
        return np.concatenate(out)

    return fn


def markdown_table(rows: dict[str, dict[str, float]]) -> str:
    cols = [("R@1", "r_precision_top1", "{:.3f}"), ("R@5", "r_precision_top5", "{:.3f}"),
            ("FID (judge)", "fid_judge", "{:.2f}"), ("diversity", "diversity", "{:.3f}"),
            ("ms/image", "ms_per_image", "{:.1f}"), ("images", "images", "{:d}")]
    lines = ["| generator | " + " | ".join(c[0] for c in cols) + " |", "|---" * (len(cols) + 1) + "|"]
    for name, r in rows.items():
        cells = [fmt.format(r[key]) if key in r and r[key] == r[key] else "-" for _, key, fmt in cols]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    from app.train.data import load_dataset

    p = argparse.ArgumentParser(prog="python -m app.train.evaluate", description=__doc__.splitlines()[0])
    p.add_argument("--data", default="data/emoji")
    p.add_argument("--judge", default="models/judge")
    p.add_argument("--gan", default="models/gan", help="'' to skip")
    p.add_argument("--clip", default="models/clip", help="the CLIP that makes the GAN's c")
    p.add_argument("--diffusion", default="models/diffusion", help="'' to skip")
    p.add_argument("--diffusion-steps", type=int, default=25)
    p.add_argument("--guidance-scale", type=float, default=5.0, help="classifier-free guidance scale")
    p.add_argument("--clip-guidance-scale", type=float, default=500.0, help="0 skips the CLIP-guided row")
    p.add_argument("--guided-seeds", type=int, default=None, help="fewer seeds for the CLIP-guided row")
    p.add_argument("--diffusion-seeds", type=int, default=None, help="fewer seeds for the plain diffusion row")
    p.add_argument("--sampler", default="dpmpp_2m")
    p.add_argument("--diffusers", action="store_true", help="use diffusers' pipeline instead of app.diffusion")
    p.add_argument("--prompts", type=int, default=256)
    p.add_argument("--seeds", type=int, default=8)
    p.add_argument("--diffusion-prompts", type=int, default=None, help="fewer prompts for the slow diffusion rows")
    p.add_argument("--sweep", default=",".join(map(str, SWEEP_PSI)), help="GAN truncation psi values; '' to skip")
    p.add_argument("--sweep-seeds", type=int, default=8)
    p.add_argument("--centre-samples", type=int, default=256, help="z per prompt for the conditional w centre")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--device", default="cpu")
    p.add_argument("--json", type=Path, default=Path("runs/eval/eval.json"))
    args = p.parse_args(argv)

    device = torch.device(args.device)
    images, captions, _ = load_dataset(args.data)
    judge = load_judge(args.judge, device)
    real_logits, real_features = predict(judge, images)
    prompt_set = pick_prompts(captions, args.prompts)
    seeds = list(range(args.seeds))
    rows: dict[str, dict[str, float]] = {}
    results: dict = {"prompts": len(prompt_set.prompts), "seeds": args.seeds, "data": args.data,
                     "judge_accuracy_real": r_precision(real_logits, np.arange(len(images)), 1),
                     "device": str(device), "torch": torch.__version__,
                     "argv": list(sys.argv[1:] if argv is None else argv),
                     # The studio shows these rows only beside the very weights they were measured on.
                     "models": {"diffusion": weights_manifest(args.diffusion), "gan": weights_manifest(args.gan),
                                "clip": weights_manifest(args.clip)},
                     "studio_rows": {}}

    rows["real images (ceiling)"] = evaluate(real_generator(images, captions), judge, prompt_set, seeds, real_features)
    if args.diffusion:
        dp = pick_prompts(captions, args.diffusion_prompts) if args.diffusion_prompts else prompt_set
        label = f"diffusion {args.sampler} {args.diffusion_steps} steps, CFG {args.guidance_scale:g}"
        if args.diffusers:
            fn = diffusers_generator(args.diffusion, device, args.diffusion_steps, args.guidance_scale)
            rows[label + " (diffusers)"] = evaluate(fn, judge, dp, seeds, real_features, args.batch)
        else:
            from app.clip.backend import load_clip
            from app.diffusion.generate import load_diffusion_models

            models = load_diffusion_models(args.diffusion, device, torch.float32, clip=load_clip(args.clip, device))
            for scale in (0.0, *([args.clip_guidance_scale] if args.clip_guidance_scale else [])):
                fn = app_diffusion_generator(models, args.diffusion_steps, args.guidance_scale, scale, args.sampler)
                name = label + (f" + CLIP guidance {scale:g}" if scale else "")
                results["studio_rows"].setdefault("diffusion", name)  # the studio's default: no CLIP guidance
                rows[name] = evaluate(fn, judge, dp, seeds[:args.guided_seeds if scale else args.diffusion_seeds],
                                      real_features, args.batch, desc=name)
    if args.gan:
        from app.clip.backend import load_clip
        from app.gan.convert import load_generator

        G = load_generator(args.gan, device)
        clip = load_clip(args.clip, device)
        for psi in (1.0, 0.7):
            rows[f"GAN psi={psi:g}"] = evaluate(gan_generator(G, clip.encode_text, psi), judge, prompt_set, seeds,
                                                real_features, args.batch)
        results["studio_rows"]["gan"] = "GAN psi=0.7, conditional centre"  # the studio's default truncation
        rows["GAN psi=0.7, conditional centre"] = evaluate(
            gan_generator(G, clip.encode_text, 0.7, conditional_truncation=args.centre_samples), judge, prompt_set,
            seeds, real_features, args.batch)
        for key, n in (("truncation_sweep", 0), ("truncation_sweep_conditional", args.centre_samples)):
            sweep = {}
            for psi in [float(v) for v in args.sweep.split(",") if v]:
                sweep[f"{psi:g}"] = evaluate(gan_generator(G, clip.encode_text, psi, conditional_truncation=n), judge,
                                             prompt_set, list(range(args.sweep_seeds)), real_features, args.batch,
                                             warmup=False)
            results[key] = sweep
    results["rows"] = rows
    diff = [r["ms_per_image"] for k, r in rows.items() if k.startswith("diffusion")]
    gan = [r["ms_per_image"] for k, r in rows.items() if k.startswith("GAN")]
    if diff and gan:
        results["ms_ratio_diffusion_over_gan"] = diff[0] / gan[0]
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(results, indent=1) + "\n")
    print(f"judge top-1 accuracy on the real images: {results['judge_accuracy_real']:.3f}")
    print(markdown_table(rows))
    for key, label in (("truncation_sweep", "global"), ("truncation_sweep_conditional", "conditional")):
        if results.get(key):
            print(markdown_table({f"GAN psi={k} ({label} centre)": v for k, v in results[key].items()}))
    if "ms_ratio_diffusion_over_gan" in results:
        print(f"diffusion / GAN time per image: {results['ms_ratio_diffusion_over_gan']:.1f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
