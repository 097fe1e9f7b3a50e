"""What the three trainers share: data on the device, captions, checkpoints, the step loop, EMA."""

from __future__ import annotations

import json
import math
import os
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from app import devices

CHECKPOINT = "checkpoint.pt"


def pick_device(name: str | None = None) -> torch.device:
    """app.devices.pick_device ("auto" when None), with TF32 and cuDNN autotuning on for training on CUDA."""
    dev = devices.pick_device(name or "auto")
    if dev.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        torch.backends.cudnn.benchmark = True
    return dev


def images_to_device(images: np.ndarray, device: torch.device) -> torch.Tensor:
    """uint8 [N,H,W,3] -> uint8 [N,3,H,W] on the device (converted to float per batch)."""
    return torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).contiguous().to(device)


def to_unit(batch: torch.Tensor) -> torch.Tensor:
    """uint8 -> float in [-1, 1]."""
    return batch.float().div(127.5).sub(1.0)


def gradient_l1(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Mean |d/dx| plus mean |d/dy| of the difference of two image batches (finite differences):
    an L1 on edges, which a plain pixel L1 lets blur into flat colour."""
    dx = (a[..., :, 1:] - a[..., :, :-1]) - (b[..., :, 1:] - b[..., :, :-1])
    dy = (a[..., 1:, :] - a[..., :-1, :]) - (b[..., 1:, :] - b[..., :-1, :])
    return dx.abs().mean() + dy.abs().mean()


class CaptionBank:
    """Every caption tokenized once; `sample(idx)` draws one caption per image."""

    def __init__(self, tokenizer, captions: list[list[str]], max_length: int, device: torch.device) -> None:
        flat = [c for caps in captions for c in caps]
        tok = tokenizer(flat, padding="max_length", truncation=True, max_length=max_length, return_tensors="pt")
        self.ids = tok.input_ids.to(device)
        self.mask = tok.attention_mask.to(device)
        counts = torch.tensor([len(c) for c in captions])
        self.start = (torch.cumsum(counts, 0) - counts).to(device)
        self.count = counts.to(device)
        empty = tokenizer([""], padding="max_length", max_length=max_length, return_tensors="pt")
        self.empty_ids = empty.input_ids.to(device)
        self.empty_mask = empty.attention_mask.to(device)

    def sample(self, idx: torch.Tensor, generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        u = torch.rand(idx.shape, device=idx.device, generator=generator)
        row = self.start[idx] + (u * self.count[idx]).long().clamp_max(self.count[idx] - 1)
        return self.ids[row], self.mask[row]


@dataclass
class RunLog:
    """Keeps every step's loss; appends one JSON line per logged window to out/log.jsonl."""

    out: Path
    losses: list[float] = field(default_factory=list)

    def write(self, step: int, **values: float) -> None:
        self.out.mkdir(parents=True, exist_ok=True)
        with open(self.out / "log.jsonl", "a") as f:
            f.write(json.dumps({"step": step, "time": round(time.time(), 1), **values}) + "\n")


def save_checkpoint(out: Path, state: dict) -> None:
    """Atomic torch.save of plain state dicts (loaded back with weights_only=True)."""
    out.mkdir(parents=True, exist_ok=True)
    tmp = out / (CHECKPOINT + ".tmp")
    torch.save(state, tmp)
    os.replace(tmp, out / CHECKPOINT)


def load_checkpoint(out: Path) -> dict | None:
    path = out / CHECKPOINT
    return torch.load(path, map_location="cpu", weights_only=True) if path.exists() else None


def restore(state: dict | None, opt: torch.optim.Optimizer, **modules: torch.nn.Module) -> int:
    """Load a checkpoint's modules (by key) and optimiser; returns the step to start from (0 if none)."""
    if state is None:
        return 0
    for key, module in modules.items():
        module.load_state_dict(state[key])
    opt.load_state_dict(state["opt"])
    return int(state["step"])


def init_from_folder(model: torch.nn.Module, folder: Path | None) -> None:
    """Fine-tuning: load a saved diffusers model of the same class and architecture into `model` (strict)."""
    if folder is not None:
        model.load_state_dict(type(model).from_pretrained(folder, torch_dtype=torch.float32).state_dict())


def optimizer_step(opt: torch.optim.Optimizer, loss: torch.Tensor, params, max_norm: float | None = 1.0) -> None:
    """Back-propagate `loss` and take one step, clipping the gradients' global norm first."""
    opt.zero_grad(set_to_none=True)
    loss.backward()
    if max_norm is not None:
        torch.nn.utils.clip_grad_norm_(params, max_norm)
    opt.step()


def lr_at(step: int, progress: float, base: float, warmup: int) -> float:
    """Linear warm-up over `warmup` steps, then cosine to 10% of base as progress goes 0 -> 1."""
    if step < warmup:
        return base * (step + 1) / warmup
    t = min(1.0, max(0.0, progress))
    return base * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * t)))


@torch.no_grad()
def ema_update(ema: torch.nn.Module, model: torch.nn.Module, step: int, decay: float = 0.999) -> None:
    d = min(decay, (1 + step) / (10 + step))
    for pe, pm in zip(ema.parameters(), model.parameters()):
        pe.lerp_(pm.detach(), 1 - d)


def seed_all(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def run_steps(
    step_fn: Callable[[int, float], float],
    *,
    start: int,
    steps: int,
    minutes: float | None,
    save_fn: Callable[[int], None],
    log: RunLog,
    every: int = 50,
    save_every: int = 1000,
    desc: str = "train",
) -> int:
    """Call `step_fn(step, progress)` until `steps` or the time budget; log, checkpoint, return the next step.

    progress in [0, 1] is the larger of the step fraction and the time-budget fraction, so a
    schedule driven by it finishes its decay whichever limit ends the run.
    """
    from tqdm import tqdm

    began = time.time()
    budget = minutes * 60 if minutes else math.inf
    step, window = start, []
    bar = tqdm(total=steps, initial=start, desc=desc, mininterval=5, disable=None)
    while step < steps and time.time() - began < budget:
        window.append(step_fn(step, max(step / steps, (time.time() - began) / budget)))
        log.losses.append(window[-1])
        step += 1
        bar.update(1)
        if step % every == 0 or step == steps:
            mean = float(np.mean(window))
            log.write(step, loss=mean)
            bar.set_postfix(loss=f"{mean:.4f}")
            window = []
        if step % save_every == 0:
            save_fn(step)
    if window:
        log.write(step, loss=float(np.mean(window)))
    bar.close()
    save_fn(step)
    return step


def print_summary(result: dict, started: float) -> None:
    """A trainer's last line: its result as JSON, the loss list replaced by its last value, and the
    seconds since `started`."""
    summary = {k: v for k, v in result.items() if k != "losses"}
    losses = result.get("losses") or []
    print(json.dumps({**summary, "loss_last": losses[-1] if losses else None, "seconds": round(time.time() - started, 1)}))
