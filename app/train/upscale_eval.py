"""Evaluation of the upscalers (`python -m app evaluate --upscale`, CPU): bicubic, the GAN upscaler and
the diffusion upscaler on the same held-out pictures, in one run.

Inputs are the 64 px renders of held-out concepts (data/emoji: no upscaler trained on those concepts),
targets the 256 px renders of the same rows (data/emoji256; matched by concept and art set). Metrics
per method, means over the images:

- PSNR (dB) on 8-bit RGB;
- SSIM (Wang et al. 2004): 11x11 Gaussian window, sigma 1.5, K1 = 0.01, K2 = 0.03, per RGB channel,
  averaged (what skimage's `structural_similarity(..., gaussian_weights=True)` computes);
- perceptual distance: the LPIPS-form distance in the judge's features (app/train/perceptual.py;
  LPIPS itself needs torchvision and downloaded weights); lower is closer;
- ms per image: wall time of the method on one image at a time, in this process, so the ratios are fair.

    python -m app evaluate --upscale --hr data/emoji256 --lr data/emoji --json models/eval_upscale.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from app.measured import weights_manifest
from app.params import UPSCALE_SAMPLER, UPSCALE_STRENGTH, DiffusionParams, skip_steps_for
from app.train.data import load_records
from app.train.judge import load_judge
from app.train.perceptual import perceptual_distance
from app.train.sr_data import load_hr

Upscaler = Callable[[Image.Image, str, int], Image.Image]  # (low-res image, caption, seed) -> 4x image


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else float(10 * np.log10(255.0**2 / mse))


def _gaussian(size: int = 11, sigma: float = 1.5) -> torch.Tensor:
    t = torch.arange(size, dtype=torch.float64) - size // 2
    g = torch.exp(-(t**2) / (2 * sigma**2))
    g = g / g.sum()
    return (g[:, None] * g[None, :])[None, None]


def ssim(a: np.ndarray, b: np.ndarray) -> float:
    """Mean SSIM over the valid region and RGB channels of two uint8 [H, W, 3] images."""
    x = torch.from_numpy(a).permute(2, 0, 1)[:, None].double()
    y = torch.from_numpy(b).permute(2, 0, 1)[:, None].double()
    w = _gaussian()
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    mx, my = F.conv2d(x, w), F.conv2d(y, w)
    sxx = F.conv2d(x * x, w) - mx**2
    syy = F.conv2d(y * y, w) - my**2
    sxy = F.conv2d(x * y, w) - mx * my
    s = ((2 * mx * my + c1) * (2 * sxy + c2)) / ((mx**2 + my**2 + c1) * (sxx + syy + c2))
    return float(s.mean())


def heldout_pairs(hr_path: str | Path, lr_path: str | Path, n: int, split: str = "heldout"
                  ) -> tuple[list[np.ndarray], list[np.ndarray], list[str]]:
    """(64 px inputs, 256 px targets, plain captions) of n evenly spaced held-out rows present in both
    sets (`split` "train": training rows, for choosing settings without looking at held-out ones)."""
    hr = load_hr(hr_path, split)
    lr = load_records(lr_path)
    index = {(i, s): k for k, (i, s) in enumerate(zip(lr.ids, lr.styles))}
    rows = [k for k, key in enumerate(zip(hr.ids, hr.styles)) if key in index]
    rows = [rows[i] for i in np.unique(np.linspace(0, len(rows) - 1, min(n, len(rows))).round().astype(int))]
    lows = [lr.images[index[(hr.ids[k], hr.styles[k])]] for k in rows]
    return lows, [hr.images[k] for k in rows], [hr.captions[k][0] for k in rows]


def bicubic(image: Image.Image, caption: str, seed: int) -> Image.Image:
    return image.resize((image.width * 4, image.height * 4), Image.Resampling.BICUBIC)


def gan_upscaler(folder: Path) -> Upscaler:
    from app.upscale.gan import load_folder
    from app.upscale.rrdbnet import upscale

    net = load_folder(folder)

    def run(image: Image.Image, caption: str, seed: int) -> Image.Image:
        x = torch.from_numpy(np.asarray(image.convert("RGB")).copy()).permute(2, 0, 1)[None].float().div(255)
        y = upscale(net, x)[0]
        return Image.fromarray((y.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8))

    return run


def upscale_params(prompt: str, size: tuple[int, int], steps: int, sampler: str, noise_level: int, *, seed: int,
                   cfg_scale: float = 1.0, skip_steps: int = 0) -> DiffusionParams:
    """DiffusionParams of one offline diffusion upscale to `size` (width, height): no previews drawn."""
    return DiffusionParams(prompt=prompt, steps=steps, sampler=sampler, seed=seed, width=size[0], height=size[1],
                           init_image="offline", upscale=True, noise_level=noise_level, cfg_scale=cfg_scale,
                           preview_every=1000, skip_steps=skip_steps)


def diffusion_upscaler(folder: Path, steps: int, sampler: str, noise_level: int, cfg_scale: float,
                       prompt: str | None, strength: float = 1.0) -> Upscaler:
    """The diffusion upscaler through the studio's own sampler code (app.diffusion.generate); `strength`
    < 1 starts from the bicubic enlargement (CCDF), as the studio's upscale panel does."""
    from app.diffusion.generate import decode_to_pil, generate
    from app.upscale.diffusion import load_upscaler_models

    models = load_upscaler_models(folder, torch.device("cpu"), torch.float32)

    def run(image: Image.Image, caption: str, seed: int) -> Image.Image:
        params = upscale_params(prompt or caption, (image.width * 4, image.height * 4), steps, sampler, noise_level,
                                seed=seed, cfg_scale=cfg_scale, skip_steps=skip_steps_for(steps, strength))
        latent = generate(models, params, live=params.live, on_step=lambda info: None, init_image=image)
        return decode_to_pil(models, latent)[0]

    return run


def probe_upscaler(folder: Path, steps: int, sampler: str, noise_level: int, start: int,
                   lows: list[np.ndarray], highs: list[np.ndarray]) -> Upscaler:
    """A diagnostic, not an upscaler: the diffusion upscaler's run resumed at step `start` of `steps` from
    the target's own latent noised to that step's level (SDEdit's forward noising, Meng et al. 2022), so
    only the steps after `start` are the model's. Run for several starts it shows where along the
    trajectory the picture loses what the target had. Targets are found by their input's pixels."""
    from app.diffusion import previews
    from app.diffusion.generate import decode_to_pil, family_of, generate, pil_to_tensor
    from app.diffusion.noise import initial_noise
    from app.upscale.diffusion import load_upscaler_models

    models = load_upscaler_models(folder, torch.device("cpu"), torch.float32)
    targets = {low.tobytes(): high for low, high in zip(lows, highs)}

    def run(image: Image.Image, caption: str, seed: int) -> Image.Image:
        target = targets[np.asarray(image.convert("RGB")).tobytes()]
        params = upscale_params(caption, (target.shape[1], target.shape[0]), steps, sampler, noise_level, seed=seed)
        family = family_of(models)
        shape = (models.latent_channels, target.shape[0] // models.vae_scale, target.shape[1] // models.vae_scale)
        sigma = float(family.levels(steps, params.karras, shape)[start])
        known = previews.encode(models.vae, pil_to_tensor(Image.fromarray(target), target.shape[1], target.shape[0]))
        begin = family.noised(known, initial_noise([seed], shape), sigma)
        latent = generate(models, params, live=params.live, on_step=lambda info: None, init_image=image,
                          start_step=start, start_latent=begin)
        return decode_to_pil(models, latent)[0]

    return run


def evaluate(methods: dict[str, Upscaler], lows: list[np.ndarray], highs: list[np.ndarray], captions: list[str],
             judge_folder: Path) -> dict[str, dict]:
    judge = load_judge(judge_folder)
    out = {}
    for name, fn in methods.items():
        fn(Image.fromarray(lows[0]), captions[0], 0)  # warm-up, not timed
        results, seconds = [], 0.0
        for k, (low, cap) in enumerate(zip(lows, captions)):
            t0 = time.perf_counter()
            up = fn(Image.fromarray(low), cap, k)
            seconds += time.perf_counter() - t0
            results.append(np.asarray(up.convert("RGB")))
        a = torch.from_numpy(np.stack(results)).permute(0, 3, 1, 2).float().div(255)
        b = torch.from_numpy(np.stack(highs)).permute(0, 3, 1, 2).float().div(255)
        with torch.no_grad():
            perc = torch.cat([perceptual_distance(judge, a[i:i + 16], b[i:i + 16]) for i in range(0, len(a), 16)])
        out[name] = {
            "psnr": round(float(np.mean([psnr(r, h) for r, h in zip(results, highs)])), 3),
            "ssim": round(float(np.mean([ssim(r, h) for r, h in zip(results, highs)])), 4),
            "perceptual": round(float(perc.mean()), 4),
            "ms_per_image": round(seconds * 1000 / len(lows), 2),
        }
        print(f"{name}: {json.dumps(out[name])}", flush=True)
    return out


def table(results: dict[str, dict]) -> str:
    lines = ["| method | PSNR (dB) ↑ | SSIM ↑ | perceptual (judge) ↓ | ms / image |", "| --- | --- | --- | --- | --- |"]
    for name, r in results.items():
        lines.append(f"| {name} | {r['psnr']:.2f} | {r['ssim']:.3f} | {r['perceptual']:.4f} | {r['ms_per_image']:.1f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m app evaluate --upscale", description=__doc__.splitlines()[0])
    p.add_argument("--hr", default="data/emoji256", help="the 256 px set (targets)")
    p.add_argument("--lr", default="data/emoji", help="the 64 px set (inputs)")
    p.add_argument("--judge", type=Path, default=Path("models/judge"))
    p.add_argument("--gan", default="models/upscaler-gan", help="'' to skip")
    p.add_argument("--diffusion", default="models/upscaler-diffusion", help="'' to skip")
    p.add_argument("--images", type=int, default=64)
    p.add_argument("--split", choices=["heldout", "train"], default="heldout",
                   help="held-out concepts (the evaluation), or training ones (to choose settings on)")
    p.add_argument("--steps", type=int, default=20, help="diffusion upscaler sampling steps")
    p.add_argument("--sampler", default=UPSCALE_SAMPLER, help="diffusion upscaler (default: the panel's)")
    p.add_argument("--noise-level", type=int, default=20)
    p.add_argument("--cfg-scale", type=float, default=1.0)
    p.add_argument("--strength", type=float, nargs="+", default=[UPSCALE_STRENGTH],
                   help="diffusion upscaler: the share of the steps run from the bicubic enlargement (1 = from "
                        "noise); several values give one row each, in the same run")
    p.add_argument("--probe", type=int, nargs="+", default=[], metavar="STEP",
                   help="diagnostic rows: the diffusion upscaler resumed at each STEP from the target's own latent "
                        "noised to that level (probe_upscaler); not upscalers, for choosing what to train")
    p.add_argument("--prompt", default=None, help="one prompt for every image (default: each image's caption)")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--json", type=Path, default=Path("models/eval_upscale.json"))
    a = p.parse_args(argv)
    if any(not 0 < start < a.steps for start in a.probe):
        p.error(f"--probe steps must be between 1 and {a.steps - 1}")
    if a.threads:
        torch.set_num_threads(a.threads)
    lows, highs, captions = heldout_pairs(a.hr, a.lr, a.images, a.split)
    methods: dict[str, Upscaler] = {"bicubic": bicubic}
    if a.gan and Path(a.gan).exists():
        methods["gan (RRDBNet)"] = gan_upscaler(Path(a.gan))
    if a.diffusion and Path(a.diffusion).exists():
        for strength in a.strength:
            label = f"diffusion ({a.steps} steps" + (f", strength {strength:g})" if strength < 1 else ")")
            methods[label] = diffusion_upscaler(Path(a.diffusion), a.steps, a.sampler, a.noise_level, a.cfg_scale,
                                                a.prompt, strength)
        for start in a.probe:
            methods[f"probe: target noised to step {start}/{a.steps}"] = probe_upscaler(
                Path(a.diffusion), a.steps, a.sampler, a.noise_level, start, lows, highs)
    results = evaluate(methods, lows, highs, captions, a.judge)
    report = {"images": len(lows), "inputs": f"{a.lr} (64 px, {a.split} concepts)", "targets": f"{a.hr} (256 px)",
              "diffusion": {"steps": a.steps, "sampler": a.sampler, "noise_level": a.noise_level,
                            "cfg_scale": a.cfg_scale, "strength": a.strength, "probe": a.probe,
                            "prompt": a.prompt or "each image's plain caption"},
              "threads": torch.get_num_threads(), "perceptual": "LPIPS form (unit-normalised, w=1) on judge blocks 1-3",
              "results": results,
              "weights": {k: weights_manifest(v) for k, v in (("gan", a.gan), ("diffusion", a.diffusion))
                          if v and Path(v).exists()}}
    a.json.parent.mkdir(parents=True, exist_ok=True)
    a.json.write_text(json.dumps(report, indent=1) + "\n")
    print(table(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
