"""The safe NVIDIA pickle reader: exact state dicts from the fixture snapshots, refusal of anything else."""

from __future__ import annotations

import io
import math
import os
import pickle
import sys
from collections import OrderedDict
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from app.gan.convert import build_generator, generator_kwargs
from app.gan.pkl_reader import UnsafePickleError, read_network_pkl, safe_unpickle


def test_g_ema_equals_generator_safetensors_exactly(gan_set) -> None:
    rec = read_network_pkl(gan_set.pickle_file)["G_ema"]
    stored = load_file(gan_set.generator_file)
    assert rec.class_name == "Generator"
    assert list(rec.state_dict) == gan_set.key_order
    assert rec.state_dict.keys() == stored.keys()
    for k, v in stored.items():
        assert rec.state_dict[k].dtype == v.dtype and torch.equal(rec.state_dict[k], v), k
    assert rec.init_kwargs == gan_set.init_kwargs


def test_g_and_d_on_request(gan_set) -> None:
    recs = read_network_pkl(gan_set.pickle_file, include=("G", "D", "G_ema"))
    assert recs["D"].class_name == "Discriminator" and recs["D"].state_dict
    g, g_ema = recs["G"].state_dict, recs["G_ema"].state_dict
    assert g.keys() == g_ema.keys() and any(not torch.equal(g[k], g_ema[k]) for k in g)


def test_model_built_from_pickle_kwargs_matches_references(gan_set, reference_cases) -> None:
    rec = read_network_pkl(gan_set.pickle_file)["G_ema"]
    reference_cases(build_generator(generator_kwargs(rec), rec.state_dict), gan_set)


def test_numpy_scalars_and_easydicts_become_plain_python(gan_sets) -> None:
    top = safe_unpickle(gan_sets["uncond"].pickle_file)
    fc0 = top["G_ema"].state["_modules"]["mapping"].state["_modules"]["fc0"]
    assert type(fc0.state["weight_gain"]) is float
    assert math.isclose(fc0.state["weight_gain"], 0.01 / math.sqrt(64), rel_tol=1e-12)
    assert type(top["training_set_kwargs"]) is dict
    assert type(top["G_ema"].state["_init_kwargs"]["mapping_kwargs"]) is dict


def test_reader_imports_no_nvidia_modules(gan_sets) -> None:
    read_network_pkl(gan_sets["cond"].pickle_file)
    assert not [m for m in sys.modules if m.split(".")[0] in ("dnnlib", "torch_utils", "training", "legacy")]


class _Shell:
    def __init__(self, cmd: str) -> None:
        self.cmd = cmd

    def __reduce__(self):
        return (os.system, (self.cmd,))


class _Eval:
    def __init__(self, src: str) -> None:
        self.src = src

    def __reduce__(self):
        return (eval, (self.src,))


def _snapshot_with(payload: object) -> bytes:
    """A plausible snapshot dict with `payload` hidden in a network's state."""
    return pickle.dumps({"G": None, "D": None, "G_ema": OrderedDict(evil=payload), "augment_pipe": None}, protocol=4)


@pytest.mark.parametrize("make, refused", [
    (lambda p: _Shell(f"touch {p}"), "system"),
    (lambda p: _Eval(f"open({str(p)!r}, 'w').close()"), "builtins.eval"),
])
def test_malicious_pickle_is_refused_and_runs_nothing(tmp_path: Path, make, refused: str) -> None:
    marker = tmp_path / "pwned"
    blob = _snapshot_with(make(marker))
    with pytest.raises(UnsafePickleError, match=f"refused global '.*{refused}'"):
        read_network_pkl(blob)
    evil_file = tmp_path / "evil.pkl"
    evil_file.write_bytes(pickle.dumps(make(marker)))
    with pytest.raises(UnsafePickleError, match="allow-list"):
        read_network_pkl(evil_file)
    assert not marker.exists()


def test_malicious_storage_blob_is_refused(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"

    inner = pickle.dumps(_Shell(f"touch {marker}"), protocol=2)
    # Hand-written opcodes: GLOBAL torch.storage._load_from_bytes, BINBYTES inner, TUPLE1, REDUCE, STOP.
    blob = b"\x80\x04ctorch.storage\n_load_from_bytes\nB" + len(inner).to_bytes(4, "little") + inner + b"\x85R."
    with pytest.raises(UnsafePickleError, match="refused storage blob"):
        safe_unpickle(blob)
    assert not marker.exists()


def test_refuses_objects_that_are_not_plain_data() -> None:
    buf = io.BytesIO()
    pickle.dump({"G_ema": torch.nn.Linear(2, 2)}, buf)
    with pytest.raises(UnsafePickleError, match="refused global 'torch.nn"):
        read_network_pkl(buf.getvalue())


def test_protocol_3_sets_and_ordered_dicts_are_plain_data() -> None:
    # Python 3.7-era snapshots are protocol 3, where a set is spelled builtins.set(list).
    data = {"_non_persistent_buffers_set": {"a", "b"}, "_buffers": OrderedDict(x=None), "f": frozenset([1])}
    assert safe_unpickle(pickle.dumps(data, protocol=3)) == data
