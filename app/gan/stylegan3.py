"""StyleGAN3 generator, alias-free (Karras et al. 2021, "Alias-Free Generative Adversarial Networks"),
configs T and R, with NVIDIA's state-dict layout (NVlabs/stylegan3 `training/networks_stylegan3.py`).

Signals are continuous and sampled: the input is a set of Fourier features (Sec. 3.1, its
`transform` buffer rotates and translates them, as the paper's visualizer does), and each layer is a
modulated convolution followed by a filtered leaky ReLU (Sec. 3.2): upsample to a higher rate with a
Kaiser-windowed low-pass filter, apply the nonlinearity there, low-pass and downsample again. The
per-layer cutoffs, stopbands, sampling rates and widths follow the geometric schedule of Sec. 3.3 /
Fig. 4 (`layer_spec`). Config R uses 1x1 convolutions and radially symmetric (jinc) downsampling
filters (Sec. 3.4). All in plain PyTorch (the reference path of NVIDIA's custom ops).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .networks import NOISE_MODES, FullyConnectedLayer, MappingNetwork

# ---------------------------------------------------------------------------------------------- filters


def _kaiser_beta(numtaps: int, width: float) -> float:
    """Kaiser window beta for a transition `width` (fraction of Nyquist): Kaiser's attenuation and beta formulas."""
    atten = 2.285 * (numtaps - 1) * math.pi * width + 7.95
    if atten > 50:
        return 0.1102 * (atten - 8.7)
    if atten > 21:
        return 0.5842 * (atten - 21) ** 0.4 + 0.07886 * (atten - 21)
    return 0.0


def design_lowpass_filter(numtaps: int, cutoff: float, width: float, fs: float,
                          radial: bool = False) -> torch.Tensor | None:
    """Kaiser-windowed low-pass FIR (None for a single tap, i.e. no filtering).

    Separable: the windowed sinc with cutoff `cutoff` and transition `width` at sampling rate `fs`,
    normalised to unit DC gain (the window method; Sec. 3.2). Radial (config R): a jinc
    2 fc J1(2 pi fc r) / (2 pi fc r) shape on a 2-D grid times the outer product of the window,
    normalised to sum 1 (Sec. 3.4, Appendix F.6).
    """
    if numtaps < 1:
        raise ValueError("numtaps must be >= 1")
    if numtaps == 1:
        return None
    nyq = fs / 2
    beta = _kaiser_beta(numtaps, width / nyq)
    window = np.kaiser(numtaps, beta)
    if not radial:
        m = np.arange(numtaps) - (numtaps - 1) / 2
        f = (cutoff / nyq) * np.sinc((cutoff / nyq) * m) * window
        return torch.as_tensor(f / f.sum(), dtype=torch.float32)
    x = (np.arange(numtaps) - (numtaps - 1) / 2) / fs
    r = torch.as_tensor(np.hypot(*np.meshgrid(x, x)), dtype=torch.float64)
    f = torch.special.bessel_j1(2 * cutoff * math.pi * r).numpy() / (math.pi * r.numpy())
    f = f * np.outer(window, window)
    return torch.as_tensor(f / f.sum(), dtype=torch.float32)


def upfirdn2d(x: torch.Tensor, f: torch.Tensor | None, up: int = 1, down: int = 1,
              padding: tuple[int, int, int, int] | list[int] = (0, 0, 0, 0), gain: float = 1.0) -> torch.Tensor:
    """Zero-insertion upsampling, pad (negative = crop), FIR filter, keep every `down`-th sample.

    `f`: 1-D taps (applied separably, first along x then y, each pass scaled by sqrt(gain)), a 2-D
    kernel, or None (no filter). A true convolution (the kernel is flipped). padding = (x0, x1, y0, y1).
    """
    n, c, h, w = x.shape
    if up > 1:
        x = x.reshape(n, c, h, 1, w, 1)
        x = F.pad(x, [0, up - 1, 0, 0, 0, up - 1]).reshape(n, c, h * up, w * up)
    px0, px1, py0, py1 = padding
    x = F.pad(x, [max(px0, 0), max(px1, 0), max(py0, 0), max(py1, 0)])
    x = x[:, :, max(-py0, 0): x.shape[2] - max(-py1, 0), max(-px0, 0): x.shape[3] - max(-px1, 0)]
    if f is None:
        f = torch.ones([1, 1], dtype=x.dtype, device=x.device)
    f = (f * gain ** (f.ndim / 2)).to(x.dtype).flip(list(range(f.ndim)))
    if f.ndim == 2:
        x = F.conv2d(x, f[None, None].repeat(c, 1, 1, 1), groups=c)
    else:
        k = f[None, None].repeat(c, 1, 1)  # [C, 1, taps]
        x = F.conv2d(x, k.unsqueeze(2), groups=c)  # along x
        x = F.conv2d(x, k.unsqueeze(3), groups=c)  # along y
    if down > 1:
        x = x[:, :, ::down, ::down]
    return x


def filtered_lrelu(x: torch.Tensor, fu: torch.Tensor | None, fd: torch.Tensor | None, b: torch.Tensor, up: int,
                   down: int, padding: list[int], gain: float, slope: float, clamp: float | None) -> torch.Tensor:
    """Sec. 3.2: bias, upsample by `up` (filter fu), leaky ReLU x gain (clamped), filter fd and downsample."""
    x = x + b.reshape(1, -1, 1, 1)
    x = upfirdn2d(x, fu, up=up, padding=padding, gain=up * up)
    if slope != 1:
        x = F.leaky_relu(x, slope)
    if gain != 1:
        x = x * gain
    if clamp is not None and clamp >= 0:
        x = x.clamp(-clamp, clamp)
    return upfirdn2d(x, fd, down=down)


def modulated_conv2d(x: torch.Tensor, weight: torch.Tensor, styles: torch.Tensor, demodulate: bool = True,
                     padding: int = 0, input_gain: torch.Tensor | None = None) -> torch.Tensor:
    """StyleGAN2 Eq. 1-3 as StyleGAN3 runs it: weight and styles pre-normalised by their RMS (which
    demodulation cancels), then the input gain 1 / sqrt(magnitude_ema) folded into the weights."""
    n = x.shape[0]
    out_ch, in_ch, kh, kw = weight.shape
    if demodulate:
        weight = weight * weight.square().mean([1, 2, 3], keepdim=True).rsqrt()
        styles = styles * styles.square().mean().rsqrt()
    w = weight.unsqueeze(0) * styles.reshape(n, 1, in_ch, 1, 1)  # [N, O, I, kh, kw]
    if demodulate:
        w = w * (w.square().sum(dim=[2, 3, 4]) + 1e-8).rsqrt().reshape(n, out_ch, 1, 1, 1)
    if input_gain is not None:
        w = w * input_gain.expand(n, in_ch).reshape(n, 1, in_ch, 1, 1)
    x = F.conv2d(x.reshape(1, -1, *x.shape[2:]), w.reshape(-1, in_ch, kh, kw).to(x.dtype), padding=padding, groups=n)
    return x.reshape(n, -1, *x.shape[2:])


# ---------------------------------------------------------------------------------------------- layers


def make_transform(translate_x: float = 0.0, translate_y: float = 0.0, angle_deg: float = 0.0) -> torch.Tensor:
    """The input `transform` for a translation (in image widths) and a rotation (degrees), float32 [3, 3].

    As NVIDIA's gen_images.py and visualizer set it: inv([[cos a, sin a, tx], [-sin a, cos a, ty], [0, 0, 1]]).
    """
    a = math.radians(angle_deg)
    m = np.array([[math.cos(a), math.sin(a), translate_x], [-math.sin(a), math.cos(a), translate_y], [0, 0, 1]])
    return torch.as_tensor(np.linalg.inv(m), dtype=torch.float32)


class SynthesisInput(nn.Module):
    """Fourier features (Sec. 3.1): sin(2 pi (x . f_k + phi_k)) on a grid spanning size / sampling_rate,
    with the frequencies rotated and shifted by w (row 0) and by the user `transform`, damped to zero
    between the bandwidth and half the sampling rate, then mixed by a learned [C, C] matrix."""

    def __init__(self, w_dim: int, channels: int, size: int | list[int], sampling_rate: float, bandwidth: float) -> None:
        super().__init__()
        self.w_dim = w_dim
        self.channels = channels
        self.size = [int(s) for s in np.broadcast_to(np.asarray(size), [2])]
        self.sampling_rate = float(sampling_rate)
        self.bandwidth = float(bandwidth)
        freqs = torch.randn([channels, 2])
        radii = freqs.square().sum(dim=1, keepdim=True).sqrt()
        freqs = freqs / (radii * radii.square().exp().pow(0.25)) * bandwidth
        phases = torch.rand([channels]) - 0.5
        self.weight = nn.Parameter(torch.randn([channels, channels]))
        self.affine = FullyConnectedLayer(w_dim, 4)
        with torch.no_grad():  # NVIDIA's init: no rotation, no shift until trained
            self.affine.weight.zero_()
            self.affine.bias.copy_(torch.tensor([1.0, 0.0, 0.0, 0.0]))
        self.register_buffer("transform", torch.eye(3, 3))
        self.register_buffer("freqs", freqs)
        self.register_buffer("phases", phases)

    def forward(self, w: torch.Tensor, transform: torch.Tensor | None = None) -> torch.Tensor:
        """w [N, w_dim] -> [N, C, H, W]; `transform` [N or 1, 3, 3] replaces the buffer when given."""
        n = w.shape[0]
        user = (self.transform if transform is None else transform.to(w.device, torch.float32)).reshape(-1, 3, 3)
        t = self.affine(w)  # rotation (cos, sin) and translation (x, y), Sec. 3.1 / Appendix F.1
        t = t / t[:, :2].norm(dim=1, keepdim=True)
        eye = torch.eye(3, device=w.device).unsqueeze(0).repeat(n, 1, 1)
        m_r, m_t = eye.clone(), eye
        m_r[:, 0, 0], m_r[:, 0, 1], m_r[:, 1, 0], m_r[:, 1, 1] = t[:, 0], -t[:, 1], t[:, 1], t[:, 0]
        m_t[:, 0, 2], m_t[:, 1, 2] = -t[:, 2], -t[:, 3]
        transforms = m_r @ m_t @ user
        freqs, phases = self.freqs.unsqueeze(0), self.phases.unsqueeze(0)
        phases = phases + (freqs @ transforms[:, :2, 2:]).squeeze(2)
        freqs = freqs @ transforms[:, :2, :2]
        amplitudes = (1 - (freqs.norm(dim=2) - self.bandwidth) / (self.sampling_rate / 2 - self.bandwidth)).clamp(0, 1)
        theta = torch.eye(2, 3, device=w.device)
        theta[0, 0] = 0.5 * self.size[0] / self.sampling_rate
        theta[1, 1] = 0.5 * self.size[1] / self.sampling_rate
        grids = F.affine_grid(theta.unsqueeze(0), [1, 1, self.size[1], self.size[0]], align_corners=False)
        x = (grids.unsqueeze(3) @ freqs.permute(0, 2, 1).unsqueeze(1).unsqueeze(2)).squeeze(3)  # [N, H, W, C]
        x = torch.sin((x + phases.unsqueeze(1).unsqueeze(2)) * (2 * math.pi))
        x = x * amplitudes.unsqueeze(1).unsqueeze(2)
        x = x @ (self.weight / math.sqrt(self.channels)).t()
        return x.permute(0, 3, 1, 2)


class SynthesisLayer(nn.Module):
    """Modulated conv + filtered leaky ReLU (Sec. 3.2); the last layer is ToRGB (1x1, no demodulation,
    no filters, linear)."""

    def __init__(self, w_dim: int, is_torgb: bool, is_critically_sampled: bool, use_fp16: bool,
                 in_channels: int, out_channels: int, in_size: int | list[int], out_size: int | list[int],
                 in_sampling_rate: float, out_sampling_rate: float, in_cutoff: float, out_cutoff: float,
                 in_half_width: float, out_half_width: float, conv_kernel: int = 3, filter_size: int = 6,
                 lrelu_upsampling: int = 2, use_radial_filters: bool = False, conv_clamp: float | None = 256,
                 magnitude_ema_beta: float = 0.999) -> None:
        super().__init__()
        self.w_dim = w_dim
        self.is_torgb = is_torgb
        self.is_critically_sampled = is_critically_sampled
        self.use_fp16 = use_fp16
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.in_size = np.broadcast_to(np.asarray(in_size), [2])
        self.out_size = np.broadcast_to(np.asarray(out_size), [2])
        self.in_sampling_rate = in_sampling_rate
        self.out_sampling_rate = out_sampling_rate
        self.tmp_sampling_rate = max(in_sampling_rate, out_sampling_rate) * (1 if is_torgb else lrelu_upsampling)
        self.in_cutoff = in_cutoff
        self.out_cutoff = out_cutoff
        self.in_half_width = in_half_width
        self.out_half_width = out_half_width
        self.conv_kernel = 1 if is_torgb else conv_kernel
        self.conv_clamp = conv_clamp
        self.magnitude_ema_beta = magnitude_ema_beta

        self.affine = FullyConnectedLayer(w_dim, in_channels, bias_init=1)
        self.weight = nn.Parameter(torch.randn([out_channels, in_channels, self.conv_kernel, self.conv_kernel]))
        self.bias = nn.Parameter(torch.zeros([out_channels]))
        self.register_buffer("magnitude_ema", torch.ones([]))

        self.up_factor = int(round(self.tmp_sampling_rate / in_sampling_rate))
        if in_sampling_rate * self.up_factor != self.tmp_sampling_rate:
            raise ValueError("the sampling rates must be integer multiples of each other")
        self.up_taps = filter_size * self.up_factor if self.up_factor > 1 and not is_torgb else 1
        self.register_buffer("up_filter", design_lowpass_filter(self.up_taps, in_cutoff, in_half_width * 2,
                                                                self.tmp_sampling_rate))
        self.down_factor = int(round(self.tmp_sampling_rate / out_sampling_rate))
        if out_sampling_rate * self.down_factor != self.tmp_sampling_rate:
            raise ValueError("the sampling rates must be integer multiples of each other")
        self.down_taps = filter_size * self.down_factor if self.down_factor > 1 and not is_torgb else 1
        self.down_radial = use_radial_filters and not is_critically_sampled
        self.register_buffer("down_filter", design_lowpass_filter(self.down_taps, out_cutoff, out_half_width * 2,
                                                                  self.tmp_sampling_rate, radial=self.down_radial))
        # Output size before downsampling, less the upsampled input, plus what the filters eat; the low
        # side gets the extra half sample (the symmetric sample positions of Appendix C.3).
        pad_total = (self.out_size - 1) * self.down_factor + 1
        pad_total = pad_total - (self.in_size + self.conv_kernel - 1) * self.up_factor
        pad_total = pad_total + self.up_taps + self.down_taps - 2
        pad_lo = (pad_total + self.up_factor) // 2
        pad_hi = pad_total - pad_lo
        self.padding = [int(pad_lo[0]), int(pad_hi[0]), int(pad_lo[1]), int(pad_hi[1])]

    def forward(self, x: torch.Tensor, w: torch.Tensor, noise_mode: str = "random", force_fp32: bool = False,
                update_emas: bool = False) -> torch.Tensor:
        if noise_mode not in NOISE_MODES:  # StyleGAN3 has no noise; the argument is only checked
            raise ValueError(f"noise_mode must be one of {NOISE_MODES}, got {noise_mode!r}")
        if update_emas:
            with torch.no_grad():
                self.magnitude_ema.copy_(x.detach().float().square().mean().lerp(self.magnitude_ema,
                                                                                  self.magnitude_ema_beta))
        input_gain = self.magnitude_ema.rsqrt()
        styles = self.affine(w)
        if self.is_torgb:
            styles = styles / math.sqrt(self.in_channels * self.conv_kernel ** 2)
        dtype = torch.float16 if self.use_fp16 and not force_fp32 and x.device.type == "cuda" else torch.float32
        x = modulated_conv2d(x.to(dtype), self.weight, styles, demodulate=not self.is_torgb,
                             padding=self.conv_kernel - 1, input_gain=input_gain)
        gain, slope = (1.0, 1.0) if self.is_torgb else (math.sqrt(2), 0.2)
        return filtered_lrelu(x, self.up_filter, self.down_filter, self.bias.to(x.dtype), self.up_factor,
                              self.down_factor, self.padding, gain, slope, self.conv_clamp)

    @property
    def name(self) -> str:
        return f"{int(self.out_size[0])}_{self.out_channels}"


@dataclass(frozen=True)
class LayerSpec:
    """One layer's place in the schedule: channels, size (with margin), sampling rate, cutoff, half-width."""

    channels: int
    size: int
    sampling_rate: float
    cutoff: float
    half_width: float


def layer_spec(img_resolution: int, img_channels: int, channel_base: int = 32768, channel_max: int = 512,
               num_layers: int = 14, num_critical: int = 2, first_cutoff: float = 2, first_stopband: float = 2 ** 2.1,
               last_stopband_rel: float = 2 ** 0.3, margin_size: int = 10) -> list[LayerSpec]:
    """The input (index 0) and layers 1..num_layers+1 of Sec. 3.3 / Fig. 4: cutoff f_c and stopband f_t
    grow geometrically from the first layer to the critically sampled last `num_critical` ones; the
    sampling rate is the smallest power of two >= 2 f_t (capped at the resolution); the half-width is
    max(f_t, s / 2) - f_c; channels are (channel_base / 2) / f_c capped at channel_max."""
    last_cutoff = img_resolution / 2
    last_stopband = last_cutoff * last_stopband_rel
    exponents = np.minimum(np.arange(num_layers + 1) / (num_layers - num_critical), 1)
    cutoffs = first_cutoff * (last_cutoff / first_cutoff) ** exponents
    stopbands = first_stopband * (last_stopband / first_stopband) ** exponents
    rates = np.exp2(np.ceil(np.log2(np.minimum(stopbands * 2, img_resolution))))
    half_widths = np.maximum(stopbands, rates / 2) - cutoffs
    sizes = rates + margin_size * 2
    sizes[-2:] = img_resolution
    channels = np.rint(np.minimum((channel_base / 2) / cutoffs, channel_max))
    channels[-1] = img_channels
    return [LayerSpec(int(channels[i]), int(sizes[i]), float(rates[i]), float(cutoffs[i]), float(half_widths[i]))
            for i in range(num_layers + 1)]


class SynthesisNetwork(nn.Module):
    """ws [N, num_ws, w_dim] -> image: row 0 drives the input, rows 1.. the layers `L{i}_{size}_{channels}`."""

    def __init__(self, w_dim: int, img_resolution: int, img_channels: int, channel_base: int = 32768,
                 channel_max: int = 512, num_layers: int = 14, num_critical: int = 2, first_cutoff: float = 2,
                 first_stopband: float = 2 ** 2.1, last_stopband_rel: float = 2 ** 0.3, margin_size: int = 10,
                 output_scale: float = 0.25, num_fp16_res: int = 4, **layer_kwargs: Any) -> None:
        super().__init__()
        self.w_dim = w_dim
        self.num_ws = num_layers + 2
        self.img_resolution = img_resolution
        self.img_channels = img_channels
        self.num_layers = num_layers
        self.num_critical = num_critical
        self.margin_size = margin_size
        self.output_scale = output_scale
        self.num_fp16_res = num_fp16_res
        spec = layer_spec(img_resolution, img_channels, channel_base, channel_max, num_layers, num_critical,
                          first_cutoff, first_stopband, last_stopband_rel, margin_size)
        self.input = SynthesisInput(w_dim, spec[0].channels, spec[0].size, spec[0].sampling_rate, spec[0].cutoff)
        self.layer_names: list[str] = []
        for idx in range(num_layers + 1):
            prev, cur = spec[max(idx - 1, 0)], spec[idx]
            layer = SynthesisLayer(
                w_dim, is_torgb=idx == num_layers, is_critically_sampled=idx >= num_layers - num_critical,
                use_fp16=cur.sampling_rate * 2 ** num_fp16_res > img_resolution,
                in_channels=prev.channels, out_channels=cur.channels, in_size=prev.size, out_size=cur.size,
                in_sampling_rate=int(prev.sampling_rate), out_sampling_rate=int(cur.sampling_rate),
                in_cutoff=prev.cutoff, out_cutoff=cur.cutoff, in_half_width=prev.half_width,
                out_half_width=cur.half_width, **layer_kwargs)
            name = f"L{idx}_{layer.name}"
            setattr(self, name, layer)
            self.layer_names.append(name)

    def forward(self, ws: torch.Tensor, noise_mode: str = "random", force_fp32: bool = False,
                update_emas: bool = False, transform: torch.Tensor | None = None) -> torch.Tensor:
        """`transform`: the input transform [N or 1, 3, 3] for this call (make_transform); None uses the buffer."""
        rows = ws.to(torch.float32).unbind(dim=1)
        x = self.input(rows[0], transform)
        for name, w in zip(self.layer_names, rows[1:]):
            x = getattr(self, name)(x, w, noise_mode=noise_mode, force_fp32=force_fp32, update_emas=update_emas)
        if self.output_scale != 1:
            x = x * self.output_scale
        return x.to(torch.float32)


class Generator(nn.Module):
    """StyleGAN3 generator G(z, c) = synthesis(mapping(z, c)); kwargs as NVIDIA's constructor.

    The mapping network is StyleGAN2's with two layers by default (StyleGAN3 Appendix B).
    """

    def __init__(self, z_dim: int, c_dim: int, w_dim: int, img_resolution: int, img_channels: int,
                 mapping_kwargs: dict[str, Any] | None = None, **synthesis_kwargs: Any) -> None:
        super().__init__()
        self.z_dim = z_dim
        self.c_dim = c_dim
        self.w_dim = w_dim
        self.img_resolution = img_resolution
        self.img_channels = img_channels
        self.synthesis = SynthesisNetwork(w_dim=w_dim, img_resolution=img_resolution, img_channels=img_channels,
                                          **synthesis_kwargs)
        self.num_ws = self.synthesis.num_ws
        mapping = {"num_layers": 2, **dict(mapping_kwargs or {})}
        self.mapping = MappingNetwork(z_dim=z_dim, c_dim=c_dim, w_dim=w_dim, num_ws=self.num_ws, **mapping)

    def forward(self, z: torch.Tensor, c: torch.Tensor | None, truncation_psi: float = 1,
                truncation_cutoff: int | None = None, update_emas: bool = False, **synthesis_kwargs: Any) -> torch.Tensor:
        ws = self.mapping(z, c, truncation_psi=truncation_psi, truncation_cutoff=truncation_cutoff,
                          update_emas=update_emas)
        return self.synthesis(ws, update_emas=update_emas, **synthesis_kwargs)
