"""Fine-tuning of the diffusion upscaler's own VAE decoder on the upscaler's samples.

The embedded VAE was trained on sharp 64 px emoji. On the diffusion upscaler's 256 px samples its decoder
turns small latent errors into a mottled "watercolour" texture on flat colours, and even a soft latent
comes out worse than the soft picture it stands for (the VAE round trip of a bicubic enlargement scores
0.136 on the judge's perceptual distance, the enlargement itself 0.098; models/MODEL_CARD.md). The x4
upscaler's folder carries its own VAE, so its decoder can be fitted to what it is actually given: the
latents the upscaler samples (the panel's defaults, from noise) for training pictures, each paired with
its 256 px target, plus the clean latents of the same targets so that a good latent still decodes as
before. Only post_quant_conv and the decoder train; the encoder (the strength < 1 start) is unchanged.
The loss is the GAN upscaler's: L1 + w x the judge-feature perceptual distance (app/train/perceptual.py).
Fine-tuning only the decoder keeps the latent space, and so the UNet, as it was (what Stability's
sd-vae-ft-mse / ft-ema did for Stable Diffusion, on encoded photographs); fitting it to the sampler's own
latents instead of encoded pictures is the point here.

    python -m app.train.upscale_decoder pool --upscaler runs/sr_diffusion/export --out runs/sr_decoder --count 200 --shard 0
    python -m app.train.upscale_decoder train --upscaler runs/sr_diffusion/export --run runs/sr_decoder --minutes 30
    python -m app.train.upscale_decoder export --upscaler runs/sr_diffusion/export --run runs/sr_decoder --out models/upscaler-diffusion
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import torch

from app.train.common import (
    RunLog,
    load_checkpoint,
    lr_at,
    optimizer_step,
    print_summary,
    restore,
    run_steps,
    save_checkpoint,
)
from app.train.sr_data import SCALE, crop_boxes, crops_at, degrade, latent_crops, load_hr

POOL_GLOB = "pool_*.safetensors"


@torch.no_grad()
def sample_pool(upscaler: Path, data: str, out: Path, *, count: int, shard: int = 0, steps: int = 20,
                noise_level: int = 20) -> Path:
    """`count` whole training pictures, drawn at random (seeded by `shard`, so shards run side by side
    differ), degraded as in training (sr_data.degrade) and upscaled by `upscaler` through the studio's
    sampler code with the panel's sampler; saves out/pool_{shard}.safetensors: the final latents
    ("sampled"), the targets' own latents ("clean") and the targets (uint8)."""
    from PIL import Image
    from safetensors.torch import save_file

    from app.diffusion import previews
    from app.diffusion.generate import generate
    from app.params import UPSCALE_SAMPLER
    from app.train.upscale_eval import upscale_params
    from app.upscale.diffusion import load_upscaler_models

    models = load_upscaler_models(upscaler, torch.device("cpu"), torch.float32)
    rec = load_hr(data, "train")
    gen = torch.Generator().manual_seed(1000 + shard)
    rows = torch.randperm(len(rec.images), generator=gen)[:count].tolist()
    sampled, clean, targets = [], [], []
    for k, row in enumerate(rows):
        hr = torch.from_numpy(rec.images[row]).permute(2, 0, 1)[None].float().div(255)
        low = (degrade(hr, gen)[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
        h, w = hr.shape[-2:]
        params = upscale_params(rec.captions[row][0], (w, h), steps, UPSCALE_SAMPLER, noise_level,
                                seed=shard * 100_000 + k)
        sampled.append(generate(models, params, live=params.live, on_step=lambda info: None,
                                init_image=Image.fromarray(low)))
        clean.append(previews.encode(models.vae, hr * 2 - 1))
        targets.append(torch.from_numpy(rec.images[row]))
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"pool_{shard}.safetensors"
    save_file({"sampled": torch.cat(sampled).contiguous(), "clean": torch.cat(clean).contiguous(),
               "targets": torch.stack(targets).contiguous()}, str(path))
    return path


def load_pools(run: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    parts = [load_file(str(p)) for p in sorted(run.glob(POOL_GLOB))]
    if not parts:
        raise FileNotFoundError(f"no {POOL_GLOB} in {run}: run `pool` first")
    return {k: torch.cat([p[k] for p in parts]) for k in parts[0]}


def pool_crops(pool: dict[str, torch.Tensor], key: str, size: int, count: int,
               generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """`count` random (latent [B, C, size/4, size/4], target [B, 3, size, size] in [-1, 1]) crop pairs."""
    boxes = crop_boxes(pool["targets"].shape, size, count, generator)
    return latent_crops(pool[key], boxes, size // SCALE), crops_at(pool["targets"].numpy(), boxes, size) * 2 - 1


def decoder_parameters(vae) -> list[torch.nn.Parameter]:
    return [*vae.post_quant_conv.parameters(), *vae.decoder.parameters()]


def train_decoder(upscaler: Path, run: Path, judge_folder: Path, *, steps: int = 2000, batch: int = 8, crop: int = 128,
                  lr: float = 5e-5, w_perceptual: float = 0.1, minutes: float | None = None, resume: bool = False,
                  threads: int | None = None, seed: int = 0) -> dict:
    """Fit post_quant_conv + decoder of `upscaler`'s VAE to the pools in `run`: half of each batch sampled
    latents, half clean ones, all against their targets. Writes run/vae (the whole VAE, fp32)."""
    from diffusers import AutoencoderKL

    from app.diffusion import previews
    from app.train.judge import load_judge
    from app.train.perceptual import perceptual_distance

    if threads:
        torch.set_num_threads(threads)
    torch.manual_seed(seed)
    pool = load_pools(run)
    vae = AutoencoderKL.from_pretrained(upscaler / "vae", torch_dtype=torch.float32).requires_grad_(False)
    vae.eval()
    params = decoder_parameters(vae)
    for p in params:
        p.requires_grad_(True)
    judge = load_judge(judge_folder).requires_grad_(False)
    opt = torch.optim.Adam(params, lr=lr)
    start = restore(load_checkpoint(run) if resume else None, opt, vae=vae)
    gen = torch.Generator().manual_seed(seed + start)
    log = RunLog(run)
    half = batch // 2

    def step_fn(step: int, progress: float) -> float:
        rate = lr_at(step, progress, lr, warmup=50)
        for g in opt.param_groups:
            g["lr"] = rate
        zs, ts = pool_crops(pool, "sampled", crop, batch - half, gen)
        zc, tc = pool_crops(pool, "clean", crop, half, gen)
        z, target = torch.cat([zs, zc]), torch.cat([ts, tc])
        out = previews.decode(vae, z)
        l1 = (out - target).abs().mean()
        perc = perceptual_distance(judge, out.add(1).div(2).clamp(0, 1), target.add(1).div(2)).mean()
        loss = l1 + w_perceptual * perc
        optimizer_step(opt, loss, params)
        if step % 25 == 0:
            log.write(step, l1=float(l1.detach()), perceptual=float(perc.detach()), lr=rate)
        return float(loss.detach())

    def save_fn(step: int) -> None:
        save_checkpoint(run, {"vae": vae.state_dict(), "opt": opt.state_dict(), "step": step})
        vae.save_pretrained(run / "vae", safe_serialization=True)

    end = run_steps(step_fn, start=start, steps=steps, minutes=minutes, save_fn=save_fn, log=log,
                    every=25, save_every=50, desc="sr-decoder")
    return {"steps": end, "losses": log.losses, "folder": str(run / "vae")}


def export_with_decoder(upscaler: Path, vae_folder: Path, dst: Path, dtype: torch.dtype = torch.float16) -> Path:
    """A copy of the upscaler folder whose vae/ is the fine-tuned one (stored in `dtype`)."""
    from diffusers import AutoencoderKL

    if dst.resolve() != upscaler.resolve():
        shutil.copytree(upscaler, dst, dirs_exist_ok=True)
    shutil.rmtree(dst / "vae")
    AutoencoderKL.from_pretrained(vae_folder, torch_dtype=torch.float32).to(dtype).save_pretrained(
        dst / "vae", safe_serialization=True)
    return dst


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    p = argparse.ArgumentParser(prog="python -m app.train.upscale_decoder", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    pp = sub.add_parser("pool", help="sample the upscaler on training pictures")
    pp.add_argument("--upscaler", type=Path, required=True, help="the StableDiffusionUpscalePipeline folder")
    pp.add_argument("--data", default="data/emoji256")
    pp.add_argument("--out", type=Path, default=Path("runs/sr_decoder"))
    pp.add_argument("--count", type=int, default=200)
    pp.add_argument("--shard", type=int, default=0, help="one pool file per shard (run shards side by side)")
    pp.add_argument("--threads", type=int, default=None)
    pt = sub.add_parser("train", help="fit the decoder to the pools")
    pt.add_argument("--upscaler", type=Path, required=True)
    pt.add_argument("--run", type=Path, default=Path("runs/sr_decoder"))
    pt.add_argument("--judge", type=Path, default=Path("models/judge"))
    pt.add_argument("--steps", type=int, default=2000)
    pt.add_argument("--batch", type=int, default=8)
    pt.add_argument("--crop", type=int, default=128)
    pt.add_argument("--lr", type=float, default=5e-5)
    pt.add_argument("--w-perceptual", type=float, default=0.1)
    pt.add_argument("--minutes", type=float, default=None)
    pt.add_argument("--resume", action="store_true")
    pt.add_argument("--threads", type=int, default=None)
    pe = sub.add_parser("export", help="the upscaler folder with the fitted decoder")
    pe.add_argument("--upscaler", type=Path, required=True)
    pe.add_argument("--run", type=Path, default=Path("runs/sr_decoder"))
    pe.add_argument("--out", type=Path, default=Path("models/upscaler-diffusion"))
    a = p.parse_args(argv)
    t0 = time.time()
    if a.cmd == "pool":
        if a.threads:
            torch.set_num_threads(a.threads)
        print(sample_pool(a.upscaler, a.data, a.out, count=a.count, shard=a.shard))
    elif a.cmd == "train":
        print_summary(train_decoder(a.upscaler, a.run, a.judge, steps=a.steps, batch=a.batch, crop=a.crop, lr=a.lr,
                                    w_perceptual=a.w_perceptual, minutes=a.minutes, resume=a.resume,
                                    threads=a.threads), t0)
    else:
        print(export_with_decoder(a.upscaler, a.run / "vae", a.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
