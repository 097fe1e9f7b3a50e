"""The judge: a small CNN that names which dataset item an image shows.

It is trained on the real images only (with augmentations), independently of the CLIP used for
guidance, so scoring generated images with it does not reward a generator for fooling its own
guide. Its penultimate features also serve as the embedding for FID and diversity (as Inception
features do in Heusel et al. 2017, "GANs Trained by a Two Time-Scale Update Rule...").

    python -m app.train.judge --data data/emoji --out models/judge --epochs 40

writes `judge.safetensors` + `judge.json` (architecture, the item ids, accuracies).
"""

from __future__ import annotations

import argparse
import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

WEIGHTS_NAME = "judge.safetensors"
CONFIG_NAME = "judge.json"


@dataclass
class JudgeConfig:
    num_classes: int
    channels: tuple[int, ...] = (32, 64, 128, 256, 256)  # the first is a stride-2 stem
    feature_dim: int = 256
    image_size: int = 64
    ids: list[str] = field(default_factory=list)


def _block(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False), nn.BatchNorm2d(cout), nn.SiLU())


class Judge(nn.Module):
    """A stride-2 stem, conv blocks each followed by 2x pooling, global average pool, features, head."""

    def __init__(self, cfg: JudgeConfig) -> None:
        super().__init__()
        self.cfg = cfg
        chans = (3, *cfg.channels)
        self.blocks = nn.ModuleList(_block(a, b, 2 if i == 0 else 1) for i, (a, b) in enumerate(zip(chans[:-1], chans[1:])))
        self.feature = nn.Linear(chans[-1], cfg.feature_dim)
        self.head = nn.Linear(cfg.feature_dim, cfg.num_classes)

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """images [B,3,H,W] in [0,1] -> features [B, feature_dim]."""
        x = images * 2 - 1
        if x.shape[-1] != self.cfg.image_size:
            x = F.interpolate(x, size=(self.cfg.image_size,) * 2, mode="bilinear", antialias=True, align_corners=False)
        for i, block in enumerate(self.blocks):
            x = block(x)
            if 0 < i < len(self.blocks) - 1:
                x = F.avg_pool2d(x, 2)
        return F.silu(self.feature(x.mean(dim=(2, 3))))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(images))


def to_float(images: np.ndarray | torch.Tensor) -> torch.Tensor:
    """uint8 [B,H,W,3] -> float [B,3,H,W] in [0,1]."""
    t = torch.as_tensor(images)
    return t.permute(0, 3, 1, 2).float().div(255)


def augment(x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Random scale/shift/small rotation on a white background, brightness/contrast, blur, noise.

    No flips and no hue changes: mirrored arrows and skin tones are different items.
    """
    b = x.shape[0]
    dev = x.device

    def rand(*shape: int) -> torch.Tensor:
        return torch.rand(*shape, generator=generator).to(dev)

    scale = 0.8 + 0.35 * rand(b)
    angle = (rand(b) - 0.5) * (2 * math.pi * 12 / 360)
    shift = (rand(b, 2) - 0.5) * 0.25
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    theta = torch.stack([torch.stack([cos, -sin, shift[:, 0]], 1), torch.stack([sin, cos, shift[:, 1]], 1)], 1)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    x = 1 - F.grid_sample(1 - x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    bright = (rand(b, 1, 1, 1) - 0.5) * 0.2
    contrast = 0.8 + 0.4 * rand(b, 1, 1, 1)
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    x = (x - mean) * contrast + mean + bright
    blur = rand(b) < 0.3
    if blur.any():
        k = torch.tensor([1.0, 2.0, 1.0], device=dev)
        k = (k[:, None] * k[None, :] / 16).expand(3, 1, 3, 3)
        x = torch.where(blur[:, None, None, None], F.conv2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), k, groups=3), x)
    x = x + 0.03 * rand(b, 1, 1, 1) * torch.randn(x.shape, generator=generator).to(dev)
    return x.clamp(0, 1)


@torch.no_grad()
def predict(judge: Judge, images: np.ndarray | torch.Tensor, batch: int = 256) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 [N,H,W,3] (or float [N,3,H,W] in [0,1]) -> (logits [N,C], features [N,D]) on CPU."""
    judge.eval()
    dev = next(judge.parameters()).device
    logits, feats = [], []
    for i in range(0, len(images), batch):
        chunk = images[i:i + batch]
        x = to_float(chunk) if (isinstance(chunk, np.ndarray) or chunk.dtype == torch.uint8) else chunk
        f = judge.features(x.to(dev))
        feats.append(f.cpu())
        logits.append(judge.head(f).cpu())
    return torch.cat(logits), torch.cat(feats)


def accuracy(judge: Judge, images: np.ndarray, labels: np.ndarray, augmented: bool = False, seed: int = 1234) -> float:
    """Top-1 accuracy on real images, clean or under one fixed draw of augmentations."""
    x = to_float(images)
    if augmented:
        x = augment(x, torch.Generator().manual_seed(seed))
    logits, _ = predict(judge, x)
    return float((logits.argmax(1).numpy() == labels).mean())


def train_judge(images: np.ndarray, ids: list[str], *, epochs: int = 40, batch: int = 128, lr: float = 2e-3,
                seed: int = 0, device: torch.device | None = None, log=print) -> Judge:
    """Train on every real image (one class per item) under fresh augmentations each epoch."""
    device = device or torch.device("cpu")
    torch.manual_seed(seed)
    judge = Judge(JudgeConfig(num_classes=len(ids), ids=list(ids))).to(device)
    opt = torch.optim.AdamW(judge.parameters(), lr=lr, weight_decay=5e-4)
    x_all = to_float(images)
    y_all = torch.arange(len(ids))
    steps = epochs * math.ceil(len(ids) / batch)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.1)
    t0 = time.time()
    for epoch in range(epochs):
        judge.train()
        perm = torch.randperm(len(ids))
        total, correct, loss_sum = 0, 0, 0.0
        for i in range(0, len(ids), batch):
            idx = perm[i:i + batch]
            x = augment(x_all[idx].to(device))
            y = y_all[idx].to(device)
            logits = judge(x)
            loss = F.cross_entropy(logits, y, label_smoothing=0.1)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            loss_sum += float(loss.detach()) * len(idx)
            correct += int((logits.argmax(1) == y).sum())
            total += len(idx)
        log(f"epoch {epoch + 1}/{epochs} loss {loss_sum / total:.3f} train-aug acc {correct / total:.3f} "
            f"{time.time() - t0:.0f}s")
    return judge.eval()


def save_judge(judge: Judge, folder: Path, extra: dict | None = None) -> None:
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    tensors = {k: (v.half() if v.is_floating_point() else v).detach().cpu().contiguous() for k, v in judge.state_dict().items()}
    save_file(tensors, str(folder / WEIGHTS_NAME))  # fp16 storage; loads into the float32 module
    cfg = asdict(judge.cfg) | {"channels": list(judge.cfg.channels)} | (extra or {})
    (folder / CONFIG_NAME).write_text(json.dumps(cfg) + "\n")


def load_judge(folder: str | Path, device: torch.device | None = None) -> Judge:
    from safetensors.torch import load_file

    folder = Path(folder)
    raw = json.loads((folder / CONFIG_NAME).read_text())
    keys = JudgeConfig.__dataclass_fields__
    cfg = JudgeConfig(**{k: (tuple(v) if k == "channels" else v) for k, v in raw.items() if k in keys})
    judge = Judge(cfg)
    judge.load_state_dict(load_file(str(folder / WEIGHTS_NAME)))
    return judge.to(device or torch.device("cpu")).eval()


def main(argv: list[str] | None = None) -> int:
    from app.train.data import load_dataset

    p = argparse.ArgumentParser(prog="python -m app.train.judge", description=__doc__.splitlines()[0])
    p.add_argument("--data", default="data/emoji")
    p.add_argument("--out", type=Path, default=Path("models/judge"))
    p.add_argument("--epochs", type=int, default=40)
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu")
    args = p.parse_args(argv)
    images, _, ids = load_dataset(args.data)
    t0 = time.time()
    judge = train_judge(images, ids, epochs=args.epochs, batch=args.batch, lr=args.lr, seed=args.seed,
                        device=torch.device(args.device))
    labels = np.arange(len(ids))
    stats = {
        "accuracy_real": accuracy(judge, images, labels),
        "accuracy_real_augmented": accuracy(judge, images, labels, augmented=True),
        "train_seconds": round(time.time() - t0, 1), "epochs": args.epochs, "data": str(args.data),
        "device": args.device,
    }
    save_judge(judge.cpu(), args.out, {"stats": stats})
    print(json.dumps(stats))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
