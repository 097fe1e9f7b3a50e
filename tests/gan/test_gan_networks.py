"""Numerical parity of app.gan.networks with NVIDIA's StyleGAN2 reference outputs (fixture README)."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file

from app.gan.networks import Generator, lerp_w, mix_styles, z_from_seed
from app.gan.ops import conv2d_resample, demodulation, modulated_conv2d, setup_filter, upsample2d

ATOL = 1e-4


def build(gan_set) -> Generator:
    G = Generator(**gan_set.init_kwargs).eval().requires_grad_(False)
    G.load_state_dict(load_file(gan_set.generator_file), strict=True)
    return G


def assert_close(actual: torch.Tensor, expected: torch.Tensor) -> None:
    assert actual.shape == expected.shape and actual.dtype == torch.float32
    torch.testing.assert_close(actual, expected, atol=ATOL, rtol=0)


def test_state_dict_layout_matches_nvidia(gan_set) -> None:
    G = Generator(**gan_set.init_kwargs)
    sd = G.state_dict()
    assert list(sd) == gan_set.key_order
    stored = load_file(gan_set.generator_file)
    assert {k: tuple(v.shape) for k, v in sd.items()} == {k: tuple(v.shape) for k, v in stored.items()}


def test_reference_parity_every_case(gan_set, reference_cases) -> None:
    reference_cases(build(gan_set), gan_set)


@torch.no_grad()
def test_forward_equals_mapping_then_synthesis(gan_set) -> None:
    G = build(gan_set)
    r = gan_set.r
    img = G(r("z"), r("c"), truncation_psi=0.7, noise_mode="const", force_fp32=True)
    assert_close(img, r("img_psi07"))


@torch.no_grad()
def test_non_fused_modconv_matches_fused(gan_set) -> None:
    G = build(gan_set)
    ws = gan_set.r("ws_psi07")
    a = G.synthesis(ws, noise_mode="const", fused_modconv=False)
    G.train()  # 'inference_only' picks the non-fused path in training mode
    b = G.synthesis(ws, noise_mode="const")
    G.eval()
    assert_close(a, gan_set.r("img_psi07"))
    torch.testing.assert_close(a, b)


def test_conv_clamp_matters_for_conditional_set(gan_sets) -> None:
    s = gan_sets["cond"]
    G = Generator(**{**s.init_kwargs, "conv_clamp": None}).eval()
    G.load_state_dict(load_file(s.generator_file))
    with torch.no_grad():
        img = G.synthesis(s.r("ws_psi07"), noise_mode="const")
    assert (img - s.r("img_psi07")).abs().max() > 1e-2


@torch.no_grad()
def test_random_noise_mode_follows_the_torch_seed(gan_sets) -> None:
    s = gan_sets["uncond"]
    G = build(s)
    ws = s.r("ws_psi07")
    torch.manual_seed(1)
    a = G.synthesis(ws, noise_mode="random")
    torch.manual_seed(1)
    b = G.synthesis(ws, noise_mode="random")
    assert torch.equal(a, b)
    assert (a - s.r("img_psi07")).abs().max() > 1e-3
    with pytest.raises(ValueError, match="noise_mode"):
        G.synthesis(ws, noise_mode="bogus")


@pytest.mark.parametrize("architecture", ["orig", "skip", "resnet"])
def test_other_shapes_and_architectures_build_and_run(architecture: str) -> None:
    G = Generator(z_dim=8, c_dim=3, w_dim=12, img_resolution=8, img_channels=1, mapping_kwargs={"num_layers": 1},
                  channel_base=64, channel_max=16, architecture=architecture).eval()
    assert G.num_ws == 4
    z, c = torch.randn(2, 8), torch.eye(3)[:2]
    img = G(z, c, truncation_psi=0.5, truncation_cutoff=1, noise_mode="none")
    assert img.shape == (2, 1, 8, 8) and torch.isfinite(img).all()
    keys = G.state_dict().keys()
    assert ("synthesis.b8.skip.weight" in keys) == (architecture == "resnet")
    assert ("synthesis.b4.torgb.weight" in keys) == (architecture == "skip")


def test_synthesis_kwargs_in_stylegan2_ada_form() -> None:
    flat = Generator(z_dim=4, c_dim=0, w_dim=4, img_resolution=8, img_channels=3, channel_base=32, channel_max=8)
    nested = Generator(z_dim=4, c_dim=0, w_dim=4, img_resolution=8, img_channels=3,
                       synthesis_kwargs={"channel_base": 32, "channel_max": 8})
    assert {k: v.shape for k, v in flat.state_dict().items()} == {k: v.shape for k, v in nested.state_dict().items()}


def test_upsample2d_keeps_a_constant_image_constant_inside() -> None:
    x = torch.ones(1, 2, 5, 5)
    y = upsample2d(x, setup_filter())
    assert y.shape == (1, 2, 10, 10)
    torch.testing.assert_close(y[:, :, 2:-2, 2:-2], torch.ones(1, 2, 6, 6))


def test_transposed_conv_upsampling_equals_zero_insertion_path() -> None:
    torch.manual_seed(0)
    x, w, f = torch.randn(2, 3, 6, 6), torch.randn(4, 3, 3, 3), setup_filter()
    fast = conv2d_resample(x, w, f=f, up=2, padding=1)
    # NVIDIA's upsampling layers leave the kernel unflipped in the transposed conv: a true convolution.
    slow = torch.nn.functional.conv2d(upsample2d(x, f), w.flip([2, 3]), padding=1)
    assert fast.shape == slow.shape == (2, 4, 12, 12)
    # Both orders of the two linear filters agree away from the zero-padded border.
    torch.testing.assert_close(fast[..., 3:-3, 3:-3], slow[..., 3:-3, 3:-3], atol=1e-5, rtol=1e-5)


def test_modulated_conv_fused_equals_per_sample_loop() -> None:
    torch.manual_seed(0)
    x, w, s = torch.randn(3, 4, 5, 5), torch.randn(6, 4, 3, 3), torch.randn(3, 4)
    fused = modulated_conv2d(x, w, s, padding=1)
    for i in range(3):
        wi = w * s[i].reshape(1, -1, 1, 1)
        wi = wi / (wi.square().sum(dim=[1, 2, 3], keepdim=True) + 1e-8).sqrt()
        torch.testing.assert_close(fused[i:i + 1], torch.nn.functional.conv2d(x[i:i + 1], wi, padding=1))


def test_seed_helpers() -> None:
    a, b = z_from_seed(42, 16), z_from_seed(42, 16)
    assert a.shape == (1, 16) and a.dtype == torch.float32 and torch.equal(a, b)
    assert not torch.equal(a, z_from_seed(43, 16))
    w0, w1 = torch.zeros(1, 3, 2), torch.ones(1, 3, 2)
    torch.testing.assert_close(lerp_w(w0, w1, 0.25), torch.full((1, 3, 2), 0.25))
    m = mix_styles(w0, w1, 2)
    assert m[:, :2].eq(0).all() and m[:, 2:].eq(1).all() and w0.eq(0).all()


def test_demodulation_equals_the_modulated_weight_norm_in_fp32_under_autocast() -> None:
    torch.manual_seed(0)
    w, s = torch.randn(6, 4, 3, 3), torch.randn(3, 4)
    want = ((w[None] * s[:, None, :, None, None]).square().sum(dim=[2, 3, 4]) + 1e-8).rsqrt()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = demodulation(w, s)
    assert got.dtype == torch.float32
    torch.testing.assert_close(got, want)
