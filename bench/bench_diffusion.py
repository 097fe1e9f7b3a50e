"""Side-by-side timings of the diffusion loop (a script, not a test).

    python bench/bench_diffusion.py                  # models/diffusion if present, else a tiny demo pipeline
    python bench/bench_diffusion.py --sd15-shaped    # random weights in SD 1.5's shapes, ViT-B/32-shaped CLIP
    python bench/bench_diffusion.py --sdxl-only      # just the SDXL rows
    python bench/bench_diffusion.py --flow           # flow matching: tiny SD3- and FLUX-shaped pipelines
    python bench/bench_diffusion.py --sd15-shaped --accel   # + a row per optimisation (app.diffusion.accel)
    bash bench/bench_gpu.sh                          # issue 22's whole GPU check (tests + these rows) -> $OUT

Rows, each the median of --repeats runs after one warm-up, all measured in this one process:
  ours without previews / with a fast preview every step / with the per-step CLIP score (since issue 17
  on the fully decoded steps, 10, 20 and 30 by default; the H100 figure below predates that);
  ours dpmpp_2m + karras vs diffusers' StableDiffusionPipeline + DPMSolverMultistepScheduler(karras);
  ours ddim vs diffusers + DDIMScheduler (same steps, size, cfg; both stop at the latent);
  one CLIP-guided step (8 cutouts) vs one plain step;
  ours with a LoRA (rank --lora-rank on every attention / feed-forward Linear and 1x1 proj conv, weight
  live: read before every UNet call) and with that LoRA at weight 0 (skipped), vs no LoRA;
  a preview every step from the tiny decoder (--preview-decoder, else a random AutoencoderTiny in TAESD's
  own architecture: 64 channels, 3 blocks per stage, one stage per 2x of the model's VAE) and from the
  full VAE, vs none; and one preview alone by each of the linear map, the tiny decoder and the VAE;
  SDXL (a tiny pipeline in SDXL's format: two text encoders, pooled embedding, size ids): ours euler
  vs diffusers' StableDiffusionXLPipeline + EulerDiscreteScheduler, same steps, size, cfg, to the latent.

Measured 2026-11-23 on one H100 (fp16), SD1.5-shaped random weights, 512x512, 20 steps, cfg 7.5,
median of 3, cases run one after another (before the round-robin order above; runs on fresh
machines differed by ~15% in absolute time, so read the ratios as +-5%):
  fast preview every step / none      1.086   (1.191 before steps were reported one step late)
  + CLIP score (ViT-B/32-shaped)      1.511
  ours dpmpp_2m / diffusers DPM++ 2M  0.905   (1.065 in the earlier run)
  ours ddim / diffusers DDIM          0.998   (0.982)
  CLIP-guided step / plain step       1.94x   (3.32x)
Tiny SDXL-shaped pipeline, 64x64, 20 Euler steps, CPU, 1 thread, 2026-11-30 at load ~15 on 2 cores
(`--sdxl-only --threads 1 --repeats 7 --clock process`): ours/diffusers SDXL 0.989 (5 repeats: 1.024;
wall clock, 5 repeats: 1.261, mostly waiting for a core).
Tiny demo pipeline, 64x64: preview 0.940, ours/diffusers 1.235 (DPM) and 0.822 (DDIM): launch-bound
and noise-dominated at that size.

--flow (only these rows): ours (flow Euler through generate) vs diffusers' StableDiffusion3Pipeline /
FluxPipeline + FlowMatchEulerDiscreteScheduler on the same tiny SD3- / FLUX-shaped weights, both to the
latent. Measured 2026-11-30 on the project's 2-core CPU at load ~18-22 (OMP_NUM_THREADS=1, --size 32,
median of 9): SD3 1.008, FLUX 1.010; earlier runs 1.077 / 0.908 and 0.951 / 1.037 (noise +-8 %).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from app.diffusion.generate import DiffusionModels, generate, load_diffusion_models, models_from_pipeline  # noqa: E402
from app.diffusion.lora import applied  # noqa: E402
from app.diffusion.previews import fast_preview, full_decode, to_uint8_hwc  # noqa: E402
from app.params import DiffusionParams  # noqa: E402


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


CLOCK: Callable[[], float] = time.perf_counter  # --clock process: this process's CPU seconds instead


def median_times(cases: dict[str, Callable[[], object]], device: torch.device, repeats: int) -> dict[str, float]:
    """Median seconds per case; the repeats run round-robin so clock drift hits every case alike."""
    times: dict[str, list[float]] = {name: [] for name in cases}
    for fn in cases.values():
        fn()
    sync(device)
    for _ in range(repeats):
        for name, fn in cases.items():
            t0 = CLOCK()
            fn()
            sync(device)
            times[name].append(CLOCK() - t0)
    return {name: statistics.median(ts) for name, ts in times.items()}


def sd15_shaped_pipeline(dtype: torch.dtype, device: torch.device):
    """A StableDiffusionPipeline with SD 1.5's UNet/VAE/text-encoder shapes and random weights."""
    from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    from app.clip.word_tokenizer import write_word_clip_tokenizer

    tok_dir = Path(tempfile.mkdtemp()) / "tokenizer"
    vocab = write_word_clip_tokenizer(tok_dir, [], max_length=77)
    torch.manual_seed(0)
    with torch.device(device):
        unet = UNet2DConditionModel(cross_attention_dim=768, attention_head_dim=8, sample_size=64)
        vae = AutoencoderKL(block_out_channels=(128, 256, 512, 512), layers_per_block=2,
                            down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
                            latent_channels=4, sample_size=512)
        text = CLIPTextModel(CLIPTextConfig(vocab_size=vocab, hidden_size=768, intermediate_size=3072,
                                            num_hidden_layers=12, num_attention_heads=12, max_position_embeddings=77,
                                            bos_token_id=vocab - 2, eos_token_id=vocab - 1, pad_token_id=vocab - 1))
    sched = DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", clip_sample=False,
                          set_alpha_to_one=False, steps_offset=1)
    pipe = StableDiffusionPipeline(vae=vae, text_encoder=text, tokenizer=CLIPTokenizer.from_pretrained(tok_dir),
                                   unet=unet, scheduler=sched, safety_checker=None, feature_extractor=None,
                                   requires_safety_checker=False)
    return pipe.to(device, dtype)


def vit_b32_shaped_clip(device: torch.device, dtype: torch.dtype):
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel

    from app.clip.backend import TransformersClip
    from app.clip.word_tokenizer import write_word_clip_tokenizer

    folder = Path(tempfile.mkdtemp()) / "clip"
    vocab = write_word_clip_tokenizer(folder, [], max_length=77)
    cfg = CLIPConfig(text_config={"vocab_size": vocab, "bos_token_id": vocab - 2, "eos_token_id": vocab - 1,
                                  "pad_token_id": vocab - 1}, vision_config={"patch_size": 32, "image_size": 224})
    CLIPModel(cfg).save_pretrained(folder)
    CLIPImageProcessor().save_pretrained(folder)
    return TransformersClip(str(folder), device, dtype)


def load(args: argparse.Namespace, device: torch.device, dtype: torch.dtype) -> tuple[DiffusionModels, object, str]:
    from app.clip.backend import load_clip
    from app.demo_models import build_tiny_clip, build_tiny_diffusion

    cache = Path(tempfile.mkdtemp())
    if args.sd15_shaped:
        pipe = sd15_shaped_pipeline(dtype, device)
        clip = vit_b32_shaped_clip(device, dtype)
        return models_from_pipeline(pipe, "sd15-shaped (random)", device, dtype, clip, cache), pipe, "SD1.5-shaped random"
    folder = ROOT / "models" / "diffusion"
    label = str(folder)
    if not (folder / "model_index.json").exists():
        folder = build_tiny_diffusion(Path(tempfile.mkdtemp()) / "sd", seed=0, sample_size=16)
        label = "tiny demo pipeline"
    clip_dir = ROOT / "models" / "clip"
    if not (clip_dir / "config.json").exists():
        clip_dir = build_tiny_clip(Path(tempfile.mkdtemp()) / "clip", seed=0)
    clip = load_clip(str(clip_dir), device, dtype)
    models = load_diffusion_models(str(folder), device, dtype, clip=clip, cache_dir=cache)
    from diffusers import StableDiffusionPipeline

    pipe = StableDiffusionPipeline(vae=models.vae, text_encoder=models.text_encoder, tokenizer=models.tokenizer,
                                   unet=models.unet, scheduler=_scheduler(folder), safety_checker=None,
                                   feature_extractor=None, requires_safety_checker=False)
    return models, pipe, label


def _scheduler(folder: Path):
    from diffusers import DDIMScheduler

    return DDIMScheduler.from_pretrained(folder, subfolder="scheduler")


def bench_lora(models: DiffusionModels, rank: int):
    """A random LoRA of `rank` on the layers kohya's trainer adapts: attention and feed-forward Linears and
    the transformer blocks' proj_in / proj_out."""
    from app.diffusion.lora import LoraFile, LoraLayer, adaptable_layers

    g = torch.Generator().manual_seed(0)
    layers = {}
    for name, m in adaptable_layers(models.unet).items():
        if not (".attentions." in name and ("transformer_blocks" in name or "proj_" in name)):
            continue
        w = m.weight
        down = torch.randn(rank, *w.shape[1:], generator=g) * 0.01
        up = torch.randn(w.shape[0], rank, *([1] * (w.ndim - 2)), generator=g) * 0.01
        layers[name] = LoraLayer(down.to(w.device, w.dtype), up.to(w.device, w.dtype))
    return LoraFile("bench", "kohya", {"unet": layers})


def bench_tiny_decoder(models: DiffusionModels, name: str | None):
    """--preview-decoder, or a random AutoencoderTiny in TAESD's architecture fitted to the model's VAE."""
    from diffusers import AutoencoderTiny

    from app.diffusion.tiny_decoder import TinyDecoder, check_fits, load_tiny_decoder

    if name:
        tiny = load_tiny_decoder(name, models.device, models.dtype)
    else:
        stages = models.vae_scale.bit_length()  # one stage per 2x, plus the last
        torch.manual_seed(0)
        vae = AutoencoderTiny(latent_channels=models.latent_channels, encoder_block_out_channels=(64,) * stages,
                              decoder_block_out_channels=(64,) * stages, num_encoder_blocks=(1,) + (3,) * (stages - 1),
                              num_decoder_blocks=(3,) * (stages - 1) + (1,))
        tiny = TinyDecoder(f"random TAESD-shaped ({stages} stages)", vae.to(models.device, models.dtype).eval())
    check_fits(tiny, models.latent_channels, models.vae_scale)
    return tiny


def sdxl_rows(args: argparse.Namespace, device: torch.device, dtype: torch.dtype) -> list[tuple[str, float, str]]:
    """Ours vs diffusers' own SDXL pipeline on the tiny SDXL-shaped pipeline, Euler on the same
    ('leading') schedule; both encode the prompts in every call."""
    from diffusers import EulerDiscreteScheduler, StableDiffusionXLPipeline

    from app.demo_models import build_tiny_sdxl

    folder = build_tiny_sdxl(Path(tempfile.mkdtemp()) / "sdxl", seed=0, sample_size=16)
    models = load_diffusion_models(str(folder), device, dtype, cache_dir=Path(tempfile.mkdtemp()))
    pipe = StableDiffusionXLPipeline.from_pretrained(folder, dtype=dtype).to(device)
    pipe.scheduler = EulerDiscreteScheduler.from_config(pipe.scheduler.config)
    pipe.set_progress_bar_config(disable=True)
    size = args.size or 64
    params = DiffusionParams(prompt="a red fox in the snow", negative_prompt="blurry", seed=1, steps=args.steps,
                             width=size, height=size, cfg_scale=7.5, sampler="euler", karras=False)
    lv = params.live()
    gen = torch.Generator(device).manual_seed(1)
    t = median_times({
        "ours": lambda: generate(models, params, live=lambda: lv, on_step=lambda s: None),
        "theirs": lambda: pipe(params.prompt, negative_prompt=params.negative_prompt, num_inference_steps=args.steps,
                               guidance_scale=params.cfg_scale, width=size, height=size, output_type="latent",
                               generator=gen),
    }, device, args.repeats)
    return [
        (f"SDXL-shaped tiny {size}x{size}: ours euler", t["ours"], ""),
        ("SDXL-shaped tiny: diffusers SDXL pipeline, Euler", t["theirs"],
         f"ours/diffusers {t['ours'] / t['theirs']:.3f} (goal <= 1.0)"),
    ]


def flow_rows(device: torch.device, dtype: torch.dtype, steps: int, size: int, repeats: int) -> list[tuple]:
    """Ours (app.diffusion.flow_family, flow Euler) vs diffusers' StableDiffusion3Pipeline / FluxPipeline
    with FlowMatchEulerDiscreteScheduler on the same weights: same steps, size and guidance, both
    stopping at the latent. SD3: CFG 4.0 with a negative prompt (two branches per call); FLUX.1-dev-
    shaped: distilled guidance 3.5 (one branch)."""
    from diffusers import DiffusionPipeline

    from app.demo_flow_models import build_tiny_flux, build_tiny_sd3

    rows = []
    for label, build, cfg in (("SD3-shaped tiny", build_tiny_sd3, 4.0), ("FLUX-shaped tiny", build_tiny_flux, 3.5)):
        folder = build(Path(tempfile.mkdtemp()) / "flow", seed=0)
        models = load_diffusion_models(str(folder), device, dtype, cache_dir=Path(tempfile.mkdtemp()))
        pipe = DiffusionPipeline.from_pretrained(folder, dtype=dtype).to(device)
        pipe.set_progress_bar_config(disable=True)
        negative = "blurry" if label.startswith("SD3") else None
        params = DiffusionParams(prompt="a red fox in the snow", negative_prompt=negative or "", seed=1, steps=steps,
                                 width=size, height=size, cfg_scale=cfg, sampler="euler")
        lv = params.live()
        extra = {"negative_prompt": negative} if negative else {}

        def theirs() -> object:
            return pipe(params.prompt, guidance_scale=cfg, num_inference_steps=steps, width=size, height=size,
                        generator=torch.Generator(device).manual_seed(1), output_type="latent", **extra)

        t = median_times({"ours": lambda: generate(models, params, live=lambda: lv, on_step=lambda s: None),
                          "theirs": theirs}, device, repeats)
        rows += [(f"ours flow euler, {label}", t["ours"], ""),
                 (f"diffusers FlowMatchEuler, {label}", t["theirs"],
                  f"ours/diffusers {t['ours'] / t['theirs']:.3f} (goal <= 1.0)")]
    return rows


class _FirstFrame(Exception):
    pass


def first_preview_seconds(models: DiffusionModels, params: DiffusionParams) -> float:
    """Seconds from calling generate to the first fast preview frame in hand (uint8 on the host);
    the run is then cancelled. On CUDA steps are reported one step late, so that is after step 2 is queued."""
    lv = params.live()
    seen: list[float] = []

    def on_step(info) -> None:
        fast_preview(models.rgb_map, info.denoised)
        seen.append(CLOCK() - t0)
        raise _FirstFrame

    t0 = CLOCK()
    try:
        generate(models, params, live=lambda: lv, on_step=on_step)
    except _FirstFrame:
        pass
    return seen[0]


def accel_rows(args: argparse.Namespace, models: DiffusionModels, params: DiffusionParams, device: torch.device,
               diffusers_seconds: float | None) -> list[tuple[str, float, str]]:
    """One row per optimisation of app.diffusion.accel, each added to the previous: eager, channels_last,
    then torch.compile in each of --compile-modes; then, on the last one, previews and the CLIP score
    with the side stream on and off. Every row: run seconds, it/s (a step = one UNet call on batch 2
    for CFG), time to the first preview frame, and the first call's seconds (the compile)."""
    from app.diffusion.accel import AccelOptions, attention_processors, prepare_models, restore_unet, sdpa_kernels

    steps = params.steps
    plain = DiffusionModels(**{**models.__dict__, "clip": None})
    lv = params.live()
    latent = torch.randn(2, models.latent_channels, params.height // models.vae_scale,
                         params.width // models.vae_scale, device=device, dtype=models.dtype)
    ctx = torch.randn(2, 77, models.unet.config.cross_attention_dim, device=device, dtype=models.dtype)
    kernels = sdpa_kernels(lambda: models.unet(latent, torch.tensor([500.0, 500.0], device=device),
                                               encoder_hidden_states=ctx))
    print(f"attention: {attention_processors(models.unet)}; SDPA kernels: {', '.join(kernels) or 'none seen'}")
    configs = [("eager (fp16 on CUDA), SDPA", AccelOptions()), ("+ channels_last", AccelOptions(channels_last=True))]
    configs += [(f"+ torch.compile {mode}", AccelOptions(channels_last=True, compile_mode=mode,
                                                        backend=args.compile_backend))
                for mode in args.compile_modes.split(",") if mode]
    rows: list[tuple[str, float, str]] = []
    base = None
    preview = lambda s: fast_preview(models.rgb_map, s.denoised)  # noqa: E731
    for i, (name, opts) in enumerate(configs):
        torch._dynamo.reset()
        prepare_models(models, opts)  # `plain` shares its UNet and VAE
        plain.side_stream = opts.side_stream
        t0 = CLOCK()
        generate(plain, params, live=lambda: lv, on_step=lambda s: None)
        sync(device)
        first_call = CLOCK() - t0
        cases: dict[str, Callable[[], object]] = {"plain": lambda: generate(plain, params, live=lambda: lv,
                                                                            on_step=lambda s: None)}
        last = i == len(configs) - 1
        if last:
            cases["preview"] = lambda: generate(plain, params, live=lambda: lv, on_step=preview)
            if models.clip is not None:
                cases["score"] = lambda: generate(models, params, live=lambda: lv, on_step=preview)
        t = median_times(cases, device, args.repeats)
        first = statistics.median(first_preview_seconds(plain, params) for _ in range(args.repeats))
        base = base or t["plain"]
        vs = f"; ours/diffusers {t['plain'] / diffusers_seconds:.3f}" if diffusers_seconds else ""
        rows.append((name, t["plain"], f"{steps / t['plain']:.1f} it/s, {t['plain'] / base:.3f} vs eager{vs}; "
                                       f"first preview {first * 1000:.0f} ms; first call {first_call:.1f} s"))
        if last:
            rows.append(("  ... + fast preview every step", t["preview"],
                         f"{t['preview'] / t['plain']:.3f} vs no previews (goal <= 1.03)"))
            if "score" in t:
                models.side_stream = plain.side_stream = False
                off = median_times({"score": cases["score"]}, device, args.repeats)["score"]
                models.side_stream = plain.side_stream = True
                rows.append(("  ... + preview + CLIP score, side stream", t["score"],
                             f"{t['score'] / t['plain']:.3f} vs no previews"))
                rows.append(("  ... + preview + CLIP score, one stream", off, f"{off / t['plain']:.3f} vs no previews"))
    restore_unet(models.unet)
    models.vae.to(memory_format=torch.contiguous_format)
    torch._dynamo.reset()
    return rows


def sd15_decoder_rows(args: argparse.Namespace, device: torch.device, dtype: torch.dtype) -> list[tuple[str, float, str]]:
    """One preview frame at SD 1.5's size: SD's VAE decoder (random weights, its shapes) vs TAESD's
    architecture (diffusers' AutoencoderTiny defaults, what madebyollin/taesd is) vs the linear map."""
    from diffusers import AutoencoderKL, AutoencoderTiny

    from app.diffusion.previews import LatentRGBMap
    from app.diffusion.tiny_decoder import TinyDecoder

    torch.manual_seed(0)
    vae = AutoencoderKL(block_out_channels=(128, 256, 512, 512), layers_per_block=2,
                        down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
                        latent_channels=4, sample_size=512).to(device, dtype).eval()
    tiny = TinyDecoder("TAESD-shaped", AutoencoderTiny().to(device, dtype).eval())
    rgb = LatentRGBMap(torch.randn(4, 3), torch.zeros(3))
    side = (args.size or 512) // 8
    latent = torch.randn(1, 4, side, side, device=device)
    t = median_times({"vae": lambda: to_uint8_hwc(full_decode(vae, latent)), "tiny": lambda: tiny.preview(latent),
                      "map": lambda: fast_preview(rgb, latent)}, device, args.repeats)
    return [(f"SD1.5-shaped VAE decode, {side * 8}x{side * 8}", t["vae"], ""),
            ("TAESD-shaped decode, same latent", t["tiny"], f"{t['vae'] / t['tiny']:.1f}x faster than the VAE"),
            ("linear map, same latent", t["map"], f"{t['tiny'] / t['map']:.0f}x faster than TAESD")]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sd15-shaped", action="store_true")
    ap.add_argument("--sdxl-only", action="store_true", help="only the SDXL rows")
    ap.add_argument("--decoders-only", action="store_true",
                    help="only one preview frame by SD1.5's VAE, TAESD and the linear map (random weights, real shapes)")
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    ap.add_argument("--clock", choices=["wall", "process"], default="wall",
                    help="process: CPU seconds of this process (CPU runs on a shared machine)")
    ap.add_argument("--flow", action="store_true", help="only the flow-matching rows (SD3- / FLUX-shaped tiny)")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--size", type=int, default=None, help="image side (default 512 for sd15-shaped, else 64)")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--lora-rank", type=int, default=16)
    ap.add_argument("--only", help="comma-separated cases to run (plain,preview,score,dpm,ours_ddim,ddim,step,guided,"
                    "lora,lora0,tiny,vae,sdxl); rows of cases not run are left out")
    ap.add_argument("--preview-decoder", help="AutoencoderTiny folder or hub id (default: random, TAESD-shaped)")
    ap.add_argument("--accel", action="store_true", help="add one row per optimisation (app.diffusion.accel)")
    ap.add_argument("--accel-only", action="store_true", help="only the optimisation rows (implies --accel)")
    ap.add_argument("--compile-modes", default="default,reduce-overhead",
                    help="comma-separated torch.compile modes for the --accel rows ('' for none)")
    ap.add_argument("--compile-backend", default="inductor",
                    help="torch.compile backend for the --accel rows (eager / aot_eager: a quick CPU dry run)")
    ap.add_argument("--markdown", type=Path, help="also write the table here as markdown")
    args = ap.parse_args()
    device = torch.device(args.device)
    dtype = torch.float16 if device.type == "cuda" else torch.float32
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.clock == "process":
        global CLOCK
        CLOCK = time.process_time
    if args.decoders_only:
        print_rows(sd15_decoder_rows(args, device, dtype), "preview decoders at SD 1.5's size", device, dtype,
                   args, 0, args.size or 512)
        return
    if args.sdxl_only:
        print_rows(sdxl_rows(args, device, dtype), "tiny SDXL-shaped pipeline", device, dtype, args, 7.5)
        return
    if args.flow:
        size = args.size or 64
        print_rows(flow_rows(device, dtype, args.steps, size, args.repeats), "flow matching (tiny SD3- / FLUX-shaped)",
                   device, dtype, args, "SD3 4.0 / FLUX 3.5 (distilled)", size)
        return
    models, pipe, label = load(args, device, dtype)
    size = args.size or (512 if args.sd15_shaped else 64)
    params = DiffusionParams(prompt="a red fox in the snow", negative_prompt="blurry", seed=1, steps=args.steps,
                             width=size, height=size, cfg_scale=7.5, sampler="dpmpp_2m", karras=True,
                             cutn_overview="[8]*1000", cutn_inner="[0]*1000", cut_icgray_p="[0]*1000")
    if args.accel_only:
        rows = accel_rows(args, models, params, device, None)
        print_rows(rows, label, device, dtype, args, params.cfg_scale, size)
        return

    def ours(p: DiffusionParams, on_step=lambda s: None, with_clip: bool = False) -> Callable[[], object]:
        m = models if with_clip else DiffusionModels(**{**models.__dict__, "clip": None})
        lv = p.live()
        return lambda: generate(m, p, live=lambda: lv, on_step=on_step)

    def theirs(scheduler) -> Callable[[], object]:
        gen = torch.Generator(device).manual_seed(1)

        def call() -> object:
            pipe.scheduler = scheduler
            return pipe(params.prompt, negative_prompt=params.negative_prompt, num_inference_steps=args.steps,
                        guidance_scale=params.cfg_scale, width=size, height=size, output_type="latent",
                        generator=gen, return_dict=True)

        return call

    from diffusers import DDIMScheduler, DPMSolverMultistepScheduler

    cfg = pipe.scheduler.config
    dpm = DPMSolverMultistepScheduler.from_config(cfg, use_karras_sigmas=True, algorithm_type="dpmsolver++",
                                                  solver_order=2)
    ddim = DDIMScheduler.from_config(cfg)
    preview = lambda s: fast_preview(models.rgb_map, s.denoised)  # noqa: E731
    tiny = bench_tiny_decoder(models, args.preview_decoder)
    tiny_preview = lambda s: tiny.preview(s.denoised)  # noqa: E731
    vae_preview = lambda s: to_uint8_hwc(full_decode(models.vae, s.denoised.to(device)))  # noqa: E731
    lora = bench_lora(models, args.lora_rank)

    def with_lora(p: DiffusionParams, weight: float) -> Callable[[], object]:
        plain = ours(p)
        parts = {"unet": models.unet}

        def call() -> object:
            with applied(parts, [lora], {"bench": weight}, live=lambda: {"bench": weight}):
                return plain()

        return call

    n = 5
    few = params.model_copy(update={"steps": n, "sampler": "euler"})
    cases = {
        "plain": ours(params),
        "preview": ours(params, preview),
        "score": ours(params, preview, with_clip=True),
        "dpm": theirs(dpm),
        "ours_ddim": ours(params.model_copy(update={"sampler": "ddim", "karras": False})),
        "ddim": theirs(ddim),
        "step": ours(few),
        "guided": ours(few.model_copy(update={"clip_guidance_scale": 1000.0}), with_clip=True),
        "lora": with_lora(params, 0.8),
        "lora0": with_lora(params, 0.0),
        "tiny": ours(params, tiny_preview),
        "vae": ours(params, vae_preview),
    }
    only = set(args.only.split(",")) | {"plain"} if args.only else set(cases)
    t = median_times({k: v for k, v in cases.items() if k in only}, device, args.repeats)
    nan = float("nan")
    t = {k: t.get(k, nan) for k in cases}
    if "step" not in only:  # a plain step from the full run instead
        t["step"] = t["plain"] / args.steps * n
    step, guided = t["step"] / n, t["guided"] / n
    latent = torch.randn(1, models.latent_channels, size // models.vae_scale, size // models.vae_scale, device=device)
    one = median_times({"p": lambda: [fast_preview(models.rgb_map, latent) for _ in range(100)],
                        "tiny": lambda: [tiny.preview(latent) for _ in range(10)],
                        "vae": lambda: [to_uint8_hwc(full_decode(models.vae, latent)) for _ in range(10)]},
                       device, args.repeats)
    one_preview, one_tiny, one_vae = one["p"] / 100, one["tiny"] / 10, one["vae"] / 10
    rows = [
        ("ours dpmpp_2m karras, no previews", t["plain"], "1.00"),
        ("ours + fast preview every step", t["preview"], f"{t['preview'] / t['plain']:.3f} vs no previews (goal <= 1.03)"),
        ("ours + fast preview + CLIP score (full-decode steps)", t["score"], f"{t['score'] / t['plain']:.3f} vs no previews"),
        ("diffusers DPMSolverMultistep karras", t["dpm"], f"ours/diffusers {t['plain'] / t['dpm']:.3f} (goal <= 1.0)"),
        ("ours ddim (model schedule)", t["ours_ddim"], ""),
        ("diffusers DDIMScheduler", t["ddim"], f"ours/diffusers {t['ours_ddim'] / t['ddim']:.3f} (goal <= 1.0)"),
        ("per step, plain (euler, cfg)" if "step" in only else "per step, plain (dpmpp_2m run / steps)", step, ""),
        ("per step, CLIP-guided, 8 overview cutouts", guided, f"{guided / step:.2f}x a plain step"),
        ("one fast preview alone (map + uint8)", one_preview, f"{one_preview / step:.4f} of a plain step"),
        (f"ours + LoRA rank {args.lora_rank} ({len(lora.layers['unet'])} layers), weight 0.8", t["lora"],
         f"{t['lora'] / t['plain']:.3f} vs no LoRA (per-step overhead of the live weight)"),
        ("ours + the same LoRA at weight 0 (skipped)", t["lora0"], f"{t['lora0'] / t['plain']:.3f} vs no LoRA"),
        ("ours + tiny-decoder preview every step", t["tiny"], f"{t['tiny'] / t['plain']:.3f} vs no previews"),
        ("ours + full-VAE preview every step", t["vae"], f"{t['vae'] / t['plain']:.3f} vs no previews"),
        ("one tiny-decoder preview alone", one_tiny,
         f"{one_tiny / step:.4f} of a plain step; {one_tiny / one_preview:.1f}x the map, {one_vae / one_tiny:.1f}x "
         "faster than the VAE"),
        ("one full-VAE preview alone", one_vae, f"{one_vae / step:.4f} of a plain step"),
    ]

    sdxl = sdxl_rows(args, device, dtype) if not args.only or "sdxl" in only else []
    if args.accel:
        rows += accel_rows(args, models, params, device, t["dpm"])
    print_rows(rows + sdxl, f"{label}; tiny decoder: {tiny.name}", device, dtype, args, params.cfg_scale, size)


def print_rows(rows: list[tuple[str, float, str]], label: str, device: torch.device, dtype: torch.dtype,
               args: argparse.Namespace, cfg: float | str, size: int | None = None) -> None:
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    side = size or args.size or 64
    print(f"\nmodels: {label}; device: {name} {str(dtype).replace('torch.', '')}; {side}x{side}, "
          f"{args.steps} steps, cfg {cfg}; median of {args.repeats}")
    print(f"{'case':48} {'seconds':>9}  ratio   ({args.clock} clock)")
    for case, t, note in rows:
        if t == t:  # not a case left out by --only
            print(f"{case:48} {t:9.4f}  {note}")
    if args.markdown:
        lines = [f"models: {label}; device: {name} {str(dtype).replace('torch.', '')}; {side}x{side}, "
                 f"{args.steps} steps, cfg {cfg}; median of {args.repeats}; torch {torch.__version__}", "",
                 f"| case | seconds ({args.clock} clock) | notes |", "| --- | ---: | --- |"]
        lines += [f"| {case.strip()} | {t:.4f} | {note} |" for case, t, note in rows if t == t]
        args.markdown.parent.mkdir(parents=True, exist_ok=True)
        with args.markdown.open("a") as f:
            f.write("\n".join(lines) + "\n\n")


if __name__ == "__main__":
    with torch.no_grad():
        main()
