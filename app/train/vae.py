"""Training of the f=4 AutoencoderKL (64x64x3 <-> 16x16x4).

Loss: L1 on pixels + L1 on image gradients (keeps edges crisp without a perceptual network)
+ a tiny KL. After training, the latents are centred and scaled: the dataset's per-channel latent
mean is folded into `quant_conv`/`post_quant_conv` biases (an exact reparametrisation, so the
plain Stable Diffusion pipeline, which only divides by `scaling_factor`, still decodes correctly) and
`scaling_factor = 1 / std` goes into the config.
"""

from __future__ import annotations

from pathlib import Path

import torch

from app.train.common import (
    RunLog,
    gradient_l1,
    images_to_device,
    init_from_folder,
    load_checkpoint,
    lr_at,
    optimizer_step,
    pick_device,
    restore,
    run_steps,
    save_checkpoint,
    seed_all,
    to_unit,
)
from app.train.data import load_dataset
from app.train.models import FULL, Sizes, vae_model

KL_WEIGHT = 1e-6


def vae_loss(vae, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(total loss, pixel L1) for a batch in [-1, 1]."""
    post = vae.encode(x).latent_dist
    rec = vae.decode(post.sample()).sample
    l1 = (rec - x).abs().mean()
    return l1 + gradient_l1(rec, x) + KL_WEIGHT * post.kl().mean(), l1


@torch.no_grad()
def latent_moments(vae, images: torch.Tensor, batch: int = 256) -> tuple[torch.Tensor, torch.Tensor]:
    """Posterior means and std devs of all images, [N, 4, 16, 16] each."""
    means, stds = [], []
    for i in range(0, images.shape[0], batch):
        dist = vae.encode(to_unit(images[i:i + batch])).latent_dist
        means.append(dist.mean.float())
        stds.append(dist.std.float())
    return torch.cat(means), torch.cat(stds)


@torch.no_grad()
def centre_and_scale(vae, images: torch.Tensor) -> dict:
    """Fold the per-channel latent mean into the biases; set scaling_factor = 1 / std of samples."""
    mean, std = latent_moments(vae, images)
    mu = mean.mean(dim=(0, 2, 3))
    c = mu.numel()
    vae.quant_conv.bias[:c] -= mu
    w = vae.post_quant_conv.weight[:, :, 0, 0]
    vae.post_quant_conv.bias += w @ mu
    mean = mean - mu.view(1, c, 1, 1)
    samples = mean + std * torch.randn_like(std)
    scaling = float(1.0 / samples.std())
    vae.register_to_config(scaling_factor=scaling)
    return {"latent_channel_mean_removed": [round(float(v), 4) for v in mu], "scaling_factor": scaling}


@torch.no_grad()
def reconstruction_l1(vae, images: torch.Tensor, n: int = 512) -> float:
    """Mean absolute pixel error (0-255 scale) decoding the posterior mean of the first n images."""
    x = to_unit(images[:n])
    rec = vae.decode(vae.encode(x).latent_dist.mean).sample.clamp(-1, 1)
    return float((rec - x).abs().mean() * 127.5)


@torch.no_grad()
def reconstruction_by_style(folder: Path, data: str, per_style: int = 256) -> dict[str, float]:
    """`reconstruction_l1` of a saved VAE on evenly spaced images of each art style (all splits)."""
    import numpy as np
    from diffusers import AutoencoderKL

    from app.train.data import load_records

    rec = load_records(data)
    vae = AutoencoderKL.from_pretrained(folder, torch_dtype=torch.float32).eval()
    out = {}
    for style in sorted(set(rec.styles)):
        rows = np.flatnonzero(np.asarray(rec.styles) == style)
        rows = rows[np.linspace(0, len(rows) - 1, min(per_style, len(rows))).round().astype(int)]
        out[style] = round(reconstruction_l1(vae, images_to_device(rec.images[rows], torch.device("cpu")), len(rows)), 2)
    return out


def train_vae(data: str, out: Path, *, steps: int = 3000, batch: int = 64, lr: float = 4e-4, minutes: float | None = None,
              resume: bool = False, sizes: Sizes = FULL, device: str | None = None, seed: int = 0,
              init: Path | None = None) -> dict:
    """Train, checkpoint, write out/model/ (a diffusers AutoencoderKL folder). Returns metrics.

    `init`: an AutoencoderKL folder to fine-tune from."""
    seed_all(seed)
    dev = pick_device(device)
    out = Path(out)
    images_np, _, _ = load_dataset(data)
    vae = vae_model(sizes)
    init_from_folder(vae, init)
    vae = vae.to(dev).train()
    opt = torch.optim.AdamW(vae.parameters(), lr=lr, weight_decay=0.0)
    start = restore(load_checkpoint(out) if resume else None, opt, model=vae)
    images = images_to_device(images_np, dev)
    batch = min(batch, images.shape[0])
    amp = dev.type == "cuda"
    log = RunLog(out)

    def step_fn(step: int, progress: float) -> float:
        for g in opt.param_groups:
            g["lr"] = lr_at(step, progress, lr, warmup=min(200, steps // 10 + 1))
        idx = torch.randint(0, images.shape[0], (batch,), device=dev)
        x = to_unit(images[idx])
        if torch.rand(()) < 0.5:
            x = x.flip(-1)
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=amp):
            loss, l1 = vae_loss(vae, x)
        optimizer_step(opt, loss, vae.parameters())
        return float(l1.detach())

    def save_fn(step: int) -> None:
        save_checkpoint(out, {"model": vae.state_dict(), "opt": opt.state_dict(), "step": step})

    end = run_steps(step_fn, start=start, steps=steps, minutes=minutes, save_fn=save_fn, log=log, desc="vae")
    vae.eval()
    stats = centre_and_scale(vae, images)
    stats["recon_l1_255"] = reconstruction_l1(vae, images)
    vae.save_pretrained(out / "model", safe_serialization=True)
    log.write(end, **{k: v for k, v in stats.items() if isinstance(v, float)})
    return {"steps": end, "losses": log.losses, **stats, "folder": str(out / "model")}
