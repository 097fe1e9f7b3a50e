"""The live figures a finished image gets in the page: its CLIP score and, for a batch or a seed grid,
its diversity. One definition for both engines, so their panels compare like with like."""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from app.clip import ClipBackend
from app.diffusion.guidance import clip_target, target_similarity
from app.diffusion.prompts import parse_prompt
from app.metrics import diversity


@torch.no_grad()
def image_scores(clip: ClipBackend | None, images: list[Image.Image], prompt: str) -> tuple[float | None, float | None]:
    """(CLIP score, diversity) of images made for one prompt.

    CLIP score: guidance.clip_score (the weighted cosine similarity of each 8-bit image's CLIP
    embedding to the prompt; CLIP_SCORE_DEFINITION), averaged over the images, rounded to 4 decimals as
    the per-step scores are; None without CLIP or a prompt. Diversity: the mean pairwise distance between the
    images' L2-normalised CLIP embeddings, as `python -m app evaluate` measures it in the judge's
    features (0 when all images are the same, sqrt 2 for orthogonal ones); None for a single image.
    """
    if clip is None or not images:
        return None, None
    pixels = torch.from_numpy(np.stack([np.asarray(im.convert("RGB")) for im in images])).permute(0, 3, 1, 2)
    emb = clip.encode_image(pixels.float().div(255).to(clip.device)).float()
    div = round(diversity(emb[None].cpu()), 4) if len(images) > 1 else None
    try:
        target = clip_target(clip, parse_prompt(prompt))
    except ValueError:  # no prompt text (a GAN render needs none)
        return None, div
    return round(float(target_similarity(emb, target).mean()), 4), div
