"""The judge: a small CNN that names which concept an image shows, and (optionally) in which art style.

It is trained on the real images only (with augmentations), independently of the CLIP used for
guidance, so scoring generated images with it does not reward a generator for fooling its own
guide. Its penultimate features also serve as the embedding for FID, precision/recall and diversity
(as Inception features do in Heusel et al. 2017, "GANs Trained by a Two Time-Scale Update Rule...").

On dataset v2 (one concept in several art sets) there is one class per concept id over every split
(the judge is independent of the generators, so held-out concepts are classes too), and a second
linear head on the same features names the art set. The style head trains only on concepts of the
'train' split, and its accuracy is measured on the real images of the held-out concepts, which it
never saw (`style_accuracy_heldout`): the figure that says how far its style calls on generated
images can be trusted.

    python -m app.train.judge --data data/emoji --out models/judge --epochs 40
    python -m app.train.judge --data data/emoji --out runs/judge --init models/judge --minutes 15 --lr 1e-3

writes `judge.safetensors` + `judge.json` (architecture, the concept ids, the styles, accuracies).
"""

from __future__ import annotations

import argparse
import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

WEIGHTS_NAME = "judge.safetensors"
CONFIG_NAME = "judge.json"


@dataclass
class JudgeConfig:
    num_classes: int
    channels: tuple[int, ...] = (32, 64, 128, 256, 256)  # the first is a stride-2 stem
    feature_dim: int = 256
    image_size: int = 64
    ids: list[str] = field(default_factory=list)
    styles: list[str] = field(default_factory=list)  # the style head's classes; empty = no style head


def _block(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False), nn.BatchNorm2d(cout), nn.SiLU())


def conv_blocks(channels: tuple[int, ...]) -> nn.ModuleList:
    """A stride-2 stem then conv-BN-SiLU blocks, RGB in: the trunk of the judge and the style classifier."""
    chans = (3, *channels)
    return nn.ModuleList(_block(a, b, 2 if i == 0 else 1) for i, (a, b) in enumerate(zip(chans[:-1], chans[1:])))


def trunk_maps(blocks: nn.ModuleList, images: torch.Tensor, image_size: int) -> torch.Tensor:
    """images [B,3,H,W] in [0,1] -> the last block's feature maps, 2x average pooling between the inner blocks."""
    x = images * 2 - 1
    if x.shape[-1] != image_size:
        x = F.interpolate(x, size=(image_size,) * 2, mode="bilinear", antialias=True, align_corners=False)
    for i, block in enumerate(blocks):
        x = block(x)
        if 0 < i < len(blocks) - 1:
            x = F.avg_pool2d(x, 2)
    return x


def budget_progress(step: int, steps: int, started: float, budget_s: float | None) -> float:
    """Training progress in [0, 1+): the larger of the step fraction and the time-budget fraction."""
    return max(step / steps, (time.time() - started) / budget_s if budget_s else 0.0)


class Judge(nn.Module):
    """A stride-2 stem, conv blocks each followed by 2x pooling, global average pool, features, head."""

    def __init__(self, cfg: JudgeConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.blocks = conv_blocks(cfg.channels)
        self.feature = nn.Linear(cfg.channels[-1], cfg.feature_dim)
        self.head = nn.Linear(cfg.feature_dim, cfg.num_classes)
        self.style_head = nn.Linear(cfg.feature_dim, len(cfg.styles)) if cfg.styles else None

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """images [B,3,H,W] in [0,1] -> features [B, feature_dim]."""
        x = trunk_maps(self.blocks, images, self.cfg.image_size)
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
def predict(judge: Judge, images: np.ndarray | torch.Tensor, batch: int = 256, with_styles: bool = False):
    """uint8 [N,H,W,3] (or float [N,3,H,W] in [0,1]) -> (logits [N,C], features [N,D]) on CPU.

    With `with_styles`, (logits, features, style logits [N, len(styles)] or None without a style head).
    """
    judge.eval()
    dev = next(judge.parameters()).device
    logits, feats, style = [], [], []
    for i in range(0, len(images), batch):
        chunk = images[i:i + batch]
        x = to_float(chunk) if (isinstance(chunk, np.ndarray) or chunk.dtype == torch.uint8) else chunk
        f = judge.features(x.to(dev))
        feats.append(f.cpu())
        logits.append(judge.head(f).cpu())
        if judge.style_head is not None:
            style.append(judge.style_head(f).cpu())
    empty = torch.zeros(0, judge.cfg.feature_dim)
    logits_t = torch.cat(logits) if logits else torch.zeros(0, judge.cfg.num_classes)
    feats_t = torch.cat(feats) if feats else empty
    if not with_styles:
        return logits_t, feats_t
    style_t = None if judge.style_head is None else (torch.cat(style) if style else torch.zeros(0, len(judge.cfg.styles)))
    return logits_t, feats_t, style_t


def _augmented_chunks(images: np.ndarray, augmented: bool, seed: int, batch: int = 256):
    gen = torch.Generator().manual_seed(seed)
    for i in range(0, len(images), batch):
        x = to_float(images[i:i + batch])
        yield augment(x, gen) if augmented else x


def accuracy(judge: Judge, images: np.ndarray, labels: np.ndarray, augmented: bool = False, seed: int = 1234) -> float:
    """Concept top-1 accuracy on real images, clean or under one fixed draw of augmentations."""
    if len(images) == 0:
        return float("nan")
    logits = torch.cat([predict(judge, x)[0] for x in _augmented_chunks(images, augmented, seed)])
    return float((logits.argmax(1).numpy() == np.asarray(labels)).mean())


def style_accuracy(judge: Judge, images: np.ndarray, styles: Sequence[str]) -> float:
    """Top-1 accuracy of the style head on real images whose art sets are `styles` (nan if none or no head)."""
    if judge.style_head is None or len(images) == 0:
        return float("nan")
    style_logits = predict(judge, images, with_styles=True)[2]
    names = np.array(judge.cfg.styles)[style_logits.argmax(1).numpy()]
    return float((names == np.asarray(styles)).mean())


def concept_labels(ids: Sequence[str]) -> tuple[list[str], np.ndarray]:
    """Row ids (a concept repeated across its styles) -> (unique ids in first-seen order, class of each row)."""
    classes = list(dict.fromkeys(ids))
    index = {c: i for i, c in enumerate(classes)}
    return classes, np.array([index[i] for i in ids], dtype=np.int64)


def transfer(src: Judge, cfg: JudgeConfig) -> Judge:
    """A judge for `cfg` that starts from `src`: the trunk is copied, and each head row whose concept id
    (or style) `src` also names; the other rows keep their fresh random init. Architectures must match."""
    dst = Judge(cfg)
    own = dst.state_dict()
    trunk = {k: v for k, v in src.state_dict().items() if not k.startswith(("head.", "style_head."))}
    bad = [k for k, v in trunk.items() if k not in own or own[k].shape != v.shape]
    if bad:
        raise ValueError(f"--init judge has another architecture ({bad[:3]}...)")
    dst.load_state_dict(trunk, strict=False)
    with torch.no_grad():
        for name, new, old in (("head", cfg.ids, src.cfg.ids), ("style_head", cfg.styles, src.cfg.styles)):
            src_head, dst_head = getattr(src, name), getattr(dst, name)
            if src_head is None or dst_head is None:
                continue
            where = {c: i for i, c in enumerate(old)}
            pairs = [(i, where[c]) for i, c in enumerate(new) if c in where]
            if pairs:
                to, frm = torch.tensor(pairs).T
                dst_head.weight[to] = src_head.weight[frm]
                dst_head.bias[to] = src_head.bias[frm]
    return dst


def lr_at(progress: float, peak: float, warmup: float = 0.1) -> float:
    """One-cycle learning rate (Smith & Topin 2019) at training progress in [0, 1]: linear warm-up from
    peak/25, then cosine annealing to ~0."""
    if progress < warmup:
        return peak * (0.04 + 0.96 * progress / warmup)
    t = min(1.0, (progress - warmup) / max(1e-8, 1 - warmup))
    return peak * (1e-4 + (1 - 1e-4) * 0.5 * (1 + math.cos(math.pi * t)))


def train_judge(images: np.ndarray, ids: Sequence[str], *, styles: Sequence[str] | None = None,
                style_rows: np.ndarray | None = None, init: Judge | None = None, minutes: float | None = None,
                epochs: int = 40, batch: int = 128, lr: float = 2e-3, seed: int = 0,
                device: torch.device | None = None, log: Callable[[str], None] = print,
                record: dict | None = None) -> Judge:
    """Train on every real image (one class per concept id) under fresh augmentations each epoch.

    `styles` (one art set per row) adds the style head, trained only on rows where `style_rows` is True
    (default all). `init` starts from another judge (see `transfer`). With `minutes`, training ends
    when the time is spent (or after `epochs`, whichever comes first), and the learning-rate schedule
    follows whichever of the two budgets is further along. `record`, if given, receives the steps and
    epochs actually run.
    """
    device = device or torch.device("cpu")
    torch.manual_seed(seed)
    classes, labels = concept_labels(ids)
    style_names = sorted(set(styles)) if styles is not None else []
    cfg = JudgeConfig(num_classes=len(classes), ids=classes, styles=style_names)
    if init is not None:
        cfg.channels, cfg.feature_dim, cfg.image_size = init.cfg.channels, init.cfg.feature_dim, init.cfg.image_size
        judge = transfer(init.cpu(), cfg)
    else:
        judge = Judge(cfg)
    judge = judge.to(device)
    opt = torch.optim.AdamW(judge.parameters(), lr=lr, weight_decay=5e-4)
    n = len(labels)
    y_all = torch.as_tensor(labels)
    s_index = {s: i for i, s in enumerate(style_names)}
    s_all = torch.tensor([s_index[s] for s in styles]) if styles is not None else None
    s_mask = torch.ones(n, dtype=torch.bool) if style_rows is None else torch.as_tensor(np.asarray(style_rows, bool))
    steps = max(1, epochs * math.ceil(n / batch))
    budget = minutes * 60 if minutes else None
    step, t0 = 0, time.time()
    for epoch in range(epochs):
        judge.train()
        perm = torch.randperm(n)
        total, correct, loss_sum, done = 0, 0, 0.0, False
        for i in range(0, n, batch):
            progress = budget_progress(step, steps, t0, budget)
            if progress >= 1:
                done = True
                break
            for group in opt.param_groups:
                group["lr"] = lr_at(progress, lr)
            idx = perm[i:i + batch]
            x = augment(to_float(images[idx.numpy()]).to(device))
            y = y_all[idx].to(device)
            f = judge.features(x)
            logits = judge.head(f)
            loss = F.cross_entropy(logits, y, label_smoothing=0.1)
            if judge.style_head is not None and s_all is not None:
                m = s_mask[idx].to(device)
                if m.any():
                    loss = loss + F.cross_entropy(judge.style_head(f[m]), s_all[idx].to(device)[m], label_smoothing=0.1)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
            loss_sum += float(loss.detach()) * len(idx)
            correct += int((logits.argmax(1) == y).sum())
            total += len(idx)
        if total:
            log(f"epoch {epoch + 1}/{epochs} loss {loss_sum / total:.3f} train-aug acc {correct / total:.3f} "
                f"{time.time() - t0:.0f}s" + (" (time budget spent)" if done else ""))
        if done:
            break
    if record is not None:
        record.update(steps=step, epochs_run=epoch + 1 if epochs else 0)
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
    from app.train.data import load_records

    p = argparse.ArgumentParser(prog="python -m app.train.judge", description=__doc__.splitlines()[0])
    p.add_argument("--data", default="data/emoji")
    p.add_argument("--out", type=Path, default=Path("models/judge"))
    p.add_argument("--epochs", type=int, default=40)
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu")
    p.add_argument("--init", default=None, help="start from this judge folder (same architecture)")
    p.add_argument("--minutes", type=float, default=None, help="training time budget (the final scoring is extra)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    rec = load_records(args.data)
    split = np.asarray(rec.split)
    multi_style = len(set(rec.styles)) > 1
    t0, run = time.time(), {}
    judge = train_judge(rec.images, rec.ids, styles=rec.styles if multi_style else None, style_rows=split == "train",
                        init=load_judge(args.init) if args.init else None, minutes=args.minutes, epochs=args.epochs,
                        batch=args.batch, lr=args.lr, seed=args.seed, device=torch.device(args.device), record=run)
    train_seconds = time.time() - t0
    _, labels = concept_labels(rec.ids)
    held = split == "heldout"
    styles = np.asarray(rec.styles)
    logits, _, style_logits = predict(judge, rec.images, with_styles=True)  # one clean pass serves every figure
    hit = logits.argmax(1).numpy() == labels
    style_hit = (np.asarray(judge.cfg.styles)[style_logits.argmax(1).numpy()] == styles
                 if style_logits is not None else np.zeros(0, bool))

    def mean(mask: np.ndarray, values: np.ndarray = hit) -> float:
        return float(values[mask].mean()) if values.size and mask.any() else float("nan")

    stats = {
        "accuracy_real": mean(np.ones_like(held)),
        "accuracy_real_augmented": accuracy(judge, rec.images, labels, augmented=True),
        "accuracy_real_by_style": {s: mean(styles == s) for s in sorted(set(rec.styles))},
        "accuracy_real_heldout_concepts": mean(held),
        "style_accuracy_train": mean(~held, style_hit),
        "style_accuracy_heldout": mean(held, style_hit),
        "images": len(rec.ids), "heldout_images": int(held.sum()), "concepts": judge.cfg.num_classes,
        "train_seconds": round(train_seconds, 1), **run, "epochs": args.epochs, "minutes": args.minutes, "lr": args.lr,
        "init": args.init, "data": str(args.data), "device": args.device,
    }
    stats = {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in stats.items()}
    save_judge(judge.cpu(), args.out, {"stats": stats, "style_accuracy_heldout": stats["style_accuracy_heldout"]})
    print(json.dumps(stats))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
