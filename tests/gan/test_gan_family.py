"""The GAN family interface: the loader picks the family from config.json's format, the family
describes its controls, and a request for a control the family lacks is refused in words."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from app.gan.convert import save_generator
from app.gan.family import FAMILIES, GanControls, GanFamily, controls_problem, family_class, load_family
from app.gan.networks import Generator
from app.params import GanParams

KWARGS = {"z_dim": 8, "c_dim": 0, "w_dim": 8, "img_resolution": 8, "img_channels": 3,
          "mapping_kwargs": {"num_layers": 1}, "channel_base": 64, "channel_max": 8}


@pytest.fixture(scope="module")
def sg2_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    return save_generator(tmp_path_factory.mktemp("sg2"), KWARGS, Generator(**KWARGS).state_dict())


def test_every_registered_format_names_a_family() -> None:
    for fmt in FAMILIES:
        cls = family_class(fmt)
        assert issubclass(cls, GanFamily) and cls.format == fmt
    with pytest.raises(ValueError, match="unknown generator format"):
        family_class("noisescope-nope")


def test_the_loader_reads_the_format_and_the_family_describes_itself(sg2_folder: Path) -> None:
    family = load_family(sg2_folder)
    assert json.loads((sg2_folder / "config.json").read_text())["format"] == family.format
    c = family.controls()
    assert (c.truncation, c.mixing_layers, c.noise, c.input_transform, c.condition) == (
        "w_lerp", family.G.num_ws, True, False, "none")
    d = c.describe()
    json.dumps(d)  # the page's recipe is plain JSON
    assert d["truncation_range"] == [-1.0, 2.0, 0.7] and d["classes"] == []
    assert family.info()["family"] == "stylegan2" and family.resolution == 8


def test_the_family_renders_the_same_as_the_generator(sg2_folder: Path) -> None:
    from app.engine.gan_runner import load_gan_model
    from app.gan.render import render, truncate

    model = load_gan_model(sg2_folder, torch.device("cpu"))
    family, G = model.family, model.G
    p = GanParams(seed=3, truncation_psi=0.5, mix_seed=9, mix_layer=2)
    cond = model.condition(p.prompt)
    ws = family.styles(family.seed_latent(3, cond), cond, p, family.seed_latent(9, cond))
    want = truncate(G, torch.cat([family.seed_latent(3, cond)]), 0.5)
    want[:, 2:] = truncate(G, family.seed_latent(9, cond), 0.5)[:, 2:]
    assert torch.equal(ws, want)
    assert torch.equal(family.render(ws, p), render(G, want, "const"))
    assert model.info()["controls"]["mixing_layers"] == G.num_ws


@pytest.mark.parametrize(("update", "words"), [
    ({"mix_seed": 1}, "no style mixing"),
    ({"rotate": 10.0}, "no input transform"),
    ({"translate_x": 0.1}, "no input transform"),
    ({"class_index": 2}, "not class-conditional"),
    ({"truncation_cutoff": 2}, "no cutoff"),
])
def test_a_control_the_family_lacks_is_refused(update: dict, words: str) -> None:
    assert controls_problem(GanControls(), GanParams(**update)) is not None
    assert words in controls_problem(GanControls(), GanParams(**update))


def test_controls_a_family_offers_pass_and_ranges_are_checked() -> None:
    c = GanControls(truncation="w_lerp", truncation_cutoff=True, mixing_layers=4, input_transform=True,
                    condition="class", classes=("cat", "dog"))
    assert controls_problem(c, GanParams(mix_seed=1, mix_layer=3, rotate=45, translate_y=-0.2, class_index=1,
                                         truncation_cutoff=2)) is None
    assert "below 4" in controls_problem(c, GanParams(mix_seed=1, mix_layer=4, class_index=0))
    assert "below 2" in controls_problem(c, GanParams(class_index=2))
    assert "pick a class" in controls_problem(c, GanParams())


@pytest.mark.parametrize("bad", [{"rotate": 400}, {"translate_x": 5}, {"translate_y": float("nan")},
                                 {"class_index": -1}])
def test_transform_and_class_values_are_validated(bad: dict) -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError):
        GanParams(**bad)
