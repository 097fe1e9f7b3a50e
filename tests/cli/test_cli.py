"""`python -m app` dispatches its subcommands to the modules that own them."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.__main__ import main


def test_help_lists_subcommands(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    for name in ("build-data", "train", "evaluate", "convert-gan", "serve"):
        assert name in out


def test_serve_help_shows_serve_options(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["serve", "--help"])
    assert exc.value.code == 0
    assert "--diffusion-model" in capsys.readouterr().out


def test_serve_ray_options_are_checked(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["serve", "--help"])
    assert "--replicas" in capsys.readouterr().out and exc.value.code == 0
    for bad in (["--replicas", "0"], ["--replicas", "3", "--max-replicas", "2"], ["--target-runs", "0"]):
        with pytest.raises(SystemExit) as exc:
            main(["serve", "--ray", *bad])
        assert exc.value.code == 2 and "--" in capsys.readouterr().err


def test_convert_gan_from_the_command_line(shared_dir: Path, tmp_path: Path) -> None:
    pkl = shared_dir / "fixtures" / "stylegan2" / "network-snapshot-cond.pkl"
    assert main(["convert-gan", str(pkl), str(tmp_path / "g")]) == 0
    assert (tmp_path / "g" / "generator.safetensors").is_file() and (tmp_path / "g" / "config.json").is_file()


def test_build_data_from_the_command_line(tmp_path: Path) -> None:
    if not Path("/usr/share/fonts/truetype/noto/NotoColorEmoji.ttf").exists():
        pytest.skip("fonts-noto-color-emoji is not installed")
    assert main(["build-data", "--out", str(tmp_path / "emoji"), "--limit", "12"]) == 0
    assert (tmp_path / "emoji" / "manifest.json").is_file()
