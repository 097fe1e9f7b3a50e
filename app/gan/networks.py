"""StyleGAN2 generator (Karras et al. 2020) with NVIDIA's state-dict layout.

Parameter and buffer names, shapes and registration order match NVlabs' `networks_stylegan2.py`
(stylegan2-ada-pytorch / stylegan3), so their `G_ema.state_dict()` loads with `strict=True`.
Equalised learning rate (Karras et al. 2018, Sec. 4.1): weights are stored at unit scale and
multiplied by a runtime gain.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from .ops import bias_act, conv2d_resample, modulated_conv2d, setup_filter, upsample2d

NOISE_MODES = ("const", "random", "none")


def normalize_2nd_moment(x: torch.Tensor, dim: int = 1, eps: float = 1e-8) -> torch.Tensor:
    """Scale each vector to unit root-mean-square (StyleGAN's "PixelNorm" on z)."""
    return x * (x.square().mean(dim=dim, keepdim=True) + eps).rsqrt()


class FullyConnectedLayer(nn.Module):
    """Dense layer with equalised learning rate: y = act(x (W * lr / sqrt(in))^T + b * lr)."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True, activation: str = "linear",
                 lr_multiplier: float = 1.0, bias_init: float = 0.0) -> None:
        super().__init__()
        self.in_features = in_features
        self.out_features = out_features
        self.activation = activation
        self.weight = nn.Parameter(torch.randn([out_features, in_features]) / lr_multiplier)
        self.bias = nn.Parameter(torch.full([out_features], float(bias_init))) if bias else None
        self.weight_gain = lr_multiplier / math.sqrt(in_features)
        self.bias_gain = lr_multiplier

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.weight.to(x.dtype) * self.weight_gain
        b = self.bias
        if b is not None:
            b = b.to(x.dtype)
            if self.bias_gain != 1:
                b = b * self.bias_gain
        if self.activation == "linear" and b is not None:
            return torch.addmm(b.unsqueeze(0), x, w.t())
        return bias_act(x.matmul(w.t()), b, act=self.activation)


def truncate(w_avg: torch.Tensor, ws: torch.Tensor, psi: float, cutoff: int | None = None) -> torch.Tensor:
    """Truncation trick: w' = w_avg + psi (w - w_avg) on rows [:cutoff] of ws [N, num_ws, w_dim] (all if None)."""
    if psi == 1:
        return ws
    if cutoff is None:
        return w_avg.lerp(ws, psi)
    ws = ws.clone()
    centre = w_avg[:, :cutoff] if w_avg.ndim == 3 else w_avg  # a per-row centre [N or 1, num_ws, w_dim]
    ws[:, :cutoff] = centre.lerp(ws[:, :cutoff], psi)
    return ws


class MappingNetwork(nn.Module):
    """z [N, z_dim], c [N, c_dim] -> ws [N, num_ws, w_dim] (StyleGAN Sec. 2: an MLP from Z to W)."""

    def __init__(self, z_dim: int, c_dim: int, w_dim: int, num_ws: int | None, num_layers: int = 8,
                 embed_features: int | None = None, layer_features: int | None = None, activation: str = "lrelu",
                 lr_multiplier: float = 0.01, w_avg_beta: float | None = 0.998) -> None:
        super().__init__()
        self.z_dim = z_dim
        self.c_dim = c_dim
        self.w_dim = w_dim
        self.num_ws = num_ws
        self.num_layers = num_layers
        self.w_avg_beta = w_avg_beta
        if embed_features is None:
            embed_features = w_dim
        if c_dim == 0:
            embed_features = 0
        if layer_features is None:
            layer_features = w_dim
        features = [z_dim + embed_features] + [layer_features] * (num_layers - 1) + [w_dim]
        if c_dim > 0:
            self.embed = FullyConnectedLayer(c_dim, embed_features)
        for i in range(num_layers):
            layer = FullyConnectedLayer(features[i], features[i + 1], activation=activation, lr_multiplier=lr_multiplier)
            setattr(self, f"fc{i}", layer)
        if num_ws is not None and w_avg_beta is not None:
            self.register_buffer("w_avg", torch.zeros([w_dim]))

    def forward(self, z: torch.Tensor | None, c: torch.Tensor | None, truncation_psi: float = 1,
                truncation_cutoff: int | None = None, update_emas: bool = False) -> torch.Tensor:
        x = None
        if self.z_dim > 0:
            x = normalize_2nd_moment(z.to(torch.float32))
        if self.c_dim > 0:
            y = normalize_2nd_moment(self.embed(c.to(torch.float32)))
            x = torch.cat([x, y], dim=1) if x is not None else y
        for i in range(self.num_layers):
            x = getattr(self, f"fc{i}")(x)
        if update_emas and self.w_avg_beta is not None:
            self.w_avg.copy_(x.detach().mean(dim=0).lerp(self.w_avg, self.w_avg_beta))
        if self.num_ws is not None:
            x = x.unsqueeze(1).repeat([1, self.num_ws, 1])
        if truncation_psi != 1:
            assert self.w_avg_beta is not None, "truncation needs w_avg"
            x = truncate(self.w_avg, x, truncation_psi, truncation_cutoff if self.num_ws is not None else None)
        return x


class SynthesisLayer(nn.Module):
    """Modulated 3x3 conv + per-pixel noise (B in StyleGAN Fig. 1) + bias + lrelu."""

    def __init__(self, in_channels: int, out_channels: int, w_dim: int, resolution: int, kernel_size: int = 3,
                 up: int = 1, use_noise: bool = True, activation: str = "lrelu",
                 resample_filter: Sequence[float] = (1, 3, 3, 1), conv_clamp: float | None = None,
                 channels_last: bool = False) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.w_dim = w_dim
        self.resolution = resolution
        self.up = up
        self.use_noise = use_noise
        self.activation = activation
        self.conv_clamp = conv_clamp
        self.padding = kernel_size // 2
        self.act_gain = math.sqrt(2.0) if activation in ("lrelu", "relu") else 1.0
        self.affine = FullyConnectedLayer(w_dim, in_channels, bias_init=1)
        self.register_buffer("resample_filter", setup_filter(resample_filter))
        self.weight = nn.Parameter(torch.randn([out_channels, in_channels, kernel_size, kernel_size]))
        if use_noise:
            self.register_buffer("noise_const", torch.randn([resolution, resolution]))
            self.noise_strength = nn.Parameter(torch.zeros([]))
        self.bias = nn.Parameter(torch.zeros([out_channels]))

    def forward(self, x: torch.Tensor, w: torch.Tensor, noise_mode: str = "random", fused_modconv: bool = True,
                gain: float = 1) -> torch.Tensor:
        if noise_mode not in NOISE_MODES:
            raise ValueError(f"noise_mode must be one of {NOISE_MODES}, got {noise_mode!r}")
        styles = self.affine(w)  # [N, I]
        noise = None
        if self.use_noise and noise_mode == "random":
            noise = torch.randn([x.shape[0], 1, self.resolution, self.resolution], device=x.device) * self.noise_strength
        if self.use_noise and noise_mode == "const":
            noise = self.noise_const * self.noise_strength
        x = modulated_conv2d(x, self.weight, styles, noise=noise, up=self.up, padding=self.padding,
                             resample_filter=self.resample_filter, fused=fused_modconv)
        clamp = self.conv_clamp * gain if self.conv_clamp is not None else None
        return bias_act(x, self.bias.to(x.dtype), act=self.activation, gain=self.act_gain * gain, clamp=clamp)


class ToRGBLayer(nn.Module):
    """Modulated 1x1 conv to image channels, not demodulated (StyleGAN2 Fig. 7, "tRGB")."""

    def __init__(self, in_channels: int, out_channels: int, w_dim: int, kernel_size: int = 1,
                 conv_clamp: float | None = None, channels_last: bool = False) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.w_dim = w_dim
        self.conv_clamp = conv_clamp
        self.affine = FullyConnectedLayer(w_dim, in_channels, bias_init=1)
        self.weight = nn.Parameter(torch.randn([out_channels, in_channels, kernel_size, kernel_size]))
        self.bias = nn.Parameter(torch.zeros([out_channels]))
        self.weight_gain = 1 / math.sqrt(in_channels * kernel_size * kernel_size)

    def forward(self, x: torch.Tensor, w: torch.Tensor, fused_modconv: bool = True) -> torch.Tensor:
        styles = self.affine(w) * self.weight_gain
        x = modulated_conv2d(x, self.weight, styles, demodulate=False, fused=fused_modconv)
        return bias_act(x, self.bias.to(x.dtype), clamp=self.conv_clamp)


class Conv2dLayer(nn.Module):
    """Plain equalised-lr convolution; only the resnet architecture's 1x1 skip uses it here."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, bias: bool = True,
                 activation: str = "linear", up: int = 1, resample_filter: Sequence[float] = (1, 3, 3, 1),
                 conv_clamp: float | None = None) -> None:
        super().__init__()
        self.activation = activation
        self.up = up
        self.conv_clamp = conv_clamp
        self.padding = kernel_size // 2
        self.weight_gain = 1 / math.sqrt(in_channels * kernel_size * kernel_size)
        self.act_gain = math.sqrt(2.0) if activation in ("lrelu", "relu") else 1.0
        self.weight = nn.Parameter(torch.randn([out_channels, in_channels, kernel_size, kernel_size]))
        self.bias = nn.Parameter(torch.zeros([out_channels])) if bias else None
        self.register_buffer("resample_filter", setup_filter(resample_filter))

    def forward(self, x: torch.Tensor, gain: float = 1) -> torch.Tensor:
        w = (self.weight * self.weight_gain).to(x.dtype)
        x = conv2d_resample(x, w, f=self.resample_filter, up=self.up, padding=self.padding)
        b = self.bias.to(x.dtype) if self.bias is not None else None
        clamp = self.conv_clamp * gain if self.conv_clamp is not None else None
        return bias_act(x, b, act=self.activation, gain=self.act_gain * gain, clamp=clamp)


class SynthesisBlock(nn.Module):
    """One resolution: [const | upsampling conv0] -> conv1 -> tRGB, with the skip/orig/resnet wiring."""

    def __init__(self, in_channels: int, out_channels: int, w_dim: int, resolution: int, img_channels: int,
                 is_last: bool, architecture: str = "skip", resample_filter: Sequence[float] = (1, 3, 3, 1),
                 conv_clamp: float | None = 256, use_fp16: bool = False, fp16_channels_last: bool = False,
                 fused_modconv_default: bool | str = True, **layer_kwargs: Any) -> None:
        if architecture not in ("orig", "skip", "resnet"):
            raise ValueError(f"unknown architecture {architecture!r}")
        super().__init__()
        self.in_channels = in_channels
        self.w_dim = w_dim
        self.resolution = resolution
        self.img_channels = img_channels
        self.is_last = is_last
        self.architecture = architecture
        self.use_fp16 = use_fp16
        self.fused_modconv_default = fused_modconv_default
        self.register_buffer("resample_filter", setup_filter(resample_filter))
        self.num_conv = 0
        self.num_torgb = 0
        if in_channels == 0:
            self.const = nn.Parameter(torch.randn([out_channels, resolution, resolution]))
        else:
            self.conv0 = SynthesisLayer(in_channels, out_channels, w_dim, resolution, up=2,
                                        resample_filter=resample_filter, conv_clamp=conv_clamp, **layer_kwargs)
            self.num_conv += 1
        self.conv1 = SynthesisLayer(out_channels, out_channels, w_dim, resolution, conv_clamp=conv_clamp, **layer_kwargs)
        self.num_conv += 1
        if is_last or architecture == "skip":
            self.torgb = ToRGBLayer(out_channels, img_channels, w_dim, conv_clamp=conv_clamp)
            self.num_torgb += 1
        if in_channels != 0 and architecture == "resnet":
            self.skip = Conv2dLayer(in_channels, out_channels, kernel_size=1, bias=False, up=2,
                                    resample_filter=resample_filter)

    def forward(self, x: torch.Tensor | None, img: torch.Tensor | None, ws: torch.Tensor, force_fp32: bool = False,
                fused_modconv: bool | None = None, noise_mode: str = "random") -> tuple[torch.Tensor, torch.Tensor | None]:
        w_iter = iter(ws.unbind(dim=1))
        use_fp16 = self.use_fp16 and not force_fp32 and ws.device.type == "cuda"
        dtype = torch.float16 if use_fp16 else torch.float32
        if fused_modconv is None:
            fused_modconv = self.fused_modconv_default
        if fused_modconv == "inference_only":
            fused_modconv = not self.training

        if self.in_channels == 0:
            x = self.const.to(dtype).unsqueeze(0).repeat([ws.shape[0], 1, 1, 1])
            x = self.conv1(x, next(w_iter), noise_mode=noise_mode, fused_modconv=fused_modconv)
        elif self.architecture == "resnet":
            x = x.to(dtype)
            y = self.skip(x, gain=math.sqrt(0.5))
            x = self.conv0(x, next(w_iter), noise_mode=noise_mode, fused_modconv=fused_modconv)
            x = self.conv1(x, next(w_iter), noise_mode=noise_mode, fused_modconv=fused_modconv, gain=math.sqrt(0.5))
            x = y + x
        else:
            x = x.to(dtype)
            x = self.conv0(x, next(w_iter), noise_mode=noise_mode, fused_modconv=fused_modconv)
            x = self.conv1(x, next(w_iter), noise_mode=noise_mode, fused_modconv=fused_modconv)

        if img is not None:
            img = upsample2d(img, self.resample_filter)
        if self.is_last or self.architecture == "skip":
            y = self.torgb(x, next(w_iter), fused_modconv=fused_modconv).to(torch.float32)
            img = img + y if img is not None else y
        return x, img


def channels_per_resolution(img_resolution: int, channel_base: int, channel_max: int) -> dict[int, int]:
    """StyleGAN2's width rule, min(channel_base // res, channel_max), for res = 4, 8, ..., img_resolution."""
    return {2 ** i: min(channel_base // 2 ** i, channel_max) for i in range(2, int(math.log2(img_resolution)) + 1)}


class SynthesisNetwork(nn.Module):
    """ws [N, num_ws, w_dim] -> image [N, img_channels, R, R], one SynthesisBlock per power of two from 4."""

    def __init__(self, w_dim: int, img_resolution: int, img_channels: int, channel_base: int = 32768,
                 channel_max: int = 512, num_fp16_res: int = 4, **block_kwargs: Any) -> None:
        log2 = int(math.log2(img_resolution))
        if img_resolution < 4 or 2 ** log2 != img_resolution:
            raise ValueError(f"img_resolution must be a power of two >= 4, got {img_resolution}")
        super().__init__()
        self.w_dim = w_dim
        self.img_resolution = img_resolution
        self.img_channels = img_channels
        self.num_fp16_res = num_fp16_res
        self.block_resolutions = [2 ** i for i in range(2, log2 + 1)]
        channels = channels_per_resolution(img_resolution, channel_base, channel_max)
        fp16_resolution = max(2 ** (log2 + 1 - num_fp16_res), 8)
        self.num_ws = 0
        for res in self.block_resolutions:
            in_channels = channels[res // 2] if res > 4 else 0
            is_last = res == img_resolution
            block = SynthesisBlock(in_channels, channels[res], w_dim, res, img_channels, is_last,
                                   use_fp16=res >= fp16_resolution, **block_kwargs)
            self.num_ws += block.num_conv
            if is_last:
                self.num_ws += block.num_torgb
            setattr(self, f"b{res}", block)

    def forward(self, ws: torch.Tensor, noise_mode: str = "random", force_fp32: bool = False,
                fused_modconv: bool | None = None, update_emas: bool = False) -> torch.Tensor:
        ws = ws.to(torch.float32)
        x = img = None
        w_idx = 0
        for res in self.block_resolutions:
            block = getattr(self, f"b{res}")
            # Consecutive blocks share one w: a block's tRGB uses the same row as the next block's conv0.
            block_ws = ws.narrow(1, w_idx, block.num_conv + block.num_torgb)
            w_idx += block.num_conv
            x, img = block(x, img, block_ws, force_fp32=force_fp32, fused_modconv=fused_modconv, noise_mode=noise_mode)
        return img


class Generator(nn.Module):
    """StyleGAN2 generator G(z, c) = synthesis(mapping(z, c)); kwargs as NVIDIA's constructor.

    `synthesis_kwargs={...}` (stylegan2-ada-pytorch's form) is accepted as well as flat keyword args
    (stylegan3's form).
    """

    def __init__(self, z_dim: int, c_dim: int, w_dim: int, img_resolution: int, img_channels: int,
                 mapping_kwargs: dict[str, Any] | None = None, **synthesis_kwargs: Any) -> None:
        super().__init__()
        nested = synthesis_kwargs.pop("synthesis_kwargs", None) or {}
        synthesis_kwargs = {**nested, **synthesis_kwargs}
        self.z_dim = z_dim
        self.c_dim = c_dim
        self.w_dim = w_dim
        self.img_resolution = img_resolution
        self.img_channels = img_channels
        self.synthesis = SynthesisNetwork(w_dim=w_dim, img_resolution=img_resolution, img_channels=img_channels,
                                          **synthesis_kwargs)
        self.num_ws = self.synthesis.num_ws
        self.mapping = MappingNetwork(z_dim=z_dim, c_dim=c_dim, w_dim=w_dim, num_ws=self.num_ws,
                                      **dict(mapping_kwargs or {}))

    def forward(self, z: torch.Tensor, c: torch.Tensor | None, truncation_psi: float = 1,
                truncation_cutoff: int | None = None, update_emas: bool = False, **synthesis_kwargs: Any) -> torch.Tensor:
        ws = self.mapping(z, c, truncation_psi=truncation_psi, truncation_cutoff=truncation_cutoff,
                          update_emas=update_emas)
        return self.synthesis(ws, update_emas=update_emas, **synthesis_kwargs)


def z_from_seed(seed: int, z_dim: int) -> torch.Tensor:
    """Deterministic z [1, z_dim] for a seed; the same draw as NVIDIA's gen_images.py (numpy RandomState)."""
    return torch.from_numpy(np.random.RandomState(seed).randn(1, z_dim)).to(torch.float32)


def mix_styles(ws: torch.Tensor, ws_other: torch.Tensor, index: int) -> torch.Tensor:
    """Style mixing (StyleGAN Sec. 3.1): rows [index:] of ws [N, num_ws, w_dim] taken from ws_other."""
    out = ws.clone()
    out[:, index:] = ws_other[:, index:]
    return out


def lerp_w(w0: torch.Tensor, w1: torch.Tensor, t: float | torch.Tensor) -> torch.Tensor:
    """Linear interpolation in W (StyleGAN Sec. 4.1: W is disentangled enough for straight lines)."""
    return torch.lerp(w0, w1, t if isinstance(t, torch.Tensor) else float(t))
