"""LoRA (app.diffusion.lora): files in kohya / A1111 and diffusers / PEFT layouts written here for a tiny
UNet and text encoder, read back onto the loaded model; the low-rank path against the merged weight;
a weight changed mid-run moves the image from the next step on, and the run replays bit for bit."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file
from torch import nn

from app.diffusion.generate import DiffusionModels, generate, load_diffusion_models
from app.diffusion.lora import LoraError, LoraLibrary, adaptable_layers, applied, model_parts, read_lora, run_loras
from app.diffusion.lora_tags import lora_tags, strip_lora_tags
from app.diffusion.prompts import parse_prompt
from app.engine.live import LiveState
from app.params import DiffusionParams, LiveUpdate, ScheduleEntry

RANK = 4


def lora_layers(model: nn.Module, convs: bool = True) -> list[str]:
    """The layers a test LoRA adapts: attention projections (Linear), plus 3x3 convs (LoCon) and
    1x1 proj_in convs of the UNet."""
    names = []
    for name, m in adaptable_layers(model).items():
        if isinstance(m, nn.Linear) and name.rsplit(".", 1)[-1] in {"to_q", "to_k", "to_v", "0", "q_proj", "v_proj"}:
            names.append(name)
        elif convs and isinstance(m, nn.Conv2d) and (name.endswith("conv1") or name.endswith("proj_in")):
            names.append(name)
    return names


def random_lora(model: nn.Module, seed: int, convs: bool = True, std: float = 0.3) -> dict[str, tuple]:
    """{layer: (down, up)} of random rank-RANK factors shaped for each layer."""
    g = torch.Generator().manual_seed(seed)
    out = {}
    modules = adaptable_layers(model)
    for name in lora_layers(model, convs):
        m = modules[name]
        if isinstance(m, nn.Linear):
            down = torch.randn(RANK, m.in_features, generator=g) * std
            up = torch.randn(m.out_features, RANK, generator=g) * std
        else:
            down = torch.randn(RANK, m.in_channels, *m.kernel_size, generator=g) * std
            up = torch.randn(m.out_channels, RANK, 1, 1, generator=g) * std
        out[name] = (down, up)
    return out


def write_kohya(path: Path, unet: dict, te: dict, alpha: float = RANK) -> Path:
    """kohya / A1111 layout: lora_unet_<path with _>.lora_down.weight / .lora_up.weight / .alpha."""
    state = {}
    for prefix, layers in (("lora_unet_", unet), ("lora_te_", te)):
        for name, (down, up) in layers.items():
            key = prefix + name.replace(".", "_")
            state[f"{key}.lora_down.weight"] = down.contiguous()
            state[f"{key}.lora_up.weight"] = up.contiguous()
            state[f"{key}.alpha"] = torch.tensor(float(alpha))
    save_file(state, str(path))
    return path


def write_peft(path: Path, unet: dict, te: dict) -> Path:
    """diffusers / PEFT layout: unet.<path>.lora_A.weight / .lora_B.weight (alpha = rank)."""
    state = {}
    for prefix, layers in (("unet.", unet), ("text_encoder.", te)):
        for name, (down, up) in layers.items():
            state[f"{prefix}{name}.lora_A.weight"] = down.contiguous()
            state[f"{prefix}{name}.lora_B.weight"] = up.contiguous()
    save_file(state, str(path))
    return path


@pytest.fixture(scope="module")
def models(tiny_diffusion_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> DiffusionModels:
    return load_diffusion_models(str(tiny_diffusion_dir), torch.device("cpu"), torch.float32,
                                 cache_dir=tmp_path_factory.mktemp("cache"))


@pytest.fixture(scope="module")
def lora_dir(models: DiffusionModels, tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("loras")
    unet, te = random_lora(models.unet, 1), random_lora(models.text_encoder, 2, convs=False)
    write_kohya(folder / "style.safetensors", unet, te)
    write_peft(folder / "style_peft.safetensors", unet, te)
    write_kohya(folder / "half.safetensors", unet, te, alpha=RANK / 2)
    write_kohya(folder / "other.safetensors", random_lora(models.unet, 3), {})
    return folder


def unet_out(models: DiffusionModels, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(1, 4, 8, 8, generator=g)
    ctx = torch.randn(1, 77, 32, generator=g)
    with torch.no_grad():
        return models.unet(x, torch.tensor([500]), encoder_hidden_states=ctx).sample


def test_kohya_and_diffusers_files_read_to_the_same_layers(models: DiffusionModels, lora_dir: Path) -> None:
    parts = model_parts(models)
    kohya = read_lora(lora_dir / "style.safetensors", "style", parts)
    peft = read_lora(lora_dir / "style_peft.safetensors", "style_peft", parts)
    assert (kohya.format, peft.format) == ("kohya", "diffusers")
    assert set(kohya.layers) == {"unet", "text_encoder"}
    assert kohya.layers["unet"].keys() == peft.layers["unet"].keys()
    assert any(layer.down.ndim == 4 and layer.down.shape[-1] == 3 for layer in kohya.layers["unet"].values())
    for part in ("unet", "text_encoder"):
        for name, layer in kohya.layers[part].items():
            assert torch.equal(layer.up, peft.layers[part][name].up) and torch.equal(layer.down, peft.layers[part][name].down)
    half = read_lora(lora_dir / "half.safetensors", "half", parts)
    name = next(iter(half.layers["unet"]))
    assert torch.allclose(half.layers["unet"][name].up * 2, kohya.layers["unet"][name].up), "alpha / rank scales up"


def test_the_low_rank_path_equals_the_merged_weight(models: DiffusionModels, lora_dir: Path) -> None:
    """W x + w * up(down(x)) == (W + w * up @ down) x on every adapted Linear (Hu et al. 2021, eq. 3)."""
    parts = model_parts(models)
    lora = read_lora(lora_dir / "style_peft.safetensors", "s", parts)
    linear_only = {part: {n: layer for n, layer in layers.items() if layer.down.ndim == 2}
                   for part, layers in lora.layers.items()}
    linear_lora = type(lora)("s", lora.format, linear_only)
    w = 0.7
    with applied(parts, [linear_lora], {"s": w}):
        hooked = unet_out(models)
    originals = {}
    modules = dict(models.unet.named_modules())
    try:
        for name, layer in linear_only["unet"].items():
            weight = modules[name].weight
            originals[name] = weight.detach().clone()
            weight.data += w * layer.up @ layer.down
        merged = unet_out(models)
    finally:
        for name, weight in originals.items():
            modules[name].weight.data.copy_(weight)
    assert torch.allclose(hooked, merged, atol=1e-4, rtol=1e-4)
    assert not torch.allclose(hooked, unet_out(models), atol=1e-3)


def test_weight_zero_is_the_bare_model_and_hooks_come_off(models: DiffusionModels, lora_dir: Path) -> None:
    parts = model_parts(models)
    lora = read_lora(lora_dir / "style.safetensors", "style", parts)
    bare = unet_out(models)
    with applied(parts, [lora], {"style": 0.0}):
        assert torch.equal(unet_out(models), bare)
    with applied(parts, [lora], {"style": 1.0}):
        assert not torch.equal(unet_out(models), bare)
    assert torch.equal(unet_out(models), bare), "the hooks are removed after the run"
    assert not any(m._forward_hooks or m._forward_pre_hooks for m in models.unet.modules())


def test_live_weight_is_read_before_every_unet_call(models: DiffusionModels, lora_dir: Path) -> None:
    parts = model_parts(models)
    loras = [read_lora(lora_dir / n, n.removesuffix(".safetensors"), parts)
             for n in ("style.safetensors", "other.safetensors")]
    current = {"style": 1.0, "other": 0.5}
    with applied(parts, loras, dict(current), live=lambda: current):
        a = unet_out(models)
        current["style"] = -1.0
        b = unet_out(models)
        current["style"] = 1.0
        c = unet_out(models)
    assert not torch.equal(a, b) and torch.equal(a, c)


def test_text_encoder_lora_changes_the_prompt_embedding_at_its_starting_weight(models: DiffusionModels,
                                                                               lora_dir: Path) -> None:
    from app.diffusion.denoiser import encode_text

    parts = model_parts(models)
    lora = read_lora(lora_dir / "style.safetensors", "style", parts)
    bare = encode_text(models.tokenizer, models.text_encoder, ["a cat"])
    with applied(parts, [lora], {"style": 1.0}) as run:
        with_lora = encode_text(models.tokenizer, models.text_encoder, ["a cat"])
        run.set_weights({"style": 0.0})  # the live weight moves the UNet side only
        still = encode_text(models.tokenizer, models.text_encoder, ["a cat"])
    assert not torch.allclose(bare, with_lora) and torch.equal(with_lora, still)


def sample(models: DiffusionModels, params: DiffusionParams) -> tuple[list, LiveState]:
    """Run as the engine does (app.engine.diffusion_runner): LoRAs on, live state advanced at each
    step boundary; returns every step's latent and the live state (with its record)."""
    live = LiveState(params.live(), params.schedule)
    steps: list = []
    with run_loras(models, params.lora_weights, lambda: live.params().lora_weights):
        generate(models, params, live=live.params, on_step=lambda s: steps.append(s.latent),
                 on_boundary=live.advance)
    return steps, live


def test_weight_changed_mid_run_moves_the_image_from_the_next_step_and_replays(
        models: DiffusionModels, lora_dir: Path) -> None:
    models.loras = LoraLibrary(model_parts(models), folder=lora_dir)
    try:
        base = dict(prompt="a cat", seed=3, steps=8, width=32, height=32, sampler="euler", karras=False,
                    lora_weights={"style": 1.0, "other": 0.5})
        steady, _ = sample(models, DiffusionParams(**base))
        params = DiffusionParams(**base)
        live = LiveState(params.live())
        changed: list = []

        def on_step(step) -> None:
            changed.append(step.latent)
            if step.index == 4:  # the page moves the slider after step 4
                live.update(LiveUpdate(lora_weights={"style": 0.25}))

        with run_loras(models, params.lora_weights, lambda: live.params().lora_weights):
            generate(models, params, live=live.params, on_step=on_step, on_boundary=live.advance)
        record = live.schedule()
        assert [e.model_dump(exclude_none=True) for e in record] == [
            {"step": 4, "changes": {"lora_weights": {"style": 0.25, "other": 0.5}}}]
        for i in range(4):
            assert torch.equal(changed[i], steady[i]), f"step {i + 1} ran before the change"
        for i in range(4, 8):
            assert not torch.equal(changed[i], steady[i]), f"step {i + 1} ran after the change"
        replay, _ = sample(models, DiffusionParams(**base, schedule=record))
        assert all(torch.equal(a, b) for a, b in zip(changed, replay)), "the replay is not bit-exact"
        bare, _ = sample(models, DiffusionParams(**{**base, "lora_weights": {}}))
        assert not torch.equal(bare[-1], steady[-1])
    finally:
        models.loras = None


def test_library_refuses_bad_names_paths_and_files(models: DiffusionModels, lora_dir: Path, tmp_path: Path) -> None:
    library = LoraLibrary(model_parts(models), [lora_dir / "style.safetensors"], lora_dir)
    assert [e["name"] for e in library.info()] == ["style"]
    assert library.get("other").name == "other"
    for name in ("../style", "..", ".hidden", "a/b", "a\\b", "", "x" * 101, "/etc/passwd"):
        with pytest.raises(LoraError, match="not a LoRA name"):
            library.get(name)
    with pytest.raises(LoraError, match="no LoRA named 'missing'"):
        library.get("missing")
    (lora_dir / "junk.safetensors").write_bytes(b"not safetensors")
    with pytest.raises(LoraError, match="cannot read"):
        library.get("junk")
    save_file({"lora_unet_no_such_layer.lora_down.weight": torch.zeros(4, 8),
               "lora_unet_no_such_layer.lora_up.weight": torch.zeros(8, 4)}, str(lora_dir / "alien.safetensors"))
    with pytest.raises(LoraError, match="made for another model"):
        library.get("alien")
    save_file({"lora_unet_x.hada_w1_a": torch.zeros(2, 2)}, str(lora_dir / "loha.safetensors"))
    with pytest.raises(LoraError, match="LoHa"):
        library.get("loha")
    name = next(iter(random_lora(models.unet, 0)))
    down, up = random_lora(models.unet, 0)[name]
    write_kohya(lora_dir / "misfit.safetensors", {name: (down[:, :-1], up)}, {})
    with pytest.raises(LoraError, match="do not fit"):
        library.get("misfit")
    with pytest.raises(LoraError, match="safetensors only"):
        LoraLibrary(model_parts(models), [tmp_path / "x.ckpt"])
    with pytest.raises(LoraError, match="--lora-dir"):
        LoraLibrary(model_parts(models), [], tmp_path / "nowhere")
    without_dir = LoraLibrary(model_parts(models), [lora_dir / "style.safetensors"])
    with pytest.raises(LoraError, match="--lora-dir"):
        without_dir.get("other")


def test_prompt_tags() -> None:
    assert lora_tags("a cat <lora:style:0.8> | dog <LORA:other>") == {"style": 0.8, "other": 1.0}
    assert strip_lora_tags("a cat <lora:style:0.8>, big") == "a cat , big"
    assert parse_prompt("a cat <lora:style:-0.5> | dog:-1") == [("a cat", 1.0), ("dog", -1.0)]
    for bad, needle in (("<lora:../x:1>", "not a LoRA name"), ("<lora:x:abc>", "must be a number"),
                        ("<lora:x:11>", "from -10 to 10"), ("<lora:x> <lora:x:2>", "tagged twice"),
                        ("a <lora:x:1:2>", "not a LoRA name")):
        with pytest.raises(ValueError, match=needle):
            parse_prompt(bad)
    with pytest.raises(ValueError, match="no text"):
        parse_prompt("<lora:style:1>")
    params = DiffusionParams(prompt="cat <lora:style:0.5>", lora_weights={"style": 1.0, "other": 2.0})
    assert params.run_loras() == {"style": 0.5, "other": 2.0}
    with pytest.raises(ValueError, match="does not start with"):
        DiffusionParams(prompt="cat", steps=4, schedule=[ScheduleEntry(step=1, changes=LiveUpdate(lora_weights={"x": 1}))])
    for bad in ({"../x": 1.0}, {"x": 11.0}, {"x": float("nan")}, {f"l{i}": 1.0 for i in range(17)}):
        with pytest.raises(ValueError):
            DiffusionParams(prompt="cat", lora_weights=bad)


def test_a_diffusers_sdxl_lora_adapts_both_text_encoders(tmp_path: Path) -> None:
    """SDXL: the second text encoder lives in the family's conditioner; `text_encoder_2.` keys reach it."""
    from app.demo_models import build_tiny_sdxl

    sdxl = load_diffusion_models(str(build_tiny_sdxl(tmp_path / "sdxl", seed=0)), torch.device("cpu"), torch.float32,
                                 cache_dir=tmp_path / "cache")
    parts = model_parts(sdxl)
    assert set(parts) == {"unet", "text_encoder", "text_encoder_2"}
    state = {}
    for prefix, model, seed in (("unet.", sdxl.unet, 1), ("text_encoder_2.", parts["text_encoder_2"], 2)):
        for name, (down, up) in random_lora(model, seed, convs=False).items():
            state[f"{prefix}{name}.lora_A.weight"], state[f"{prefix}{name}.lora_B.weight"] = down, up
    save_file(state, str(tmp_path / "xl.safetensors"))
    lora = read_lora(tmp_path / "xl.safetensors", "xl", parts)
    assert set(lora.layers) == {"unet", "text_encoder_2"}
    bare, pooled = sdxl.conditioner.encode(["a cat"])
    with applied(parts, [lora], {"xl": 1.0}):
        states, pooled_lora = sdxl.conditioner.encode(["a cat"])
    assert not torch.allclose(pooled, pooled_lora) and not torch.allclose(bare, states)
