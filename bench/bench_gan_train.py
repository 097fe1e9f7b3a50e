"""GAN training step speed on this machine, measured side by side in one run.

    python bench/bench_gan_train.py --repeats 5

Rows: a G forward + backward (L1 to a target) with demodulation computed the direct way (building
the [N, O, I, k, k] modulated weights, as NVIDIA's reference does) and the way app.gan.ops does it
(a [N, I] x [I, O] product); then whole trainer steps (G + D) in fp32 and under bf16 autocast,
with and without the D step. The models are the embedded GAN's architecture at batch 32; the last
two rows widen G (g_channel_base 8192: 256 channels at 32 px, 128 at 64 px, as app.train.gan_widen makes it).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from app.gan import ops  # noqa: E402
from app.train.gan import GanConfig, build_state, train_step  # noqa: E402


def direct_demodulation(weight: torch.Tensor, styles: torch.Tensor) -> torch.Tensor:
    """StyleGAN2 Eq. 3 as written: materialise s_i * w_oik, square, sum."""
    wmod = weight.unsqueeze(0) * styles.reshape(styles.shape[0], 1, -1, 1, 1)
    return (wmod.square().sum(dim=[2, 3, 4]) + 1e-8).rsqrt()


def median_seconds(fn: Callable[[], None], repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    n = args.batch
    real = torch.rand(n, 3, 64, 64) * 2 - 1
    c = F.normalize(torch.randn(n, 192), dim=1)
    z = torch.randn(n, 128)

    def g_step(cfg: GanConfig, G: torch.nn.Module) -> None:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=cfg.precision == "bf16"):
            img = G.synthesis(G.mapping(z, c), fused_modconv=False)
        (img.float() - real).abs().mean().backward()

    rows: dict[str, float] = {}
    fast = ops.demodulation
    for precision in ("fp32", "bf16"):
        cfg = GanConfig(c_dim=192, batch=n, precision=precision)
        G = build_state(cfg, torch.device("cpu")).G.requires_grad_(True)
        for name, fn in (("direct", direct_demodulation), ("product", fast)):
            ops.demodulation = fn
            rows[f"G fwd+bwd {precision}, demodulation {name}"] = median_seconds(lambda: g_step(cfg, G), args.repeats)
        ops.demodulation = fast
    # (precision, G's channel_base, row suffix): the shipped width in both precisions, then the widened G
    for precision, g_channel_base, suffix in (("fp32", 4096, ""), ("bf16", 4096, ""), ("bf16", 8192, ", wide G")):
        for adversarial in (False, True):
            cfg = GanConfig(c_dim=192, batch=n, precision=precision, recon_l1=20.0, adversarial=adversarial,
                            r1_interval=10**9, g_channel_base=g_channel_base)  # R1 on step 0 only, before timing
            state = build_state(cfg, torch.device("cpu"))
            label = "G + D (adversarial + L1)" if adversarial else "G only (L1)"
            rows[f"train step {precision}, {label}{suffix}"] = median_seconds(
                lambda: train_step(state, cfg, real, c), args.repeats)

    print(f"batch {n}, {args.threads} threads, torch {torch.__version__}, repeats {args.repeats}")
    for name, sec in rows.items():
        print(f"{name:52s} {sec * 1000:8.0f} ms  {n / sec:6.1f} img/s")
    for precision in ("fp32", "bf16"):
        base = rows[f"G fwd+bwd {precision}, demodulation direct"]
        print(f"demodulation product vs direct, {precision}: "
              f"{base / rows[f'G fwd+bwd {precision}, demodulation product']:.2f}x faster")
    print(f"bf16 vs fp32 adversarial step: "
          f"{rows['train step fp32, G + D (adversarial + L1)'] / rows['train step bf16, G + D (adversarial + L1)']:.2f}x faster")
    print(f"L1-only vs adversarial step (bf16): "
          f"{rows['train step bf16, G + D (adversarial + L1)'] / rows['train step bf16, G only (L1)']:.2f}x faster")
    for label in ("G only (L1)", "G + D (adversarial + L1)"):
        print(f"wide G vs shipped width, bf16 {label}: "
              f"{rows[f'train step bf16, {label}, wide G'] / rows[f'train step bf16, {label}']:.2f}x the time")


if __name__ == "__main__":
    main()
