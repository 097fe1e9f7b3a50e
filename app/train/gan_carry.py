"""Carry a GAN run to another machine in a fifth of the bytes, and rebuild it there.

`pack` turns RUN/checkpoint.pt (125 MB for the shipped architecture) into a folder of three files
under 10 MB each: G.pt (G in fp16 with the config, counters and history), D.pt (D in fp16) and
generator.safetensors + config.json (G_ema as `--export` writes it, so the folder also loads as a
generator). Adam's states stay behind: with beta1 = 0 (StyleGAN2's setting) exp_avg is only the last
gradient, and exp_avg_sq restarts from zero under Adam's bias correction (Kingma & Ba 2015, Alg. 1).
`unpack` rebuilds a checkpoint.pt that `python -m app.train.gan --resume` continues.

    python -m app.train.gan_carry pack runs/gan2 carry/
    python -m app.train.gan_carry unpack carry/ runs/gan_gpu
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from app.gan.networks import Generator
from app.train.gan import C_MEANING, CHECKPOINT, GanConfig, build_state, export_generator, save_checkpoint

COUNTERS = ("config", "step", "nimg", "history")


def _half(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.half() if v.is_floating_point() else v for k, v in state_dict.items()}


def pack(run: Path, folder: Path) -> list[Path]:
    """RUN/checkpoint.pt -> FOLDER/{G.pt, D.pt, generator.safetensors, config.json}; returns the paths."""
    ckpt = torch.load(run / CHECKPOINT, map_location="cpu", weights_only=True)
    cfg = GanConfig(**ckpt["config"])
    folder.mkdir(parents=True, exist_ok=True)
    torch.save({"G": _half(ckpt["G"])} | {k: ckpt[k] for k in COUNTERS}, folder / "G.pt")
    torch.save({"D": _half(ckpt["D"])}, folder / "D.pt")
    G_ema = Generator(**cfg.generator_kwargs())
    G_ema.load_state_dict(ckpt["G_ema"])
    conditioning = {"c": C_MEANING, "steps": ckpt["step"], "kimg": ckpt["nimg"] / 1000, "packed_from": str(run)}
    weights = export_generator(G_ema, cfg, folder, conditioning)
    return [folder / "G.pt", folder / "D.pt", weights]


def unpack(folder: Path, run: Path) -> Path:
    """FOLDER from `pack` -> RUN/checkpoint.pt with fresh Adam states; returns its path."""
    from safetensors.torch import load_file

    g = torch.load(folder / "G.pt", map_location="cpu", weights_only=True)
    cfg = GanConfig(**g["config"])
    state = build_state(cfg, torch.device("cpu"))
    state.G.load_state_dict(g["G"])  # fp16 tensors are copied into the fp32 parameters
    state.D.load_state_dict(torch.load(folder / "D.pt", map_location="cpu", weights_only=True)["D"])
    state.G_ema.load_state_dict(load_file(str(folder / "generator.safetensors")))
    state.step, state.nimg, state.history = g["step"], g["nimg"], g["history"]
    run.mkdir(parents=True, exist_ok=True)
    save_checkpoint(state, cfg, run / CHECKPOINT)
    return run / CHECKPOINT


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m app.train.gan_carry", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    a = sub.add_parser("pack", help="RUN (holding checkpoint.pt) -> FOLDER")
    a.add_argument("run", type=Path)
    a.add_argument("folder", type=Path)
    b = sub.add_parser("unpack", help="FOLDER -> RUN/checkpoint.pt")
    b.add_argument("folder", type=Path)
    b.add_argument("run", type=Path)
    args = p.parse_args(argv)
    if args.cmd == "pack":
        for path in pack(args.run, args.folder):
            print(f"{path} ({path.stat().st_size / 1e6:.1f} MB)")
    else:
        ckpt = torch.load(unpack(args.folder, args.run), map_location="cpu", weights_only=True)
        print(f"{args.run / CHECKPOINT}: step {ckpt['step']}, {ckpt['nimg'] / 1000:.1f} kimg, fresh Adam states")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
