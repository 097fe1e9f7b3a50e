"""convert-gan round trip: pickle -> generator.safetensors + config.json -> load_generator -> references."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from app.gan.convert import CONFIG_NAME, WEIGHTS_NAME, convert_main, load_generator


def test_convert_round_trip(gan_set, reference_cases, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "gan"
    assert convert_main([str(gan_set.pickle_file), str(out)]) == 0
    assert "wrote" in capsys.readouterr().out
    cfg = json.loads((out / CONFIG_NAME).read_text())
    assert cfg["init_kwargs"] == gan_set.init_kwargs and cfg["class_name"] == "Generator"
    written, stored = load_file(out / WEIGHTS_NAME), load_file(gan_set.generator_file)
    assert written.keys() == stored.keys() and all(torch.equal(written[k], stored[k]) for k in stored)

    G = load_generator(out, "cpu")
    assert not G.training and not any(p.requires_grad for p in G.parameters())
    reference_cases(G, gan_set)

    assert convert_main([str(gan_set.pickle_file), str(out)]) == 1  # no silent overwrite
    assert "already holds" in capsys.readouterr().out
    assert convert_main([str(gan_set.pickle_file), str(out), "--force"]) == 0


def test_load_generator_accepts_file_and_header_kwargs(gan_sets, tmp_path: Path) -> None:
    s = gan_sets["cond"]
    lone = tmp_path / "lone.safetensors"
    shutil.copy(s.generator_file, lone)  # no config.json: kwargs come from the safetensors header
    G = load_generator(lone)
    assert G.c_dim == 8 and G.num_ws == 6


def test_load_generator_never_reads_pickles(gan_sets) -> None:
    with pytest.raises(ValueError, match="convert-gan"):
        load_generator(gan_sets["uncond"].pickle_file)


def test_convert_main_reports_unsafe_pickle(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.pkl"
    bad.write_bytes(b"\x80\x04cbuiltins\nexec\n\x8c\x06print()\x85R.")
    assert convert_main([str(bad), str(tmp_path / "out")]) == 1
    assert "refused global 'builtins.exec'" in capsys.readouterr().out
    assert not (tmp_path / "out").exists()
