"""The style classifier: a small CNN that names an image's art style (noto, twemoji, fluent-flat, ...).

Style coverage (app/train/evaluate.py) asks how many art styles a generator draws among the seeds of
one prompt; the judge's linear style head, sharing features trained to name concepts, was too weak to
trust for that. This network looks only at style: a stride-2 stem, conv + BatchNorm + SiLU blocks with
2x average pooling between them, then the mean AND the standard deviation of the last feature map
over space (style is a texture statistic: flat fills versus gradients, outlines, shading) into one
linear layer. It trains on the real images of the 'train' split's concepts under light augmentation
(whole-pixel shifts on white, a mild zoom, horizontal flips: none of them blurs a flat fill into a
gradient), and its accuracy is measured on the real images of the held-out concepts, which it never saw.

    python -m app.train.style_classifier --data data/emoji --out runs/style --minutes 6 --threads 1

writes `style.safetensors` + `style.json` (architecture, style names, accuracies, the command).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from app.train.judge import budget_progress, conv_blocks, lr_at, to_float, trunk_maps

WEIGHTS_NAME = "style.safetensors"
CONFIG_NAME = "style.json"


@dataclass
class StyleConfig:
    styles: list[str] = field(default_factory=list)  # the classes, sorted
    channels: tuple[int, ...] = (16, 32, 64, 128, 160)  # the first is a stride-2 stem
    image_size: int = 64


class StyleClassifier(nn.Module):
    """Stem (stride 2), conv blocks with 2x pooling between them, mean + std pooling, a linear head."""

    def __init__(self, cfg: StyleConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.blocks = conv_blocks(cfg.channels)
        self.head = nn.Linear(2 * cfg.channels[-1], len(cfg.styles))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """images [B,3,H,W] in [0,1] -> style logits [B, len(styles)]."""
        x = trunk_maps(self.blocks, images, self.cfg.image_size)
        pooled = torch.cat([x.mean(dim=(2, 3)), x.flatten(2).std(dim=2)], dim=1)
        return self.head(pooled)


def parameter_count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def augment_styles(x: torch.Tensor, generator: torch.Generator | None = None, max_shift: int = 6,
                   zoom: float = 0.1, zoom_p: float = 0.3) -> torch.Tensor:
    """Style-preserving augmentation of [B,3,H,W] in [0,1] on white: a horizontal flip (p 0.5), a
    whole-pixel shift of up to `max_shift` (no resampling), and for a `zoom_p` share a bilinear zoom
    of up to +-`zoom`."""
    b, _, h, w = x.shape

    def rand(*shape: int) -> torch.Tensor:
        return torch.rand(*shape, generator=generator)

    flip = rand(b) < 0.5
    x = torch.where(flip[:, None, None, None].to(x.device), x.flip(-1), x)
    padded = F.pad(x, (max_shift,) * 4, value=1.0)
    offsets = (rand(b, 2) * (2 * max_shift + 1)).long().clamp(max=2 * max_shift)
    x = torch.stack([padded[i, :, dy:dy + h, dx:dx + w] for i, (dy, dx) in enumerate(offsets.tolist())])
    zoomed = rand(b) < zoom_p
    if zoomed.any():
        scale = 1 + (rand(b) * 2 - 1) * zoom
        theta = torch.zeros(b, 2, 3)
        theta[:, 0, 0] = theta[:, 1, 1] = 1 / scale
        grid = F.affine_grid(theta.to(x.device), list(x.shape), align_corners=False)
        z = 1 - F.grid_sample(1 - x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
        x = torch.where(zoomed[:, None, None, None].to(x.device), z, x)
    return x.clamp(0, 1)


@torch.no_grad()
def predict_styles(model: StyleClassifier, images: np.ndarray | torch.Tensor, batch: int = 256) -> torch.Tensor:
    """uint8 [N,H,W,3] -> LongTensor [N] of indices into model.cfg.styles (on CPU)."""
    model.eval()
    dev = next(model.parameters()).device
    out = [model(to_float(images[i:i + batch]).to(dev)).argmax(1).cpu() for i in range(0, len(images), batch)]
    return torch.cat(out) if out else torch.zeros(0, dtype=torch.long)


def style_accuracies(model: StyleClassifier, images: np.ndarray, styles: Sequence[str]) -> dict:
    """{"accuracy": top-1 over all rows, "per_style": {style: top-1}} (nan where there are no rows)."""
    truth = np.asarray(styles)
    named = np.asarray(model.cfg.styles)[predict_styles(model, images).numpy()] if len(truth) else truth
    hit = named == truth

    def mean(mask: np.ndarray) -> float:
        return float(hit[mask].mean()) if mask.any() else float("nan")

    return {"accuracy": mean(np.ones(len(truth), bool)),
            "per_style": {s: mean(truth == s) for s in sorted(set(model.cfg.styles) | set(truth.tolist()))}}


def fit(images: np.ndarray, styles: Sequence[str], *, cfg: StyleConfig | None = None, minutes: float | None = None,
        epochs: int = 30, batch: int = 64, lr: float = 3e-3, seed: int = 0, device: torch.device | None = None,
        log: Callable[[str], None] = print, record: dict | None = None) -> StyleClassifier:
    """Train on images [N,64,64,3] uint8 labelled by `styles` under fresh augmentation each epoch.

    With `minutes`, training stops when the time is spent or after `epochs`, whichever comes first, and
    the one-cycle learning rate follows whichever budget is further along. `record` receives the steps,
    epochs run and seconds.
    """
    device = device or torch.device("cpu")
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    names = sorted(set(styles))
    cfg = cfg or StyleConfig()
    cfg.styles = names
    model = StyleClassifier(cfg).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=5e-4)
    index = {s: i for i, s in enumerate(names)}
    labels = torch.tensor([index[s] for s in styles])
    n = len(labels)
    steps = max(1, epochs * math.ceil(n / batch))
    budget = minutes * 60 if minutes else None
    step, epoch, t0 = 0, 0, time.time()
    for epoch in range(epochs):
        model.train()
        perm = torch.randperm(n, generator=gen)
        correct, total, loss_sum, done = 0, 0, 0.0, False
        for i in range(0, n, batch):
            progress = budget_progress(step, steps, t0, budget)
            if progress >= 1:
                done = True
                break
            for group in opt.param_groups:
                group["lr"] = lr_at(progress, lr)
            idx = perm[i:i + batch]
            x = augment_styles(to_float(images[idx.numpy()]), gen).to(device)
            y = labels[idx].to(device)
            logits = model(x)
            loss = F.cross_entropy(logits, y, label_smoothing=0.05)
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
        record.update(steps=step, epochs_run=epoch + 1 if epochs else 0, train_seconds=round(time.time() - t0, 1))
    return model.eval()


def save_style_classifier(model: StyleClassifier, folder: Path, extra: dict | None = None) -> None:
    """style.safetensors (float32; it is small) + style.json (the config, then `extra`)."""
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    save_file({k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}, str(folder / WEIGHTS_NAME))
    cfg = asdict(model.cfg) | {"channels": list(model.cfg.channels)} | (extra or {})
    (folder / CONFIG_NAME).write_text(json.dumps(cfg, indent=1) + "\n")


def load_style_classifier(folder: str | Path, device: torch.device | None = None) -> StyleClassifier | None:
    """The classifier saved in `folder`, or None when its two files are not both there."""
    from safetensors.torch import load_file

    folder = Path(folder)
    if not (folder / WEIGHTS_NAME).is_file() or not (folder / CONFIG_NAME).is_file():
        return None
    raw = json.loads((folder / CONFIG_NAME).read_text())
    keys = StyleConfig.__dataclass_fields__
    model = StyleClassifier(StyleConfig(**{k: (tuple(v) if k == "channels" else v) for k, v in raw.items() if k in keys}))
    model.load_state_dict(load_file(str(folder / WEIGHTS_NAME)))
    return model.to(device or torch.device("cpu")).eval()


def train_style_classifier(data: str | Path, out: Path, minutes: float | None = 6.0, threads: int | None = None,
                           epochs: int = 30, batch: int = 64, lr: float = 3e-3, seed: int = 0,
                           channels: tuple[int, ...] = StyleConfig.channels, device: str = "cpu",
                           command: list[str] | None = None, log: Callable[[str], None] = print) -> dict:
    """Train on the 'train' split's real images, score the held-out concepts' real images (overall and per
    style), save into `out`, and return the figures written to style.json."""
    from app.train.data import load_records

    if threads:
        torch.set_num_threads(threads)
    rec = load_records(data)
    split, styles = np.asarray(rec.split), np.asarray(rec.styles)
    train, held = split == "train", split == "heldout"
    run: dict = {}
    model = fit(rec.images[train], styles[train].tolist(), cfg=StyleConfig(channels=tuple(channels)), minutes=minutes,
                epochs=epochs, batch=batch, lr=lr, seed=seed, device=torch.device(device), log=log, record=run)
    model = model.cpu()
    heldout = style_accuracies(model, rec.images[held], styles[held])
    sample = np.flatnonzero(train)[:: max(1, int(train.sum()) // 2000)]  # a fixed ~2000-image sample is enough
    figures = {
        "accuracy_heldout": heldout["accuracy"], "accuracy_heldout_per_style": heldout["per_style"],
        "accuracy_train_sample": style_accuracies(model, rec.images[sample], styles[sample])["accuracy"],
        "parameters": parameter_count(model), "images_train": int(train.sum()), "images_heldout": int(held.sum()),
        **run, "minutes": minutes, "epochs": epochs, "batch": batch, "lr": lr, "seed": seed, "data": str(data),
        "threads": threads, "command": command if command is not None else sys.argv,
    }
    figures = json.loads(json.dumps(figures).replace("NaN", "null"))
    save_style_classifier(model, Path(out), figures)
    return figures


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m app.train.style_classifier", description=__doc__.splitlines()[0])
    p.add_argument("--data", default="data/emoji")
    p.add_argument("--out", type=Path, default=Path("runs/style"))
    p.add_argument("--minutes", type=float, default=6.0, help="training time budget (scoring is extra)")
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--channels", default=",".join(map(str, StyleConfig.channels)), help="stem,block,... widths")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--device", default="cpu")
    args = p.parse_args(argv)
    command = ["python", "-m", "app.train.style_classifier", *(sys.argv[1:] if argv is None else argv)]
    figures = train_style_classifier(args.data, args.out, args.minutes, args.threads, args.epochs, args.batch, args.lr,
                                     args.seed, tuple(int(c) for c in args.channels.split(",")), args.device, command)
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
