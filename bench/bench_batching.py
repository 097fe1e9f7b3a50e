"""Step-level batching, side by side in one run (a script, not a test).

    python bench/bench_batching.py                      # the embedded models on this CPU
    python bench/bench_batching.py --device cuda        # the same on a GPU
    python bench/bench_batching.py --runs 4 8 --steps 30 --repeats 2
    python bench/bench_batching.py --flow flux --runs 4    # tiny random FLUX.1-dev / SD3 folders instead

For each N in --runs, N pages each submit one 30-step run at the same moment (previews every step,
the studio's defaults otherwise: 64x64, dpmpp_2m, CFG 5, a full decode and CLIP score every 10th
step) to a studio that steps them together (batch_runs=N), and to one that runs them one after
another (batch_runs=1). Rows: wall time for all N (median of --repeats, the modes alternating),
throughput ratio by wall time and by this process's CPU time (steadier on a shared machine), and
each run's time from submit to its first preview frame (the worst over the repeats). Then the final images
of N runs stepped together against each run alone: max abs difference, and whether bit-exact.
`--flow sd3|flux` runs the same on a tiny random flow-matching folder (app.demo_flow_models, built in
a temporary folder): its runs share transformer calls as SD's share UNet calls.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from app.diffusion.denoiser import unet_batch  # noqa: E402
from app.diffusion.generate import generate, sample_steps  # noqa: E402
from app.diffusion.previews import full_decode  # noqa: E402
from app.engine.batcher import Batcher  # noqa: E402
from app.engine.jobs import Job  # noqa: E402
from app.engine.live import LiveState  # noqa: E402
from app.engine.studio import Studio  # noqa: E402
from app.params import DiffusionParams  # noqa: E402
from app.registry import load_models  # noqa: E402
from app.settings import Settings  # noqa: E402
from app.store.gallery import Gallery  # noqa: E402

PROMPTS = ["a red fox in the snow", "a blue boat on a lake", "a castle at night", "a bowl of fruit",
           "a green forest", "a city street in the rain", "a portrait of an old man", "a yellow flower"]


class TimedSink:
    """Records when the first preview frame and `done` arrive."""

    def __init__(self, t0: list[float]) -> None:
        self.t0 = t0
        self.first_preview: float | None = None
        self.done = threading.Event()
        self.error: dict | None = None

    def send(self, event: dict) -> None:
        if event["type"] in ("done", "error", "cancelled"):
            self.error = None if event["type"] == "done" else event
            self.done.set()

    def image(self, meta: dict, data: bytes, kind: str) -> None:
        if kind == "preview" and self.first_preview is None:
            self.first_preview = time.perf_counter() - self.t0[0]


def params(i: int, steps: int) -> DiffusionParams:
    return DiffusionParams(prompt=PROMPTS[i % len(PROMPTS)], seed=100 + i, steps=steps)


def one_round(studio: Studio, n: int, steps: int) -> tuple[float, float, list[float]]:
    """Wall seconds and this process's CPU seconds for n runs submitted at once, and each run's
    seconds to its first preview. On a shared machine the CPU seconds are the steadier measure."""
    t0 = [0.0]
    sinks = [TimedSink(t0) for _ in range(n)]
    cpu0 = time.process_time()
    t0[0] = time.perf_counter()
    for i, sink in enumerate(sinks):
        studio.generate(params(i, steps), sink, client_id=f"page{i}", owner="bench")
    for sink in sinks:
        if not sink.done.wait(600):
            raise SystemExit("a run did not finish in 10 minutes")
        if sink.error:
            raise SystemExit(f"a run failed: {sink.error}")
    return time.perf_counter() - t0[0], time.process_time() - cpu0, [s.first_preview or float("nan") for s in sinks]


def determinism(models, n: int, steps: int) -> tuple[float, bool]:
    """Max abs difference of the final images (in [0, 1]) of n runs stepped together vs each alone."""
    runs: dict[str, tuple] = {}
    for i in range(n):
        p = params(i, steps)
        live = LiveState(p.live())
        runs[f"r{i}"] = (p, sample_steps(models, p, live=live.params, on_step=lambda info: None,
                                         on_boundary=live.advance))
    results: dict[str, torch.Tensor] = {}

    class Run:
        def __init__(self, name: str) -> None:
            self.name, self.steps, self.request, self.network = name, runs[name][1], None, models.denoiser
            self.job = Job("diffusion", runs[name][0], None, name, name)  # type: ignore[arg-type]

        def _go(self, step) -> bool:
            try:
                with torch.no_grad():
                    self.request = step()
                return False
            except StopIteration as done:
                results[self.name] = done.value
                return True

        def start(self) -> bool:
            return self._go(lambda: next(self.steps))

        def send(self, out) -> bool:
            return self._go(lambda: self.steps.send(out))

    batcher = Batcher(lambda job: Run(job.client_id), unet_batch, 64)
    for name in runs:
        batcher.add(Job("diffusion", runs[name][0], None, name, name))  # type: ignore[arg-type]
    while batcher.runs:
        batcher.tick()
    worst, exact = 0.0, True
    with torch.no_grad():
        for name, (p, _) in runs.items():
            live = LiveState(p.live())
            solo = generate(models, p, live=live.params, on_step=lambda info: None, on_boundary=live.advance)
            exact &= torch.equal(solo, results[name])
            diff = (full_decode(models.vae, solo) - full_decode(models.vae, results[name])).abs().max().item()
            worst = max(worst, diff)
    return worst, exact


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--runs", type=int, nargs="+", default=[4, 8])
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--cpu-threads", type=int, default=1)
    ap.add_argument("--flow", choices=["sd3", "flux"], help="a tiny random flow-matching model instead of the embedded one")
    args = ap.parse_args()
    data = Path(tempfile.mkdtemp())
    base = {"data_dir": data, "device": args.device, "gan_model": "", "queue_size": 64,
            "cpu_threads": args.cpu_threads}
    if args.flow:
        from app.demo_flow_models import build_tiny_flux, build_tiny_sd3

        build = build_tiny_sd3 if args.flow == "sd3" else build_tiny_flux
        base["diffusion_model"] = str(build(data / f"tiny-{args.flow}", seed=0))
    models = load_models(Settings(**base))
    torch.set_num_threads(args.cpu_threads or torch.get_num_threads())
    gallery = Gallery(data / "gallery")
    print(f"device {models.device} ({models.dtype}), models {models.names.get('diffusion')}, {args.steps} steps, "
          f"64x64, previews every step, torch threads {args.cpu_threads}")
    print(f"{'runs':>4} {'one after another':>18} {'batched':>9} {'throughput':>10} {'by CPU time':>11}   "
          f"first preview ms, batched (one after another: max)")
    for n in args.runs:
        studios = {}
        for mode, runs in (("seq", 1), ("batch", n)):
            studio = Studio(Settings(**base, batch_runs=runs), models, gallery)
            models.calibration = studio.calibration  # measured once
            studio.start()
            one_round(studio, 1, 3)  # warm-up
            studios[mode] = studio
        times: dict[str, list[float]] = {"seq": [], "batch": []}
        cpus: dict[str, list[float]] = {"seq": [], "batch": []}
        firsts: dict[str, list[float]] = {"seq": [], "batch": []}
        for _ in range(args.repeats):
            for mode, studio in studios.items():
                wall, cpu, first = one_round(studio, n, args.steps)
                times[mode].append(wall)
                cpus[mode].append(cpu)
                firsts[mode] = first if not firsts[mode] else [max(a, b) for a, b in zip(firsts[mode], first)]
        for studio in studios.values():
            studio.stop()
        seq, bat = statistics.median(times["seq"]), statistics.median(times["batch"])
        previews = " ".join(f"{1000 * t:.0f}" for t in firsts["batch"])
        cpu_ratio = statistics.median(cpus["seq"]) / statistics.median(cpus["batch"])
        print(f"{n:>4} {seq:>16.2f} s {bat:>7.2f} s {seq / bat:>9.2f}x {cpu_ratio:>10.2f}x   {previews}  "
              f"(max {1000 * max(firsts['seq']):.0f})")
    for n in args.runs:
        worst, exact = determinism(models.diffusion, n, args.steps)
        print(f"determinism, {n} runs stepped together vs alone: final image max abs diff {worst:.2e} "
              f"(images in [0, 1]), bit-exact: {exact}")


if __name__ == "__main__":
    main()
