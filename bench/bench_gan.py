"""GAN render vs diffusion on the same machine and prompt (a script, not a test).

Medians over repeats, measured side by side in one run on the default models:
  - one GAN render (mapping cached, synthesis + uint8, what a slider change costs);
  - one GAN render from a new seed (mapping + synthesis);
  - a whole diffusion image (steps + VAE decode) and one diffusion step (the sampling loop's time
    divided by its steps: CFG, the default sampler);
  - one row per further GAN family (`--families`), rendered through the same family interface the
    server uses: StyleGAN3-T and -R at the shipped G's resolution and width (random weights: the cost
    does not depend on them) with the input transform set (translate + rotate, the live sliders);
    DCGAN: gan-face-generate's trained 64x64 faces (converted on the fly; skipped when that package
    is absent); BigGAN-deep at the biggan-deep-128 config (128 px, random weights: the real
    architecture and size, no hub download) at truncation 0.4.

    python bench/bench_gan.py [--repeats 15] [--steps 30] [--device cpu] [--families stylegan3-t,dcgan,...]
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


def stylegan3(config: str) -> Callable[[int, torch.device], tuple[object, object] | None]:
    """A StyleGAN3 GanModel of the NVIDIA config at the shipped G's resolution and width, random weights."""

    def build(resolution: int, device: torch.device) -> tuple[object, object]:
        import tempfile

        from app.engine.gan_runner import load_gan_model
        from app.gan.convert import FORMAT_SG3, save_generator
        from app.gan.stylegan3 import Generator

        kwargs = {"z_dim": 128, "c_dim": 0, "w_dim": 256, "img_resolution": resolution, "img_channels": 3,
                  "mapping_kwargs": {"num_layers": 2}, "channel_base": 16384, "channel_max": 256}
        if config == "r":  # --cfg=stylegan3-r: 1x1 convolutions, radial filters, doubled width
            kwargs.update(conv_kernel=1, use_radial_filters=True, channel_base=32768, channel_max=512)
        torch.manual_seed(0)
        from app.params import GanParams

        folder = save_generator(Path(tempfile.mkdtemp()) / "g", kwargs, Generator(**kwargs).state_dict(), fmt=FORMAT_SG3)
        return load_gan_model(folder, device), GanParams(seed=1, truncation_psi=0.7, translate_x=0.1,
                                                         translate_y=-0.05, rotate=10)

    return build


def dcgan_faces(resolution: int, device: torch.device) -> tuple[object, object] | None:
    """gan-face-generate's trained 64x64 faces DCGAN, converted on the fly (None when not installed)."""
    import importlib.util
    import tempfile

    from app.engine.gan_runner import load_gan_model
    from app.gan import dcgan
    from app.params import GanParams

    spec = importlib.util.find_spec("gan_face_generate")
    if spec is None or spec.origin is None:
        return None
    folder = dcgan.convert_checkpoint(Path(spec.origin).parent / "weights.tar", Path(tempfile.mkdtemp()) / "dcgan")
    return load_gan_model(folder, device), GanParams(seed=1, truncation_psi=1.0)


def biggan_deep_128(resolution: int, device: torch.device) -> tuple[object, object]:
    """BigGAN-deep at the biggan-deep-128 config with random weights (spectral norms settled)."""
    from app.demo_models import settle_spectral_norms
    from app.engine.gan_runner import GanModel
    from app.gan import biggan
    from app.gan.biggan_family import BigGANFamily
    from app.params import GanParams

    torch.manual_seed(0)
    G = biggan.BigGAN(biggan.BigGANConfig())
    settle_spectral_norms(G)
    family = BigGANFamily(G.eval().requires_grad_(False).to(device), None, device)
    return GanModel(family, device, None, "biggan-deep-128"), GanParams(seed=1, class_index=207, truncation_psi=0.4)


FAMILY_BUILDS = {"stylegan3-t": stylegan3("t"), "stylegan3-r": stylegan3("r"), "dcgan": dcgan_faces,
                 "biggan": biggan_deep_128}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--prompt", default="red heart")
    ap.add_argument("--families", default=",".join(FAMILY_BUILDS),
                    help="comma-separated extra families to time ('' for none): " + ", ".join(FAMILY_BUILDS))
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

    family_rows = {}
    for name in filter(None, args.families.split(",")):
        built = FAMILY_BUILDS[name](gan.G.img_resolution, device)
        if built is None:
            print(f"({name}: its package is not installed; no row)")
            continue
        model, fp = built
        frunner = GanRunner(model, None, None, {})  # type: ignore[arg-type]
        family_rows[name] = (model, frunner, fp)

    def family_slider(name: str) -> Callable[[], object]:
        model, frunner, fp = family_rows[name]
        return lambda: model.family.render(frunner.styles(fp, 1), fp)

    cases: dict[str, tuple[Callable[[], object], int, int]] = {
        "gan_slider": (gan_slider, args.repeats, 1),
        "diffusion_step": (diffusion_loop, max(3, args.repeats // 3), args.steps),
        **{f"{name} slider ({family_rows[name][0].family.resolution} px)":
           (family_slider(name), args.repeats, 1) for name in family_rows},
        "gan_new_seed": (gan_new_seed, args.repeats, 1),
        "diffusion_image": (diffusion_image, max(3, args.repeats // 3), 1)}
    print(f"device: {device}; prompt {args.prompt!r}; diffusion {args.steps} steps dpmpp_2m, cfg {dp.cfg_scale}")
    print(f"{'case':56} {'median ms':>10}", flush=True)
    t = {}
    with torch.no_grad():
        for name, (fn, repeats, per) in cases.items():  # each row as soon as it is measured
            t[name] = median_ms(fn, repeats, device) / per
            print(f"{name:56} {t[name]:10.2f}", flush=True)
    print(f"GAN render (slider) / one diffusion step:  {t['gan_slider'] / t['diffusion_step']:.3f}")
    for key in t:
        if key.startswith(tuple(family_rows)):
            print(f"{key.split(' ')[0]} render (slider) / one diffusion step: {t[key] / t['diffusion_step']:.3f}")
    print(f"whole diffusion image / GAN render (slider): {t['diffusion_image'] / t['gan_slider']:.1f}x")
    print(f"whole diffusion image / GAN render (new seed): {t['diffusion_image'] / t['gan_new_seed']:.1f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
