"""python -m app.train {clip,vae,unet,export,sample,all} — train and ship the embedded diffusion + CLIP models.

Typical run (after `python -m app.train.data build --out data/emoji`)::

    python -m app.train clip --data data/emoji --out runs/clip --steps 3000
    python -m app.train vae  --data data/emoji --out runs/vae  --steps 4000
    python -m app.train unet --data data/emoji --clip runs/clip/model --vae runs/vae/model --out runs/unet --steps 30000
    python -m app.train export --runs runs --out models
    python -m app.train sample --pipeline models/diffusion --png runs/grid.png

Every trainer checkpoints to OUT/checkpoint.pt; `--resume` continues from it.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from app.train.models import FULL, TINY

DEFAULTS = {"clip": (3000, 256, 5e-4), "vae": (4000, 64, 4e-4), "unet": (30000, 128, 3e-4)}


def _common(p: argparse.ArgumentParser, kind: str) -> None:
    steps, batch, lr = DEFAULTS[kind]
    p.add_argument("--data", default="data/emoji", help="dataset folder/.npz, or 'shapes[:N]'")
    p.add_argument("--out", type=Path, default=Path("runs") / kind)
    p.add_argument("--steps", type=int, default=steps)
    p.add_argument("--batch", type=int, default=batch)
    p.add_argument("--lr", type=float, default=lr)
    p.add_argument("--minutes", type=float, default=None, help="stop (and save) after this much wall time")
    p.add_argument("--resume", action="store_true")
    p.add_argument("--tiny", action="store_true", help="test-sized architectures")
    p.add_argument("--device", default=None)
    p.add_argument("--init", type=Path, default=None, help="fine-tune from this trained model folder")


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m app.train", description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("clip", help="contrastive CLIP")
    _common(c, "clip")
    c.add_argument("--freeze-text", action="store_true",
                   help="with --init: train the vision tower and new words only (old prompts keep their embeddings)")
    _common(sub.add_parser("vae", help="AutoencoderKL f=4"), "vae")
    u = sub.add_parser("unet", help="latent UNet on the frozen CLIP text tower")
    _common(u, "unet")
    u.add_argument("--clip", type=Path, default=Path("runs/clip/model"))
    u.add_argument("--vae", type=Path, default=Path("runs/vae/model"))
    e = sub.add_parser("export", help="write models/clip and models/diffusion (fp16) from runs/")
    e.add_argument("--runs", type=Path, default=Path("runs"))
    e.add_argument("--out", type=Path, default=Path("models"))
    r = sub.add_parser("vae-check", help="a VAE's mean reconstruction error (0-255) per art style of a dataset")
    r.add_argument("--vae", type=Path, default=Path("models/diffusion/vae"))
    r.add_argument("--data", default="data/emoji")
    r.add_argument("--per-style", type=int, default=256)
    s = sub.add_parser("sample", help="a PNG grid of the sanity prompts")
    s.add_argument("--pipeline", type=Path, default=Path("models/diffusion"))
    s.add_argument("--png", type=Path, default=Path("runs/grid.png"))
    s.add_argument("--steps", type=int, default=30)
    s.add_argument("--guidance", type=float, default=5.0)
    s.add_argument("--device", default="cpu")
    a = sub.add_parser("all", help="clip, vae, unet, export in sequence (each with a time budget)")
    a.add_argument("--data", default="data/emoji")
    a.add_argument("--runs", type=Path, default=Path("runs"))
    a.add_argument("--out", type=Path, default=Path("models"))
    a.add_argument("--minutes", type=float, nargs=3, default=(1.5, 2.0, 5.0), metavar=("CLIP", "VAE", "UNET"))
    a.add_argument("--steps", type=int, nargs=3, default=(3000, 4000, 30000), metavar=("CLIP", "VAE", "UNET"))
    a.add_argument("--batch", type=int, nargs=3, default=(256, 64, 128), metavar=("CLIP", "VAE", "UNET"))
    a.add_argument("--resume", action="store_true")
    a.add_argument("--tiny", action="store_true")
    a.add_argument("--device", default=None)
    return ap


def _report(name: str, result: dict, t0: float) -> None:
    brief = {k: v for k, v in result.items() if k != "losses"}
    losses = result.get("losses") or []
    if losses:
        k = min(50, len(losses))
        brief["loss_first50"] = round(sum(losses[:k]) / k, 4)
        brief["loss_last50"] = round(sum(losses[-k:]) / k, 4)
    brief["seconds"] = round(time.time() - t0, 1)
    print(f"{name}: {json.dumps(brief)}", flush=True)


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    t0 = time.time()
    if args.cmd in ("clip", "vae", "unet"):
        kw = dict(steps=args.steps, batch=args.batch, lr=args.lr, minutes=args.minutes, resume=args.resume,
                  sizes=TINY if args.tiny else FULL, device=args.device, init=args.init)
        if args.cmd == "clip":
            from app.train.clip import train_clip
            result = train_clip(args.data, args.out, freeze_text=args.freeze_text, **kw)
        elif args.cmd == "vae":
            from app.train.vae import train_vae
            result = train_vae(args.data, args.out, **kw)
        else:
            from app.train.unet import train_unet
            result = train_unet(args.data, args.clip, args.vae, args.out, **kw)
        _report(args.cmd, result, t0)
    elif args.cmd == "export":
        from app.train.export import export_clip, export_pipeline

        export_clip(args.runs / "clip" / "model", args.out / "clip")
        export_pipeline(args.runs / "clip" / "model", args.runs / "vae" / "model", args.runs / "unet" / "model",
                        args.out / "diffusion")
        print(f"wrote {args.out / 'clip'} and {args.out / 'diffusion'}")
    elif args.cmd == "vae-check":
        from app.train.vae import reconstruction_by_style

        print(json.dumps(reconstruction_by_style(args.vae, args.data, args.per_style)))
    elif args.cmd == "sample":
        from app.train.export import sample_grid

        print(sample_grid(args.pipeline, args.png, steps=args.steps, guidance=args.guidance, device=args.device))
    else:
        from app.train.clip import train_clip
        from app.train.export import export_clip, export_pipeline
        from app.train.unet import train_unet
        from app.train.vae import train_vae

        sizes = TINY if args.tiny else FULL
        runs, (mc, mv, mu), (sc, sv, su), (bc, bv, bu) = args.runs, args.minutes, args.steps, args.batch
        common = dict(resume=args.resume, sizes=sizes, device=args.device)
        _report("clip", train_clip(args.data, runs / "clip", steps=sc, batch=bc, minutes=mc, **common), t0)
        _report("vae", train_vae(args.data, runs / "vae", steps=sv, batch=bv, minutes=mv, **common), t0)
        _report("unet", train_unet(args.data, runs / "clip" / "model", runs / "vae" / "model", runs / "unet",
                                   steps=su, batch=bu, minutes=mu, **common), t0)
        export_clip(runs / "clip" / "model", args.out / "clip")
        export_pipeline(runs / "clip" / "model", runs / "vae" / "model", runs / "unet" / "model", args.out / "diffusion")
        print(f"wrote {args.out / 'clip'} and {args.out / 'diffusion'}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
