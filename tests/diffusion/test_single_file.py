"""Single-file checkpoints in the original layout, offline: tiny SD 1.x and SDXL files written by
the test in the CompVis / Stability key layout load with no network and equal their source; the
shipped full-size configs are picked by key set and describe the real architectures."""

from __future__ import annotations

import json
import shutil
import socket
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from app.diffusion import single_file
from app.diffusion.families import ModelNotFound
from app.diffusion.generate import DiffusionModels, generate, load_diffusion_models, models_from_pipeline
from app.diffusion.single_file import Checkpoint, family_config, inspect_checkpoint, load_tensors_only
from app.params import DiffusionParams
from tests.diffusion.ldm_layout import sd2_single_file, sd_single_file, sdxl_single_file

CPU = torch.device("cpu")


@pytest.fixture
def offline(monkeypatch: pytest.MonkeyPatch) -> None:
    """HF_HUB_OFFLINE=1 and no sockets at all: any attempt to reach a hub fails loudly."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")

    def refuse(*args, **kwargs):
        raise AssertionError("a network connection was attempted")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


def config_only(folder: Path, dest: Path) -> Path:
    """The pipeline folder's JSON and tokenizer files, no weights: what the loader may read besides the file."""
    shutil.copytree(folder, dest, ignore=shutil.ignore_patterns("*.safetensors", "*.bin"))
    assert not list(dest.rglob("*.safetensors"))
    return dest


def latent(models: DiffusionModels) -> torch.Tensor:
    p = DiffusionParams(prompt="a red fox", negative_prompt="blurry", seed=3, steps=3, width=32, height=32,
                        sampler="euler", karras=False, cfg_scale=4.0)
    lv = p.live()
    return generate(models, p, live=lambda: lv, on_step=lambda s: None)


@pytest.mark.parametrize("kind", ["sd1", "sdxl"])
def test_tiny_single_file_loads_offline_and_equals_its_source(kind: str, tmp_path: Path, offline: None) -> None:
    from diffusers import StableDiffusionPipeline, StableDiffusionXLPipeline

    from app.demo_models import build_tiny_diffusion, build_tiny_sdxl

    build, cls, to_file = {"sd1": (build_tiny_diffusion, StableDiffusionPipeline, sd_single_file),
                           "sdxl": (build_tiny_sdxl, StableDiffusionXLPipeline, sdxl_single_file)}[kind]
    source = cls.from_pretrained(build(tmp_path / "source", seed=2))
    ckpt = tmp_path / f"tiny-{kind}.safetensors"
    save_file(to_file(source), ckpt)
    assert inspect_checkpoint(ckpt) == Checkpoint(kind, "epsilon", 4)

    loaded = single_file.load_single_file(ckpt, torch.float32, tmp_path / "work",
                                          config=config_only(tmp_path / "source", tmp_path / "config"))
    assert type(loaded) is cls
    for name in ("unet", "vae", "text_encoder", "text_encoder_2"):
        if getattr(source, name, None) is None:
            continue
        want, got = getattr(source, name).state_dict(), getattr(loaded, name).state_dict()
        assert want.keys() == got.keys(), name
        assert all(torch.equal(want[k], got[k]) for k in want), f"{name} weights differ"
    ours = models_from_pipeline(loaded, ckpt.name, CPU, torch.float32, cache_dir=tmp_path / "cache")
    theirs = models_from_pipeline(source, "source", CPU, torch.float32, cache_dir=tmp_path / "cache")
    assert torch.equal(latent(ours), latent(theirs)), "the loaded model samples differently from its source"


@pytest.mark.parametrize("prediction", ["v_prediction", "epsilon"])
def test_tiny_sd2_single_file_takes_its_prediction_type_from_the_file(prediction: str, tmp_path: Path,
                                                                      offline: None) -> None:
    """SD 2.x's OpenCLIP text tower and linear projections; v or epsilon as the A1111-style yaml
    beside the file says, whatever the config folder said."""
    from diffusers import StableDiffusionPipeline, UNet2DConditionModel

    from app.demo_models import build_tiny_diffusion

    source = StableDiffusionPipeline.from_pretrained(build_tiny_diffusion(tmp_path / "base", seed=2,
                                                                          prediction_type=prediction))
    torch.manual_seed(3)
    source.unet = UNet2DConditionModel.from_config({**source.unet.config, "use_linear_projection": True})
    source.save_pretrained(tmp_path / "source")
    ckpt = tmp_path / "tiny-sd2.safetensors"
    save_file(sd2_single_file(source), ckpt)
    ckpt.with_suffix(".yaml").write_text(
        f'model:\n  params:\n    parameterization: "{"v" if prediction == "v_prediction" else "eps"}"\n')
    assert inspect_checkpoint(ckpt) == Checkpoint("sd2", prediction, 4)
    config = config_only(tmp_path / "source", tmp_path / "config")
    other = "epsilon" if prediction == "v_prediction" else "v_prediction"
    scheduler_file = config / "scheduler" / "scheduler_config.json"
    scheduler_file.write_text(json.dumps({**json.loads(scheduler_file.read_text()), "prediction_type": other}))

    loaded = single_file.load_single_file(ckpt, torch.float32, tmp_path / "work", config=config)
    assert loaded.scheduler.config.prediction_type == prediction
    for name in ("unet", "vae", "text_encoder"):
        want, got = getattr(source, name).state_dict(), getattr(loaded, name).state_dict()
        assert want.keys() == got.keys() and all(torch.equal(want[k], got[k]) for k in want), name
    ours = models_from_pipeline(loaded, ckpt.name, CPU, torch.float32, cache_dir=tmp_path / "cache")
    assert ours.prediction_type == prediction
    theirs = models_from_pipeline(source, "source", CPU, torch.float32, cache_dir=tmp_path / "cache")
    assert torch.equal(latent(ours), latent(theirs))


def test_ckpt_is_read_tensors_only(tmp_path: Path, offline: None) -> None:
    from diffusers import StableDiffusionPipeline

    from app.demo_models import build_tiny_diffusion

    source = StableDiffusionPipeline.from_pretrained(build_tiny_diffusion(tmp_path / "source", seed=2))
    ckpt = tmp_path / "tiny.ckpt"
    torch.save({"state_dict": sd_single_file(source), "global_step": 470000}, ckpt)
    assert inspect_checkpoint(ckpt) == Checkpoint("sd1", "epsilon", 4)
    loaded = single_file.load_single_file(ckpt, torch.float32, tmp_path / "work",
                                          config=config_only(tmp_path / "source", tmp_path / "config"))
    assert torch.equal(loaded.unet.conv_in.weight, source.unet.conv_in.weight)


class Payload:
    """What a hostile pickle does: run a call while unpickling."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_a_ckpt_that_runs_code_is_refused_not_executed(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    ckpt = tmp_path / "evil.ckpt"
    torch.save({"state_dict": {"model.diffusion_model.x": torch.zeros(1)}, "hook": Payload(marker)}, ckpt)
    with pytest.raises(ValueError, match="refused, not executed"):
        load_tensors_only(ckpt)
    with pytest.raises(ValueError, match="evil.ckpt"):
        load_diffusion_models(str(ckpt), CPU, torch.float32, cache_dir=tmp_path / "cache")
    assert not marker.exists()


SD1_KEYS = {"cond_stage_model.transformer.text_model.embeddings.token_embedding.weight",
            "model.diffusion_model.input_blocks.0.0.weight", "first_stage_model.decoder.conv_in.weight"}
SD2_KEYS = {"cond_stage_model.model.token_embedding.weight", "cond_stage_model.model.transformer.resblocks.0.ln_1.weight",
            "model.diffusion_model.input_blocks.0.0.weight"}
SDXL_KEYS = {"conditioner.embedders.0.transformer.text_model.embeddings.token_embedding.weight",
             "conditioner.embedders.1.model.positional_embedding", "model.diffusion_model.label_emb.0.0.weight"}


@pytest.mark.parametrize("keys,config", [(SD1_KEYS, "sd1"), (SD2_KEYS, "sd2"), (SDXL_KEYS, "sdxl")])
def test_family_from_keys(keys: set[str], config: str) -> None:
    assert family_config(keys) == config


@pytest.mark.parametrize("keys,message", [
    ({"conditioner.embedders.0.model.positional_embedding", "model.diffusion_model.out.2.weight"}, "refiner"),
    ({"model.diffusion_model.joint_blocks.0.x_block.attn.qkv.weight"}, "SD3 / FLUX"),
    ({"double_blocks.0.img_attn.qkv.weight"}, "SD3 / FLUX"),
    ({"model.diffusion_model.input_blocks.0.0.weight"}, "without its text encoders"),
    ({"encoder.layers.0.weight"}, "not a Stable Diffusion checkpoint"),
])
def test_other_files_are_named(keys: set[str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        family_config(keys)


def _probe(std: float):
    return lambda key: torch.tensor([-1.0, 1.0]) * std


def test_prediction_type(tmp_path: Path) -> None:
    f = tmp_path / "m.safetensors"
    pred = single_file.prediction_type
    assert pred("sd1", SD1_KEYS, f, _probe(0)) == "epsilon"
    assert pred("sdxl", SDXL_KEYS | {"v_pred"}, f, _probe(0)) == "v_prediction"
    assert pred("sd2", SD2_KEYS, f, _probe(0)) == "v_prediction"  # no probe weight: the common 768-v
    probe = SD2_KEYS | {single_file.SD2_V_PROBE}
    assert pred("sd2", probe, f, _probe(0.2)) == "v_prediction"
    assert pred("sd2", probe, f, _probe(0.05)) == "epsilon"
    f.with_suffix(".yaml").write_text('model:\n  params:\n    parameterization: "v"\n')
    assert pred("sd1", SD1_KEYS, f, _probe(0)) == "v_prediction"
    f.with_suffix(".yaml").write_text("model:\n  params:\n    parameterization: eps\n")
    assert pred("sd2", probe, f, _probe(0.2)) == "epsilon"


# Published parameter counts of the full-size models (diffusers / transformers): the shipped
# configs must describe exactly those architectures.
FULL_SIZE = {
    "sd1": {"unet": 859_520_964, "vae": 83_653_863, "text_encoder": 123_060_480},
    "sd2": {"unet": 865_910_724, "vae": 83_653_863, "text_encoder": 340_387_840},
    "sdxl": {"unet": 2_567_463_684, "vae": 83_653_863, "text_encoder": 123_060_480, "text_encoder_2": 694_659_840},
}


@pytest.mark.parametrize("config", sorted(FULL_SIZE))
def test_shipped_configs_are_the_real_architectures(config: str, tmp_path: Path, offline: None) -> None:
    """The real-size path short of weights: the folder from_single_file gets for a full-size file
    of each family, its models built on the meta device (no memory) and counted, its tokenizers
    loaded with no hub and giving CLIP's own ids."""
    from diffusers import AutoencoderKL, DiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer

    prediction = "v_prediction" if config == "sd2" else "epsilon"
    folder = single_file.write_config_folder(Checkpoint(config, prediction, 4), tmp_path / config)
    index = json.loads((folder / "model_index.json").read_text())
    assert index["_class_name"] == single_file.PIPELINES[config]
    assert DiffusionPipeline.load_config(folder)["_class_name"] == index["_class_name"]
    count = {}
    with torch.device("meta"):
        count["unet"] = UNet2DConditionModel.from_config(UNet2DConditionModel.load_config(folder / "unet"))
        count["vae"] = AutoencoderKL.from_config(AutoencoderKL.load_config(folder / "vae"))
        for te in sorted(folder.glob("text_encoder*")):
            cfg = CLIPTextConfig.from_pretrained(te)
            count[te.name] = (CLIPTextModelWithProjection if "text_encoder_2" == te.name else CLIPTextModel)(cfg)
    assert {k: sum(p.numel() for p in m.parameters()) for k, m in count.items()} == FULL_SIZE[config]
    scheduler = json.loads((folder / "scheduler" / "scheduler_config.json").read_text())
    assert scheduler["prediction_type"] == prediction
    for tok_dir in sorted(folder.glob("tokenizer*")):
        tok = CLIPTokenizer.from_pretrained(tok_dir, local_files_only=True)
        ids = tok("a photograph of an astronaut riding a horse").input_ids
        assert ids == [49406, 320, 8853, 539, 550, 18376, 6765, 320, 4558, 49407]
        assert len(tok) == 49408 and tok.model_max_length == 77
    pads = {d.name: CLIPTokenizer.from_pretrained(d).pad_token for d in sorted(folder.glob("tokenizer*"))}
    assert pads == {"sd1": {"tokenizer": "<|endoftext|>"}, "sd2": {"tokenizer": "!"},
                    "sdxl": {"tokenizer": "<|endoftext|>", "tokenizer_2": "!"}}[config]


def test_sd2_inpainting_and_base_adjust_the_config(tmp_path: Path) -> None:
    folder = single_file.write_config_folder(Checkpoint("sd2", "epsilon", 9), tmp_path / "sd2")
    unet = json.loads((folder / "unet" / "config.json").read_text())
    assert unet["in_channels"] == 9 and unet["sample_size"] == 64  # 512 px base / inpainting


def test_missing_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(ModelNotFound, match="nothing.safetensors"):
        load_diffusion_models(str(tmp_path / "nothing.safetensors"), CPU, torch.float32, cache_dir=tmp_path)
