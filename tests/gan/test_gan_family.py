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


SG3 = {"z_dim": 8, "c_dim": 0, "w_dim": 8, "img_resolution": 16, "img_channels": 3,
       "mapping_kwargs": {"num_layers": 2}, "channel_base": 64, "channel_max": 8, "num_layers": 4,
       "num_critical": 1, "margin_size": 2}


class _ColourClip:
    """A stand-in CLIP: the mean colour as the embedding (enough to run a search)."""

    image_size = 8

    def encode_image(self, pixels: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.normalize(pixels.mean(dim=(2, 3)), dim=-1)


def test_a_stylegan3_family_renders_the_input_transform(tmp_path: Path) -> None:
    from app.engine.gan_runner import load_gan_model
    from app.gan.convert import FORMAT_SG3
    from app.gan.render import to_uint8
    from app.gan.stylegan3 import Generator as G3
    from app.gan.stylegan3 import make_transform

    torch.manual_seed(1)
    with torch.no_grad():  # visible Fourier-feature rotations: the input affine is zero at init
        net = G3(**SG3)
        net.synthesis.input.affine.weight.normal_(0, 0.5)
    folder = save_generator(tmp_path / "sg3", SG3, net.state_dict(), fmt=FORMAT_SG3)
    model = load_gan_model(folder, torch.device("cpu"))
    family, G = model.family, model.G
    assert family.format == "noisescope-stylegan3" and isinstance(G, G3)
    c = family.controls()
    assert c.input_transform and not c.noise and c.mixing_layers == G.num_ws == 6
    assert model.info()["controls"]["input_transform"] is True
    p = GanParams(seed=2, translate_x=0.1, translate_y=-0.2, rotate=20)
    cond = model.condition("")
    ws = family.styles(family.seed_latent(2, cond), cond, p)
    want = to_uint8(G.synthesis(ws, transform=make_transform(0.1, -0.2, 20)))
    assert torch.equal(family.render(ws, p), want)
    assert not torch.equal(family.render(ws, GanParams(seed=2)), want), "the transform moves the image"
    assert controls_problem(c, p) is None

    seen: list[torch.Tensor] = []
    text = torch.nn.functional.normalize(torch.tensor([[1.0, 0.0, 0.0]]), dim=-1)
    res = family.search(_ColourClip(), text, torch.ones(1), ws, p.model_copy(update={"search_steps": 2}),
                        callback=lambda i, img, loss: seen.append(img))
    assert len(res.losses) == 2 and res.ws.shape == ws.shape
    assert torch.equal(seen[0], want), "the search renders with the same input transform"
