"""GAN render vs diffusion on the same machine and prompt (a script, not a test).

Medians over repeats, measured side by side in one run on the default models:
  - one GAN render (mapping cached, synthesis + uint8, what a slider change costs);
  - one GAN render from a new seed (mapping + synthesis);
  - a whole diffusion image (steps + VAE decode) and one diffusion step (the sampling loop's time
    divided by its steps: CFG, the default sampler).

A row per GAN family follows (one render at the default controls, latents cached, against the same
run's diffusion step): the embedded StyleGAN2, DCGAN (gan-face-generate's trained 64x64 faces when that
package is installed, converted on the fly), and BigGAN-deep at the biggan-deep-128 config with random
weights (the real architecture and size; no hub download here).

    python bench/bench_gan.py [--repeats 15] [--steps 30] [--device cpu] [--no-families]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def median_ms(fn: Callable[[], object], repeats: int, device: torch.device) -> float:
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--prompt", default="red heart")
    ap.add_argument("--no-families", action="store_true", help="skip the per-family rows")
    args = ap.parse_args()

    from app.clip import load_clip
    from app.devices import pick_dtype
    from app.diffusion.generate import decode_to_pil, generate, load_diffusion_models
    from app.engine.gan_runner import GanRunner, load_gan_model
    from app.gan.render import render
    from app.params import DiffusionParams, GanParams
    from app.settings import MODELS_DIR

    device = torch.device(args.device)
    dtype = pick_dtype(device)
    clip = load_clip(str(MODELS_DIR / "clip"), device, dtype)
    gan = load_gan_model(MODELS_DIR / "gan", device, clip)
    runner = GanRunner(gan, None, None, {})  # type: ignore[arg-type]
    diffusion = load_diffusion_models(str(MODELS_DIR / "diffusion"), device, dtype, clip=None,
                                      cache_dir=Path("/tmp/noisescope-bench-cache"))
    gp = GanParams(prompt=args.prompt, seed=1, truncation_psi=0.7)
    seeds = iter(range(10**6))

    def gan_slider() -> object:
        return render(gan.G, runner.styles(gp, 1), "const")

    def gan_new_seed() -> object:
        return render(gan.G, runner.styles(gp, 1000 + next(seeds)), "const")

    dp = DiffusionParams(prompt=args.prompt, seed=1, steps=args.steps)
    live = dp.live()

    def diffusion_image() -> object:
        return decode_to_pil(diffusion, generate(diffusion, dp, live=lambda: live, on_step=lambda s: None))

    def diffusion_loop() -> object:
        return generate(diffusion, dp, live=lambda: live, on_step=lambda s: None)

    with torch.no_grad():
        t = {"gan_slider": median_ms(gan_slider, args.repeats, device),
             "gan_new_seed": median_ms(gan_new_seed, args.repeats, device),
             "diffusion_step": median_ms(diffusion_loop, max(3, args.repeats // 3), device) / args.steps,
             "diffusion_image": median_ms(diffusion_image, max(3, args.repeats // 3), device)}
    print(f"device: {device}; prompt {args.prompt!r}; diffusion {args.steps} steps dpmpp_2m, cfg {dp.cfg_scale}")
    print(f"{'case':40} {'median ms':>10}")
    for name, ms in t.items():
        print(f"{name:40} {ms:10.2f}")
    print(f"GAN render (slider) / one diffusion step:  {t['gan_slider'] / t['diffusion_step']:.3f}")
    print(f"whole diffusion image / GAN render (slider): {t['diffusion_image'] / t['gan_slider']:.1f}x")
    print(f"whole diffusion image / GAN render (new seed): {t['diffusion_image'] / t['gan_new_seed']:.1f}x")
    if not args.no_families:
        print()
        print(f"{'family (one render, cached latents)':44} {'px':>5} {'median ms':>10} {'/ diffusion step':>17}")
        for name, runner, p in family_runners(gan, device):
            family = runner.model.family
            ms = median_ms(lambda: family.render(runner.styles(p, 1), p), args.repeats, device)
            print(f"{name:44} {family.resolution:5d} {ms:10.2f} {ms / t['diffusion_step']:17.3f}")
    return 0


def family_runners(gan: object, device: torch.device) -> list[tuple[str, object, object]]:
    """(row name, GanRunner, GanParams) for each family: the embedded StyleGAN2, DCGAN, BigGAN-deep-128."""
    import importlib.util
    import tempfile

    from app.demo_models import settle_spectral_norms
    from app.engine.gan_runner import GanModel, GanRunner, load_gan_model
    from app.gan import biggan
    from app.gan.biggan_family import BigGANFamily
    from app.params import GanParams

    rows = [("stylegan2 (embedded)", GanRunner(gan, None, None, {}), GanParams(prompt="red heart", seed=1))]
    tmp = Path(tempfile.mkdtemp(prefix="bench-gan-"))
    spec = importlib.util.find_spec("gan_face_generate")
    if spec is not None and spec.origin is not None:
        from app.gan import dcgan

        folder = dcgan.convert_checkpoint(Path(spec.origin).parent / "weights.tar", tmp / "dcgan")
        rows.append(("dcgan (gan-face-generate faces)", GanRunner(load_gan_model(folder, device), None, None, {}),
                     GanParams(seed=1, truncation_psi=1.0)))
    else:
        print("(gan-face-generate not installed: no DCGAN row; pip install --no-deps gan-face-generate)")
    torch.manual_seed(0)
    G = biggan.BigGAN(biggan.BigGANConfig())
    settle_spectral_norms(G)
    model = GanModel(BigGANFamily(G.eval().requires_grad_(False).to(device), None, device), device, None, "biggan")
    rows.append(("biggan-deep-128 (random weights)", GanRunner(model, None, None, {}),
                 GanParams(seed=1, class_index=207, truncation_psi=0.4)))
    return rows  # type: ignore[return-value]


if __name__ == "__main__":
    raise SystemExit(main())
