"""The committed models/: the pipeline and the GAN draw the sanity prompts and the shipped CLIP recognises them."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

MODELS = Path(__file__).resolve().parents[2] / "models"

pytestmark = pytest.mark.skipif(not (MODELS / "diffusion" / "model_index.json").exists(),
                                reason="no trained models/ in this checkout")


def test_shipped_pipeline_draws_what_clip_recognises() -> None:
    from app.clip import load_clip
    from app.train.export import SANITY_PROMPTS, load_pipeline

    pipe = load_pipeline(MODELS / "diffusion")
    assert pipe.vae_scale_factor == 4 and pipe.unet.config.sample_size == 16
    images = pipe(list(SANITY_PROMPTS), num_inference_steps=12, guidance_scale=5.0, output_type="pt",
                  generator=torch.Generator().manual_seed(0)).images
    assert images.shape == (len(SANITY_PROMPTS), 3, 64, 64)
    clip = load_clip(str(MODELS / "clip"), torch.device("cpu"))
    sims = clip.encode_image(images) @ clip.encode_text(list(SANITY_PROMPTS)).T
    assert sims.argmax(dim=1).tolist() == list(range(len(SANITY_PROMPTS)))


# Emoji names near the sanity prompts (other hearts, faces, foods) that a wrong picture would match.
DISTRACTORS = ("orange heart", "blue heart", "slice of bread", "hamburger", "french fries", "tiger face", "lion",
               "dog face", "grinning face", "smiling face with heart-eyes", "face with tears of joy", "rocket")


@pytest.mark.skipif(not (MODELS / "gan" / "generator.safetensors").exists(), reason="no shipped GAN")
def test_shipped_gan_draws_what_clip_recognises() -> None:
    """Through the studio's loader and its default truncation (default psi towards the prompt's centre)."""
    from app.clip import load_clip
    from app.engine.gan_runner import load_gan_model
    from app.params import GanParams
    from app.train.evaluate import gan_generator
    from app.train.export import SANITY_PROMPTS

    cpu = torch.device("cpu")
    clip = load_clip(str(MODELS / "clip"), cpu)
    model = load_gan_model(MODELS / "gan", cpu, clip=clip)
    draw = gan_generator(model.G, clip.encode_text, psi=GanParams().truncation_psi, conditional_truncation=256)
    prompts = [p for p in SANITY_PROMPTS for _ in range(2)]
    images = torch.from_numpy(draw(prompts, [0, 1] * len(SANITY_PROMPTS))).permute(0, 3, 1, 2).float() / 255
    assert images.shape == (len(prompts), 3, 64, 64)
    names = list(SANITY_PROMPTS) + list(DISTRACTORS)
    picked = (clip.encode_image(images) @ clip.encode_text(names).T).argmax(dim=1)
    assert [names[i] for i in picked] == prompts


# The sanity prompts' emoji (code points) and their CLDR names, for the real pictures of each concept.
SANITY_CONCEPTS = {"red heart": "2764-fe0f", "pizza": "1f355", "cat face": "1f431",
                   "smiling face with sunglasses": "1f60e"}
SOURCES = Path(__file__).resolve().parents[2] / "data" / "sources"  # the dataset builder's npm cache


def _real_styles(name: str, emoji_id: str) -> torch.Tensor:
    """Every art set's drawing of one concept, rendered as the dataset builder renders it: [S,3,64,64] in [0,1]."""
    import numpy as np

    from app.train import artsets

    text = "".join(chr(int(h, 16)) for h in emoji_id.split("-"))
    images = [artsets.NotoFont().render(text, 64)]
    for art in artsets.ART_SETS[1:]:
        folder = artsets.source_folder(art, SOURCES)
        pick = artsets.twemoji_candidates if art.key == "twemoji" else artsets.fluent_candidates
        path = artsets.svg_finder(folder, pick)(emoji_id if art.key == "twemoji" else name)
        if path is not None:
            images.append(artsets.render_svg(path, 64))
    return torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float() / 255


def _spread(clip, images: torch.Tensor) -> float:
    """Mean pairwise distance of the images' L2-normalised CLIP embeddings (app.metrics.diversity)."""
    from app.metrics import diversity

    return diversity(clip.encode_image(images)[None])


@pytest.fixture(scope="module")
def real_spread():
    """Per sanity prompt, the spread of its real pictures across art sets (needs the font and npm)."""
    from app.clip import load_clip
    from app.train import artsets

    pytest.importorskip("resvg_py")
    try:
        reals = {n: _real_styles(n, i) for n, i in SANITY_CONCEPTS.items()}
    except artsets.MissingArtSet as e:
        pytest.skip(str(e))
    clip = load_clip(str(MODELS / "clip"), torch.device("cpu"))
    return clip, {n: _spread(clip, x) for n, x in reals.items()}


@pytest.mark.xfail(strict=True, reason="issue 15 open: the shipped UNet is v1, trained on one picture per caption "
                   "(the unshipped v2 fine-tune's 'red heart' seeds spread 0.058 against 0.303 for its real art sets)")
def test_shipped_diffusion_varies_across_seeds(real_spread) -> None:
    """8 seeds of a prompt are not all alike: their spread is at least a third of the real art sets' spread."""
    from app.train.export import load_pipeline

    clip, spread = real_spread
    pipe = load_pipeline(MODELS / "diffusion")
    for k, prompt in enumerate(SANITY_CONCEPTS):
        images = pipe([prompt] * 8, num_inference_steps=12, guidance_scale=5.0, output_type="pt",
                      generator=torch.Generator().manual_seed(k)).images
        assert _spread(clip, images) >= spread[prompt] / 3, (prompt, _spread(clip, images), spread[prompt])
