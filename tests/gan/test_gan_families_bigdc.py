"""BigGAN and DCGAN behind the family interface: what they describe, what the runner renders for each
control (the same as the network called by hand), one point of a walk (walk_t), the refusals and the CLIP
searches."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from app.clip.backend import TransformersClip
from app.engine.gan_runner import GanRunner, load_gan_model
from app.gan import biggan, dcgan
from app.gan.networks import z_from_seed
from app.params import GanParams


@pytest.fixture(scope="module")
def clip(tiny_clip_dir: Path) -> TransformersClip:
    return TransformersClip(str(tiny_clip_dir), torch.device("cpu"))


def runner_for(folder: Path, clip: TransformersClip | None = None) -> GanRunner:
    return GanRunner(load_gan_model(folder, torch.device("cpu"), clip), None, None, {})  # type: ignore[arg-type]


def test_biggan_describes_classes_truncated_normal_and_walks(tiny_biggan_dir: Path) -> None:
    model = load_gan_model(tiny_biggan_dir, torch.device("cpu"))
    info = model.info()
    c = info["controls"]
    assert info["family"] == "biggan" and info["resolution"] == 32 and info["num_classes"] == 5
    assert c["truncation"] == "truncated_normal" and c["truncation_range"] == [0.05, 1.0, 0.4]
    assert c["condition"] == "class" and c["classes"][1] == "goldfish" and c["search"] == "z+class"
    assert c["walk"] == ["seed", "class"] and c["mixing_layers"] == 0 and not c["noise"] and not c["input_transform"]


def test_biggan_ids_when_no_names(tmp_path: Path) -> None:
    from app.demo_models import build_tiny_biggan

    model = load_gan_model(build_tiny_biggan(tmp_path / "b"), torch.device("cpu"))
    assert model.info()["controls"]["classes"] == ["0", "1", "2", "3", "4"] and model.info()["class_names"] == "ids"


def test_biggan_render_is_the_network_on_the_truncated_z(tiny_biggan_dir: Path) -> None:
    runner = runner_for(tiny_biggan_dir)
    family = runner.model.family
    G: biggan.BigGAN = family.G
    p = GanParams(seed=4, class_index=2, truncation_psi=0.5, grid=2)
    got = family.render(runner.styles(p, 4), p)
    z = torch.cat([biggan.truncated_z(s, 8, 0.5) for s in (4, 5)])
    y = torch.nn.functional.one_hot(torch.tensor([2, 2]), 5).float()
    with torch.no_grad():
        want = G(z, y, 0.5)
    assert torch.equal(got, (want.permute(0, 2, 3, 1) * 127.5 + 128).clamp(0, 255).to(torch.uint8))
    other = family.render(runner.styles(p.model_copy(update={"class_index": 3}), 4), p)
    assert not torch.equal(got, other), "the class must change the image"


def test_biggan_class_interpolation_is_the_lerp_of_embeddings(tiny_biggan_dir: Path) -> None:
    runner = runner_for(tiny_biggan_dir)
    family = runner.model.family
    p = GanParams(seed=1, class_index=0, walk_seed=1, walk_class=4, walk_t=0.25, truncation_psi=0.8)
    styles = runner.styles(p, 1)
    want = torch.cat([biggan.truncated_z(1, 8, 0.8), biggan.lerp_classes(family.G, 0, 4, 0.25)], dim=1)
    assert torch.allclose(styles, want, atol=1e-6)
    ends = [runner.styles(p.model_copy(update={"walk_t": t}), 1) for t in (0.0, 1.0)]
    assert torch.equal(ends[0], runner.styles(GanParams(seed=1, class_index=0, truncation_psi=0.8), 1))
    assert torch.allclose(ends[1], runner.styles(GanParams(seed=1, class_index=4, truncation_psi=0.8), 1))
    seeds = runner.styles(GanParams(seed=1, class_index=0, walk_t=1.0, truncation_psi=0.8), 1)  # to seed + 1
    assert torch.allclose(seeds, runner.styles(GanParams(seed=2, class_index=0, truncation_psi=0.8), 2))


@pytest.mark.parametrize(("update", "words"), [
    ({}, "pick a class"),
    ({"class_index": 5}, "below 5"),
    ({"class_index": 1, "truncation_psi": 1.5}, "(0, 1]"),
    ({"class_index": 1, "truncation_psi": 0.0}, "(0, 1]"),
    ({"class_index": 1, "walk_class": 7, "walk_t": 0.5}, "walk_class must be below 5"),
    ({"class_index": 1, "mix_seed": 3}, "no style mixing"),
    ({"class_index": 1, "noise_mode": "random"}, None),  # a control it lacks but that defaults harmlessly
])
def test_biggan_refuses_what_it_cannot_do(tiny_biggan_dir: Path, update: dict, words: str | None) -> None:
    problem = runner_for(tiny_biggan_dir).problem(GanParams(**update))
    assert (problem is None) if words is None else (words in problem)


def test_dcgan_describes_z_scale_and_seed_walk(tiny_dcgan_dir: Path) -> None:
    model = load_gan_model(tiny_dcgan_dir, torch.device("cpu"))
    c = model.info()["controls"]
    assert model.info()["family"] == "dcgan" and model.info()["resolution"] == 16
    assert c["truncation"] == "z_scale" and c["truncation_range"] == [0.0, 2.0, 1.0]
    assert c["condition"] == "none" and c["classes"] == [] and c["walk"] == ["seed"] and c["search"] == "z"


def test_dcgan_z_scale_and_slerp_between_seeds(tiny_dcgan_dir: Path) -> None:
    runner = runner_for(tiny_dcgan_dir)
    family = runner.model.family
    p = GanParams(seed=3, truncation_psi=0.6)
    assert torch.equal(runner.styles(p, 3), 0.6 * z_from_seed(3, 8))
    with torch.no_grad():
        want = family.G(0.6 * z_from_seed(3, 8))
    assert torch.equal(family.synthesize(runner.styles(p, 3), p), want)
    blended = runner.styles(p.model_copy(update={"walk_seed": 8, "walk_t": 0.3}), 3)
    assert torch.allclose(blended, 0.6 * dcgan.slerp(z_from_seed(3, 8), z_from_seed(8, 8), 0.3), atol=1e-6)
    assert "not class-conditional" in runner.problem(GanParams(class_index=0))
    assert "does not walk between classes" in runner.problem(GanParams(walk_class=0, walk_t=0.5))
    with pytest.raises(ValueError, match="not both"):
        GanParams(walk_frames=4, walk_t=0.5)


@pytest.mark.parametrize("which", ["biggan", "dcgan"])
def test_clip_search_lowers_the_loss_and_keeps_the_generator(which: str, tiny_biggan_dir: Path,
                                                             tiny_dcgan_dir: Path, clip: TransformersClip) -> None:
    runner = runner_for(tiny_biggan_dir if which == "biggan" else tiny_dcgan_dir, clip)
    family = runner.model.family
    p = GanParams(prompt="a red square", seed=2, search_steps=12, search_lr=0.1, search_pull=0.0, search_cutn=1,
                  class_index=1 if which == "biggan" else None)
    assert runner.problem(p) is None
    before = {k: v.clone() for k, v in family.G.state_dict().items()}
    init = runner.styles(p, 2)
    text = clip.encode_text(["a red square"])
    res = family.search(clip, text, torch.ones(1), init, p)
    assert len(res.losses) == 12 and min(res.losses[-3:]) < res.losses[0]
    assert res.ws.shape == init.shape and not torch.equal(res.ws, init)
    if which == "biggan":  # both halves move: z and the class embedding
        assert not torch.equal(res.ws[:, :8], init[:, :8]) and not torch.equal(res.ws[:, 8:], init[:, 8:])
    assert all(torch.equal(v, before[k]) for k, v in family.G.state_dict().items())
