"""Training of the latent UNet, conditioned on the frozen CLIP text tower's hidden states.

Epsilon prediction on the DDPM scaled_linear schedule, min-SNR-5 loss weighting, 10% caption
dropout (the empty prompt, tokenized as the pipeline does) for classifier-free guidance, EMA
weights for sampling. Latents are drawn from the VAE posterior, precomputed once.
"""

from __future__ import annotations

import copy
from pathlib import Path

import torch

from app.train.common import (
    CaptionBank,
    RunLog,
    ema_update,
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
)
from app.train.data import load_dataset
from app.train.models import FULL, Sizes, train_scheduler, unet_model
from app.train.vae import latent_moments

MIN_SNR_GAMMA = 5.0


def load_text_encoder(clip_folder: Path, device: torch.device):
    """(CLIPTokenizer, frozen CLIPTextModel) from a CLIPModel folder."""
    from transformers import CLIPTokenizer

    text = text_tower(clip_folder).to(device).eval().requires_grad_(False)
    return CLIPTokenizer.from_pretrained(clip_folder), text


def text_tower(clip_folder: Path):
    """The CLIPTextModel inside a CLIPModel folder (fp32), without the vision tower's weights."""
    from transformers import CLIPModel, CLIPTextModel

    full = CLIPModel.from_pretrained(clip_folder, dtype=torch.float32)
    text = CLIPTextModel(full.config.text_config)
    getattr(text, "text_model", text).load_state_dict(full.text_model.state_dict())  # transformers 5 flattened it
    return text


def train_unet(data: str, clip: Path, vae: Path, out: Path, *, steps: int = 20000, batch: int = 64, lr: float = 3e-4,
               minutes: float | None = None, resume: bool = False, sizes: Sizes = FULL, device: str | None = None,
               seed: int = 0, caption_dropout: float = 0.1, init: Path | None = None) -> dict:
    """Train, checkpoint, write out/model/ (EMA weights, a diffusers UNet2DConditionModel folder).

    `init`: a UNet2DConditionModel folder to fine-tune from (it also starts the EMA)."""
    from diffusers import AutoencoderKL

    seed_all(seed)
    dev = pick_device(device)
    out = Path(out)
    images_np, captions, _ = load_dataset(data)
    tokenizer, text = load_text_encoder(Path(clip), dev)
    autoencoder = AutoencoderKL.from_pretrained(vae).to(dev, torch.float32).eval()
    scaling = float(autoencoder.config.scaling_factor)
    mean, std = latent_moments(autoencoder, images_to_device(images_np, dev))
    del autoencoder
    max_length = tokenizer.model_max_length
    bank = CaptionBank(tokenizer, captions, max_length, dev)

    unet = unet_model(text.config.hidden_size, sizes)
    init_from_folder(unet, init)
    unet = unet.to(dev).train()
    ema = copy.deepcopy(unet).eval().requires_grad_(False)
    opt = torch.optim.AdamW(unet.parameters(), lr=lr, weight_decay=0.01)
    start = restore(load_checkpoint(out) if resume else None, opt, model=unet, ema=ema)
    sched = train_scheduler()
    alphas = sched.alphas_cumprod.to(dev)
    n = mean.shape[0]
    batch = min(batch, n)
    amp = dev.type == "cuda"
    log = RunLog(out)

    def step_fn(step: int, progress: float) -> float:
        for g in opt.param_groups:
            g["lr"] = lr_at(step, progress, lr, warmup=min(500, steps // 10 + 1))
        idx = torch.randint(0, n, (batch,), device=dev)
        z0 = (mean[idx] + std[idx] * torch.randn_like(std[idx])) * scaling
        noise = torch.randn_like(z0)
        t = torch.randint(0, sched.config.num_train_timesteps, (batch,), device=dev)
        a = alphas[t].view(-1, 1, 1, 1)
        zt = a.sqrt() * z0 + (1 - a).sqrt() * noise
        ids, _ = bank.sample(idx)
        drop = torch.rand(batch, device=dev) < caption_dropout
        ids = torch.where(drop[:, None], bank.empty_ids.expand_as(ids), ids)
        with torch.no_grad():
            cond = text(input_ids=ids).last_hidden_state
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=amp):
            pred = unet(zt, t, cond).sample
        snr = alphas[t] / (1 - alphas[t])
        weight = snr.clamp(max=MIN_SNR_GAMMA) / snr
        loss = (weight * (pred.float() - noise).pow(2).mean(dim=(1, 2, 3))).mean()
        optimizer_step(opt, loss, unet.parameters())
        ema_update(ema, unet, step)
        return float(loss.detach())

    def save_fn(step: int) -> None:
        save_checkpoint(out, {"model": unet.state_dict(), "ema": ema.state_dict(), "opt": opt.state_dict(), "step": step})
        ema.save_pretrained(out / "model", safe_serialization=True)

    end = run_steps(step_fn, start=start, steps=steps, minutes=minutes, save_fn=save_fn, log=log, desc="unet")
    return {"steps": end, "losses": log.losses, "folder": str(out / "model")}
