"""BigGAN-deep generator (Brock et al. 2019, "Large Scale GAN Training for High Fidelity Natural Image
Synthesis", Appendix B, Fig. 16) in the layout of the `pytorch_pretrained_biggan` package and of the
BigGAN checkpoints on the hub (`config.json` + `pytorch_model.bin`).

    embeddings          Linear(num_classes, z_dim, no bias): the shared class embedding e(y)
    generator.gen_z     SN-Linear([z, e(y)] -> 4 x 4 x 16ch), stored TF-style (channels last)
    generator.layers.i  bottleneck residual blocks; each of their batch norms is conditioned on [z, e(y)]
                        (BigGAN-deep feeds the whole vector to every block, no per-block z chunks),
                        one SAGAN self-attention layer (Zhang et al. 2019) at attention_layer_position
    generator.bn, conv_to_rgb, tanh

Spectral-normalised weights are kept as stored (`weight_orig`, `weight_u`, `weight_v`) and divided by
sigma = u^T W v at run time, as torch's spectral_norm does in eval mode. The batch-norm statistics
are the checkpoint's "standing statistics", one row per truncation value 0, 1/(n_stats-1), ..., 1.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .folder import read_config, read_weights, write_folder
from .torch_checkpoint import find_state_dict, read_checkpoint

FORMAT = "noisescope-biggan"
TRUNCATION_THRESHOLD = 2.0  # BigGAN's truncated normal: |z| above this is resampled (the package: truncnorm(-2, 2))


@dataclass
class BigGANConfig:
    """The package's config.json fields (defaults: biggan-deep-128)."""

    output_dim: int = 128
    z_dim: int = 128
    class_embed_dim: int = 128
    channel_width: int = 128
    num_classes: int = 1000
    layers: list[list[Any]] = field(default_factory=lambda: [
        [False, 16, 16], [True, 16, 16], [False, 16, 16], [True, 16, 8], [False, 8, 8],
        [True, 8, 4], [False, 4, 4], [True, 4, 2], [False, 2, 2], [True, 2, 1]])
    attention_layer_position: int = 8
    eps: float = 1e-4
    n_stats: int = 51

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> BigGANConfig:
        known = {k: d[k] for k in cls.__dataclass_fields__ if k in d}
        cfg = cls(**known)
        cfg.layers = [[bool(u), int(i), int(o)] for u, i, o in cfg.layers]
        if cfg.class_embed_dim != cfg.z_dim:
            raise ValueError("BigGAN-deep concatenates z and the class embedding into 2 * z_dim: "
                             f"class_embed_dim ({cfg.class_embed_dim}) must equal z_dim ({cfg.z_dim})")
        if not cfg.layers or cfg.layers[0][1] != 16 or cfg.layers[-1][2] != 1 or cfg.channel_width < 3:
            raise ValueError("layers must start at 16 x channel_width and end at 1 x channel_width (>= 3 channels)")
        return cfg

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def sn_weight(weight: torch.Tensor, u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """W / sigma with sigma = u^T W v from the stored singular vectors (Miyato et al. 2018, Eq. 12;
    no power iteration: the stored u, v are the converged ones)."""
    sigma = torch.dot(u, torch.mv(weight.reshape(weight.shape[0], -1), v))
    return weight / sigma


class SNLinear(nn.Module):
    def __init__(self, cin: int, cout: int, bias: bool = True) -> None:
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(cout)) if bias else None
        self.weight_orig = nn.Parameter(torch.randn(cout, cin) / math.sqrt(cin))
        self.register_buffer("weight_u", F.normalize(torch.randn(cout), dim=0))
        self.register_buffer("weight_v", F.normalize(torch.randn(cin), dim=0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, sn_weight(self.weight_orig, self.weight_u, self.weight_v), self.bias)


class SNConv2d(nn.Module):
    def __init__(self, cin: int, cout: int, kernel: int, bias: bool = True) -> None:
        super().__init__()
        self.padding = kernel // 2
        self.bias = nn.Parameter(torch.zeros(cout)) if bias else None
        self.weight_orig = nn.Parameter(torch.randn(cout, cin, kernel, kernel) / math.sqrt(cin * kernel * kernel))
        self.register_buffer("weight_u", F.normalize(torch.randn(cout), dim=0))
        self.register_buffer("weight_v", F.normalize(torch.randn(cin * kernel * kernel), dim=0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, sn_weight(self.weight_orig, self.weight_u, self.weight_v), self.bias, padding=self.padding)


def standing_stats(means: torch.Tensor, variances: torch.Tensor, truncation: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Batch-norm statistics for a truncation in (0, 1], blended from the two nearest stored rows.

    As the package blends them: with t / step = i + f, row i gets weight f and row i + 1 weight 1 - f
    (the reverse of a linear interpolation; kept so the released weights render as they always have)."""
    step = 1.0 / (means.shape[0] - 1)
    coef, start = math.modf(truncation / step)
    i = int(start)
    if coef == 0.0:
        return means[i], variances[i]
    return means[i] * coef + means[i + 1] * (1 - coef), variances[i] * coef + variances[i + 1] * (1 - coef)


class ConditionalBatchNorm(nn.Module):
    """Class-conditional batch norm (de Vries et al. 2017): gain 1 + scale(c), bias offset(c), c = [z, e(y)]."""

    def __init__(self, channels: int, cond_dim: int, n_stats: int, eps: float) -> None:
        super().__init__()
        self.eps = eps
        self.register_buffer("running_means", torch.zeros(n_stats, channels))
        self.register_buffer("running_vars", torch.ones(n_stats, channels))
        self.scale = SNLinear(cond_dim, channels, bias=False)
        self.offset = SNLinear(cond_dim, channels, bias=False)

    def forward(self, x: torch.Tensor, truncation: float, cond: torch.Tensor) -> torch.Tensor:
        mean, var = standing_stats(self.running_means, self.running_vars, truncation)
        gain = 1 + self.scale(cond)[:, :, None, None]
        bias = self.offset(cond)[:, :, None, None]
        return (x - mean[None, :, None, None]) / torch.sqrt(var[None, :, None, None] + self.eps) * gain + bias


class BatchNorm(nn.Module):
    """The output batch norm: unconditional, standing statistics per truncation."""

    def __init__(self, channels: int, n_stats: int, eps: float) -> None:
        super().__init__()
        self.eps = eps
        self.register_buffer("running_means", torch.zeros(n_stats, channels))
        self.register_buffer("running_vars", torch.ones(n_stats, channels))
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor, truncation: float) -> torch.Tensor:
        mean, var = standing_stats(self.running_means, self.running_vars, truncation)
        return F.batch_norm(x, mean, var, self.weight, self.bias, training=False, eps=self.eps)


class SelfAttention(nn.Module):
    """SAGAN attention (Zhang et al. 2019, Eq. 1-3), keys and values max-pooled 2x as in BigGAN."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.snconv1x1_theta = SNConv2d(channels, channels // 8, 1, bias=False)
        self.snconv1x1_phi = SNConv2d(channels, channels // 8, 1, bias=False)
        self.snconv1x1_g = SNConv2d(channels, channels // 2, 1, bias=False)
        self.snconv1x1_o_conv = SNConv2d(channels // 2, channels, 1, bias=False)
        self.gamma = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, ch, h, w = x.shape
        query = self.snconv1x1_theta(x).reshape(n, ch // 8, h * w)                       # [N, C/8, HW]
        key = F.max_pool2d(self.snconv1x1_phi(x), 2).reshape(n, ch // 8, h * w // 4)     # [N, C/8, HW/4]
        attn = torch.softmax(torch.bmm(query.transpose(1, 2), key), dim=-1)              # [N, HW, HW/4]
        value = F.max_pool2d(self.snconv1x1_g(x), 2).reshape(n, ch // 2, h * w // 4)     # [N, C/2, HW/4]
        out = torch.bmm(value, attn.transpose(1, 2)).reshape(n, ch // 2, h, w)
        return x + self.gamma * self.snconv1x1_o_conv(out)


class GenBlock(nn.Module):
    """BigGAN-deep residual block (Fig. 16b): 1x1 down to in/4 channels, two 3x3, 1x1 up; the skip drops
    channels and upsamples (nearest) to match."""

    def __init__(self, cin: int, cout: int, cond_dim: int, up: bool, n_stats: int, eps: float) -> None:
        super().__init__()
        mid = cin // 4
        self.up = up
        self.cout = cout
        for i, (a, b, k) in enumerate(((cin, mid, 1), (mid, mid, 3), (mid, mid, 3), (mid, cout, 1))):
            setattr(self, f"bn_{i}", ConditionalBatchNorm(a, cond_dim, n_stats, eps))
            setattr(self, f"conv_{i}", SNConv2d(a, b, k))

    def forward(self, x: torch.Tensor, cond: torch.Tensor, truncation: float) -> torch.Tensor:
        h = x
        for i in range(4):
            h = F.relu(getattr(self, f"bn_{i}")(h, truncation, cond))
            if i == 1 and self.up:
                h = F.interpolate(h, scale_factor=2, mode="nearest")
            h = getattr(self, f"conv_{i}")(h)
        skip = x[:, :self.cout] if x.shape[1] != self.cout else x
        if self.up:
            skip = F.interpolate(skip, scale_factor=2, mode="nearest")
        return h + skip


class Generator(nn.Module):
    def __init__(self, cfg: BigGANConfig) -> None:
        super().__init__()
        ch, cond_dim = cfg.channel_width, 2 * cfg.z_dim
        self.channel_width = ch
        self.gen_z = SNLinear(cond_dim, 4 * 4 * 16 * ch)
        layers: list[nn.Module] = []
        for i, (up, cin, cout) in enumerate(cfg.layers):
            if i == cfg.attention_layer_position:
                layers.append(SelfAttention(ch * cin))
            layers.append(GenBlock(ch * cin, ch * cout, cond_dim, up, cfg.n_stats, cfg.eps))
        self.layers = nn.ModuleList(layers)
        self.bn = BatchNorm(ch, cfg.n_stats, cfg.eps)
        self.conv_to_rgb = SNConv2d(ch, ch, 3)

    def forward(self, cond: torch.Tensor, truncation: float) -> torch.Tensor:
        x = self.gen_z(cond).reshape(-1, 4, 4, 16 * self.channel_width).permute(0, 3, 1, 2)  # stored NHWC
        for layer in self.layers:
            x = layer(x, cond, truncation) if isinstance(layer, GenBlock) else layer(x)
        x = self.conv_to_rgb(F.relu(self.bn(x, truncation)))
        return torch.tanh(x[:, :3])


class BigGAN(nn.Module):
    """G(z, y, truncation) = generator([z, e(y)], truncation); y a one-hot (or soft) class vector."""

    def __init__(self, config: BigGANConfig) -> None:
        super().__init__()
        self.config = config
        self.z_dim = config.z_dim
        self.num_classes = config.num_classes
        self.img_resolution = 4 * 2 ** sum(1 for up, _, _ in config.layers if up)
        self.img_channels = 3
        self.embeddings = nn.Linear(config.num_classes, config.z_dim, bias=False)
        self.generator = Generator(config)

    def embed(self, class_vector: torch.Tensor) -> torch.Tensor:
        """e(y) [N, z_dim] for class vectors [N, num_classes] (one-hot, or soft: a class blend)."""
        return self.embeddings(class_vector.to(self.embeddings.weight))

    def class_embedding(self, class_ids: list[int] | torch.Tensor) -> torch.Tensor:
        """e(y) [N, z_dim] of class indices (a column of the embedding matrix each)."""
        ids = torch.as_tensor(class_ids, dtype=torch.long, device=self.embeddings.weight.device).reshape(-1)
        if ids.numel() and (int(ids.min()) < 0 or int(ids.max()) >= self.num_classes):
            raise ValueError(f"class ids must be in [0, {self.num_classes})")
        return self.embeddings.weight[:, ids].t()

    def synthesize(self, z: torch.Tensor, embedding: torch.Tensor, truncation: float) -> torch.Tensor:
        """Image [N, 3, R, R] in [-1, 1] from z [N, z_dim] (already truncated) and e(y) [N or 1, z_dim]."""
        check_truncation(truncation)
        embedding = embedding.expand(z.shape[0], -1) if embedding.shape[0] == 1 else embedding
        return self.generator(torch.cat([z.to(embedding), embedding], dim=1), truncation)

    def forward(self, z: torch.Tensor, class_vector: torch.Tensor, truncation: float) -> torch.Tensor:
        return self.synthesize(z, self.embed(class_vector), truncation)


def check_truncation(truncation: float) -> None:
    if not 0 < truncation <= 1:
        raise ValueError(f"BigGAN truncation must be in (0, 1], got {truncation}")


def truncated_normal(rng: np.random.RandomState, shape: tuple[int, ...],
                     threshold: float = TRUNCATION_THRESHOLD) -> np.ndarray:
    """N(0, 1) samples with every value of magnitude above `threshold` redrawn until none is left
    (BigGAN Sec. 3.1, the truncation trick)."""
    z = rng.standard_normal(shape)
    bad = np.abs(z) > threshold
    while bad.any():
        z[bad] = rng.standard_normal(int(bad.sum()))
        bad = np.abs(z) > threshold
    return z


def truncated_z(seed: int, z_dim: int, truncation: float, threshold: float = TRUNCATION_THRESHOLD) -> torch.Tensor:
    """z [1, z_dim] of a seed: the truncated normal, scaled by the truncation value as in the package and
    the TF hub module (so both the sample's spread and the batch-norm statistics follow the slider)."""
    check_truncation(truncation)
    z = truncated_normal(np.random.RandomState(seed), (1, z_dim), threshold)
    return torch.from_numpy(truncation * z).to(torch.float32)


def lerp_classes(G: BigGAN, a: int, b: int, t: float) -> torch.Tensor:
    """Class interpolation: e = (1 - t) e(a) + t e(b), the embedding of the soft label (1 - t) y_a + t y_b."""
    ea, eb = G.class_embedding([a, b])
    return torch.lerp(ea, eb, float(t))[None]


def build(config: dict[str, Any], state_dict: dict[str, torch.Tensor]) -> BigGAN:
    G = BigGAN(BigGANConfig.from_dict(config))
    G.load_state_dict(state_dict, strict=True)
    return G.eval().requires_grad_(False)


def read_class_names(path: str | Path) -> list[str]:
    """A names file: a JSON list, a JSON {index: name} object, or one name per line."""
    import json

    text = Path(path).read_text(encoding="utf-8")
    if text.lstrip().startswith(("[", "{")):
        data = json.loads(text)
        if isinstance(data, dict):
            data = [data[k] for k in sorted(data, key=lambda k: int(k))]
        return [str(n) for n in data]
    return [line.strip() for line in text.splitlines() if line.strip()]


def convert_package_checkpoint(src: str | Path, outdir: str | Path, overwrite: bool = False,
                               class_names: list[str] | None = None,
                               state_dict: dict[str, torch.Tensor] | None = None) -> Path:
    """A `pytorch_pretrained_biggan` folder (config.json + pytorch_model.bin), or its .bin with config.json
    beside it, -> the served folder. The .bin is read tensors-only."""
    import json

    src = Path(src)
    folder, weights = (src, src / "pytorch_model.bin") if src.is_dir() else (src.parent, src)
    cfg_file = folder / "config.json"
    if not cfg_file.is_file():
        raise FileNotFoundError(f"no config.json beside {weights} (the BigGAN layout is config.json + weights)")
    config = BigGANConfig.from_dict(json.loads(cfg_file.read_text())).to_dict()
    sd = state_dict if state_dict is not None else find_state_dict(read_checkpoint(weights))
    G = build(config, sd)  # strict: every key and shape checked before anything is written
    if class_names is not None and len(class_names) != G.num_classes:
        raise ValueError(f"{len(class_names)} class names for {G.num_classes} classes")
    out: dict[str, Any] = {"format": FORMAT, "class_name": "BigGAN", "init_kwargs": config,
                           "source": weights.name}
    if class_names is not None:
        out["class_names"] = class_names
    tensors = {k: v.to(torch.float32) for k, v in G.state_dict().items()}
    return write_folder(outdir, tensors, out, overwrite=overwrite)


def load(path: str | Path, device: str | torch.device = "cpu") -> tuple[BigGAN, list[str] | None]:
    """A converted BigGAN folder on `device`, with its class names (None when it ships none)."""
    cfg = read_config(path)
    if cfg.get("format") != FORMAT:
        raise ValueError(f"{path}: not a converted BigGAN (config.json format {cfg.get('format')!r})")
    names = cfg.get("class_names")
    return build(cfg["init_kwargs"], read_weights(path)).to(device), names
