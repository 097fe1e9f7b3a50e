"""Low-level StyleGAN2 ops in plain PyTorch: FIR resampling, bias+activation, modulated convolution.

Notation follows Karras et al. 2020, "Analyzing and Improving the Image Quality of StyleGAN"
(StyleGAN2), Sec. 2.2 and Eq. 1-3 (weight modulation / demodulation), and the FIR upsampling of
Karras et al. 2019 / Zhang 2019 ("Making Convolutional Networks Shift-Invariant Again").
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F

LRELU_SLOPE = 0.2
LRELU_GAIN = math.sqrt(2.0)


def setup_filter(taps: Sequence[float] = (1, 3, 3, 1), normalize: bool = True) -> torch.Tensor:
    """2-D FIR filter [k, k]: outer product of the 1-D taps, optionally normalised to sum 1."""
    f = torch.as_tensor(list(taps), dtype=torch.float32)
    if f.ndim == 1:
        f = torch.outer(f, f)
    if normalize:
        f = f / f.sum()
    return f


def upfirdn2d(
    x: torch.Tensor,
    f: torch.Tensor,
    up: int = 1,
    down: int = 1,
    padding: Sequence[int] = (0, 0, 0, 0),
    gain: float = 1.0,
) -> torch.Tensor:
    """Upsample by zero insertion, pad (negative = crop), convolve with 2-D FIR `f`, downsample.

    x: [N, C, H, W]; padding: (x0, x1, y0, y1). The filter is flipped, i.e. a true convolution.
    """
    n, c, h, w = x.shape
    px0, px1, py0, py1 = padding
    if up > 1:
        x = x.reshape(n, c, h, 1, w, 1)
        x = F.pad(x, [0, up - 1, 0, 0, 0, up - 1])
        x = x.reshape(n, c, h * up, w * up)
    x = F.pad(x, [max(px0, 0), max(px1, 0), max(py0, 0), max(py1, 0)])
    x = x[:, :, max(-py0, 0): x.shape[2] - max(-py1, 0), max(-px0, 0): x.shape[3] - max(-px1, 0)]
    # A 2-D filter scales the signal by gain ** (ndim / 2) = gain; zero insertion loses up**2.
    k = (f * gain).to(x.dtype).flip([0, 1])
    k = k[None, None].repeat(c, 1, 1, 1)  # [C, 1, kh, kw]
    x = F.conv2d(x, k, groups=c)
    if down > 1:
        x = x[:, :, ::down, ::down]
    return x


def upsample2d(x: torch.Tensor, f: torch.Tensor, up: int = 2) -> torch.Tensor:
    """Upsample by `up` with FIR filter `f`, padded so that the output is exactly `up` times larger."""
    fh, fw = f.shape
    pad = [(fw + up - 1) // 2, (fw - up) // 2, (fh + up - 1) // 2, (fh - up) // 2]
    return upfirdn2d(x, f, up=up, padding=pad, gain=up * up)


def bias_act(
    x: torch.Tensor,
    b: torch.Tensor | None = None,
    act: str = "linear",
    gain: float | None = None,
    clamp: float | None = None,
) -> torch.Tensor:
    """x + b (along dim 1), then activation, times `gain` (default sqrt(2) for lrelu), clamped to +-clamp."""
    if b is not None:
        x = x + b.reshape([-1 if i == 1 else 1 for i in range(x.ndim)])
    if act == "lrelu":
        x = F.leaky_relu(x, LRELU_SLOPE)
        gain = LRELU_GAIN if gain is None else gain
    elif act == "relu":
        x = F.relu(x)
        gain = LRELU_GAIN if gain is None else gain
    elif act != "linear":
        raise ValueError(f"unsupported activation {act!r}")
    if gain is not None and gain != 1:
        x = x * gain
    if clamp is not None and clamp >= 0:
        x = x.clamp(-clamp, clamp)
    return x


def conv2d_resample(
    x: torch.Tensor,
    w: torch.Tensor,
    f: torch.Tensor | None = None,
    up: int = 1,
    padding: int = 0,
    groups: int = 1,
) -> torch.Tensor:
    """Convolve x with w, upsampling by `up` with FIR `f` first (fused as a transposed conv).

    w: [O, I/groups, kh, kw]. For up=2 a 3x3 kernel runs as a stride-2 transposed convolution
    followed by FIR filtering: zero-insertion + FIR + true convolution (kernel flipped, unlike
    up=1), which is what NVIDIA's upsampling layers compute.
    """
    out_ch, in_per_group, kh, kw = w.shape
    if up == 1:
        return F.conv2d(x, w, padding=padding, groups=groups)
    assert f is not None, "upsampling needs a resample filter"
    fh, fw = f.shape
    px0 = padding + (fw + up - 1) // 2
    px1 = padding + (fw - up) // 2
    py0 = padding + (fh + up - 1) // 2
    py1 = padding + (fh - up) // 2
    if kh == 1 and kw == 1:
        x = upfirdn2d(x, f, up=up, padding=(px0, px1, py0, py1), gain=up * up)
        return F.conv2d(x, w, groups=groups)
    # conv_transpose2d wants [I, O/groups, kh, kw] per group.
    w = w.reshape(groups, out_ch // groups, in_per_group, kh, kw).transpose(1, 2)
    w = w.reshape(groups * in_per_group, out_ch // groups, kh, kw)
    px0 -= kw - 1
    px1 -= kw - up
    py0 -= kh - 1
    py1 -= kh - up
    pxt = max(min(-px0, -px1), 0)
    pyt = max(min(-py0, -py1), 0)
    x = F.conv_transpose2d(x, w, stride=up, padding=[pyt, pxt], groups=groups)
    return upfirdn2d(x, f, padding=(px0 + pxt, px1 + pxt, py0 + pyt, py1 + pyt), gain=up * up)


def demodulation(weight: torch.Tensor, styles: torch.Tensor) -> torch.Tensor:
    """1 / sqrt(sum_{i,k} (s_i w_oik)^2 + eps) per sample and output channel, StyleGAN2 Eq. 3: [N, O].

    sum_{i,k} (s_i w_oik)^2 = sum_i s_i^2 (sum_k w_oik^2), a [N, I] x [I, O] product, so the
    modulated [N, O, I, kh, kw] weights are never built (fp32, outside autocast).
    """
    with torch.autocast(styles.device.type, enabled=False):
        energy = weight.float().square().sum(dim=[2, 3])  # [O, I]
        return (styles.float().square() @ energy.t() + 1e-8).rsqrt()


def modulated_conv2d(
    x: torch.Tensor,
    weight: torch.Tensor,
    styles: torch.Tensor,
    noise: torch.Tensor | None = None,
    up: int = 1,
    padding: int = 0,
    resample_filter: torch.Tensor | None = None,
    demodulate: bool = True,
    fused: bool = True,
) -> torch.Tensor:
    """Modulated convolution, StyleGAN2 Eq. 1 (w' = s * w) and Eq. 3 (w'' = w' / sqrt(sum w'^2 + eps)).

    x: [N, I, H, W], weight: [O, I, kh, kw], styles: [N, I], noise broadcastable to the output.
    fused=True runs one grouped convolution with per-sample weights (groups = N); fused=False
    scales activations instead of weights (same result up to rounding).
    """
    n = x.shape[0]
    _, in_ch, kh, kw = weight.shape
    if x.dtype == torch.float16 and demodulate:
        # Pre-normalise so that fp16 intermediate values cannot overflow; demodulation undoes it.
        weight = weight * (1 / math.sqrt(in_ch * kh * kw) / weight.norm(float("inf"), dim=[1, 2, 3], keepdim=True))
        styles = styles / styles.norm(float("inf"), dim=1, keepdim=True)

    wmod = None
    dcoefs = None
    if fused:
        wmod = weight.unsqueeze(0) * styles.reshape(n, 1, -1, 1, 1)  # [N, O, I, kh, kw]
    if demodulate:
        dcoefs = demodulation(weight, styles)

    if not fused:
        x = x * styles.to(x.dtype).reshape(n, -1, 1, 1)
        x = conv2d_resample(x, weight.to(x.dtype), f=resample_filter, up=up, padding=padding)
        if dcoefs is not None:
            x = x * dcoefs.to(x.dtype).reshape(n, -1, 1, 1)
        if noise is not None:
            x = x + noise.to(x.dtype)
        return x

    if dcoefs is not None:
        wmod = wmod * dcoefs.reshape(n, -1, 1, 1, 1)
    x = x.reshape(1, -1, *x.shape[2:])  # [1, N*I, H, W]
    wmod = wmod.reshape(-1, in_ch, kh, kw)  # [N*O, I, kh, kw]
    x = conv2d_resample(x, wmod.to(x.dtype), f=resample_filter, up=up, padding=padding, groups=n)
    x = x.reshape(n, -1, *x.shape[2:])
    if noise is not None:
        x = x + noise.to(x.dtype)
    return x
