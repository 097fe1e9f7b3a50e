"""One interface for every GAN family: what the engine calls, and what the page is drawn from.

A family turns (seed, condition, control values) into images and DESCRIBES its controls
(`GanControls`): which truncation it has, whether styles mix, whether the input can be translated
and rotated, which classes it knows, what the text does, what a CLIP search optimises. The engine
(app/engine/gan_runner.py) calls only the methods below; the page (frontend/js/gan.js) shows a
control only when the description offers it. No family name appears in either (DESIGN.md, "GAN
families behind one protocol"; the stylegan3 visualizer reads the loaded network the same way).

How a new family plugs in
-------------------------
1. A network module in app/gan/ (e.g. `biggan.py`) whose `state_dict()` keys are the source's own
   (so converted checkpoints load with `strict=True`).
2. A converter that writes the served folder: `generator.safetensors` (tensors only) beside
   `config.json` = {"format": "noisescope-<family>", "init_kwargs": {...constructor kwargs...},
   ...anything else the family reads, e.g. "class_names"}. Read checkpoints tensors-only
   (safetensors, `torch.load(weights_only=True)`, or app.gan.pkl_reader); never unpickle code.
   Add it as a `python -m app convert-gan` input or its own CLI.
3. A `GanFamily` subclass (in the network module or a `<family>_family.py` beside it) implementing
   `load`, `controls`, `seed_latent`, `styles`, `synthesize` (and `search` when it has a CLIP search).
4. One line in `FAMILIES` below: the config's "format" -> "module:Class". `load_family(folder)`
   reads config.json, looks the format up and calls `Class.load(folder, config, device)`.
   A folder without "format" is StyleGAN2 (the first format, written before families existed).

Control values arrive as one `GanParams` (app/params.py); a family reads the fields it describes
and leaves the rest. The engine refuses a request that sets a control the family does not offer
(`controls_problem`), so a family never sees, e.g., a rotation it cannot do.
"""

from __future__ import annotations

import importlib
import json
from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import torch

from .render import SearchCallback, SearchResult, to_uint8

if TYPE_CHECKING:
    from app.clip.backend import ClipBackend
    from app.params import GanParams

CONFIG_NAME = "config.json"
DEFAULT_FORMAT = "noisescope-stylegan2"

# config.json "format" -> "module:Class" of its GanFamily (imported on first use).
FAMILIES: dict[str, str] = {
    "noisescope-stylegan2": "app.gan.stylegan_family:StyleGAN2Family",
    "noisescope-stylegan3": "app.gan.stylegan_family:StyleGAN3Family",
    "noisescope-biggan": "app.gan.biggan_family:BigGANFamily",
    "noisescope-dcgan": "app.gan.dcgan_family:DCGANFamily",
}

Truncation = Literal["w_lerp", "truncated_normal", "z_scale", "none"]
ConditionKind = Literal["none", "text", "class"]


@dataclass(frozen=True)
class GanControls:
    """What a loaded generator offers; `describe()` is /api/info's `gan.controls`, the panel's recipe.

    truncation      "w_lerp": w' = centre + psi (w - centre) (StyleGAN, Karras et al. 2019 Sec. 3.2);
                    "truncated_normal": z drawn from a normal truncated at a threshold (BigGAN,
                    Brock et al. 2019 Sec. 3.1); "z_scale": z multiplied by a factor; "none".
    truncation_range  (min, max, default) of the one truncation slider (`truncation_psi`).
    truncation_cutoff  whether truncation can stop at a row (`truncation_cutoff`).
    mixing_layers   rows of per-layer styles a second seed can take over from (0 = no style mixing).
    noise           per-pixel noise inputs (`noise_mode`).
    input_transform translate x / y and rotate the input (`translate_x`, `translate_y`, `rotate`).
    condition       what drives c: "text" (the prompt's CLIP embedding), "class" (`class_index`), "none".
    classes         class names, index = class id (condition "class").
    search          the latent a CLIP search optimises ("w+", "z+class", ...), None when it has none.
    walk            what a latent walk moves between: "seed", and "class" for class-conditional families;
                    `walk_t` renders one point of that path (a live interpolation slider).
    extra           family facts the page may show as they are (plain JSON); it draws no control from them.
    """

    truncation: Truncation = "none"
    truncation_range: tuple[float, float, float] = (0.0, 2.0, 1.0)
    truncation_cutoff: bool = False
    mixing_layers: int = 0
    noise: bool = False
    input_transform: bool = False
    condition: ConditionKind = "none"
    classes: tuple[str, ...] = ()
    search: str | None = None
    walk: tuple[str, ...] = ("seed",)
    extra: dict[str, Any] = field(default_factory=dict)

    def describe(self) -> dict[str, Any]:
        d = asdict(self)
        d["truncation_range"] = list(self.truncation_range)
        d["classes"] = list(self.classes)
        d["walk"] = list(self.walk)
        return d


@dataclass(frozen=True)
class Condition:
    """The generator's condition c [1, c_dim] (None when unconditional) and a cache key naming it."""

    key: str = ""
    c: torch.Tensor | None = None


def controls_problem(controls: GanControls, p: GanParams) -> str | None:
    """Why `p` sets a control this family does not offer (None when it sets none)."""
    if p.mix_seed is not None:
        if not controls.mixing_layers:
            return "mix_seed: this generator has no style mixing"
        if p.mix_layer >= controls.mixing_layers:
            return f"mix_layer must be below {controls.mixing_layers} for this generator"
    if (p.translate_x, p.translate_y, p.rotate) != (0, 0, 0) and not controls.input_transform:
        return "translate_x / translate_y / rotate: this generator has no input transform"
    if p.class_index is not None:
        if controls.condition != "class":
            return "class_index: this generator is not class-conditional"
        if p.class_index >= len(controls.classes):
            return f"class_index must be below {len(controls.classes)} for this generator"
    if p.walk_class is not None:
        if controls.condition != "class" or "class" not in controls.walk:
            return "walk_class: this generator does not walk between classes"
        if p.walk_class >= len(controls.classes):
            return f"walk_class must be below {len(controls.classes)} for this generator"
    if controls.condition == "class" and p.class_index is None:
        return "class_index: this generator is class-conditional; pick a class"
    if p.truncation_cutoff is not None and not controls.truncation_cutoff:
        return "truncation_cutoff: this generator's truncation has no cutoff"
    return None


class GanFamily(ABC):
    """A loaded generator of one family. Subclasses set `format` and implement the abstract methods.

    Latents: `seed_latent` is what a seed and condition give before any control (the engine caches
    it, so a slider that only moves truncation or mixing skips it); `styles` applies the controls
    (truncation, mixing) to a batch of them; `synthesize` renders styles (with grad, for a search);
    `interpolate` is the path a latent walk takes between two styles.
    """

    format: ClassVar[str]
    G: torch.nn.Module
    device: torch.device

    @classmethod
    @abstractmethod
    def load(cls, folder: Path, config: dict[str, Any], device: torch.device) -> GanFamily:
        """Build from a converted folder (generator.safetensors + config.json); never reads pickles."""

    @abstractmethod
    def controls(self) -> GanControls: ...

    @property
    @abstractmethod
    def resolution(self) -> int: ...

    def info(self) -> dict[str, Any]:
        """Shape facts for /api/info (the family may add its own)."""
        return {"family": self.format.removeprefix("noisescope-"), "z_dim": int(getattr(self.G, "z_dim", 0)),
                "c_dim": int(getattr(self.G, "c_dim", 0)), "resolution": self.resolution}

    def class_condition(self, index: int) -> torch.Tensor:
        """c [1, c_dim] for a class id (class-conditional families)."""
        raise NotImplementedError(f"{type(self).__name__} is not class-conditional")

    def problem(self, p: GanParams) -> str | None:
        """A family-specific reason it cannot serve `p` beyond `controls_problem`, or None."""
        return None

    @abstractmethod
    def seed_latent(self, seed: int, cond: Condition) -> torch.Tensor:
        """The latent [1, ...] of a seed under a condition, before truncation and mixing."""

    @abstractmethod
    def styles(self, base: torch.Tensor, cond: Condition, p: GanParams,
               mix: torch.Tensor | None = None) -> torch.Tensor:
        """Controls applied: truncation of `base` [N, ...] (and of `mix` [1, ...], the mix seed's
        latent) and style mixing at `p.mix_layer`. Returns what `synthesize` takes. A class-conditional
        family carries the condition inside its styles (e.g. z and the class embedding side by side),
        so that `interpolate` between two styles also walks from one class to the other."""

    @abstractmethod
    def synthesize(self, styles: torch.Tensor, p: GanParams) -> torch.Tensor:
        """Image [N, C, H, W] in about [-1, 1], differentiable in `styles`."""

    @torch.no_grad()
    def render(self, styles: torch.Tensor, p: GanParams) -> torch.Tensor:
        """uint8 [N, H, W, C] on the generator's device."""
        return to_uint8(self.synthesize(styles.to(self.device), p))

    def interpolate(self, a: torch.Tensor, b: torch.Tensor, t: float) -> torch.Tensor:
        """A point of the walk from styles a to b at t in [0, 1]; linear unless the family says otherwise."""
        return torch.lerp(a, b, float(t))

    def search(self, clip: ClipBackend, text: torch.Tensor, weights: torch.Tensor, init: torch.Tensor,
               p: GanParams, callback: SearchCallback | None = None) -> SearchResult:
        """CLIP search from `init` styles towards the weighted prompts `text` [T, D]."""
        raise NotImplementedError(f"{type(self).__name__} has no CLIP search")


def family_class(fmt: str) -> type[GanFamily]:
    """The GanFamily class registered for a config "format"."""
    if fmt not in FAMILIES:
        raise ValueError(f"unknown generator format {fmt!r}; known: {sorted(FAMILIES)}")
    module, _, name = FAMILIES[fmt].partition(":")
    cls = getattr(importlib.import_module(module), name)
    if not (isinstance(cls, type) and issubclass(cls, GanFamily)):
        raise TypeError(f"{FAMILIES[fmt]} is not a GanFamily")
    return cls


def read_config(folder: Path) -> dict[str, Any]:
    """config.json of a converted folder ({} when there is none: a bare safetensors with kwargs metadata)."""
    config = folder / CONFIG_NAME
    return json.loads(config.read_text()) if config.is_file() else {}


def load_family(path: str | Path, device: str | torch.device = "cpu") -> GanFamily:
    """Load a converted generator folder (or its .safetensors file) as its family."""
    path = Path(path)
    folder = path if path.is_dir() else path.parent
    config = read_config(folder)
    fmt = config.get("format", DEFAULT_FORMAT) if isinstance(config, dict) else DEFAULT_FORMAT
    return family_class(fmt).load(path, config, torch.device(device))

