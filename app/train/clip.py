"""Contrastive training of the small CLIPModel (text and vision towers) on captioned images.

The output folder's `model/` is a transformers CLIPModel folder with its CLIPTokenizer and
CLIPImageProcessor, so `app.clip.load_clip(out / "model", device)` loads it.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F

from app.clip.word_tokenizer import caption_vocabulary, write_word_clip_tokenizer
from app.train.common import (
    CaptionBank,
    RunLog,
    images_to_device,
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
from app.train.models import CLIP_MEAN, CLIP_STD, FULL, IMAGE_SIZE, Sizes, clip_model


def random_affine(x: torch.Tensor, scale: tuple[float, float] = (0.85, 1.05), shift: float = 0.08,
                  generator: torch.Generator | None = None) -> torch.Tensor:
    """Per-image random zoom and shift, edges replicated (backgrounds are flat)."""
    n = x.shape[0]
    s = torch.empty(n, device=x.device).uniform_(*scale, generator=generator)
    t = torch.empty(n, 2, device=x.device).uniform_(-shift, shift, generator=generator)
    theta = torch.zeros(n, 2, 3, device=x.device)
    theta[:, 0, 0] = theta[:, 1, 1] = 1 / s
    theta[:, :, 2] = t
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


def clip_pixels(unit: torch.Tensor) -> torch.Tensor:
    """[-1, 1] images -> CLIP-normalised pixels."""
    mean = torch.tensor(CLIP_MEAN, device=unit.device).view(1, 3, 1, 1)
    std = torch.tensor(CLIP_STD, device=unit.device).view(1, 3, 1, 1)
    return ((unit + 1) / 2 - mean) / std


def save_clip_folder(model, folder: Path) -> None:
    """CLIPModel weights + CLIPImageProcessor into `folder` (the tokenizer is already there)."""
    from transformers import CLIPImageProcessor

    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder, safe_serialization=True)
    CLIPImageProcessor(size={"shortest_edge": IMAGE_SIZE}, crop_size={"height": IMAGE_SIZE, "width": IMAGE_SIZE},
                       image_mean=list(CLIP_MEAN), image_std=list(CLIP_STD)).save_pretrained(folder)


@torch.no_grad()
def retrieval_top1(model, bank: CaptionBank, images: torch.Tensor, n: int = 512, batch: int = 256) -> float:
    """Text -> image top-1 accuracy over the first n images, each queried by its first caption."""
    model.eval()
    n = min(n, images.shape[0])
    img, txt = [], []
    for i in range(0, n, batch):
        sl = slice(i, min(n, i + batch))
        img.append(F.normalize(_features(model.get_image_features(pixel_values=clip_pixels(to_unit(images[sl])))), dim=-1))
        rows = bank.start[sl]
        txt.append(F.normalize(_features(model.get_text_features(input_ids=bank.ids[rows], attention_mask=bank.mask[rows])), dim=-1))
    sims = torch.cat(txt) @ torch.cat(img).T
    model.train()
    return float((sims.argmax(1) == torch.arange(n, device=sims.device)).float().mean())


def init_from(model, folder: Path, new_vocab: dict[str, int]) -> list[int]:
    """Start a CLIPModel from a trained one whose tokenizer differs: every weight is copied, and the
    token-embedding rows are matched by token string (new tokens start at the mean old row).
    Returns the ids of the new tokens."""
    import json

    from transformers import CLIPModel

    old = CLIPModel.from_pretrained(folder, dtype=torch.float32).state_dict()
    old_vocab: dict[str, int] = json.loads((Path(folder) / "vocab.json").read_text())
    key = next(k for k in old if k.endswith("token_embedding.weight"))
    table = old.pop(key)
    new_table = table.mean(0, keepdim=True).repeat(len(new_vocab), 1)
    shared = [(i, old_vocab[t]) for t, i in new_vocab.items() if t in old_vocab]
    rows, old_rows = map(list, zip(*shared))
    new_table[rows] = table[old_rows]
    missing, unexpected = model.load_state_dict({**old, key: new_table}, strict=False)
    if unexpected or [m for m in missing if "position_ids" not in m]:
        raise ValueError(f"{folder} is not this architecture: missing {missing}, unexpected {unexpected}")
    return sorted(set(range(len(new_vocab))) - set(rows))


def param_groups(model, new_tokens: list[int] | None, weight_decay: float = 0.1) -> list[dict]:
    """AdamW groups. With `new_tokens` (a list, maybe empty), the text side is frozen but for those
    rows of the token table: old prompts keep exactly their text embeddings (what the UNet and the
    GAN were trained on) while new words learn theirs, as textual inversion does (Gal et al. 2022)."""
    if new_tokens is None:
        return [{"params": list(model.parameters()), "weight_decay": weight_decay}]
    table = model.text_model.embeddings.token_embedding.weight
    model.text_model.requires_grad_(False)
    model.text_projection.requires_grad_(False)
    table.requires_grad_(True)
    mask = torch.zeros(table.shape[0], 1, device=table.device)
    mask[new_tokens] = 1
    table.register_hook(lambda grad: grad * mask)
    rest = [p for p in model.parameters() if p.requires_grad and p is not table]
    return [{"params": rest, "weight_decay": weight_decay}, {"params": [table], "weight_decay": 0.0}]


def _features(out) -> torch.Tensor:
    return out.pooler_output if hasattr(out, "pooler_output") else out


def train_clip(data: str, out: Path, *, steps: int = 2000, batch: int = 256, lr: float = 5e-4, minutes: float | None = None,
               resume: bool = False, sizes: Sizes = FULL, device: str | None = None, seed: int = 0,
               init: Path | None = None, freeze_text: bool = False) -> dict:
    """Train, checkpoint to out/checkpoint.pt, write out/model/. Returns loss and retrieval metrics.

    `init`: a CLIPModel folder (same architecture) to fine-tune from; its tokens are carried over by
    string, so a dataset with new caption words keeps what the old model learned. `freeze_text` (with
    `init`): train the vision side and the new words only (`param_groups`)."""
    from transformers import CLIPTokenizer

    seed_all(seed)
    dev = pick_device(device)
    out = Path(out)
    folder = out / "model"
    images_np, captions, _ = load_dataset(data)
    state = load_checkpoint(out) if resume else None
    if state is None:
        write_word_clip_tokenizer(folder, caption_vocabulary(captions), sizes.max_length)
    tokenizer = CLIPTokenizer.from_pretrained(folder)
    model = clip_model(len(tokenizer), sizes)
    new_tokens = init_from(model, Path(init), tokenizer.get_vocab()) if init and state is None else None
    if state is not None:
        new_tokens = state.get("new_tokens")
    model = model.to(dev).train()
    groups = param_groups(model, new_tokens if freeze_text else None)
    opt = torch.optim.AdamW(groups, lr=lr, betas=(0.9, 0.98))
    start = restore(state, opt, model=model)
    images = images_to_device(images_np, dev)
    bank = CaptionBank(tokenizer, captions, sizes.max_length, dev)
    batch = min(batch, images.shape[0])
    amp = dev.type == "cuda"
    log = RunLog(out)

    def step_fn(step: int, progress: float) -> float:
        for g in opt.param_groups:
            g["lr"] = lr_at(step, progress, lr, warmup=min(200, steps // 10 + 1))
        idx = torch.randperm(images.shape[0], device=dev)[:batch]
        ids, mask = bank.sample(idx)
        pixels = clip_pixels(random_affine(to_unit(images[idx])))
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=amp):
            loss = model(input_ids=ids, attention_mask=mask, pixel_values=pixels, return_loss=True).loss
        optimizer_step(opt, loss, [p for g in groups for p in g["params"]])
        return float(loss.detach())

    def save_fn(step: int) -> None:
        save_checkpoint(out, {"model": model.state_dict(), "opt": opt.state_dict(), "step": step,
                              "new_tokens": new_tokens})
        save_clip_folder(model, folder)

    end = run_steps(step_fn, start=start, steps=steps, minutes=minutes, save_fn=save_fn, log=log, desc="clip")
    top1 = retrieval_top1(model, bank, images)
    log.write(end, retrieval_top1=top1)
    return {"steps": end, "losses": log.losses, "retrieval_top1": top1, "folder": str(folder),
            "new_tokens": None if new_tokens is None else len(new_tokens)}
