"""Give a GAN run's generator more channels without changing what it draws (Net2Net, Chen et al. 2016).

A larger `g_channel_base` widens the high-resolution blocks (channels = min(base / res, max)), where
fine detail is drawn. Training that from scratch costs what the narrow run cost; widening keeps it:

- every tensor keeps its old values in its leading slice; new channels get the new network's own
  random init (so G and G_ema, built as copies, get the same new values);
- weights from a new input channel to an old output channel start at zero, so every old feature is
  computed as before. Demodulation (StyleGAN2 Eq. 3) sums over the inputs, whose new weights are
  zero, so it is unchanged too;
- layers whose weight_gain is 1/sqrt(fan_in) (ToRGB) have their old weights rescaled by the ratio of
  the old and new gains.

The new channels start to matter once the next layer learns weights from them; their gradients are
not zero, since their activations are not. D and its Adam state carry over unchanged. G's Adam starts
fresh, because its tensors changed shape.

    python -m app.train.gan_widen runs/gan12 runs/gan13 --g-channel-base 8192
    python -m app.train.gan --out runs/gan13 --resume --no-adversarial ...
"""

from __future__ import annotations

import argparse
import dataclasses
import shutil
from pathlib import Path

import torch

from app.gan.networks import Generator, channels_per_resolution
from app.train.gan import CHECKPOINT, TEXT_CACHE, GanConfig, build_state, save_checkpoint


@torch.no_grad()
def widen_generator(old: Generator, new: Generator) -> None:
    """Write `old` into the wider `new` in place, so that new(z, c) == old(z, c) (same noise)."""
    old_modules = dict(old.named_modules())
    for name, module in new.named_modules():
        weight = getattr(module, "weight", None)
        source = old_modules[name]
        for key, tensor in list(module.named_parameters(recurse=False)) + list(module.named_buffers(recurse=False)):
            value = getattr(source, key)
            if value.dim() != tensor.dim() or any(a > b for a, b in zip(value.shape, tensor.shape)):
                raise ValueError(f"{name}.{key}: {tuple(value.shape)} does not fit in {tuple(tensor.shape)}")
            tensor[tuple(slice(0, n) for n in value.shape)] = value
        if isinstance(weight, torch.nn.Parameter) and weight.dim() >= 2:
            old_out, old_in = source.weight.shape[:2]
            weight[:old_out, old_in:] = 0
            if hasattr(module, "weight_gain"):
                weight[:old_out, :old_in] *= source.weight_gain / module.weight_gain


def widen_run(src: Path, dst: Path, g_channel_base: int, g_channel_max: int | None = None) -> GanConfig:
    """SRC/checkpoint.pt -> DST/checkpoint.pt with G and G_ema widened; returns the new config."""
    ckpt = torch.load(src / CHECKPOINT, map_location="cpu", weights_only=True)
    cfg = GanConfig(**ckpt["config"])
    wide = dataclasses.replace(cfg, g_channel_base=g_channel_base,
                               g_channel_max=cfg.g_channel_max if g_channel_max is None else g_channel_max)
    state = build_state(wide, torch.device("cpu"))
    for key in ("G", "G_ema"):
        old = Generator(**cfg.generator_kwargs())
        old.load_state_dict(ckpt[key])
        widen_generator(old, getattr(state, key))
    state.D.load_state_dict(ckpt["D"])
    state.opt_d.load_state_dict(ckpt["opt_d"])
    state.step, state.nimg, state.history = ckpt["step"], ckpt["nimg"], ckpt["history"]
    dst.mkdir(parents=True, exist_ok=True)
    save_checkpoint(state, wide, dst / CHECKPOINT)
    if (src / TEXT_CACHE).exists():
        shutil.copyfile(src / TEXT_CACHE, dst / TEXT_CACHE)
    return wide


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m app.train.gan_widen", description=__doc__.splitlines()[0])
    p.add_argument("src", type=Path, help="run folder holding checkpoint.pt")
    p.add_argument("dst", type=Path, help="run folder to write (checkpoint.pt and the text cache)")
    p.add_argument("--g-channel-base", type=int, required=True)
    p.add_argument("--g-channel-max", type=int, default=None, help="default: the run's")
    args = p.parse_args(argv)
    wide = widen_run(args.src, args.dst, args.g_channel_base, args.g_channel_max)
    channels = channels_per_resolution(wide.img_resolution, wide.g_channel_base, wide.g_channel_max)
    print(f"wrote {args.dst / CHECKPOINT}: G channels per resolution {channels}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
