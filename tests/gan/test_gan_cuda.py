"""CUDA checks (skipped without a GPU): fp32 equals the CPU path, the fp16 blocks stay close, search runs."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch

from app.gan.networks import Generator
from app.gan.render import clip_search, render

pytestmark = pytest.mark.gpu


def _tiny_generator() -> Generator:
    torch.manual_seed(0)
    G = Generator(z_dim=32, c_dim=4, w_dim=32, img_resolution=32, img_channels=3, mapping_kwargs={"num_layers": 2},
                  channel_base=512, channel_max=64, num_fp16_res=2)
    with torch.no_grad():
        for block in (G.synthesis.b4, G.synthesis.b8, G.synthesis.b16, G.synthesis.b32):
            block.torgb.weight.mul_(0.3)
    return G.eval().requires_grad_(False)


def test_cuda_fp32_matches_cpu_and_fp16_stays_close() -> None:
    G = _tiny_generator()
    z, c = torch.randn(4, 32), torch.eye(4)
    ref = G(z, c, truncation_psi=0.7, noise_mode="const", force_fp32=True)
    Gc = copy.deepcopy(G).cuda()
    tf32 = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    try:
        fp32 = Gc(z.cuda(), c.cuda(), truncation_psi=0.7, noise_mode="const", force_fp32=True)
        fp16 = Gc(z.cuda(), c.cuda(), truncation_psi=0.7, noise_mode="const")
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = tf32
    torch.testing.assert_close(fp32.cpu(), ref, atol=1e-4, rtol=0)
    assert fp16.dtype == torch.float32 and torch.isfinite(fp16).all()
    assert (fp16.cpu() - ref).abs().max() < 0.02 * ref.abs().max()
    assert render(Gc, Gc.mapping(z.cuda(), c.cuda())).device.type == "cuda"


def test_clip_search_runs_on_cuda(tiny_clip_dir: Path) -> None:
    from app.clip.backend import TransformersClip

    G = _tiny_generator().cuda()
    clip = TransformersClip(str(tiny_clip_dir), torch.device("cuda"))
    text = clip.encode_text(["a red square"])
    w0 = G.mapping(torch.randn(1, 32, device="cuda"), torch.eye(4, device="cuda")[:1])
    res = clip_search(G, clip, text, w0, steps=6, cutn=4, generator=torch.Generator().manual_seed(0))
    assert res.ws.device.type == "cuda" and len(res.losses) == 6
    assert all(torch.isfinite(torch.tensor(res.losses)))
