"""Throughput of the engine as a Ray Serve deployment: 2 replicas against 1 (a script, not a test).

One local Ray cluster, one deployment of two CPU replicas of the embedded models. Each round queues
`--runs` diffusion runs at once and times them until the last is done: once with every run pinned to
one replica (what one replica does; the other idles) and once spread by the router over both. Rounds
alternate, so both see the same load on a shared machine; it prints each round and the ratio of the
medians, and how many cores the replica processes got (their CPU time over the round's wall time: on a
machine shared with other work that, not the replica count, bounds what 2 replicas can do). Runs go
through the replicas' streaming calls as the ingress sends them (every step's event
and preview streams back), without a websocket.

    python bench/bench_ray.py [--runs 6] [--steps 30] [--rounds 3] [--size 64]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU time of these processes so far (Linux /proc)."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += (int(fields[11]) + int(fields[12])) / ticks
    return total


async def one_round(engine, runs: int, steps: int, size: int, replica: str | None) -> tuple[float, set[str]]:
    """Queue `runs` runs at once (on `replica`, or where the router sends them); seconds until all are done."""
    from app.params import DiffusionParams

    async def run(seed: int) -> str:
        params = DiffusionParams(prompt="red heart", seed=seed, steps=steps, width=size, height=size)
        args = {"params": params, "client_id": f"bench-{seed}", "owner": "bench", "ref": None}
        stream = engine.options(stream=True).run.remote("generate", args, None, replica=replica)
        where = None
        async for item in stream:
            if item[0] == "start":
                where = item[1]
            elif item[0] == "refused" or (item[0] == "event" and item[1]["type"] in ("error", "cancelled")):
                raise RuntimeError(f"run failed: {item}")
        return where

    t0 = time.perf_counter()
    used = await asyncio.gather(*(run(seed) for seed in range(runs)))
    return time.perf_counter() - t0, set(used)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=6)
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--size", type=int, default=64)
    args = ap.parse_args()

    import ray
    from ray import serve

    from app.cluster.launch import Scale, deploy, runtime_env
    from app.settings import Settings

    print(f"load average at start: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores", flush=True)
    ray.init(address="local", num_cpus=2, object_store_memory=128 * 1024 * 1024, include_dashboard=False,
             runtime_env=runtime_env(), log_to_driver=False)
    try:
        settings = Settings(data_dir=Path(tempfile.mkdtemp()), device="cpu", max_job_seconds=1e9,
                            queue_size=max(8, args.runs))
        t0 = time.perf_counter()
        engine = deploy(settings, Scale(replicas=2, cpus=1.0), name="bench-engine")
        print(f"deployed 2 replicas in {time.perf_counter() - t0:.0f} s", flush=True)

        async def rounds() -> dict[str, list[float]]:
            await one_round(engine, 2, 4, args.size, None)  # warm both replicas
            _, used = await one_round(engine, 2, 4, args.size, None)
            if len(used) != 2:
                raise RuntimeError(f"two runs at once went to {len(used)} replica(s), not 2")
            replicas = sorted(used)
            pids = [(await engine.describe.remote(replica=r))["pid"] for r in replicas]
            times: dict[str, list[float]] = {"1 replica": [], "2 replicas": []}
            for r in range(args.rounds):
                for label, replica in (("1 replica", replicas[0]), ("2 replicas", None)):
                    cpu0 = cpu_seconds(pids)
                    seconds, used = await one_round(engine, args.runs, args.steps, args.size, replica)
                    cores = (cpu_seconds(pids) - cpu0) / seconds
                    times[label].append(seconds)
                    print(f"round {r + 1} {label:10s}: {args.runs} runs x {args.steps} steps in {seconds:6.2f} s "
                          f"({args.runs / seconds:.2f} runs/s) on {len(used)} replica(s); the replicas got "
                          f"{cores:.2f} cores", flush=True)
            return times

        times = asyncio.run(rounds())
        one, two = (statistics.median(times[k]) for k in ("1 replica", "2 replicas"))
        print(f"median: 1 replica {one:.2f} s, 2 replicas {two:.2f} s; throughput ratio 2 vs 1: {one / two:.2f}x")
        print(f"load average at end: {os.getloadavg()[0]:.1f}")
    finally:
        serve.shutdown()
        ray.shutdown()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
