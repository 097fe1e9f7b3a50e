"""The flow samplers written as generators of their steps (app.diffusion.flow.*_steps) are the
samplers they replaced, bit for bit: each `reference_*` below is the loop that called the denoiser
directly, kept here as what the generators were checked against."""

from __future__ import annotations

import math

import pytest
import torch
from torch import Tensor

from app.diffusion import flow
from app.diffusion.samplers import ancestral_split, drive, euler_steps

# --- the samplers as they were, calling the denoiser inside the loop ------------------------------


def reference_euler(model, x: Tensor, ts, callback=None, start_index: int = 0) -> Tensor:
    s = [float(t) for t in ts]
    for i in range(start_index, len(s) - 1):
        denoised = model(x, x.new_full((x.shape[0],), s[i]))
        x = x + (x - denoised) / s[i] * (s[i + 1] - s[i])
        callback and callback({"i": i, "x": x, "sigma": s[i], "sigma_next": s[i + 1], "denoised": denoised})
    return x


def reference_ancestral(model, x: Tensor, ts, callback=None, start_index: int = 0, eta=1.0, noise=None) -> Tensor:
    s = [float(t) for t in ts]
    for i in range(start_index, len(s) - 1):
        denoised = model(x, x.new_full((x.shape[0],), s[i]))
        down, up = ancestral_split(flow.ve_sigma(s[i]), flow.ve_sigma(s[i + 1]), float(eta() if callable(eta) else eta))
        keep = 1.0 - s[i + 1]
        eps = x if s[i] >= 1.0 else (x - denoised * (1.0 - s[i])) / s[i]
        x = (denoised + eps * down) * keep
        if up > 0:
            x = x + noise(i) * (up * keep)
        callback and callback({"i": i, "x": x, "sigma": s[i], "sigma_next": s[i + 1], "denoised": denoised})
    return x


def reference_dpmpp_2m(model, x: Tensor, ts, callback=None, start_index: int = 0, old_denoised=None) -> Tensor:
    s = [float(t) for t in ts]
    sig = [flow.ve_sigma(t) for t in s]
    prev = old_denoised if start_index > 0 else None
    for i in range(start_index, len(s) - 1):
        denoised = model(x, x.new_full((x.shape[0],), s[i]))
        if s[i + 1] == 0.0:
            x = denoised
        else:
            ratio = sig[i + 1] / sig[i]
            d = denoised
            if prev is not None:
                q = (math.log(sig[i - 1]) - math.log(sig[i])) / (math.log(sig[i]) - math.log(sig[i + 1]))
                d = denoised * (1 + 1 / (2 * q)) - prev * (1 / (2 * q))
            eps = x if s[i] >= 1.0 else (x - denoised * (1.0 - s[i])) / s[i]
            x = (denoised * ratio + eps * sig[i + 1] + d * (1 - ratio)) * (1.0 - s[i + 1])
        prev = denoised
        callback and callback({"i": i, "x": x, "sigma": s[i], "sigma_next": s[i + 1], "denoised": denoised})
    return x


# --- the comparison ---------------------------------------------------------------------------------

W = torch.randn(4, 4, generator=torch.Generator().manual_seed(0)) * 0.5


def network(x: Tensor, t: Tensor) -> Tensor:
    """A nonlinear stand-in for D(x_t, t) (so every update's arithmetic matters)."""
    return torch.tanh(x @ W) * (1 - t.view(-1, 1)) + x * 0.1


TIMES = flow.flow_times(flow.FlowSchedule(shift=3.0), 7, 64)
ZS = torch.randn(8, 3, 4, generator=torch.Generator().manual_seed(1))
ETA = {"euler": 0.0, "euler_a": 0.8, "ddim": 0.3, "ddpm": 1.0, "dpmpp_2m": 0.0}


def reference(name: str, start: int, x: Tensor, seen: list, old: Tensor | None) -> Tensor:
    if name == "euler":
        return reference_euler(network, x, TIMES, seen.append, start)
    if name == "dpmpp_2m":
        return reference_dpmpp_2m(network, x, TIMES, seen.append, start, old)
    return reference_ancestral(network, x, TIMES, seen.append, start, eta=lambda: ETA[name], noise=lambda i: ZS[i])


@pytest.mark.parametrize("start", [0, 3])
@pytest.mark.parametrize("name", flow.FLOW_SAMPLERS)
def test_steps_are_the_samplers_they_replaced_bit_for_bit(name: str, start: int) -> None:
    x = torch.randn(3, 4, generator=torch.Generator().manual_seed(2))
    old = network(x, torch.full((3,), 0.9)) if start else None
    theirs: list[dict] = []
    want = reference(name, start, x.clone(), theirs, old)
    ours: list[dict] = []
    asked: list[float] = []

    def model(x: Tensor, t: Tensor) -> Tensor:
        asked.append(float(t[0]))
        return network(x, t)

    got = flow.run_flow_sampler(name, model, x.clone(), TIMES, callback=ours.append, start_index=start,
                                eta=lambda: ETA[name], noise=lambda i: ZS[i], old_denoised=old)
    assert torch.equal(got, want)
    assert len(ours) == len(theirs) == len(TIMES) - 1 - start
    for a, b in zip(ours, theirs):
        assert a["i"] == b["i"] and a["sigma"] == b["sigma"] and a["sigma_next"] == b["sigma_next"]
        assert torch.equal(a["x"], b["x"]) and torch.equal(a["denoised"], b["denoised"])
    assert asked == TIMES.tolist()[start:-1], "one request per step, at the step's time t"


def test_steps_yield_requests_and_take_x0_estimates() -> None:
    """Driving the generator by hand is the same as the driver: x0 = yield (x, t)."""
    x = torch.randn(2, 4, generator=torch.Generator().manual_seed(3))
    steps = flow.flow_sampler_steps("dpmpp_2m", x.clone(), TIMES)
    request = next(steps)
    count = 0
    try:
        while True:
            xs, t = request
            assert t.shape == (2,) and 0.0 < float(t[0]) <= 1.0
            count += 1
            request = steps.send(network(xs, t))
    except StopIteration as done:
        result = done.value
    assert count == len(TIMES) - 1
    assert torch.equal(result, drive(flow.flow_sampler_steps("dpmpp_2m", x.clone(), TIMES), network))
    assert torch.equal(drive(flow.flow_euler_steps(x, TIMES), network), drive(euler_steps(x, TIMES), network))
    with pytest.raises(ValueError):
        flow.flow_sampler_steps("plms", x, TIMES)
