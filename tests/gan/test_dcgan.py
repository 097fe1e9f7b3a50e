"""DCGAN: the tutorial layout, tensors-only conversion of torch checkpoints, and the real faces generator."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import pytest
import torch
from torch import nn

from app.gan import dcgan
from app.gan.folder import CONFIG_NAME, WEIGHTS_NAME
from app.gan.networks import z_from_seed
from app.gan.torch_checkpoint import UnsafeCheckpointError, read_checkpoint


def tutorial_stack(nz: int, ngf: int, nc: int) -> nn.Sequential:
    """The tutorial's 64x64 stack written out layer by layer (its layout, not this package's class)."""
    return nn.Sequential(
        nn.ConvTranspose2d(nz, ngf * 8, 4, 1, 0, bias=False), nn.BatchNorm2d(ngf * 8), nn.ReLU(True),
        nn.ConvTranspose2d(ngf * 8, ngf * 4, 4, 2, 1, bias=False), nn.BatchNorm2d(ngf * 4), nn.ReLU(True),
        nn.ConvTranspose2d(ngf * 4, ngf * 2, 4, 2, 1, bias=False), nn.BatchNorm2d(ngf * 2), nn.ReLU(True),
        nn.ConvTranspose2d(ngf * 2, ngf, 4, 2, 1, bias=False), nn.BatchNorm2d(ngf), nn.ReLU(True),
        nn.ConvTranspose2d(ngf, nc, 4, 2, 1, bias=False), nn.Tanh())


def tiny_tutorial(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    G = nn.Module()
    G.main = tutorial_stack(nz=6, ngf=2, nc=3)
    for m in G.modules():  # trained-looking statistics, so eval-mode BatchNorm is not the identity
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.normal_(0, 0.2)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.normal_(1, 0.1)
            m.bias.data.normal_(0, 0.1)
    return G.eval()


def test_tutorial_checkpoint_converts_and_matches(tmp_path: Path) -> None:
    ref = tiny_tutorial()
    ckpt = tmp_path / "weights.tar"
    torch.save({"netG_state_dict": ref.state_dict(), "epoch": 3}, ckpt)
    out = dcgan.convert_checkpoint(ckpt, tmp_path / "dcgan")
    cfg = json.loads((out / CONFIG_NAME).read_text())
    assert cfg["format"] == dcgan.FORMAT and cfg["init_kwargs"] == {"channels": [6, 16, 8, 4, 2, 3], "bias": False}
    assert (out / WEIGHTS_NAME).is_file()
    G = dcgan.load(out)
    assert (G.z_dim, G.img_resolution, G.img_channels) == (6, 64, 3)
    z = z_from_seed(7, 6)
    with torch.no_grad():
        assert torch.equal(G(z), ref.main(z[:, :, None, None]))
    with pytest.raises(FileExistsError):
        dcgan.convert_checkpoint(ckpt, out)


def test_other_depths_and_bad_layouts() -> None:
    G = dcgan.DCGANGenerator([4, 8, 3])
    assert G.img_resolution == 8 and dcgan.config_from_state_dict(G.state_dict())["channels"] == [4, 8, 3]
    with pytest.raises(ValueError, match="not a DCGAN"):
        dcgan.config_from_state_dict({"mapping.fc0.weight": torch.zeros(2, 2)})
    sd = G.state_dict()
    sd.pop("main.1.running_var")
    with pytest.raises(RuntimeError, match="running_var"):
        dcgan.build({"channels": [4, 8, 3]}, sd)


def test_slerp_keeps_ends_and_norm() -> None:
    z0, z1 = z_from_seed(1, 64), z_from_seed(2, 64)
    assert torch.allclose(dcgan.slerp(z0, z1, 0.0), z0, atol=1e-5)
    assert torch.allclose(dcgan.slerp(z0, z1, 1.0), z1, atol=1e-5)
    mid = dcgan.slerp(z0, z1, 0.5)
    assert float(mid.norm()) > float(torch.lerp(z0, z1, 0.5).norm())  # the arc keeps a typical norm
    assert torch.equal(dcgan.slerp(z0, z0, 0.3), z0)


class Payload:
    """Pickles to a call that writes a marker file: what a hostile checkpoint would run on load."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.write_text, (self.marker, "ran"))


@pytest.mark.parametrize("kind", ["zip.tar", "legacy.pth", "raw.bin"])
def test_malicious_checkpoint_refused_without_running(tmp_path: Path, kind: str) -> None:
    marker = tmp_path / "payload-ran"
    bad = tmp_path / f"bad-{kind}"
    obj = {"netG_state_dict": {"main.0.weight": torch.zeros(2, 2, 4, 4)}, "extra": Payload(marker)}
    if kind == "zip.tar":
        torch.save(obj, bad)
    elif kind == "legacy.pth":
        torch.save(obj, bad, _use_new_zipfile_serialization=False)
    else:
        bad.write_bytes(pickle.dumps(obj))
    with pytest.raises(UnsafeCheckpointError, match="refused"):
        read_checkpoint(bad)
    with pytest.raises(UnsafeCheckpointError):
        dcgan.convert_checkpoint(bad, tmp_path / "out")
    assert not marker.exists() and not (tmp_path / "out").exists()


def test_not_a_checkpoint(tmp_path: Path) -> None:
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(UnsafeCheckpointError):
        read_checkpoint(junk)


def test_real_faces_generator_converts_and_matches_the_package(tmp_path: Path) -> None:
    """gan-face-generate's 64x64 faces DCGAN (extra `dcgan-faces`): converted offline, same output exactly."""
    pkg = pytest.importorskip("gan_face_generate")
    models = pytest.importorskip("gan_face_generate.models")
    weights = Path(pkg.__file__).parent / "weights.tar"
    if not weights.is_file():
        pytest.skip("gan_face_generate ships no weights.tar")
    out = dcgan.convert_checkpoint(weights, tmp_path / "faces")
    G = dcgan.load(out)
    assert (G.z_dim, G.img_resolution) == (100, 64)
    ref = models.Generator(0, 3, 100, 64)
    ref.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True)["netG_state_dict"])
    ref.eval()
    z = torch.cat([z_from_seed(s, 100) for s in (0, 1, 2)])[:, :, None, None]
    with torch.no_grad():
        mine, theirs = G(z), ref(z)
    assert torch.equal(mine, theirs)
    assert float(mine.std()) > 0.1  # a trained generator, not a constant


def test_convert_gan_cli_reads_torch_checkpoints(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from app.__main__ import main
    from app.gan.family import load_family

    ckpt = tmp_path / "netG.pth"
    torch.save(tiny_tutorial().state_dict(), ckpt, _use_new_zipfile_serialization=False)  # a bare legacy state dict
    assert main(["convert-gan", str(ckpt), str(tmp_path / "out")]) == 0
    assert "wrote" in capsys.readouterr().out
    assert load_family(tmp_path / "out").format == dcgan.FORMAT
    assert main(["convert-gan", str(ckpt), str(tmp_path / "out")]) == 1
    assert "already holds" in capsys.readouterr().out
    assert main(["convert-gan", str(ckpt), str(tmp_path / "o2"), "--class-names", str(ckpt)]) == 1
    torch.save({"mapping.fc0.weight": torch.zeros(2, 2)}, tmp_path / "other.pt")
    assert main(["convert-gan", str(tmp_path / "other.pt"), str(tmp_path / "o3")]) == 1
    assert "no known generator layout" in capsys.readouterr().out
    torch.save({"x": Payload(tmp_path / "ran")}, tmp_path / "evil.tar")
    assert main(["convert-gan", str(tmp_path / "evil.tar"), str(tmp_path / "o4")]) == 1
    assert "refused" in capsys.readouterr().out and not (tmp_path / "ran").exists()
