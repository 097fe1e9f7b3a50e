"""A1111 `parameters` text formatting."""

from __future__ import annotations

from PIL import Image

from app.store.pngmeta import a1111_parameters, png_with_text, read_text


def test_diffusion_parameters_without_negative() -> None:
    text = a1111_parameters(
        "diffusion", {"prompt": "a cat", "steps": 20, "sampler": "euler_a", "karras": False, "cfg_scale": 7.5},
        seed=42, width=64, height=32, model="tiny-sd",
    )
    assert text == "a cat\nSteps: 20, Sampler: Euler a, CFG scale: 7.5, Seed: 42, Size: 64x32, Model: tiny-sd"


def test_gan_parameters() -> None:
    text = a1111_parameters("gan", {"prompt": "", "truncation_psi": 0.5, "search_steps": 0}, 7, 32, 32, None)
    assert text == "\nSteps: 0, Sampler: StyleGAN2, Truncation psi: 0.5, Seed: 7, Size: 32x32"


def test_commas_in_values_do_not_break_the_field_list() -> None:
    text = a1111_parameters("diffusion", {"prompt": "x", "steps": 1, "sampler": "ddim", "cfg_scale": 1}, 1, 8, 8, "a,b")
    assert text.endswith("Model: a b")


def test_png_with_text_round_trip() -> None:
    data = png_with_text(Image.new("P", (4, 4)), {"parameters": "é ascii? no", "noisescope": "{}"})
    assert read_text(data) == {"parameters": "é ascii? no", "noisescope": "{}"}


def test_model_is_named_not_located() -> None:
    for model, label in [("/home/me/models/sd15-emoji", "sd15-emoji"), ("/tmp/x/diffusion/", "diffusion"),
                         ("stable-diffusion-v1-5/stable-diffusion-v1-5", "stable-diffusion-v1-5"), ("tiny", "tiny")]:
        text = a1111_parameters("diffusion", {"prompt": "p", "steps": 1, "sampler": "ddim", "cfg_scale": 1}, 1, 8, 8, model)
        assert text.endswith(f"Model: {label}")
