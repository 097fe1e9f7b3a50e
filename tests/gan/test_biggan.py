"""BigGAN-deep: parity with the `pytorch_pretrained_biggan` package's own model (random weights, tiny
config), the tensors-only conversion of its folder layout, and BigGAN's truncated normal."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from app.demo_models import settle_spectral_norms, vary_standing_stats
from app.gan import biggan
from app.gan.folder import CONFIG_NAME
from app.gan.torch_checkpoint import UnsafeCheckpointError

TINY = {"output_dim": 32, "z_dim": 8, "class_embed_dim": 8, "channel_width": 4, "num_classes": 5,
        "layers": [[False, 16, 16], [True, 16, 8], [True, 8, 4], [True, 4, 2], [False, 2, 1]],
        "attention_layer_position": 2, "eps": 1e-4, "n_stats": 51}


def package_model(seed: int = 0) -> torch.nn.Module:
    """The package's BigGAN with random weights everywhere, including statistics and attention gain."""
    pkg = pytest.importorskip("pytorch_pretrained_biggan")
    torch.manual_seed(seed)
    model = pkg.BigGAN(pkg.BigGANConfig.from_dict(TINY))
    vary_standing_stats(model)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith(("gamma", "bn.weight", "bn.bias")) or ".bias" in name:
                p.normal_(0.5 if name.endswith(("gamma", "bn.weight")) else 0.0, 0.2)
    settle_spectral_norms(model)
    return model.eval()


@pytest.fixture(scope="module")
def converted(tmp_path_factory: pytest.TempPathFactory) -> tuple[torch.nn.Module, biggan.BigGAN]:
    ref = package_model()
    src = tmp_path_factory.mktemp("hub")
    torch.save(ref.state_dict(), src / "pytorch_model.bin")
    (src / "config.json").write_text(ref.config.to_json_string())
    out = biggan.convert_package_checkpoint(src, tmp_path_factory.mktemp("conv") / "biggan",
                                            class_names=[f"class {i}" for i in range(5)])
    G, names = biggan.load(out)
    assert names == [f"class {i}" for i in range(5)]
    return ref, G


@pytest.mark.parametrize("truncation", [0.4, 0.41, 0.73, 1.0])
def test_parity_with_the_package(converted, truncation: float) -> None:
    ref, G = converted
    assert G.img_resolution == 32
    z = torch.cat([biggan.truncated_z(s, 8, truncation) for s in (0, 1, 2)])
    y = torch.nn.functional.one_hot(torch.tensor([0, 3, 4]), 5).float()
    with torch.no_grad():
        expected = ref(z, y, truncation)
        got = G(z, y, truncation)
        by_id = G.synthesize(z, G.class_embedding([0, 3, 4]), truncation)
    assert got.shape == expected.shape == (3, 3, 32, 32)
    assert float(expected.std()) > 0.05 and float((expected.abs() < 0.99).float().mean()) > 0.5  # not saturated
    assert (got - expected).abs().max() < 1e-5
    assert (by_id - expected).abs().max() < 1e-5


def test_class_interpolation_is_the_soft_label(converted) -> None:
    ref, G = converted
    z = biggan.truncated_z(5, 8, 0.5)
    soft = torch.tensor([[0.0, 0.7, 0.0, 0.3, 0.0]])
    with torch.no_grad():
        expected = ref(z, soft, 0.5)
        got = G.synthesize(z, biggan.lerp_classes(G, 1, 3, 0.3), 0.5)
    assert (got - expected).abs().max() < 1e-5
    assert torch.equal(biggan.lerp_classes(G, 1, 3, 0.0), G.class_embedding([1]))


def test_truncated_normal_resamples_the_tails() -> None:
    z = biggan.truncated_normal(np.random.RandomState(0), (2000, 128))
    assert np.abs(z).max() <= biggan.TRUNCATION_THRESHOLD
    assert 0.85 < z.std() < 0.9  # a N(0,1) cut at +-2 has std 0.880
    z1 = biggan.truncated_z(3, 128, 1.0)
    assert torch.equal(biggan.truncated_z(3, 128, 0.25), 0.25 * z1)  # the value also scales z
    assert torch.equal(z1, biggan.truncated_z(3, 128, 1.0))
    with pytest.raises(ValueError, match="truncation"):
        biggan.truncated_z(3, 128, 0.0)


def test_config_and_layout_errors(tmp_path: Path, converted) -> None:
    with pytest.raises(ValueError, match="class_embed_dim"):
        biggan.BigGANConfig.from_dict({**TINY, "class_embed_dim": 4})
    ref, _ = converted
    src = tmp_path / "hub"
    src.mkdir()
    sd = ref.state_dict()
    sd.pop("generator.gen_z.weight_v")
    torch.save(sd, src / "pytorch_model.bin")
    with pytest.raises(FileNotFoundError, match="config.json"):
        biggan.convert_package_checkpoint(src, tmp_path / "out")
    (src / CONFIG_NAME).write_text(json.dumps(TINY))
    with pytest.raises(RuntimeError, match="gen_z.weight_v"):
        biggan.convert_package_checkpoint(src, tmp_path / "out")
    with pytest.raises(ValueError, match="class names"):
        torch.save(ref.state_dict(), src / "pytorch_model.bin")
        biggan.convert_package_checkpoint(src, tmp_path / "out", class_names=["a"])
    assert not (tmp_path / "out").exists()


def test_malicious_bin_refused(tmp_path: Path) -> None:
    marker = tmp_path / "ran"

    class Payload:
        def __reduce__(self):
            return (Path.write_text, (marker, "ran"))

    (tmp_path / CONFIG_NAME).write_text(json.dumps(TINY))
    torch.save({"embeddings.weight": torch.zeros(8, 5), "x": Payload()}, tmp_path / "pytorch_model.bin")
    with pytest.raises(UnsafeCheckpointError, match="refused"):
        biggan.convert_package_checkpoint(tmp_path, tmp_path / "out")
    assert not marker.exists()


def test_class_names_file(tmp_path: Path) -> None:
    (tmp_path / "a.json").write_text(json.dumps({"1": "goldfish", "0": "tench"}))
    (tmp_path / "b.txt").write_text("tench\n\ngoldfish\n")
    assert biggan.read_class_names(tmp_path / "a.json") == ["tench", "goldfish"]
    assert biggan.read_class_names(tmp_path / "b.txt") == ["tench", "goldfish"]


def test_convert_gan_cli_reads_a_biggan_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from app.__main__ import main
    from app.gan.family import load_family

    pytest.importorskip("pytorch_pretrained_biggan")
    src = tmp_path / "biggan-deep-tiny"
    src.mkdir()
    ref = package_model()
    torch.save(ref.state_dict(), src / "pytorch_model.bin")
    (src / "config.json").write_text(ref.config.to_json_string())
    (tmp_path / "names.txt").write_text("\n".join(["tench", "goldfish", "shark", "ray", "cock"]))
    assert main(["convert-gan", str(src), str(tmp_path / "out"), "--class-names", str(tmp_path / "names.txt")]) == 0
    assert "wrote" in capsys.readouterr().out
    family = load_family(tmp_path / "out")
    assert family.format == biggan.FORMAT and family.controls().classes[1] == "goldfish"
    z = biggan.truncated_z(0, 8, 0.5)
    with torch.no_grad():
        assert (family.G(z, torch.eye(5)[[3]], 0.5) - ref(z, torch.eye(5)[[3]], 0.5)).abs().max() < 1e-5

