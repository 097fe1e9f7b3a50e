"""Inpainting by latent masking on the tiny real-format models: the kept region ends exactly as the
init's latent, the masked region is re-generated, forks replay, and a 9-channel inpainting UNet runs
with its own conditioning."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch
from PIL import Image, ImageDraw

from app.diffusion.denoiser import UNetDenoiser
from app.diffusion.generate import DiffusionModels, StepInfo, generate, load_diffusion_models, pil_to_tensor
from app.diffusion.inpaint import latent_mask, pixel_mask
from app.diffusion.previews import encode
from app.params import DiffusionParams

SIZE = 32


@pytest.fixture(scope="module")
def models(tiny_diffusion_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> DiffusionModels:
    return load_diffusion_models(str(tiny_diffusion_dir), torch.device("cpu"), torch.float32,
                                 cache_dir=tmp_path_factory.mktemp("cache"))


def init_image() -> Image.Image:
    img = Image.new("RGB", (SIZE, SIZE), (40, 120, 200))
    ImageDraw.Draw(img).ellipse((4, 4, 20, 28), fill=(230, 200, 40))
    return img


def box_mask(box: tuple[int, int, int, int] = (16, 8, 28, 24)) -> Image.Image:
    mask = Image.new("L", (SIZE, SIZE), 0)
    ImageDraw.Draw(mask).rectangle(box, fill=255)
    return mask


def params(**kw) -> DiffusionParams:
    base = {"prompt": "a red fox", "seed": 3, "steps": 5, "width": SIZE, "height": SIZE, "cfg_scale": 3.0,
            "init_image": "init", "mask_image": "mask"}
    return DiffusionParams(**(base | kw))


def run(models: DiffusionModels, p: DiffusionParams, **kw) -> tuple[torch.Tensor, list[StepInfo]]:
    steps: list[StepInfo] = []
    live = p.live()
    out = generate(models, p, live=lambda: live, on_step=steps.append, init_image=kw.pop("init", init_image()),
                   **kw)
    return out, steps


def test_latent_mask_keeps_only_unpainted_cells() -> None:
    m = latent_mask(pixel_mask(box_mask((16, 8, 17, 8)), SIZE, SIZE), 4)
    assert m.shape == (1, 1, 8, 8)
    assert m[0, 0, 2, 4] == 1 and m.sum() == 1  # the one cell holding painted pixels
    resized = pixel_mask(box_mask().resize((64, 64)), SIZE, SIZE)  # another size is resized to the run's
    assert resized.shape == (1, 1, SIZE, SIZE) and resized.max() == 1 and resized.min() == 0


@pytest.mark.parametrize("sampler,skip", [("dpmpp_2m", 0), ("euler_a", 2), ("ddim", 1)])
def test_known_region_exact_and_masked_region_regenerated(models: DiffusionModels, sampler: str, skip: int) -> None:
    p = params(sampler=sampler, skip_steps=skip, eta=1.0)
    latent, steps = run(models, p, mask=box_mask())
    known = encode(models.vae, pil_to_tensor(init_image(), SIZE, SIZE))
    keep = latent_mask(pixel_mask(box_mask(), SIZE, SIZE), models.vae_scale) == 0  # [1, 1, 8, 8]
    keep = keep.expand_as(latent)
    assert torch.equal(latent[keep], known.expand_as(latent)[keep])  # exact, not close
    changed = (latent - known)[~keep].abs().mean()
    assert changed > 0.1, changed
    # every reported step shows the kept region as the init (previews, resumes) ...
    assert all(torch.equal(s.denoised[keep], known.expand_as(latent)[keep]) for s in steps)
    # ... and plain img2img from the same start changes the kept region too
    plain, _ = run(models, p.model_copy(update={"mask_image": None}))
    assert not torch.equal(plain[keep], known.expand_as(latent)[keep])
    assert torch.equal(steps[-1].latent, latent)


def test_masked_fork_replays_bit_for_bit(models: DiffusionModels) -> None:
    p = params(sampler="dpmpp_2m", steps=6)
    full, steps = run(models, p, mask=box_mask())
    k = 3
    resumed, _ = run(models, p, mask=box_mask(), start_step=k, start_latent=steps[k - 1].latent,
                     start_denoised=steps[k - 1].denoised)
    assert torch.equal(resumed, full)
    again, _ = run(models, p, mask=box_mask())
    assert torch.equal(again, full)


def test_mask_needs_an_init_image(models: DiffusionModels) -> None:
    with pytest.raises(ValueError, match="init_image"):
        params(init_image=None)
    live = params().live()
    with pytest.raises(ValueError, match="init image"):
        generate(models, params(), live=lambda: live, on_step=lambda s: None, mask=box_mask())


@pytest.fixture(scope="module")
def inpaint_models(models: DiffusionModels) -> DiffusionModels:
    """The tiny pipeline with a 9-channel inpainting UNet (latent, mask, masked-image latent) in place."""
    from diffusers import UNet2DConditionModel

    config = dict(models.unet.config)
    config["in_channels"] = 9
    torch.manual_seed(1)
    unet = UNet2DConditionModel.from_config(config).eval().requires_grad_(False)
    return dataclasses.replace(models, unet=unet, denoiser=UNetDenoiser(unet, models.alphas_cumprod,
                                                                        models.prediction_type))


def test_inpainting_unet_gets_its_conditioning(inpaint_models: DiffusionModels) -> None:
    assert inpaint_models.inpaint_unet and inpaint_models.latent_channels == 4
    # the UNet's first conv takes 9 channels: these runs work only with the mask and image latent appended
    a, _ = run(inpaint_models, params(), mask=box_mask())
    b, _ = run(inpaint_models, params(), mask=box_mask(), init=init_image().rotate(90))
    keep = (latent_mask(pixel_mask(box_mask(), SIZE, SIZE), 4) == 0).expand_as(a)
    assert not torch.equal(a[~keep], b[~keep])
    known = encode(inpaint_models.vae, pil_to_tensor(init_image(), SIZE, SIZE)).expand_as(a)
    assert torch.equal(a[keep], known[keep])
    # text-to-image on an inpainting UNet: all masked, blank image, still runs
    t2i, _ = run(inpaint_models, params(init_image=None, mask_image=None), init=None)
    assert t2i.shape == a.shape and torch.isfinite(t2i).all()


def test_inpainting_unet_is_calibrated(inpaint_models: DiffusionModels) -> None:
    """The budget's timing run at start-up feeds the UNet all 9 channels too."""
    from app.engine.calibrate import calibrate

    assert calibrate(inpaint_models).latent_channels == 4
