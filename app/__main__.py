"""Command line: `python -m app` serves the studio; subcommands train, evaluate and convert."""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

SUBCOMMANDS = {
    # name: (module, help)
    "build-data": ("app.train.data", "build the multi-style captioned emoji dataset (apt + npm art sets)"),
    "train": ("app.train.__main__", "train the embedded models: clip, vae, unet, export, sample; `train gan` for the GAN"),
    "evaluate": ("app.train.evaluate", "evaluate the embedded models (prints a table, writes JSON)"),
    "convert-gan": ("app.gan.convert", "convert a StyleGAN2 .pkl, BigGAN or DCGAN checkpoint to safetensors + config.json, safely"),
    "convert-upscaler": ("app.upscale.gan", "convert a Real-ESRGAN RRDBNet .pth to safetensors + config.json, safely"),
}


def serve(argv: list[str]) -> int:
    from app.settings import Settings

    parser = argparse.ArgumentParser(prog="python -m app", description="Start the Noisescope studio.")
    parser.add_argument("--host", help="interface to listen on (default 127.0.0.1; others need the printed token)")
    parser.add_argument("--port", type=int)
    parser.add_argument("--device", help="auto, cpu, cuda, cuda:1 ...")
    parser.add_argument("--cpu-threads", type=int, help="torch threads per worker thread on CPU (default 1)")
    parser.add_argument("--batch-runs", type=int, help="diffusion runs of different pages stepped together, one "
                        "stacked UNet call per step (default 8; 1 runs them one after another)")
    parser.add_argument("--diffusion-model",
                        help="diffusers SD 1.x / 2.x / SDXL folder or hub id, or a single-file .safetensors")
    parser.add_argument("--clip-model", help="CLIPModel folder or hub id, or open_clip:ARCH/PRETRAINED")
    parser.add_argument("--lora", action="append", metavar="FILE.safetensors",
                        help="a LoRA file (kohya / A1111 or diffusers format), with a live weight slider; repeatable")
    parser.add_argument("--lora-dir", help="folder of LoRA .safetensors files that prompts name as <lora:name:0.8>")
    parser.add_argument("--lora-weight", type=float, help="the weight LoRA sliders start at (default 1)")
    parser.add_argument("--preview-decoder", help="AutoencoderTiny folder or hub id for preview frames "
                        "(madebyollin/taesd, madebyollin/taesdxl, madebyollin/taesd3, madebyollin/taef1)")
    parser.add_argument("--models-dir", help="folder of models (pipeline folders, .safetensors checkpoints, converted "
                        "GAN folders) the page lists and loads on request while the studio runs")
    parser.add_argument("--gan-model", help="converted GAN folder (generator.safetensors + config.json: StyleGAN2, BigGAN, "
                        "DCGAN); '' for none")
    parser.add_argument("--compile", choices=["off", "default", "max-autotune-no-cudagraphs", "reduce-overhead",
                                              "max-autotune"], help="torch.compile the UNet at load (default off)")
    parser.add_argument("--channels-last", action="store_true", default=None,
                        help="UNet and VAE weights in channels_last memory order")
    parser.add_argument("--upscaler-gan", help="GAN upscaler folder (RRDBNet safetensors + config.json); '' for none")
    parser.add_argument("--upscaler-diffusion", help="StableDiffusionUpscalePipeline folder or hub id; '' for none")
    parser.add_argument("--data-dir", help="gallery and caches")
    parser.add_argument("--evaluation", help="JSON from `python -m app evaluate` whose figures the page shows "
                        "when they were measured on the loaded weights (default models/eval_cpu_v2.json)")
    parser.add_argument("--token", help="access token (generated when listening beyond loopback)")
    parser.add_argument("--allowed-hosts", help="extra names clients reach this server by, comma-separated "
                        "(Host header; loopback names and --host are always allowed)")
    parser.add_argument("--max-job-seconds", type=float, help="compute budget per diffusion job in seconds of "
                        "this device's measured speed (default 900 on a CPU, 300 on a GPU)")
    parser.add_argument("--memory-fraction", type=float, help="refuse jobs whose estimated peak memory exceeds "
                        "this fraction of the available memory (default 0.9)")
    ray = parser.add_argument_group("Ray Serve (many devices and machines; pip install -e \".[ray]\")")
    ray.add_argument("--ray", action="store_true", help="run the engine as a Ray Serve deployment of "
                     "--replicas replicas (one GPU each where the cluster has GPUs) behind this ingress")
    ray.add_argument("--ray-address", help="the cluster to join (default: the one started on this machine by "
                     "`ray start --head`, else a new local one)")
    ray.add_argument("--replicas", type=int, default=1, help="engine replicas (default 1)")
    ray.add_argument("--max-replicas", type=int, help="autoscale from --replicas up to this many, on runs per replica")
    ray.add_argument("--target-runs", type=float, default=2.0,
                     help="autoscaling target: queued + running runs per replica (default 2)")
    args = parser.parse_args(argv)
    cluster = {k: vars(args).pop(k) for k in ("ray", "ray_address", "replicas", "max_replicas", "target_runs")}
    if cluster["replicas"] < 1 or cluster["target_runs"] <= 0:
        parser.error("--replicas must be at least 1 and --target-runs more than 0")
    if cluster["max_replicas"] is not None and cluster["max_replicas"] < cluster["replicas"]:
        parser.error("--max-replicas must be at least --replicas")
    overrides = {k: v for k, v in vars(args).items() if v is not None}
    settings = Settings(**overrides)
    if cluster["ray"]:
        from app.cluster.launch import serve_with_ray

        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        settings.ensure_token()
        return serve_with_ray(settings, address=cluster["ray_address"], replicas=cluster["replicas"],
                              max_replicas=cluster["max_replicas"], target_runs=cluster["target_runs"])

    import uvicorn

    from app.main import create_app

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    app = create_app(settings)
    url = f"http://{'localhost' if settings.host in ('127.0.0.1', '::1') else settings.host}:{settings.port}/"
    if settings.require_token():
        url += f"?token={settings.token}"
    print(f"Noisescope studio: {url}", flush=True)
    uvicorn.run(app, host=settings.host, port=settings.port, ws_per_message_deflate=False, log_level="info")
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in SUBCOMMANDS:
        module, _ = SUBCOMMANDS[argv[0]]
        if argv[0] == "train" and argv[1:2] == ["gan"]:
            module, argv = "app.train.gan", argv[1:]
        if argv[0] == "build-data":
            argv = ["build-data", "build", *argv[1:]]
        entry = "convert_main" if argv[0] in ("convert-gan", "convert-upscaler") else "main"
        return int(getattr(importlib.import_module(module), entry)(argv[1:]) or 0)
    if argv and argv[0] in ("-h", "--help") and len(argv) == 1:
        print("usage: python -m app [serve options] | " + " | ".join(SUBCOMMANDS))
        for name, (_, help_text) in SUBCOMMANDS.items():
            print(f"  {name:12s} {help_text}")
        print("  serve        (default) start the studio; `python -m app serve --help` for options")
        return 0
    if argv and argv[0] == "serve":
        argv = argv[1:]
    return serve(argv)


if __name__ == "__main__":
    raise SystemExit(main())
