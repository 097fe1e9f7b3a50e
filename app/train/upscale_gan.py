"""Training of the embedded GAN upscaler: RRDBNet x4 (app/upscale/rrdbnet.py) on the 256 px emoji renders.

ESRGAN's recipe (Wang et al. 2018, §4.1) at a CPU's scale: first a PSNR-oriented phase (L1 plus a
small perceptual term), then the adversarial phase adds a relativistic-free, plain BCE GAN loss
(Real-ESRGAN, Wang et al. 2021, uses the same non-saturating loss with weight 0.1) from a small
spectral-normalised patch discriminator. The perceptual term is the judge-feature distance of
app/train/perceptual.py (LPIPS form), standing in for VGG features. Low-resolution inputs come from
app/train/sr_data.degrade. EMA weights are what ships (Real-ESRGAN's `params_ema`).

    python -m app.train.upscale_gan --data data/emoji256 --out runs/sr_gan --minutes 70 --resume
"""

from __future__ import annotations

import argparse
import copy
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from app.train.common import (
    RunLog,
    ema_update,
    load_checkpoint,
    lr_at,
    print_summary,
    run_steps,
    save_checkpoint,
    seed_all,
)
from app.train.judge import load_judge
from app.train.perceptual import perceptual_distance
from app.train.sr_data import degrade, load_hr, random_crops
from app.upscale.rrdbnet import RRDBConfig, RRDBNet

SMALL = RRDBConfig(scale=4, num_feat=32, num_block=3, num_grow_ch=16, base="bicubic")
TINY = RRDBConfig(scale=4, num_feat=8, num_block=1, num_grow_ch=4, base="bicubic")


class PatchDiscriminator(nn.Module):
    """Strided convs with spectral norm (Miyato et al. 2018) -> a map of real/fake logits."""

    def __init__(self, channels: tuple[int, ...] = (32, 64, 128)) -> None:
        super().__init__()
        sn = nn.utils.spectral_norm
        layers, cin = [], 3
        for c in channels:
            layers += [sn(nn.Conv2d(cin, c, 4, 2, 1)), nn.LeakyReLU(0.2)]
            cin = c
        layers += [sn(nn.Conv2d(cin, cin, 3, 1, 1)), nn.LeakyReLU(0.2), nn.Conv2d(cin, 1, 3, 1, 1)]
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x * 2 - 1)


def train_gan_upscaler(data: str, out: Path, judge_folder: Path | None, *, steps: int = 4000, batch: int = 8,
                       crop: int = 128, lr: float = 2e-4, gan_from: float = 0.5, w_perceptual: float = 0.1,
                       w_gan: float = 0.01, minutes: float | None = None, resume: bool = False,
                       cfg: RRDBConfig = SMALL, seed: int = 0, threads: int | None = None) -> dict:
    """Train and checkpoint; writes out/model/ (EMA generator, safetensors + config.json).

    gan_from: the fraction of the run (steps or time, whichever is nearer its end) after which the
    adversarial loss is on."""
    if threads:
        torch.set_num_threads(threads)
    seed_all(seed)
    out = Path(out)
    hr = load_hr(data, "train").images
    judge = load_judge(judge_folder).requires_grad_(False) if judge_folder else None
    net = RRDBNet(cfg).train()
    if cfg.base != "none":  # start from the interpolated picture itself: a near-zero residual
        with torch.no_grad():
            net.conv_last.weight.mul_(0.01)
            net.conv_last.bias.zero_()
    ema = copy.deepcopy(net).eval().requires_grad_(False)
    disc = PatchDiscriminator()
    opt_g = torch.optim.Adam(net.parameters(), lr=lr, betas=(0.9, 0.99))
    opt_d = torch.optim.Adam(disc.parameters(), lr=lr, betas=(0.9, 0.99))
    state = load_checkpoint(out) if resume else None
    start = 0
    if state is not None:
        net.load_state_dict(state["model"])
        ema.load_state_dict(state["ema"])
        disc.load_state_dict(state["disc"])
        opt_g.load_state_dict(state["opt"])
        opt_d.load_state_dict(state["opt_d"])
        start = int(state["step"])
    gen = torch.Generator().manual_seed(seed + start)
    log = RunLog(out)
    bce = F.binary_cross_entropy_with_logits

    def step_fn(step: int, progress: float) -> float:
        rate = lr_at(step, progress, lr, warmup=100)
        for opt in (opt_g, opt_d):
            for g in opt.param_groups:
                g["lr"] = rate
        target, _ = random_crops(hr, crop, batch, gen)
        with torch.no_grad():
            low = degrade(target, gen)
        fake = net(low).clamp(0, 1)
        l1 = (fake - target).abs().mean()
        loss = l1
        perc = torch.zeros(())
        if judge is not None and w_perceptual > 0:
            perc = perceptual_distance(judge, fake, target).mean()
            loss = loss + w_perceptual * perc
        adv = progress >= gan_from and w_gan > 0
        g_adv = torch.zeros(())
        if adv:
            logits = disc(fake)
            g_adv = bce(logits, torch.ones_like(logits))
            loss = loss + w_gan * g_adv
        opt_g.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
        opt_g.step()
        ema_update(ema, net, step, decay=0.999)
        if adv:
            real_logits, fake_logits = disc(target), disc(fake.detach())
            d_loss = bce(real_logits, torch.ones_like(real_logits)) + bce(fake_logits, torch.zeros_like(fake_logits))
            opt_d.zero_grad(set_to_none=True)
            d_loss.backward()
            opt_d.step()
        if step % 25 == 0:
            log.write(step, l1=float(l1.detach()), perceptual=float(perc.detach()), g_adv=float(g_adv.detach()), lr=rate)
        return float(loss.detach())

    def save_fn(step: int) -> None:
        save_checkpoint(out, {"model": net.state_dict(), "ema": ema.state_dict(), "disc": disc.state_dict(),
                              "opt": opt_g.state_dict(), "opt_d": opt_d.state_dict(), "step": step})
        save_rrdbnet(ema, out / "model")

    end = run_steps(step_fn, start=start, steps=steps, minutes=minutes, save_fn=save_fn, log=log,
                    every=25, save_every=100, desc="sr-gan")
    return {"steps": end, "losses": log.losses, "folder": str(out / "model")}


def save_rrdbnet(net: RRDBNet, folder: Path, dtype: torch.dtype = torch.float32) -> Path:
    """A folder the runtime loads (app/upscale/gan.py): model.safetensors + config.json."""
    from app.upscale.gan import save_folder

    return save_folder(net, folder, dtype)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m app.train.upscale_gan", description=__doc__.splitlines()[0])
    p.add_argument("--data", default="data/emoji256")
    p.add_argument("--out", type=Path, default=Path("runs/sr_gan"))
    p.add_argument("--judge", default="models/judge", help="for the perceptual loss ('' = none)")
    p.add_argument("--steps", type=int, default=4000)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--crop", type=int, default=128, help="high-resolution crop side (the input is a quarter)")
    p.add_argument("--lr", type=float, default=2e-4)
    p.add_argument("--gan-from", type=float, default=0.5, help="fraction of the run before the GAN loss starts")
    p.add_argument("--w-perceptual", type=float, default=0.1)
    p.add_argument("--w-gan", type=float, default=0.01)
    p.add_argument("--minutes", type=float, default=None)
    p.add_argument("--resume", action="store_true")
    p.add_argument("--tiny", action="store_true")
    p.add_argument("--threads", type=int, default=None)
    a = p.parse_args(argv)
    t0 = time.time()
    result = train_gan_upscaler(a.data, a.out, Path(a.judge) if a.judge else None, steps=a.steps, batch=a.batch,
                                crop=a.crop, lr=a.lr, gan_from=a.gan_from, w_perceptual=a.w_perceptual,
                                w_gan=a.w_gan, minutes=a.minutes, resume=a.resume, cfg=TINY if a.tiny else SMALL,
                                threads=a.threads)
    print_summary(result, t0)
    return 0


if __name__ == "__main__":
    sys.exit(main())
