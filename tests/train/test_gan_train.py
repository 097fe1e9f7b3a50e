"""GAN training on a tiny config: finite losses, learning happens, resume is exact, export loads."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from PIL import Image

from app.train.diffaug import diff_augment
from app.train.discriminator import Discriminator, minibatch_std
from app.train.gan import CHECKPOINT, SAMPLE_PROMPTS, GanConfig, export_generator, load_checkpoint, main, train

CPU = torch.device("cpu")


def tiny_cfg() -> GanConfig:
    return GanConfig(z_dim=16, w_dim=32, g_channel_base=256, g_channel_max=32, d_channel_base=256, d_channel_max=32,
                     batch=4, r1_interval=2, seed=3)


def params(module: torch.nn.Module) -> torch.Tensor:
    return torch.cat([p.detach().flatten() for p in module.parameters()])


def run(out: Path, clip: Path, steps: int, resume: bool = False):
    return train("shapes:8", str(clip), out, steps, resume=resume, cfg=tiny_cfg(), device=CPU, log_every=1,
                 checkpoint_every=1000, progress=False)


def test_diff_augment_keeps_shape_and_gradient() -> None:
    x = torch.rand(4, 3, 16, 16, requires_grad=True)
    y = diff_augment(x * 2 - 1)
    assert y.shape == x.shape
    y.sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert torch.equal(diff_augment(x, ""), x)


def test_minibatch_std_adds_a_channel_that_is_zero_for_identical_samples() -> None:
    x = torch.randn(1, 5, 4, 4).repeat(4, 1, 1, 1)
    y = minibatch_std(x)
    assert y.shape == (4, 6, 4, 4)
    assert y[:, -1].abs().max() < 1e-3


def test_discriminator_depends_on_condition() -> None:
    torch.manual_seed(0)
    D = Discriminator(c_dim=8, img_resolution=32, channel_base=128, channel_max=16, cmap_dim=16)
    x = torch.randn(4, 3, 32, 32)
    a, b = D(x, torch.randn(4, 8)), D(x, torch.randn(4, 8))
    assert a.shape == (4, 1)
    assert not torch.allclose(a, b)


@pytest.mark.slow
def test_training_steps_are_finite_and_change_g(tmp_path: Path, tiny_clip_dir: Path) -> None:
    torch.manual_seed(0)
    out = tmp_path / "run"
    state = run(out, tiny_clip_dir, 3)
    assert state.step == 3 and state.nimg == 12
    for row in state.history:
        assert all(torch.isfinite(torch.tensor(v)) for v in row.values())
    assert "r1" in state.history[0]
    fresh = load_checkpoint(out / CHECKPOINT, CPU)[0]
    from app.train.gan import build_state

    cfg = tiny_cfg()
    cfg.c_dim = state.G.c_dim
    init = build_state(cfg, CPU)
    assert not torch.allclose(params(init.G), params(fresh.G))
    assert not torch.allclose(params(init.D), params(fresh.D))
    assert not torch.allclose(params(init.G_ema), params(fresh.G_ema))
    assert (out / "samples.png").is_file()


def test_resume_without_a_checkpoint_says_it_starts_fresh(tmp_path: Path, tiny_clip_dir: Path) -> None:
    with pytest.warns(UserWarning, match="starting a fresh run"):
        state = run(tmp_path / "new", tiny_clip_dir, 1, resume=True)
    assert state.step == 1


@pytest.mark.slow
def test_resume_continues_exactly(tmp_path: Path, tiny_clip_dir: Path) -> None:
    straight = run(tmp_path / "a", tiny_clip_dir, 4)
    run(tmp_path / "b", tiny_clip_dir, 2)
    resumed = run(tmp_path / "b", tiny_clip_dir, 4, resume=True)
    assert resumed.step == 4
    assert torch.allclose(params(straight.G), params(resumed.G), atol=1e-6)
    assert torch.allclose(params(straight.D), params(resumed.D), atol=1e-6)
    assert torch.allclose(params(straight.G_ema), params(resumed.G_ema), atol=1e-6)


@pytest.mark.slow
def test_export_loads_with_load_generator(tmp_path: Path, tiny_clip_dir: Path) -> None:
    from app.gan.convert import load_generator

    out = tmp_path / "run"
    assert main(["--data", "shapes:8", "--clip", str(tiny_clip_dir), "--out", str(out), "--steps", "2",
                 "--batch", "4", "--device", "cpu", "--export", str(tmp_path / "gan"),
                 "--samples", str(tmp_path / "samples.png")]) == 0
    state, cfg = load_checkpoint(out / CHECKPOINT, CPU)
    G = load_generator(tmp_path / "gan")
    assert G.c_dim == cfg.c_dim == 32
    config = json.loads((tmp_path / "gan" / "config.json").read_text())
    assert config["conditioning"]["clip"] == str(tiny_clip_dir)
    z, c = torch.randn(2, G.z_dim), torch.randn(2, G.c_dim)
    want = state.G_ema(z, c, noise_mode="const")
    got = G(z, c, noise_mode="const")
    assert got.shape == (2, 3, 64, 64)
    assert torch.allclose(got, want, atol=0.05)
    assert Image.open(tmp_path / "samples.png").size == (6 * 64, len(SAMPLE_PROMPTS) * 64)


def test_export_refuses_mismatched_config(tmp_path: Path) -> None:
    from app.gan.networks import Generator

    cfg = tiny_cfg()
    cfg.c_dim = 8
    G = Generator(**{**cfg.generator_kwargs(), "w_dim": 16})
    with pytest.raises(RuntimeError):
        export_generator(G, cfg, tmp_path / "gan", {})


def test_regression_only_lowers_the_l1_and_leaves_d_alone(tmp_path: Path, tiny_clip_dir: Path) -> None:
    cfg = tiny_cfg()
    cfg.recon_l1, cfg.adversarial, cfg.batch = 1.0, False, 8
    state = train("shapes:8", str(tiny_clip_dir), tmp_path / "run", 12, cfg=cfg, device=CPU, log_every=1,
                  checkpoint_every=1000, progress=False)
    recon = [row["recon"] for row in state.history]
    assert sum(recon[-3:]) < sum(recon[:3])
    assert "loss_d" not in state.history[-1]
    from app.train.gan import build_state

    assert torch.equal(params(build_state(cfg, CPU).D), params(state.D))


def test_bf16_step_with_l1_is_finite(tmp_path: Path, tiny_clip_dir: Path) -> None:
    cfg = tiny_cfg()
    cfg.recon_l1, cfg.recon_size, cfg.precision = 10.0, 8, "bf16"
    state = train("shapes:8", str(tiny_clip_dir), tmp_path / "run", 2, cfg=cfg, device=CPU, log_every=1,
                  checkpoint_every=1000, progress=False)
    row = state.history[0]
    assert {"recon", "loss_g", "loss_d", "r1"} <= row.keys()
    assert all(torch.isfinite(torch.tensor(v)) for v in row.values())
    assert all(p.dtype == torch.float32 for p in state.G.parameters())


def test_resume_takes_loss_overrides_but_not_architecture(tmp_path: Path, tiny_clip_dir: Path) -> None:
    out = tmp_path / "run"
    cfg = tiny_cfg()
    cfg.recon_l1, cfg.adversarial = 1.0, False
    train("shapes:8", str(tiny_clip_dir), out, 1, cfg=cfg, device=CPU, progress=False)
    state = train("shapes:8", str(tiny_clip_dir), out, 2, resume=True, device=CPU, progress=False, log_every=1,
                  overrides={"adversarial": True, "batch": 3})
    assert "loss_d" in state.history[-1]
    assert state.nimg == cfg.batch + 3
    resumed_cfg = load_checkpoint(out / CHECKPOINT, CPU)[1]
    assert resumed_cfg.adversarial is True and resumed_cfg.batch == 3
    with pytest.raises(ValueError, match="w_dim"):
        train("shapes:8", str(tiny_clip_dir), out, 3, resume=True, device=CPU, progress=False,
              overrides={"w_dim": 64})


def test_resume_with_a_new_learning_rate_sets_both_optimisers(tmp_path: Path, tiny_clip_dir: Path) -> None:
    out = tmp_path / "run"
    run(out, tiny_clip_dir, 1)
    state = train("shapes:8", str(tiny_clip_dir), out, 2, resume=True, device=CPU, progress=False,
                  overrides={"g_lr": 1e-3, "d_lr": 5e-4, "mapping_lr_scale": 4.0})
    rest, mapping = state.opt_g.param_groups
    assert (rest["lr"], mapping["lr"]) == (1e-3, 4e-3)
    ratio = tiny_cfg().r1_interval / (tiny_cfg().r1_interval + 1)
    assert [g["lr"] for g in state.opt_d.param_groups] == [5e-4 * ratio]
    reloaded, cfg = load_checkpoint(out / CHECKPOINT, CPU)
    assert (cfg.g_lr, cfg.d_lr) == (1e-3, 5e-4) and reloaded.opt_g.param_groups[1]["lr"] == 4e-3


def test_gradient_l1_sees_edges_not_offsets() -> None:
    from app.train.common import gradient_l1

    img = torch.zeros(1, 3, 8, 8)
    img[..., 2:5, 2:5] = 1.0
    assert gradient_l1(img, img) == 0
    assert gradient_l1(img + 0.5, img) == 0  # a flat colour shift has the same edges
    moved = torch.roll(img, 1, dims=-1)
    assert gradient_l1(moved, img) > 0 and gradient_l1(img.mean().expand_as(img), img) > 0


def test_edge_term_is_logged_and_trains(tmp_path: Path, tiny_clip_dir: Path) -> None:
    cfg = tiny_cfg()
    cfg.recon_l1, cfg.recon_grad, cfg.adversarial = 1.0, 1.0, False
    state = train("shapes:8", str(tiny_clip_dir), tmp_path / "run", 30, cfg=cfg, device=CPU, progress=False,
                  log_every=1)
    edges = [row["recon_grad"] for row in state.history]
    assert all(math.isfinite(e) for e in edges)
    assert sum(edges[-5:]) < sum(edges[:5])
    assert load_checkpoint(tmp_path / "run" / CHECKPOINT, CPU)[1].recon_grad == 1.0


def test_fresh_run_starts_from_an_exported_generator(tmp_path: Path, tiny_clip_dir: Path) -> None:
    first = run(tmp_path / "a", tiny_clip_dir, 1)
    cfg = tiny_cfg()
    cfg.c_dim = first.G.c_dim
    export_generator(first.G_ema, cfg, tmp_path / "gan", {})
    state = train("shapes:8", str(tiny_clip_dir), tmp_path / "b", 0, cfg=tiny_cfg(), device=CPU, progress=False,
                  init_g=tmp_path / "gan")
    want = params(first.G_ema).half().float()
    assert torch.equal(params(state.G), want) and torch.equal(params(state.G_ema), want)
    other = tiny_cfg()
    other.w_dim, other.g_channel_base = 16, 512  # the folder's architecture wins over the flags' defaults
    state = train("shapes:8", str(tiny_clip_dir), tmp_path / "c", 0, cfg=other, device=CPU, progress=False,
                  init_g=tmp_path / "gan")
    assert state.G.w_dim == first.G.w_dim and torch.equal(params(state.G), want)


def test_mapping_learns_at_its_own_rate() -> None:
    from app.train.gan import build_state

    cfg = tiny_cfg()
    cfg.c_dim, cfg.mapping_lr_scale = 8, 10.0
    state = build_state(cfg, CPU)
    rest, mapping = state.opt_g.param_groups
    assert mapping["lr"] == 10 * rest["lr"] == 10 * cfg.g_lr
    names = {id(p): n for n, p in state.G.named_parameters()}
    assert {names[id(p)].split(".")[1][:2] for p in mapping["params"]} == {"fc"}
    assert len(rest["params"]) + len(mapping["params"]) == len(list(state.G.parameters()))


def test_imle_picks_the_nearest_of_its_draws() -> None:
    from app.gan.networks import Generator
    from app.train.gan import nearest_latents

    torch.manual_seed(0)
    G = Generator(z_dim=8, c_dim=4, w_dim=16, img_resolution=16, img_channels=3, channel_base=128,
                  channel_max=16, mapping_kwargs={"num_layers": 1}).eval()
    c, real = torch.randn(3, 4), torch.rand(3, 3, 16, 16) * 2 - 1
    torch.manual_seed(5)
    chosen = nearest_latents(G, c, real, k=6, size=8)
    torch.manual_seed(5)
    draws = torch.randn(3, 6, 8)
    with torch.no_grad():
        for i in range(3):
            imgs = G(draws[i], c[i:i + 1].expand(6, -1), noise_mode="const")
            dist = (torch.nn.functional.adaptive_avg_pool2d(imgs, 8)
                    - torch.nn.functional.adaptive_avg_pool2d(real[i:i + 1], 8)).square().mean(dim=(1, 2, 3))
            assert torch.equal(chosen[i], draws[i, int(dist.argmin())])


@pytest.mark.slow
def test_imle_keeps_two_pictures_of_one_caption_apart() -> None:
    """One caption, two pictures (black and white): L1 with z at random learns their grey mean,
    conditional IMLE learns both, so z changes the picture."""
    from app.train.gan import build_state, train_step

    def spread(imle_k: int) -> float:
        cfg = GanConfig(z_dim=8, w_dim=16, img_resolution=16, g_channel_base=128, g_channel_max=16, batch=8,
                        mapping_layers=2, adversarial=False, recon_l1=1.0, imle_k=imle_k, imle_size=4, g_lr=0.01,
                        c_dim=4, seed=1)
        state = build_state(cfg, CPU)
        c = torch.ones(8, 4)
        real = torch.cat([torch.full((4, 3, 16, 16), -1.0), torch.full((4, 3, 16, 16), 1.0)])
        for _ in range(60):
            train_step(state, cfg, real, c)
        with torch.no_grad():
            means = state.G(torch.randn(64, 8), torch.ones(64, 4), noise_mode="const").mean(dim=(1, 2, 3))
        return float(means.std())

    random_z, imle = spread(0), spread(4)
    assert imle > 0.5 and imle > 3 * random_z, (imle, random_z)
