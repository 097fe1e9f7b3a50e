"""Train the embedded text-conditional StyleGAN2 (Karras et al. 2020) on the emoji set.

G is app.gan.networks.Generator with c = the frozen CLIP text embedding of a caption (c_dim = the
CLIP projection dim). D is app.train.discriminator (residual, minibatch std, projection on c).
Losses follow StyleGAN2-ADA (Karras et al. 2020b): non-saturating logistic loss, lazy R1 penalty
(Mescheder et al. 2018) every `r1_interval` steps, G EMA; DiffAugment (Zhao et al. 2020) on every
image D sees, since a few thousand images over-fit D quickly.

Each caption names one item with one picture, so the pair (c, picture) is also a regression target:
`recon_l1` > 0 adds lambda * |down(G(z, c)) - down(x)|_1 to G's loss (the cGAN + L1 objective of
pix2pix, Isola et al. 2017), on `recon_size` x `recon_size` area-downsampled images (0 = full size);
`recon_grad` > 0 adds the same kind of L1 on the images' finite-difference gradients at full size,
meant to give small features (a pizza's pepperoni) more than their share of pixels; tried in
stage 10, it scored no better (models/MODEL_CARD.md) and the shipped generator did not use it.
`adversarial=False` trains G on the L1 alone (no D step: 3.6x cheaper on the CPU), a warm-up that
reached recognisable pictures where the adversarial loss alone had given blobs (models/MODEL_CARD.md).
`precision="bf16"` runs G and D under bfloat16 autocast (the R1 gradient stays fp32).

    python -m app.train.gan --data data/emoji --clip models/clip --out runs/gan --steps 5000 --resume
    python -m app.train.gan --out runs/gan --export-only --export models/gan --samples models/gan/samples.png

The run folder holds `checkpoint.pt` (tensors and numbers only, read with weights_only=True),
`text_embeddings.pt` (the CLIP cache), `log.jsonl` and `samples.png`; `--export` writes G_ema as
`generator.safetensors` (NVIDIA key names, fp16) + `config.json`, the folder app.gan.convert.load_generator reads.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from app.gan.networks import Generator
from app.train.common import gradient_l1, pick_device
from app.train.diffaug import diff_augment
from app.train.discriminator import Discriminator
from app.train.evaluate import GeneratorFn, gan_generator

CHECKPOINT = "checkpoint.pt"
TEXT_CACHE = "text_embeddings.pt"
LOG = "log.jsonl"
C_MEANING = "CLIP text embedding (L2-normalised) of the prompt"  # config.json's conditioning.c


@dataclass
class GanConfig:
    """Architecture and optimisation; stored in the checkpoint so --resume needs no flags."""

    c_dim: int = 0
    img_resolution: int = 64
    z_dim: int = 128
    w_dim: int = 256
    mapping_layers: int = 2
    g_channel_base: int = 4096
    g_channel_max: int = 256
    d_channel_base: int = 4096
    d_channel_max: int = 256
    batch: int = 64
    g_lr: float = 0.0025
    d_lr: float = 0.0025
    r1_gamma: float = 0.05
    r1_interval: int = 16
    ema_kimg: float = 20.0
    ema_rampup: float = 0.05
    augment: str = "color,translation,cutout"
    recon_l1: float = 0.0
    recon_size: int = 0
    recon_grad: float = 0.0
    adversarial: bool = True
    mapping_lr_scale: float = 1.0
    imle_k: int = 0
    imle_size: int = 32
    precision: str = "fp32"
    seed: int = 0

    def generator_kwargs(self) -> dict[str, Any]:
        """NVIDIA's Generator constructor kwargs: what config.json holds."""
        return {
            "z_dim": self.z_dim, "c_dim": self.c_dim, "w_dim": self.w_dim, "img_resolution": self.img_resolution,
            "img_channels": 3, "mapping_kwargs": {"num_layers": self.mapping_layers},
            "channel_base": self.g_channel_base, "channel_max": self.g_channel_max, "num_fp16_res": 0,
            "conv_clamp": 256, "architecture": "skip",
        }


RESUME_OVERRIDABLE = frozenset({"recon_l1", "recon_size", "recon_grad", "adversarial", "r1_gamma", "augment",
                                "precision", "batch", "g_lr", "d_lr", "mapping_lr_scale", "imle_k", "imle_size"})
ARCHITECTURE_FIELDS = {"z_dim": "z_dim", "w_dim": "w_dim", "img_resolution": "img_resolution",
                       "channel_base": "g_channel_base", "channel_max": "g_channel_max"}


@dataclass
class TrainState:
    G: Generator
    D: Discriminator
    G_ema: Generator
    opt_g: torch.optim.Optimizer
    opt_d: torch.optim.Optimizer
    step: int = 0
    nimg: int = 0
    history: list[dict[str, float]] = field(default_factory=list)


def generator_param_groups(G: Generator, cfg: GanConfig) -> list[dict[str, Any]]:
    """G's parameters for Adam: the mapping MLP's at lr * mapping_lr_scale, the rest at lr.

    The mapping's layers are stored at lr_multiplier 0.01 (StyleGAN's default, kept so exported
    weights mean the same everywhere); scaling their Adam lr is the same as a larger multiplier
    during training only.
    """
    mapping = [p for n, p in G.named_parameters() if n.startswith("mapping.fc")]
    ids = {id(p) for p in mapping}
    rest = [p for p in G.parameters() if id(p) not in ids]
    return [{"params": rest}, {"params": mapping, "lr": cfg.g_lr * cfg.mapping_lr_scale}]


def build_state(cfg: GanConfig, device: torch.device) -> TrainState:
    torch.manual_seed(cfg.seed)
    G = Generator(**cfg.generator_kwargs()).to(device).train().requires_grad_(False)
    D = Discriminator(cfg.c_dim, cfg.img_resolution, cfg.d_channel_base, cfg.d_channel_max).to(device).train()
    D.requires_grad_(False)
    G_ema = copy.deepcopy(G).eval()
    ratio = lazy_ratio(cfg)
    opt_g = torch.optim.Adam(generator_param_groups(G, cfg), lr=cfg.g_lr, betas=(0.0, 0.99), eps=1e-8)
    opt_d = torch.optim.Adam(D.parameters(), lr=cfg.d_lr * ratio, betas=(0.0, 0.99 ** ratio), eps=1e-8)
    return TrainState(G, D, G_ema, opt_g, opt_d)


def lazy_ratio(cfg: GanConfig) -> float:
    """D's Adam lr and beta2 scale with lazy R1 (StyleGAN2 Sec. 3.1): interval / (interval + 1)."""
    return cfg.r1_interval / (cfg.r1_interval + 1)


def set_learning_rates(state: TrainState, cfg: GanConfig) -> None:
    """Put cfg's learning rates into optimisers whose states came from a checkpoint (a resumed run's --lr)."""
    rest, mapping = state.opt_g.param_groups
    rest["lr"], mapping["lr"] = cfg.g_lr, cfg.g_lr * cfg.mapping_lr_scale
    for group in state.opt_d.param_groups:
        group["lr"] = cfg.d_lr * lazy_ratio(cfg)


def encode_captions(clip_path: str, captions: list[list[str]], device: torch.device,
                    cache: Path | None = None, batch: int = 512) -> tuple[torch.Tensor, torch.Tensor]:
    """Every caption through the frozen CLIP text tower, once.

    Returns (embeddings [M, c_dim] float32 on CPU, owner [M] = index of the item each caption belongs to).
    """
    flat = [c for caps in captions for c in caps]
    owner = torch.tensor([i for i, caps in enumerate(captions) for _ in caps])
    if cache is not None and cache.exists():
        saved = torch.load(cache, weights_only=True)
        if saved["clip"] == str(clip_path) and saved["count"] == len(flat):
            return saved["embeddings"], saved["owner"]
    from app.clip.backend import load_clip

    clip = load_clip(str(clip_path), device)
    emb = torch.cat([clip.encode_text(flat[i:i + batch]).float().cpu() for i in range(0, len(flat), batch)])
    del clip
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        torch.save({"clip": str(clip_path), "count": len(flat), "embeddings": emb, "owner": owner}, cache)
    return emb, owner


def ema_beta(cfg: GanConfig, nimg: int) -> float:
    """StyleGAN2-ADA's G EMA decay per step, with its half-life ramped up over early training."""
    ema_nimg = cfg.ema_kimg * 1000
    if cfg.ema_rampup:
        ema_nimg = min(ema_nimg, nimg * cfg.ema_rampup)
    return 0.5 ** (cfg.batch / max(ema_nimg, 1e-8))


@torch.no_grad()
def update_ema(G: torch.nn.Module, G_ema: torch.nn.Module, beta: float) -> None:
    for p_ema, p in zip(G_ema.parameters(), G.parameters()):
        p_ema.copy_(p.lerp(p_ema, beta))
    for b_ema, b in zip(G_ema.buffers(), G.buffers()):
        b_ema.copy_(b)


def d_logits(D: Discriminator, img: torch.Tensor, c: torch.Tensor, policy: str) -> torch.Tensor:
    return D(diff_augment(img, policy), c).float()


def autocast(cfg: GanConfig, device: torch.device) -> torch.autocast:
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=cfg.precision == "bf16")


def recon_loss(fake: torch.Tensor, real: torch.Tensor, size: int) -> torch.Tensor:
    """Mean L1 between the images, area-downsampled to size x size first when size > 0."""
    if size and size < fake.shape[-1]:
        fake, real = F.adaptive_avg_pool2d(fake, size), F.adaptive_avg_pool2d(real, size)
    return (fake.float() - real).abs().mean()


@torch.no_grad()
def nearest_latents(G: Generator, c: torch.Tensor, real: torch.Tensor, k: int, size: int) -> torch.Tensor:
    """Conditional IMLE's selection (Li & Malik 2018; Li et al. 2020): for each real image, the z among
    k draws whose G(z, c) is nearest to it (mean squared error at size x size). Returns z [B, z_dim].

    Pulling only the nearest sample towards each real image makes every real image, every art style of
    a concept, the target of some region of z: the opposite of a regression to one picture per caption,
    which pulls every z to the same place."""
    n = real.shape[0]
    z = torch.randn(n, k, G.z_dim, device=real.device)
    ws = G.mapping(z.flatten(0, 1), c.repeat_interleave(k, 0))
    fake = F.adaptive_avg_pool2d(G.synthesis(ws, noise_mode="const").float(), size).view(n, k, -1)
    target = F.adaptive_avg_pool2d(real, size).view(n, 1, -1)
    best = (fake - target).square().mean(-1).argmin(1)
    return z[torch.arange(n, device=real.device), best]


def train_step(state: TrainState, cfg: GanConfig, real: torch.Tensor, c: torch.Tensor) -> dict[str, float]:
    """One G step and one D step (plus R1 every r1_interval steps). real in [-1,1], c [B,c_dim].

    With `imle_k` > 0, z is not drawn at random but chosen by `nearest_latents`, so the L1 term is
    conditional IMLE's loss."""
    G, D = state.G, state.D
    n = real.shape[0]
    if cfg.imle_k > 0:
        with autocast(cfg, real.device):
            z = nearest_latents(G, c, real, cfg.imle_k, cfg.imle_size)
    else:
        z = torch.randn(n, cfg.z_dim, device=real.device)
    stats: dict[str, float] = {}

    # G: softplus(-D(G(z,c), c)), the non-saturating loss (Goodfellow et al. 2014).
    G.requires_grad_(True)
    with autocast(cfg, real.device):
        ws = G.mapping(z, c, update_emas=True)
        fake = G.synthesis(ws, fused_modconv=False)
        loss_adv = F.softplus(-d_logits(D, fake, c, cfg.augment)).mean() if cfg.adversarial else fake.new_zeros(())
    loss_g = loss_adv.float()
    if cfg.recon_l1 > 0:
        recon = recon_loss(fake, real, cfg.recon_size)
        stats["recon"] = float(recon.detach())
        loss_g = loss_g + cfg.recon_l1 * recon
    if cfg.recon_grad > 0:
        edges = gradient_l1(fake.float(), real)
        stats["recon_grad"] = float(edges.detach())
        loss_g = loss_g + cfg.recon_grad * edges
    state.opt_g.zero_grad(set_to_none=True)
    loss_g.backward()
    state.opt_g.step()
    G.requires_grad_(False)
    if not cfg.adversarial:
        return finish_step(state, cfg, n, stats)
    stats["loss_g"] = float(loss_adv.detach())

    # D: softplus(D(fake)) + softplus(-D(real)), on the fakes of G's step (one synthesis per step).
    D.requires_grad_(True)
    with autocast(cfg, real.device):
        logits_fake = d_logits(D, fake.detach(), c, cfg.augment)
        logits_real = d_logits(D, real, c, cfg.augment)
    loss_d = F.softplus(logits_fake).mean() + F.softplus(-logits_real).mean()
    state.opt_d.zero_grad(set_to_none=True)
    loss_d.backward()
    if cfg.r1_gamma > 0 and state.step % cfg.r1_interval == 0:
        # R1 = gamma/2 E||grad_x D(x)||^2 on reals, scaled by the interval (lazy regularisation).
        real_r1 = real.detach().requires_grad_(True)
        logits = d_logits(D, real_r1, c, cfg.augment)
        (grad,) = torch.autograd.grad(logits.sum(), real_r1, create_graph=True)
        penalty = grad.square().sum(dim=(1, 2, 3))
        (penalty.mean() * (cfg.r1_gamma / 2) * cfg.r1_interval).backward()
        stats["r1"] = float(penalty.detach().mean())
    state.opt_d.step()
    D.requires_grad_(False)
    stats["loss_d"] = float(loss_d.detach())
    stats["d_real"] = float(logits_real.detach().mean())
    stats["d_fake"] = float(logits_fake.detach().mean())
    return finish_step(state, cfg, n, stats)


def finish_step(state: TrainState, cfg: GanConfig, n: int, stats: dict[str, float]) -> dict[str, float]:
    state.step += 1
    state.nimg += n
    update_ema(state.G, state.G_ema, ema_beta(cfg, state.nimg))
    return stats


def save_checkpoint(state: TrainState, cfg: GanConfig, path: Path) -> None:
    tmp = path.with_suffix(".tmp")
    torch.save({
        "config": asdict(cfg), "step": state.step, "nimg": state.nimg, "history": state.history,
        "G": state.G.state_dict(), "D": state.D.state_dict(), "G_ema": state.G_ema.state_dict(),
        "opt_g": state.opt_g.state_dict(), "opt_d": state.opt_d.state_dict(),
        "rng_cpu": torch.get_rng_state(),
    }, tmp)
    tmp.replace(path)


def load_checkpoint(path: Path, device: torch.device) -> tuple[TrainState, GanConfig]:
    ckpt = torch.load(path, map_location=device, weights_only=True)
    cfg = GanConfig(**ckpt["config"])
    state = build_state(cfg, device)
    for name in ("G", "D", "G_ema", "opt_g", "opt_d"):
        getattr(state, name).load_state_dict(ckpt[name])
    state.step, state.nimg, state.history = ckpt["step"], ckpt["nimg"], ckpt["history"]
    torch.set_rng_state(ckpt["rng_cpu"].cpu())
    return state, cfg


def export_generator(G_ema: Generator, cfg: GanConfig, folder: Path, conditioning: dict[str, Any]) -> Path:
    """G_ema -> generator.safetensors (fp16, NVIDIA key names) + config.json in app.gan.convert's format.

    `conditioning` (which CLIP makes c, training length) goes into config.json beside init_kwargs.
    """
    from safetensors.torch import save_file

    from app.gan.convert import CONFIG_NAME, FORMAT, WEIGHTS_NAME, build_generator

    init_kwargs = cfg.generator_kwargs()
    tensors = {k: v.detach().to("cpu", torch.float16).contiguous() for k, v in G_ema.state_dict().items()}
    build_generator(init_kwargs, tensors)
    folder.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(folder / WEIGHTS_NAME), metadata={"format": "pt", "init_kwargs": json.dumps(init_kwargs)})
    config = {"format": FORMAT, "class_name": "Generator", "init_kwargs": init_kwargs, "conditioning": conditioning}
    (folder / CONFIG_NAME).write_text(json.dumps(config, indent=1) + "\n")
    return folder / WEIGHTS_NAME


def to_train_tensor(images: np.ndarray, device: torch.device) -> torch.Tensor:
    """uint8 [N,H,W,3] -> float [N,3,H,W] in [-1, 1] on device."""
    return torch.from_numpy(images).to(device).permute(0, 3, 1, 2).float().div(127.5).sub(1).contiguous()


def match_architecture(cfg: GanConfig, folder: Path) -> None:
    """Take G's architecture fields (channels, z and w sizes) from an exported generator folder."""
    from app.gan.convert import WEIGHTS_NAME, read_init_kwargs

    kwargs = read_init_kwargs(folder / WEIGHTS_NAME)
    for key, field_name in ARCHITECTURE_FIELDS.items():
        setattr(cfg, field_name, kwargs[key])
    cfg.mapping_layers = kwargs.get("mapping_kwargs", {}).get("num_layers", cfg.mapping_layers)


def init_generator(state: TrainState, cfg: GanConfig, folder: Path) -> None:
    """Start G and G_ema from an exported generator folder (same architecture) instead of at random."""
    from safetensors.torch import load_file

    from app.gan.convert import WEIGHTS_NAME, read_init_kwargs

    kwargs = read_init_kwargs(folder / WEIGHTS_NAME)
    if kwargs != cfg.generator_kwargs():
        raise ValueError(f"{folder} holds a generator built with {kwargs}, not {cfg.generator_kwargs()}")
    weights = load_file(str(folder / WEIGHTS_NAME))
    for net in (state.G, state.G_ema):
        net.load_state_dict(weights)  # strict; fp16 on disk is copied into the fp32 parameters


def train(data: str, clip_path: str, out: Path, steps: int, *, resume: bool = False, cfg: GanConfig | None = None,
          device: torch.device | None = None, max_minutes: float | None = None, checkpoint_every: int = 500,
          log_every: int = 50, limit: int | None = None, progress: bool = True,
          init_g: Path | None = None, overrides: dict[str, Any] | None = None) -> TrainState:
    """Train until `steps` total steps (or `max_minutes`), checkpointing to `out/checkpoint.pt`.

    A fresh run (no checkpoint, or resume=False) starts G from `init_g` when given. A resumed run
    keeps the checkpoint's config except the loss fields in `overrides` (e.g. turning the
    adversarial loss on after a regression warm-up); architecture fields cannot change.
    """
    from tqdm import tqdm

    from app.train.data import load_dataset

    device = device or torch.device("cuda" if torch.cuda.is_available() else "cpu")
    out.mkdir(parents=True, exist_ok=True)
    images, captions, _ = load_dataset(data)
    if limit:
        images, captions = images[:limit], captions[:limit]
    emb, owner = encode_captions(clip_path, captions, device, cache=out / TEXT_CACHE)
    ckpt_path = out / CHECKPOINT
    if resume and ckpt_path.exists():
        state, cfg = load_checkpoint(ckpt_path, device)
        for key, value in (overrides or {}).items():
            if key not in RESUME_OVERRIDABLE:
                raise ValueError(f"{key} cannot change on --resume (only {sorted(RESUME_OVERRIDABLE)})")
            setattr(cfg, key, value)
        set_learning_rates(state, cfg)
    else:
        if resume:
            warnings.warn(f"--resume: no {ckpt_path}, starting a fresh run", stacklevel=2)
        cfg = cfg or GanConfig()
        cfg.c_dim = emb.shape[1]
        if init_g is not None:
            match_architecture(cfg, init_g)
        state = build_state(cfg, device)
        if init_g is not None:
            init_generator(state, cfg, init_g)
    if cfg.c_dim != emb.shape[1]:
        raise ValueError(f"checkpoint c_dim {cfg.c_dim} != CLIP text dim {emb.shape[1]}")

    reals = to_train_tensor(images, device)
    emb_dev = emb.to(device)
    starts = torch.zeros(len(images) + 1, dtype=torch.long)
    starts[1:] = torch.bincount(owner, minlength=len(images)).cumsum(0)
    counts = (starts[1:] - starts[:-1]).to(device)
    starts = starts[:-1].to(device)
    t0 = time.time()
    bar = tqdm(total=steps, initial=state.step, disable=not progress, desc="gan")
    while state.step < steps:
        idx = torch.randint(len(images), (cfg.batch,), device=device)
        cap = starts[idx] + (torch.rand(cfg.batch, device=device) * counts[idx]).long()
        stats = train_step(state, cfg, reals[idx], emb_dev[cap])
        bar.update(1)
        time_up = max_minutes is not None and time.time() - t0 > max_minutes * 60
        if state.step % log_every == 0 or state.step == steps or time_up:
            stats |= {"step": state.step, "kimg": state.nimg / 1000, "sec": round(time.time() - t0, 1)}
            state.history.append(stats)
            with open(out / LOG, "a") as f:
                f.write(json.dumps(stats) + "\n")
            bar.set_postfix({k: f"{stats[k]:.3f}" for k in ("loss_g", "loss_d", "recon") if k in stats})
            if not all(math.isfinite(v) for v in stats.values()):
                raise FloatingPointError(f"non-finite loss at step {state.step}: {stats}")
        if state.step % checkpoint_every == 0:
            save_checkpoint(state, cfg, ckpt_path)
        if time_up:
            break
    bar.close()
    save_checkpoint(state, cfg, ckpt_path)
    # The first caption of the first items, each drawn with its own embedding from the cache.
    firsts = {captions[i][0]: emb[int(starts[i])] for i in range(min(8, len(captions)))}
    draw = gan_generator(state.G_ema, lambda names: torch.stack([firsts[n] for n in names]), size=None)
    save_png(prompt_grid(draw, list(firsts), seeds=4), out / "samples.png")
    return state


SAMPLE_PROMPTS = ("red heart", "pizza", "cat face", "smiling face with sunglasses", "dog face", "rocket")


def prompt_grid(draw: GeneratorFn, prompts: list[str], seeds: int) -> np.ndarray:
    """uint8 grid of a generator adapter: one row per prompt, one column per seed 0..seeds-1."""
    return np.concatenate([np.concatenate(list(draw([p] * seeds, list(range(seeds)))), axis=1) for p in prompts])


def save_png(grid: np.ndarray, png: Path) -> Path:
    from PIL import Image

    png.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(grid).save(png)
    return png


def prompt_samples(folder: Path, clip_path: str, png: Path, prompts: tuple[str, ...] = SAMPLE_PROMPTS,
                   seeds: int = 6, psi: float = 1.0) -> Path:
    """A PNG of an exported generator: one row per prompt, seeds 0..seeds-1 (z drawn as the studio draws it)."""
    from app.clip.backend import load_clip
    from app.gan.convert import load_generator

    cpu = torch.device("cpu")
    draw = gan_generator(load_generator(folder, cpu), load_clip(clip_path, cpu).encode_text, psi)
    return save_png(prompt_grid(draw, list(prompts), seeds), png)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m app.train.gan", description=__doc__.splitlines()[0])
    p.add_argument("--data", default="data/emoji")
    p.add_argument("--clip", default="models/clip")
    p.add_argument("--out", type=Path, default=Path("runs/gan"))
    p.add_argument("--steps", type=int, default=5000)
    p.add_argument("--resume", action="store_true")
    p.add_argument("--batch", type=int, default=None, help=f"default {GanConfig.batch}")
    p.add_argument("--r1-gamma", type=float, default=None, help=f"default {GanConfig.r1_gamma}")
    p.add_argument("--recon-l1", type=float, default=None, help="weight of the L1 to the caption's picture "
                   f"(default {GanConfig.recon_l1})")
    p.add_argument("--recon-size", type=int, default=None, help="compare at this size (default 0 = full)")
    p.add_argument("--recon-grad", type=float, default=None,
                   help="weight of the L1 between image gradients (edges) of G(z, c) and the caption's picture "
                        f"(default {GanConfig.recon_grad})")
    p.add_argument("--adversarial", action=argparse.BooleanOptionalAction, default=None,
                   help="train D and use its loss for G (default on; --no-adversarial = regression only)")
    p.add_argument("--imle-k", type=int, default=None,
                   help="conditional IMLE: pick z for each real image among this many draws, the nearest G(z, c) "
                        f"(default {GanConfig.imle_k} = z at random)")
    p.add_argument("--imle-size", type=int, default=None, help=f"IMLE's distance resolution (default {GanConfig.imle_size})")
    p.add_argument("--precision", choices=("fp32", "bf16"), default=None, help="default fp32")
    p.add_argument("--lr", type=float, default=None, help=f"G and D learning rate (default {GanConfig.g_lr})")
    p.add_argument("--mapping-lr-scale", type=float, default=None,
                   help=f"G's mapping MLP learns at lr times this (default {GanConfig.mapping_lr_scale})")
    p.add_argument("--init-g", type=Path, default=None, help="start G from this exported generator folder")
    p.add_argument("--max-minutes", type=float, default=None, help="stop (and checkpoint) after this long")
    p.add_argument("--checkpoint-every", type=int, default=500)
    p.add_argument("--limit", type=int, default=None, help="use only the first N items (tests)")
    p.add_argument("--device", default="auto")
    p.add_argument("--export", type=Path, default=None, help="write G_ema here (generator.safetensors + config.json)")
    p.add_argument("--export-only", action="store_true", help="export the checkpoint in --out without training")
    p.add_argument("--samples", type=Path, default=None,
                   help=f"after --export, write a PNG of {len(SAMPLE_PROMPTS)} prompts x 6 seeds (psi 1) from it")
    args = p.parse_args(argv)
    if args.samples is not None and args.export is None:
        p.error("--samples draws from the exported generator: give --export too")

    device = pick_device(args.device)
    if args.export_only:
        state, cfg = load_checkpoint(args.out / CHECKPOINT, torch.device("cpu"))
    else:
        # Loss, batch and lr flags given on the command line also apply to a resumed run; unset ones keep its config.
        given = {k: v for k, v in {"r1_gamma": args.r1_gamma, "recon_l1": args.recon_l1, "recon_size": args.recon_size,
                                   "recon_grad": args.recon_grad,
                                   "adversarial": args.adversarial, "precision": args.precision,
                                   "batch": args.batch, "g_lr": args.lr, "d_lr": args.lr,
                                   "mapping_lr_scale": args.mapping_lr_scale, "imle_k": args.imle_k,
                                   "imle_size": args.imle_size}.items()
                 if v is not None}
        cfg = GanConfig(**given)
        t0 = time.time()
        state = train(args.data, args.clip, args.out, args.steps, resume=args.resume, cfg=cfg, device=device,
                      max_minutes=args.max_minutes, checkpoint_every=args.checkpoint_every, limit=args.limit,
                      init_g=args.init_g, overrides=given)
        cfg = GanConfig(**torch.load(args.out / CHECKPOINT, weights_only=True, map_location="cpu")["config"])
        last = state.history[-1] if state.history else {}
        print(json.dumps({"step": state.step, "kimg": state.nimg / 1000, "seconds": round(time.time() - t0, 1),
                          "device": str(device), **{k: round(v, 4) for k, v in last.items() if k != "step"}}))
    if args.export is not None:
        G_ema = state.G_ema.cpu().float()
        conditioning = {"c": C_MEANING, "clip": str(args.clip),
                        "steps": state.step, "kimg": state.nimg / 1000, "data": str(args.data)}
        path = export_generator(G_ema, cfg, args.export, conditioning)
        print(f"exported {path} ({path.stat().st_size / 1e6:.1f} MB)")
        if args.samples is not None:
            print(f"wrote {prompt_samples(args.export, args.clip, args.samples)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
