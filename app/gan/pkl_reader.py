"""Safe reader for NVIDIA network pickles (stylegan2-ada-pytorch / stylegan3 `network-snapshot-*.pkl`,
StyleGAN2 and StyleGAN3 generators alike).

A normal `pickle.load` of these files imports `torch_utils.persistence`, which `exec`s Python source
stored inside the pickle. Here a restricted unpickler resolves only an allow-list of globals to
stand-ins; the embedded source is never looked at, and any other global is refused before
anything is called. What comes back is data: tensors, plain dicts, and the class name,
state-dict and constructor arguments of every network.
"""

from __future__ import annotations

import io
import pickle
import struct
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import torch

NETWORK_KEYS = ("G", "D", "G_ema")


class UnsafePickleError(pickle.UnpicklingError):
    """The pickle needs something this reader will not provide (an unknown global, a malformed object)."""


@dataclass(frozen=True, slots=True)
class PersistentObject:
    """Stand-in for an object of an NVIDIA `@persistent_class`: its class name and attribute dict only."""

    class_name: str
    state: dict

    def __setstate__(self, state: Any) -> None:
        raise UnsafePickleError("refused BUILD on a persistent object")


@dataclass(frozen=True)
class NetworkRecord:
    """One network from a pickle: enough to rebuild it without the pickle's code."""

    class_name: str
    init_args: list
    init_kwargs: dict
    state_dict: dict[str, torch.Tensor]


class _Dtype:
    """numpy.dtype stand-in for numeric scalars: keeps the type code and byte order, nothing else."""

    _CODES = {"f2": "e", "f4": "f", "f8": "d", "i1": "b", "i2": "h", "i4": "i", "i8": "q",
              "u1": "B", "u2": "H", "u4": "I", "u8": "Q", "b1": "?"}

    def __init__(self, spec: Any, align: bool = False, copy: bool = True) -> None:
        if not isinstance(spec, str) or spec not in self._CODES:
            raise UnsafePickleError(f"refused numpy dtype {spec!r}: only plain numeric scalars are read")
        self.spec = spec
        self.byteorder = "<"

    def __setstate__(self, state: Any) -> None:
        if not isinstance(state, tuple) or len(state) < 2 or state[1] not in ("<", ">", "|", "="):
            raise UnsafePickleError(f"refused numpy dtype state {state!r}")
        self.byteorder = ">" if state[1] == ">" else "<"

    def unpack(self, raw: bytes) -> int | float | bool:
        code = self._CODES[self.spec]
        if not isinstance(raw, bytes) or len(raw) != struct.calcsize(code):
            raise UnsafePickleError(f"numpy scalar of type {self.spec} with {len(raw)!r} bytes")
        return struct.unpack(self.byteorder + code, raw)[0]


def _numpy_scalar(dtype: Any, raw: Any = None) -> int | float | bool:
    if not isinstance(dtype, _Dtype):
        raise UnsafePickleError("numpy scalar without a numeric dtype")
    return dtype.unpack(raw)


class _NdarrayType:
    """numpy.ndarray stand-in: only a marker that `_reconstruct` accepts; it builds nothing itself."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        raise UnsafePickleError("refused numpy.ndarray(...) call: arrays are read only via _reconstruct")


class NumericArray:
    """A small numeric numpy array from a pickle (StyleGAN3 stores `size` / `in_size` as int64 [2]):
    its shape and values as Python numbers, filled by BUILD from (version, shape, dtype, fortran, bytes)."""

    MAX_ITEMS = 1 << 16

    def __init__(self) -> None:
        self.shape: tuple[int, ...] = (0,)
        self.values: list[int | float | bool] = []

    def __setstate__(self, state: Any) -> None:
        if not (isinstance(state, tuple) and len(state) == 5):
            raise UnsafePickleError("refused numpy array state of an unknown layout")
        _version, shape, dtype, _fortran, raw = state
        if not (_int_tuple(shape) and isinstance(dtype, _Dtype) and isinstance(raw, bytes)):
            raise UnsafePickleError("refused numpy array: only numeric arrays stored as raw bytes are read")
        count = 1
        for d in shape:
            count *= d
        size = struct.calcsize(_Dtype._CODES[dtype.spec])
        if count > self.MAX_ITEMS or len(raw) != count * size:
            raise UnsafePickleError(f"numpy array of shape {tuple(shape)} with {len(raw)} bytes")
        self.shape = tuple(shape)
        self.values = [dtype.unpack(raw[i * size:(i + 1) * size]) for i in range(count)]

    def tolist(self) -> list:
        return list(self.values)


def _numpy_reconstruct(cls: Any, shape: Any = (0,), dtype_code: Any = b"b") -> NumericArray:
    """Stand-in for numpy.core.multiarray._reconstruct: an empty array that BUILD then fills."""
    if cls is not _NdarrayType:
        raise UnsafePickleError("refused _reconstruct of anything but numpy.ndarray")
    return NumericArray()


def _load_storage(blob: Any) -> torch.UntypedStorage | torch.TypedStorage:
    """One legacy `torch.save` storage stream, read by torch's own weights-only unpickler."""
    if not isinstance(blob, bytes):
        raise UnsafePickleError("storage payload is not bytes")
    try:
        storage = torch.load(io.BytesIO(blob), weights_only=True, map_location="cpu")
    except Exception as exc:  # torch raises UnpicklingError, RuntimeError or EOFError depending on the damage
        raise UnsafePickleError(f"refused storage blob: {exc}") from None
    if not isinstance(storage, (torch.UntypedStorage, torch.TypedStorage)):
        raise UnsafePickleError(f"storage blob held {type(storage).__name__}, not a storage")
    return storage


def _rebuild_tensor(storage: Any, offset: Any, size: Any, stride: Any, requires_grad: Any = False,
                    backward_hooks: Any = None, metadata: Any = None) -> torch.Tensor:
    if not isinstance(storage, (torch.UntypedStorage, torch.TypedStorage)):
        raise UnsafePickleError("tensor without a storage")
    if not (isinstance(offset, int) and _int_tuple(size) and _int_tuple(stride)) or len(size) != len(stride):
        raise UnsafePickleError("malformed tensor geometry")
    dtype = storage.dtype if isinstance(storage, torch.TypedStorage) else torch.uint8
    # set_ checks that the view fits inside the storage.
    return torch.empty((0,), dtype=dtype).set_(storage, offset, tuple(size), tuple(stride))


def _rebuild_parameter(data: Any, requires_grad: Any = False, backward_hooks: Any = None, state: Any = None) -> torch.Tensor:
    if not isinstance(data, torch.Tensor):
        raise UnsafePickleError("parameter without a tensor")
    return data


def _int_tuple(x: Any) -> bool:
    return isinstance(x, (tuple, list, torch.Size)) and all(isinstance(v, int) and v >= 0 for v in x)


def _persistent_obj(meta: Any) -> PersistentObject:
    """Stand-in for torch_utils.persistence._reconstruct_persistent_obj: keeps class_name + state, drops module_src."""
    if not isinstance(meta, dict) or meta.get("type") != "class":
        raise UnsafePickleError("persistent object of an unknown kind")
    name, state = meta.get("class_name"), meta.get("state")
    if not isinstance(name, str) or not isinstance(state, dict):
        raise UnsafePickleError("persistent object without class_name / state")
    return PersistentObject(name, state)


_ALLOWED: dict[tuple[str, str], Any] = {
    ("torch_utils.persistence", "_reconstruct_persistent_obj"): _persistent_obj,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter,
    ("torch.storage", "_load_from_bytes"): _load_storage,
    ("collections", "OrderedDict"): OrderedDict,
    ("dnnlib.util", "EasyDict"): dict,
    ("numpy.core.multiarray", "scalar"): _numpy_scalar,
    ("numpy._core.multiarray", "scalar"): _numpy_scalar,
    ("numpy", "dtype"): _Dtype,
    # StyleGAN3 modules hold small int64 arrays (sizes); numeric dtypes only, as for scalars.
    ("numpy.core.multiarray", "_reconstruct"): _numpy_reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _numpy_reconstruct,
    ("numpy", "ndarray"): _NdarrayType,
    # Protocol <= 3 pickles (Python 3.7 era snapshots) spell sets as builtins.set(list).
    ("builtins", "set"): set,
    ("builtins", "frozenset"): frozenset,
}


class _RestrictedUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        try:
            return _ALLOWED[(module, name)]
        except KeyError:
            raise UnsafePickleError(
                f"refused global '{module}.{name}': not on the allow-list of network-pickle globals "
                "(this reader never runs code from a pickle)"
            ) from None

    def persistent_load(self, pid: Any) -> Any:
        raise UnsafePickleError("refused persistent id: network pickles do not use them")


def safe_unpickle(source: str | Path | bytes | BinaryIO) -> Any:
    """Unpickle with the restricted allow-list; persistent objects come back as PersistentObject."""
    if isinstance(source, (str, Path)):
        with open(source, "rb") as f:
            return _RestrictedUnpickler(f).load()
    if isinstance(source, bytes):
        return _RestrictedUnpickler(io.BytesIO(source)).load()
    return _RestrictedUnpickler(source).load()


def module_state_dict(obj: PersistentObject, prefix: str = "") -> dict[str, torch.Tensor]:
    """Dotted state-dict names in torch's order (own parameters, own persistent buffers, then children)."""
    st = obj.state
    out: dict[str, torch.Tensor] = {}
    skip = set(st.get("_non_persistent_buffers_set") or ())
    for group in ("_parameters", "_buffers"):
        for name, t in (st.get(group) or {}).items():
            if t is None or (group == "_buffers" and name in skip):
                continue
            if not isinstance(t, torch.Tensor):
                raise UnsafePickleError(f"{prefix}{name} is not a tensor")
            out[prefix + name] = t.detach().clone()
    for name, child in (st.get("_modules") or {}).items():
        if child is None:
            continue
        if not isinstance(child, PersistentObject):
            raise UnsafePickleError(f"sub-module {prefix}{name} is not a persistent network object")
        out.update(module_state_dict(child, f"{prefix}{name}."))
    return out


def plain(value: Any) -> Any:
    """Constructor arguments as JSON-able Python: dicts, lists, str, numbers, bool, None."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, NumericArray):
        return value.tolist()
    raise UnsafePickleError(f"constructor argument of type {type(value).__name__} is not plain data")


def network_record(obj: PersistentObject) -> NetworkRecord:
    """Class name, constructor args and state dict of one persistent network."""
    st = obj.state
    return NetworkRecord(
        class_name=obj.class_name,
        init_args=plain(list(st.get("_init_args") or ())),
        init_kwargs=plain(dict(st.get("_init_kwargs") or {})),
        state_dict=module_state_dict(obj),
    )


def read_network_pkl(source: str | Path | bytes | BinaryIO, include: tuple[str, ...] = ("G_ema",)) -> dict[str, NetworkRecord]:
    """Read a training snapshot; returns a NetworkRecord for each requested key among G, D, G_ema."""
    data = safe_unpickle(source)
    if not isinstance(data, dict):
        raise UnsafePickleError(f"expected a dict at the top level, got {type(data).__name__}")
    out = {}
    for key in include:
        obj = data.get(key)
        if not isinstance(obj, PersistentObject):
            raise KeyError(f"network pickle has no network {key!r} (keys: {sorted(map(str, data))})")
        out[key] = network_record(obj)
    return out
