"""How many torch threads the sampling thread should use on CPU (a script, not a test).

The studio samples in a worker thread. OpenMP sizes its team per calling thread, and for small
models the hand-off between team members costs more than it saves; this measures one 30-step
diffusion image (no CLIP score) on the default models in a worker thread with 1, 2 and N threads,
side by side in one run, medians over repeats. `--cpu-threads` / NOISESCOPE_CPU_THREADS picks it.

    python bench/bench_threads.py [--repeats 5] [--steps 30]
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--steps", type=int, default=30)
    args = ap.parse_args()

    from app.diffusion.generate import generate
    from app.params import DiffusionParams
    from app.registry import load_models
    from app.settings import Settings

    models = dataclasses.replace(load_models(Settings(data_dir=Path(tempfile.mkdtemp()), device="cpu")).diffusion,
                                 clip=None)
    params = DiffusionParams(prompt="red heart", seed=1, steps=args.steps)
    live = params.live()

    def one(threads: int) -> float:
        out: list[float] = []

        def work() -> None:
            torch.set_num_threads(threads)
            t0 = time.perf_counter()
            with torch.no_grad():
                generate(models, params, live=lambda: live, on_step=lambda s: None)
            out.append(time.perf_counter() - t0)

        th = threading.Thread(target=work)
        th.start()
        th.join()
        return out[0]

    counts = sorted({1, 2, os.cpu_count() or 2})
    times: dict[int, list[float]] = {n: [] for n in counts}
    for n in counts:
        one(n)  # warm-up
    for _ in range(args.repeats):
        for n in counts:
            times[n].append(one(n))
    base = statistics.median(times[1])
    print(f"{args.steps}-step image on the default models, in a worker thread; median of {args.repeats}")
    for n in counts:
        med = statistics.median(times[n])
        print(f"{n:3d} thread(s): {med * 1000:8.1f} ms  ({med / base:.2f}x one thread)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
