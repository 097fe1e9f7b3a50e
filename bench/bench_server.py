"""Latency over a real websocket on the default models (a script, not a test).

Starts the studio as `python -m app` in its own process on 127.0.0.1 (so the client below does
not share its interpreter) and measures, with medians over repeats:
  - time from sending `generate` to the first preview frame, and to `done`;
  - GAN slider-to-frame round trip: `generate_gan` with a new truncation -> final frame
    (the mapping output is cached, so this is one synthesis pass plus encoding and transport),
    side by side with the bare render the server timed for the same request (its `step` event's
    elapsed_ms: styles, synthesis, uint8), their difference per request (the overhead, goal <= 10 ms),
    and the frame -> `done` wait for the CLIP score that follows the frame. Each slider request
    waits for the previous one's `done`, so a score still running is never part of the next trip.

    python bench/bench_server.py [--repeats 10] [--steps 30] [--gan-only]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from app.devtools import free_port


async def gan_slider(ws, r: int) -> dict[str, float]:
    """One slider move: times to the final frame and to `done`, and the server's own render time."""
    from app.api.protocol import FrameType, decode_frame

    t0 = time.perf_counter()
    await ws.send(json.dumps({"type": "generate_gan", "params": {"prompt": "red heart", "seed": 3, "save": False,
                                                                "truncation_psi": 0.5 + r / 100}}))
    got: dict[str, float] = {}
    while True:
        msg = await ws.recv()
        if isinstance(msg, bytes):
            if decode_frame(msg)[0] == FrameType.FINAL:
                got["frame"] = (time.perf_counter() - t0) * 1000
            continue
        ev = json.loads(msg)
        assert ev["type"] != "error", ev
        if ev["type"] == "step":
            got["render"] = ev["elapsed_ms"]
        elif ev["type"] == "done":
            got["done"] = (time.perf_counter() - t0) * 1000
            return got


async def measure(url: str, repeats: int, steps: int, has_gan: bool, diffusion: bool) -> dict[str, list[float]]:
    import websockets

    from app.api.protocol import FrameType, decode_frame

    out: dict[str, list[float]] = {"first_preview_ms": [], "done_ms": [], "gan_slider_to_frame_ms": [],
                                   "gan_bare_render_ms (in server)": [], "gan_overhead_ms (frame - render)": [],
                                   "gan_frame_to_score_ms": []}
    async with websockets.connect(url, compression=None, max_size=None) as ws:
        for r in range(repeats + 1 if diffusion else 0):
            t0 = time.perf_counter()
            await ws.send(json.dumps({"type": "generate", "params": {"prompt": "red heart", "seed": r,
                                                                    "steps": steps}}))
            first = None
            while True:
                msg = await ws.recv()
                if isinstance(msg, bytes):
                    kind, _, _ = decode_frame(msg)
                    if kind == FrameType.PREVIEW and first is None:
                        first = (time.perf_counter() - t0) * 1000
                elif json.loads(msg)["type"] in ("done", "error"):
                    assert json.loads(msg)["type"] == "done", msg
                    break
            if r:  # the first run warms up
                out["first_preview_ms"].append(first or float("nan"))
                out["done_ms"].append((time.perf_counter() - t0) * 1000)
        if has_gan:
            for r in range(repeats + 2):
                got = await gan_slider(ws, r)
                if r >= 2:  # the first two warm up (mapping, truncation centre, allocator)
                    out["gan_slider_to_frame_ms"].append(got["frame"])
                    out["gan_bare_render_ms (in server)"].append(got["render"])
                    out["gan_overhead_ms (frame - render)"].append(got["frame"] - got["render"])
                    out["gan_frame_to_score_ms"].append(got["done"] - got["frame"])
    return out


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--gan-only", action="store_true", help="skip the diffusion rows")
    args = parser.parse_args()

    import subprocess
    import tempfile
    import urllib.request

    port = free_port()
    data_dir = tempfile.mkdtemp(prefix="noisescope-bench-")
    server = subprocess.Popen([sys.executable, "-m", "app", "--port", str(port), "--data-dir", data_dir],
                              cwd=Path(__file__).resolve().parent.parent, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    try:
        info = None
        for _ in range(600):
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/info", timeout=1) as r:
                    info = json.load(r)
                break
            except OSError:
                time.sleep(0.1)
        if info is None:
            raise SystemExit("the studio did not start")
        res = asyncio.run(measure(f"ws://127.0.0.1:{port}/ws", args.repeats, args.steps, info["gan"] is not None,
                                  not args.gan_only))
    finally:
        server.terminate()
        server.wait(10)
    print(f"models: diffusion={info['diffusion']} gan={(info['gan'] or {}).get('name')} device={info['device']} "
          f"demo={info['demo']}")
    print(f"{'measure':34s} {'median ms':>10s} {'min':>8s} {'max':>8s}")
    for key, values in res.items():
        if values:
            print(f"{key:34s} {statistics.median(values):10.1f} {min(values):8.1f} {max(values):8.1f}")
    print(f"steps per diffusion run: {args.steps}; repeats: {args.repeats}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
