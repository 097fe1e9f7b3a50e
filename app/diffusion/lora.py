"""LoRA (Hu et al. 2021, "LoRA: Low-Rank Adaptation"): W x + w * (alpha / r) * B A x, with a weight w
that is a live parameter.

Files: kohya / AUTOMATIC1111 safetensors (`lora_unet_<module path with _>.lora_down.weight`,
`.lora_up.weight`, `.alpha`; `lora_te_` / `lora_te1_` / `lora_te2_` for the text encoders; LoCon's conv
layers too) and diffusers / PEFT ones (`unet.<module path>.lora_A.weight` / `.lora_B.weight`,
`text_encoder.<...>`; the older `.lora.down.weight` / `.lora.up.weight`). Keys are matched against the
loaded model's own Linear and Conv2d layers, so a LoRA for another architecture is refused by name.

How a live weight is applied: the low-rank path is added by a forward hook on each adapted layer,
`out + w * up(down(x))`, with w a 0-d tensor that is overwritten in place when the weight changes (read
from the run's live parameters before every UNet call, so a change lands at a step boundary like
CFG's). The alternative, merging w * B A into W and re-merging when w changes, costs nothing per step
but a copy of every adapted weight (to re-merge from, bit-exactly) and a re-merge pause per change;
the hook costs two rank-r products per layer per call (bench/bench_diffusion.py measures it) and the
UNet's own weights never change, so a step computes the same whatever weights came before it: replay
from the record is bit-exact by construction, and several LoRAs compose without ordering effects.
A LoRA whose weight is 0 is skipped, so the UNet then computes exactly what it does without it.

Text-encoder LoRA layers use the run's starting weight: the prompt is encoded once, at the start
(a fork re-encodes with the same starting weights, so forks and replays agree); the live weight moves
the UNet part only.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from app.diffusion.lora_tags import lora_name_problem

# kohya prefixes -> the model part they adapt
KOHYA_PREFIXES = {"lora_unet_": "unet", "lora_te_": "text_encoder", "lora_te1_": "text_encoder",
                  "lora_te2_": "text_encoder_2"}
PEFT_PREFIXES = {"unet.": "unet", "text_encoder.": "text_encoder", "text_encoder_2.": "text_encoder_2"}
# (down, up) key endings, per format
KOHYA_ENDS = (".lora_down.weight", ".lora_up.weight")
PEFT_ENDS = ((".lora_A.weight", ".lora_B.weight"), (".lora.down.weight", ".lora.up.weight"))
UNSUPPORTED = ("hada_", "lokr_", "dora_scale", "lora_mid", "oft_")
DIR_CACHE = 8  # LoRAs from --lora-dir kept loaded


class LoraError(ValueError):
    """A LoRA that cannot be used: unknown name, missing or unreadable file, or one for another model."""


@dataclass(frozen=True)
class LoraLayer:
    """The low-rank path of one layer: down [r, in] or [r, in, kh, kw], up [out, r] or [out, r, 1, 1]
    with alpha / r folded in; on the layer's device and dtype."""

    down: Tensor
    up: Tensor


@dataclass(frozen=True)
class LoraFile:
    name: str
    format: str  # "kohya" or "diffusers"
    layers: dict[str, dict[str, LoraLayer]]  # model part -> layer path -> low-rank path

    @property
    def size(self) -> int:
        return sum(len(v) for v in self.layers.values())


def adaptable_layers(model: nn.Module) -> dict[str, nn.Module]:
    return {n: m for n, m in model.named_modules() if isinstance(m, (nn.Linear, nn.Conv2d))}


def _split(state: dict[str, Tensor]) -> tuple[str, dict[str, dict[str, dict[str, Tensor]]]]:
    """(format, {part: {layer key: {"down", "up", "alpha"?}}}); keys as the file spells them."""
    bad = next((k for k in state if any(u in k for u in UNSUPPORTED)), None)
    if bad is not None:
        raise LoraError(f"{bad!r}: LyCORIS (LoHa, LoKr), DoRA and OFT files are not supported, only plain LoRA")
    kohya = any(k.startswith(tuple(KOHYA_PREFIXES)) for k in state)
    parts: dict[str, dict[str, dict[str, Tensor]]] = {}
    for key, tensor in state.items():
        if kohya:
            prefix = next((p for p in sorted(KOHYA_PREFIXES, key=len, reverse=True) if key.startswith(p)), None)
            ends = {KOHYA_ENDS[0]: "down", KOHYA_ENDS[1]: "up", ".alpha": "alpha"}
            prefixes = KOHYA_PREFIXES
        else:
            prefix = next((p for p in PEFT_PREFIXES if key.startswith(p)), None)
            ends = {e: role for pair in PEFT_ENDS for e, role in zip(pair, ("down", "up"))} | {".alpha": "alpha"}
            prefixes = PEFT_PREFIXES
        end = next((e for e in ends if key.endswith(e)), None)
        if prefix is None or end is None:
            raise LoraError(f"{key!r} is not a LoRA key this reader knows (kohya lora_unet_* / lora_te_*, or "
                            "diffusers unet.* / text_encoder.* with lora_A / lora_B)")
        layer = key[len(prefix):-len(end)]
        parts.setdefault(prefixes[prefix], {}).setdefault(layer, {})[ends[end]] = tensor
    return ("kohya" if kohya else "diffusers"), parts


def _fit(path: str, module: nn.Module, down: Tensor, up: Tensor) -> tuple[Tensor, Tensor]:
    """down / up shaped for `module` (a Linear or Conv2d); LoraError when they cannot adapt it."""
    r = down.shape[0]
    if isinstance(module, nn.Linear):
        down, up = down.reshape(r, -1), up.reshape(up.shape[0], -1)
        ok = down.shape[1] == module.in_features and up.shape == (module.out_features, r)
    else:
        assert isinstance(module, nn.Conv2d)
        if down.ndim == 2:
            down = down[:, :, None, None]
        if up.ndim == 2:
            up = up[:, :, None, None]
        ok = (down.shape[1] == module.in_channels and tuple(down.shape[2:]) in {(1, 1), tuple(module.kernel_size)}
              and tuple(up.shape) == (module.out_channels, r, 1, 1) and module.groups == 1)
    if not ok:
        raise LoraError(f"layer {path}: LoRA shapes down {tuple(down.shape)} / up {tuple(up.shape)} do not fit "
                        f"{module}")
    return down, up


def read_lora(path: Path, name: str, parts: dict[str, nn.Module]) -> LoraFile:
    """A LoRA safetensors file matched against the model `parts` ({"unet": ..., "text_encoder": ...}):
    every key must adapt one Linear / Conv2d layer there; tensors go to that layer's device and dtype."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        state = load_file(str(path), device="cpu")
    except (OSError, SafetensorError) as exc:
        raise LoraError(f"LoRA {name!r}: cannot read {Path(path).name} as safetensors ({exc})") from None
    if not state:
        raise LoraError(f"LoRA {name!r}: {Path(path).name} holds no tensors")
    fmt, split = _split(state)
    layers: dict[str, dict[str, LoraLayer]] = {}
    for part, entries in split.items():
        model = parts.get(part)
        if model is None:
            raise LoraError(f"LoRA {name!r} adapts {part}, which this model does not have")
        targets = adaptable_layers(model)
        if fmt == "kohya":  # kohya writes the module path with "_" for "."; ambiguous spellings are dropped
            spelled: dict[str, str | None] = {}
            for t in targets:
                key = t.replace(".", "_")
                spelled[key] = None if key in spelled else t
            lookup = {k: v for k, v in spelled.items() if v is not None}
        else:
            lookup = {t: t for t in targets}
        missing = [k for k in entries if k not in lookup]
        if missing:
            raise LoraError(f"LoRA {name!r}: {len(missing)} of its {part} layers are not in this model "
                            f"(first: {missing[0]!r}); it was made for another model")
        for key, tensors in entries.items():
            if "down" not in tensors or "up" not in tensors:
                raise LoraError(f"LoRA {name!r}: layer {key!r} lacks its {'up' if 'down' in tensors else 'down'} "
                                "weight")
            target = lookup[key]
            module = targets[target]
            down, up = _fit(target, module, tensors["down"].float(), tensors["up"].float())
            alpha = tensors.get("alpha")
            scale = 1.0 if alpha is None else float(alpha) / down.shape[0]
            weight = module.weight
            layers.setdefault(part, {})[target] = LoraLayer(
                down.to(weight.device, weight.dtype).contiguous(),
                (up * scale).to(weight.device, weight.dtype).contiguous())
    return LoraFile(name, fmt, layers)


class _LayerHook:
    """Forward hook of one adapted layer: out + sum over LoRAs of w * up(down(x)), skipping w = 0."""

    def __init__(self, module: nn.Module) -> None:
        self.conv = isinstance(module, nn.Conv2d)
        self.module = module
        self.paths: list[tuple[LoraLayer, Tensor, list[bool]]] = []  # (layer, w as a 0-d tensor, [w != 0])

    def __call__(self, module: nn.Module, args: tuple, out: Tensor) -> Tensor:
        x = args[0]
        for layer, w, active in self.paths:
            if not active[0]:
                continue
            if self.conv:
                m = self.module
                h = F.conv2d(x, layer.down, None, m.stride, m.padding if layer.down.shape[-1] > 1 else 0, m.dilation)
                out = out + F.conv2d(h, layer.up) * w
            else:
                out = out + F.linear(F.linear(x, layer.down), layer.up) * w
        return out


class AppliedLoras:
    """LoRAs installed on a model's parts for one run; `set_weights` moves the live (UNet) weights."""

    def __init__(self, parts: dict[str, nn.Module], loras: list[LoraFile], weights: dict[str, float]) -> None:
        self._handles: list = []
        self._weights = {lora.name: float(weights[lora.name]) for lora in loras}
        # per LoRA: its UNet-side weight tensor and on/off flag (the ones set_weights moves)
        self._live: dict[str, tuple[Tensor, list[bool]]] = {}
        hooks: dict[int, _LayerHook] = {}
        for lora in loras:
            w0 = self._weights[lora.name]
            for part, layers in lora.layers.items():
                model = parts[part]
                dtype = next(model.parameters()).dtype
                device = next(model.parameters()).device
                w = torch.tensor(w0, dtype=dtype, device=device)
                active = [w0 != 0.0]
                if part == "unet":
                    self._live[lora.name] = (w, active)
                modules = dict(model.named_modules())
                for path, layer in layers.items():
                    module = modules[path]
                    hook = hooks.get(id(module))
                    if hook is None:
                        hook = hooks[id(module)] = _LayerHook(module)
                        self._handles.append(module.register_forward_hook(hook))
                    hook.paths.append((layer, w, active))

    def set_weights(self, weights: dict[str, float]) -> None:
        """The UNet-side weights of the run's LoRAs (names not in the run are ignored)."""
        for name, value in weights.items():
            entry = self._live.get(name)
            if entry is None or self._weights.get(name) == value:
                continue
            self._weights[name] = float(value)
            entry[0].fill_(float(value))
            entry[1][0] = value != 0.0

    def remove(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()


@contextmanager
def applied(parts: dict[str, nn.Module], loras: list[LoraFile], weights: dict[str, float],
            live: Callable[[], dict[str, float]] | None = None) -> Iterator[AppliedLoras]:
    """`loras` on `parts` for the duration of a run, starting at `weights`; with `live`, the UNet-side
    weights are re-read before every UNet call (a pre-hook on the UNet), as CFG's scale is."""
    run = AppliedLoras(parts, loras, weights)
    handles = []
    if live is not None and "unet" in parts:
        handles.append(parts["unet"].register_forward_pre_hook(lambda module, args: run.set_weights(live())))
    try:
        yield run
    finally:
        for handle in handles:
            handle.remove()
        run.remove()


class LoraLibrary:
    """The LoRAs a server can apply: the `--lora` files (loaded at start, each with a default weight the
    page's slider starts at) and, by name, the `<name>.safetensors` files directly in `--lora-dir` (loaded
    when a run first names them; the last DIR_CACHE kept)."""

    def __init__(self, parts: dict[str, nn.Module], files: list[Path] = (), folder: Path | None = None,
                 default_weight: float = 1.0) -> None:
        self.parts = {k: v for k, v in parts.items() if v is not None}
        self.folder = None if folder is None else Path(folder)
        if self.folder is not None and not self.folder.is_dir():
            raise LoraError(f"--lora-dir {self.folder} is not a folder")
        self.default_weight = default_weight
        self._lock = threading.Lock()
        self._fixed: dict[str, LoraFile] = {}
        self._cached: OrderedDict[str, LoraFile] = OrderedDict()
        for path in files:
            path = Path(path)
            name = path.name.removesuffix(".safetensors")
            if path.suffix != ".safetensors":
                raise LoraError(f"--lora {path}: LoRA files are read as .safetensors only (never pickles)")
            if problem := lora_name_problem(name):
                raise LoraError(f"--lora {path}: {problem}; rename the file")
            if name in self._fixed:
                raise LoraError(f"--lora {path}: a LoRA named {name!r} is already loaded")
            if not path.is_file():
                raise LoraError(f"--lora {path}: no such file")
            self._fixed[name] = read_lora(path, name, self.parts)

    def info(self) -> list[dict]:
        """What /api/info lists: the --lora files (one slider each), with the weight the slider starts at."""
        return [{"name": n, "weight": self.default_weight, "layers": f.size, "format": f.format}
                for n, f in self._fixed.items()]

    def get(self, name: str) -> LoraFile:
        """The LoRA `name`: a --lora file, or <name>.safetensors in --lora-dir (LoraError if neither)."""
        if problem := lora_name_problem(name):
            raise LoraError(problem)
        with self._lock:
            if name in self._fixed:
                return self._fixed[name]
            if name in self._cached:
                self._cached.move_to_end(name)
                return self._cached[name]
            if self.folder is None:
                raise LoraError(f"no LoRA named {name!r} is loaded (loaded: {', '.join(self._fixed) or 'none'}; "
                                "start the server with --lora-dir to name LoRAs from a folder)")
            path = self.folder / f"{name}.safetensors"
            if not path.is_file():
                raise LoraError(f"no LoRA named {name!r}: neither loaded with --lora nor a file {name}.safetensors "
                                "in --lora-dir")
            lora = read_lora(path, name, self.parts)
            self._cached[name] = lora
            while len(self._cached) > DIR_CACHE:
                self._cached.popitem(last=False)
            return lora

    def resolve(self, weights: dict[str, float]) -> list[LoraFile]:
        """The LoRAs a run names, loaded (LoraError for the first that cannot be)."""
        return [self.get(name) for name in weights]


def model_parts(models) -> dict[str, nn.Module]:
    """The parts of a loaded diffusion model (app.diffusion.generate.DiffusionModels) a LoRA may adapt."""
    encoders = tuple(getattr(getattr(models, "conditioner", None), "encoders", None) or (models.text_encoder,))
    parts = {"unet": models.unet, "text_encoder": encoders[0],
             "text_encoder_2": encoders[1] if len(encoders) > 1 else None}  # SDXL's second encoder
    return {k: v for k, v in parts.items() if v is not None}


@contextmanager
def run_loras(models, weights: dict[str, float], live: Callable[[], dict[str, float]]) -> Iterator[None]:
    """A run's LoRAs (`weights`: name -> starting weight) on a loaded diffusion model while the block runs,
    the UNet side following `live()`; nothing to do when the run names none."""
    if not weights:
        yield
        return
    if models.loras is None:
        raise LoraError("this server has no LoRAs (--lora, --lora-dir)")
    with applied(model_parts(models), models.loras.resolve(weights), weights, live):
        yield
