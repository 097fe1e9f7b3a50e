"""StyleGAN3 (T and R) against NVIDIA's outputs in ../shared/fixtures/stylegan3 (README: atol 1e-4,
rtol 0, every reference case), the safe reader on StyleGAN3 pickles (and on malicious ones), the
converter and the family's input transform."""

from __future__ import annotations

import json
import os
import pickle
import sys
import types
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from app.gan.convert import FORMAT_SG3, build_generator, convert_main, generator_kwargs, load_generator
from app.gan.networks import mix_styles
from app.gan.pkl_reader import UnsafePickleError, read_network_pkl
from app.gan.stylegan3 import Generator, design_lowpass_filter, layer_spec, make_transform


@dataclass(frozen=True)
class Sg3Set:
    name: str
    cfg: dict
    ref: dict[str, torch.Tensor]
    folder: Path

    def r(self, key: str) -> torch.Tensor | None:
        return self.ref.get(f"{self.name}_{key}")

    @property
    def init_kwargs(self) -> dict:
        return self.cfg["init_kwargs"]

    @property
    def generator_file(self) -> Path:
        return self.folder / self.cfg["generator_file"]

    @property
    def pickle_file(self) -> Path:
        return self.folder / self.cfg["pickle_file"]


@pytest.fixture(scope="module")
def sg3_dir(shared_dir: Path) -> Path:
    folder = shared_dir / "fixtures" / "stylegan3"
    if not (folder / "config.json").is_file():
        pytest.skip("stylegan3 fixture missing")
    return folder


@pytest.fixture(scope="module", params=["t", "r"])
def sg3(request: pytest.FixtureRequest, sg3_dir: Path) -> Sg3Set:
    cfg = json.loads((sg3_dir / "config.json").read_text())
    return Sg3Set(request.param, cfg["sets"][request.param], load_file(sg3_dir / cfg["reference_file"]), sg3_dir)


def _close(actual: torch.Tensor, expected: torch.Tensor) -> None:
    assert actual.shape == expected.shape and actual.dtype == torch.float32
    torch.testing.assert_close(actual, expected, atol=1e-4, rtol=0)


@torch.no_grad()
def check_every_reference(G: torch.nn.Module, s: Sg3Set) -> None:
    """The README's table: ws/img at psi 0.7 and 1, ws2, mixing, psi 0.5 cutoff 4, the transforms."""
    r = s.r
    c, c2 = r("c"), r("c2")

    def synth(ws: torch.Tensor, **kw) -> torch.Tensor:
        return G.synthesis(ws, noise_mode="const", force_fp32=True, **kw)

    ws07 = G.mapping(r("z"), c, truncation_psi=0.7, truncation_cutoff=None)
    _close(ws07, r("ws_psi07"))
    _close(synth(ws07), r("img_psi07"))
    ws10 = G.mapping(r("z"), c, truncation_psi=1.0)
    _close(ws10, r("ws_psi10"))
    _close(synth(ws10), r("img_psi10"))
    ws2 = G.mapping(r("z2"), c2, truncation_psi=0.7)
    _close(ws2, r("ws2"))
    mixed = mix_styles(ws07, ws2, s.cfg["mixing_index"])
    _close(mixed, r("ws_mixed"))
    _close(synth(mixed), r("img_mixed"))
    ws05 = G.mapping(r("z"), c, truncation_psi=0.5, truncation_cutoff=4)
    _close(ws05, r("ws_psi05_cutoff4"))
    _close(synth(ws05), r("img_psi05_cutoff4"))
    _close(synth(ws07, transform=r("input_transform")), r("img_psi07_transform"))
    _close(synth(ws07, transform=r("input_transform_zoom")), r("img_psi07_transform_zoom"))
    # The buffer route (what gen_images.py and the visualizer do) gives the same image.
    G.synthesis.input.transform.copy_(r("input_transform"))
    try:
        _close(synth(ws07), r("img_psi07_transform"))
    finally:
        G.synthesis.input.transform.copy_(torch.eye(3))
    for mode in ("none", "random"):  # no noise inputs: the mode is only checked
        assert torch.equal(G.synthesis(ws07, noise_mode=mode, force_fp32=True), synth(ws07))


def build(s: Sg3Set, **extra) -> Generator:
    return build_generator({**s.init_kwargs, **extra}, load_file(s.generator_file), FORMAT_SG3)


def test_every_reference_case(sg3: Sg3Set) -> None:
    check_every_reference(build(sg3), sg3)


def test_conv_clamp_acts_where_nvidia_clamps(sg3: Sg3Set) -> None:
    G = build(sg3, conv_clamp=sg3.cfg["extra_conv_clamp"])
    with torch.no_grad():
        ws07 = G.mapping(sg3.r("z"), sg3.r("c"), truncation_psi=0.7)
        _close(G.synthesis(ws07, noise_mode="const", force_fp32=True), sg3.r("img_psi07_clamp"))


def test_layers_filters_and_keys_are_nvidias(sg3: Sg3Set) -> None:
    fresh = Generator(**sg3.init_kwargs)
    stored = load_file(sg3.generator_file)
    assert fresh.state_dict().keys() == stored.keys()
    assert [k for k, _, _ in sg3.cfg["keys"]] == list(fresh.state_dict())  # NVIDIA's state_dict order
    assert fresh.synthesis.layer_names == sg3.cfg["effective_settings"]["synthesis"]["layer_names"]
    for spec in sg3.cfg["effective_settings"]["layers"]:
        layer = getattr(fresh.synthesis, spec["name"])
        assert layer.padding == spec["padding_x0_x1_y0_y1"], spec["name"]
        assert (layer.up_factor, layer.down_factor, layer.down_radial) == (
            spec["up_factor"], spec["down_factor"], spec["down_radial"])
    # The designed filters are NVIDIA's (scipy firwin / jinc) to float32 rounding.
    for key, value in stored.items():
        if key.endswith("_filter"):
            torch.testing.assert_close(fresh.state_dict()[key], value, atol=2e-7, rtol=0, msg=key)


def test_layer_spec_follows_the_schedule(sg3: Sg3Set) -> None:
    kw = sg3.init_kwargs
    spec = layer_spec(kw["img_resolution"], kw["img_channels"], kw["channel_base"], kw["channel_max"])
    for s, want in zip(spec, sg3.cfg["effective_settings"]["layers"], strict=True):  # L0 runs at the input's rate
        assert (s.channels, s.size, s.sampling_rate) == (want["out_channels"], want["out_size"][0],
                                                         want["out_sampling_rate"])
        assert s.cutoff == pytest.approx(want["out_cutoff"]) and s.half_width == pytest.approx(want["out_half_width"])


def test_single_tap_filters_are_none() -> None:
    assert design_lowpass_filter(1, 2.0, 1.0, 16) is None


def test_make_transform_is_the_visualizers(sg3: Sg3Set) -> None:
    t = sg3.cfg["input_transform"]
    torch.testing.assert_close(make_transform(*t["translate"], t["angle_deg"]), sg3.r("input_transform"),
                               atol=1e-7, rtol=0)
    assert torch.equal(make_transform(), torch.eye(3))


# ---------------------------------------------------------------------------------------------- pickles


def test_the_safe_reader_recovers_g_ema_bit_for_bit(sg3: Sg3Set) -> None:
    rec = read_network_pkl(sg3.pickle_file)["G_ema"]
    stored = load_file(sg3.generator_file)
    assert list(rec.state_dict) == [k for k, _, _ in sg3.cfg["keys"]]
    for k, v in stored.items():
        assert torch.equal(rec.state_dict[k], v), k
    assert rec.init_kwargs == sg3.init_kwargs
    assert not [m for m in sys.modules if m.split(".")[0] in ("dnnlib", "torch_utils", "training", "legacy")]
    check_every_reference(build_generator(generator_kwargs(rec), rec.state_dict, FORMAT_SG3), sg3)


def test_convert_gan_writes_a_stylegan3_folder(sg3: Sg3Set, tmp_path: Path) -> None:
    from app.gan.family import load_family

    assert convert_main([str(sg3.pickle_file), str(tmp_path / "out")]) == 0
    cfg = json.loads((tmp_path / "out" / "config.json").read_text())
    assert cfg["format"] == "noisescope-stylegan3" and cfg["init_kwargs"] == sg3.init_kwargs
    check_every_reference(load_generator(tmp_path / "out"), sg3)
    family = load_family(tmp_path / "out")
    assert family.format == "noisescope-stylegan3" and family.controls().input_transform


# An NVIDIA-shaped snapshot built here: persistent objects reduce to
# torch_utils.persistence._reconstruct_persistent_obj, as NVIDIA's persistence writes them.
_persistence = types.ModuleType("torch_utils.persistence")


def _reconstruct_persistent_obj(meta):  # pragma: no cover - never called: only its name is pickled
    raise AssertionError("the reader must not call pickled code")


_reconstruct_persistent_obj.__module__ = "torch_utils.persistence"
_persistence._reconstruct_persistent_obj = _reconstruct_persistent_obj


class _Persistent:
    def __init__(self, class_name: str, state: dict, source: str) -> None:
        self.meta = {"type": "class", "version": 6, "module_src": source, "class_name": class_name, "state": state}

    def __reduce__(self):
        return (_reconstruct_persistent_obj, (self.meta,))


def _as_persistent(module: torch.nn.Module, source: str, extra: dict | None = None) -> _Persistent:
    """A module as NVIDIA pickles it: its __dict__ (numpy sizes, numpy bools and floats included)."""
    keep = ("_parameters", "_buffers", "_non_persistent_buffers_set")
    state = {k: v for k, v in module.__dict__.items() if (k in keep or not k.startswith("_")) and not callable(v)}
    if hasattr(module, "use_fp16"):
        state["use_fp16"] = np.bool_(module.use_fp16)
    if hasattr(module, "in_cutoff"):
        state["in_cutoff"] = np.float64(module.in_cutoff)
    state["_modules"] = OrderedDict((n, _as_persistent(m, source)) for n, m in module._modules.items())
    state.update(extra or {})
    return _Persistent(type(module).__name__, state, source)


def _snapshot(G: Generator, source: str, layer_extra: dict | None = None) -> bytes:
    layer = G.synthesis.layer_names[0]
    sys.modules["torch_utils"] = types.ModuleType("torch_utils")
    sys.modules["torch_utils.persistence"] = _persistence
    try:
        g = _as_persistent(G, source, {"_init_args": (), "_init_kwargs": dict(TINY)})
        sub = g.meta["state"]["_modules"]["synthesis"].meta["state"]["_modules"][layer]
        sub.meta["state"].update(layer_extra or {})
        return pickle.dumps({"G": None, "D": None, "G_ema": g, "augment_pipe": None}, protocol=4)
    finally:
        del sys.modules["torch_utils.persistence"], sys.modules["torch_utils"]


TINY = {"z_dim": 8, "c_dim": 0, "w_dim": 8, "img_resolution": 16, "img_channels": 3,
        "mapping_kwargs": {"num_layers": 2}, "channel_base": 64, "channel_max": 8, "num_layers": 4,
        "num_critical": 1, "margin_size": 2}


class _Shell:
    def __init__(self, cmd: str) -> None:
        self.cmd = cmd

    def __reduce__(self):
        return (os.system, (self.cmd,))


def test_a_built_stylegan3_snapshot_reads_back_and_its_source_never_runs(tmp_path: Path) -> None:
    torch.manual_seed(0)
    G = Generator(**TINY).eval()
    marker = tmp_path / "pwned"
    blob = _snapshot(G, f"open({str(marker)!r}, 'w').close()\nraise SystemExit")
    rec = read_network_pkl(blob)["G_ema"]
    assert rec.state_dict.keys() == G.state_dict().keys()
    assert all(torch.equal(rec.state_dict[k], v) for k, v in G.state_dict().items())
    assert not marker.exists()


@pytest.mark.parametrize(("payload", "refused"), [
    (lambda m: _Shell(f"touch {m}"), "refused global '.*system'"),
    (lambda m: np.array([_Shell(f"touch {m}")], dtype=object), "refused global '.*system'|dtype"),
    (lambda m: np.array([1.5, 2.5], dtype=np.complex128), "dtype"),
])
def test_a_malicious_stylegan3_pickle_is_refused(tmp_path: Path, payload, refused: str) -> None:
    torch.manual_seed(0)
    marker = tmp_path / "pwned"
    blob = _snapshot(Generator(**TINY).eval(), "# source omitted", {"in_size": payload(marker)})
    with pytest.raises(UnsafePickleError, match=refused):
        read_network_pkl(blob)
    assert not marker.exists()


def test_reconstruct_only_builds_numeric_ndarrays() -> None:
    # _reconstruct(OrderedDict, (0,), b'b'): an allowed global passed as the class is still refused.
    blob = (b"\x80\x04cnumpy.core.multiarray\n_reconstruct\nccollections\nOrderedDict\n"
            b"K\x00\x85C\x01b\x87R.")
    with pytest.raises(UnsafePickleError, match="_reconstruct"):
        read_network_pkl(blob)
    # numpy.ndarray called directly is refused too.
    with pytest.raises(UnsafePickleError, match="ndarray"):
        read_network_pkl(b"\x80\x04cnumpy\nndarray\nK\x02\x85\x85R.")
    # A BUILD whose byte count does not match the shape.
    bad = (b"\x80\x04cnumpy.core.multiarray\n_reconstruct\ncnumpy\nndarray\nK\x00\x85C\x01b\x87R"
           b"(K\x01K\x02\x85cnumpy\ndtype\nX\x02\x00\x00\x00i8\x89\x88\x87R\x89C\x08\x00\x00\x00\x00\x00\x00\x00\x00tb.")
    with pytest.raises(UnsafePickleError, match="numpy array of shape"):
        read_network_pkl(bad)
