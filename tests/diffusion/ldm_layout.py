"""Test-only: a diffusers pipeline's weights written back into the original single-file key
layout (CompVis `ldm` for SD 1.x / 2.x, Stability `sgm` for SDXL), so the tests can make the
files AUTOMATIC1111 and ComfyUI users have, at a tiny size, and load them through
app.diffusion.single_file. The mapping is the inverse of the one the loader must undo."""

from __future__ import annotations

import re
from typing import Any

import torch
from torch import Tensor

RESNET = {"norm1": "in_layers.0", "conv1": "in_layers.2", "norm2": "out_layers.0", "conv2": "out_layers.3",
          "time_emb_proj": "emb_layers.1", "conv_shortcut": "skip_connection"}
UNET_TOP = {"time_embedding.linear_1": "time_embed.0", "time_embedding.linear_2": "time_embed.2",
            "add_embedding.linear_1": "label_emb.0.0", "add_embedding.linear_2": "label_emb.0.2",
            "conv_in": "input_blocks.0.0", "conv_norm_out": "out.0", "conv_out": "out.2"}


def _resnet(rest: str) -> str:
    head, _, tail = rest.partition(".")
    return f"{RESNET[head]}.{tail}"


def unet_to_ldm(state: dict[str, Tensor], config: Any) -> dict[str, Tensor]:
    """UNet2DConditionModel keys -> `model.diffusion_model.*` (input_blocks / middle_block / output_blocks)."""
    n = int(config.layers_per_block)
    up_has_attn = ["CrossAttn" in t for t in config.up_block_types]
    out = {}
    for key, value in state.items():
        name = None
        for src, dst in UNET_TOP.items():
            if key.startswith(src + "."):
                name = dst + key[len(src):]
        if m := re.match(r"down_blocks\.(\d+)\.(resnets|attentions)\.(\d+)\.(.*)", key):
            b, kind, j, rest = int(m[1]), m[2], int(m[3]), m[4]
            idx = b * (n + 1) + j + 1
            name = f"input_blocks.{idx}.0.{_resnet(rest)}" if kind == "resnets" else f"input_blocks.{idx}.1.{rest}"
        elif m := re.match(r"down_blocks\.(\d+)\.downsamplers\.0\.conv\.(.*)", key):
            name = f"input_blocks.{(int(m[1]) + 1) * (n + 1)}.0.op.{m[2]}"
        elif m := re.match(r"mid_block\.resnets\.(\d+)\.(.*)", key):
            name = f"middle_block.{2 * int(m[1])}.{_resnet(m[2])}"
        elif m := re.match(r"mid_block\.attentions\.0\.(.*)", key):
            name = f"middle_block.1.{m[1]}"
        elif m := re.match(r"up_blocks\.(\d+)\.(resnets|attentions)\.(\d+)\.(.*)", key):
            b, kind, j, rest = int(m[1]), m[2], int(m[3]), m[4]
            idx = b * (n + 1) + j
            name = f"output_blocks.{idx}.0.{_resnet(rest)}" if kind == "resnets" else f"output_blocks.{idx}.1.{rest}"
        elif m := re.match(r"up_blocks\.(\d+)\.upsamplers\.0\.conv\.(.*)", key):
            b = int(m[1])
            name = f"output_blocks.{b * (n + 1) + n}.{2 if up_has_attn[b] else 1}.conv.{m[2]}"
        assert name is not None, f"no original name for UNet key {key}"
        out["model.diffusion_model." + name] = value
    return out


VAE_ATTN = {"group_norm": "norm", "to_q": "q", "to_k": "k", "to_v": "v", "to_out.0": "proj_out"}


def vae_to_ldm(state: dict[str, Tensor], config: Any) -> dict[str, Tensor]:
    """AutoencoderKL keys -> `first_stage_model.*` (encoder.down / decoder.up reversed, 1x1 conv attention)."""
    n_up = len(config.up_block_types)
    out = {}
    for key, value in state.items():
        name = key.replace("conv_norm_out", "norm_out").replace("conv_shortcut", "nin_shortcut")
        name = re.sub(r"encoder\.down_blocks\.(\d+)\.resnets\.", r"encoder.down.\1.block.", name)
        name = re.sub(r"encoder\.down_blocks\.(\d+)\.downsamplers\.0\.", r"encoder.down.\1.downsample.", name)
        name = re.sub(r"decoder\.up_blocks\.(\d+)\.resnets\.",
                      lambda m: f"decoder.up.{n_up - 1 - int(m[1])}.block.", name)
        name = re.sub(r"decoder\.up_blocks\.(\d+)\.upsamplers\.0\.",
                      lambda m: f"decoder.up.{n_up - 1 - int(m[1])}.upsample.", name)
        name = re.sub(r"mid_block\.resnets\.(\d+)\.", lambda m: f"mid.block_{int(m[1]) + 1}.", name)
        if m := re.match(r"(encoder|decoder)\.mid_block\.attentions\.0\.(.*)\.(weight|bias)$", key):
            name = f"{m[1]}.mid.attn_1.{VAE_ATTN[m[2]]}.{m[3]}"
            if m[3] == "weight" and value.ndim == 2:
                value = value[:, :, None, None]
        out["first_stage_model." + name] = value
    return out


def clip_to_ldm(state: dict[str, Tensor], prefix: str) -> dict[str, Tensor]:
    """transformers CLIPTextModel keys under `prefix` as original checkpoints store them (text_model.*)."""
    return {prefix + (k if k.startswith("text_model.") else "text_model." + k): v for k, v in state.items()}


def open_clip_to_ldm(state: dict[str, Tensor], prefix: str) -> dict[str, Tensor]:
    """transformers CLIPTextModel(WithProjection) keys -> an OpenCLIP text tower under `prefix`
    (q, k, v fused into in_proj; the projection stored as x @ P, i.e. transposed)."""
    state = {k.removeprefix("text_model."): v for k, v in state.items()}
    out = {prefix + "token_embedding.weight": state.pop("embeddings.token_embedding.weight"),
           prefix + "positional_embedding": state.pop("embeddings.position_embedding.weight"),
           prefix + "ln_final.weight": state.pop("final_layer_norm.weight"),
           prefix + "ln_final.bias": state.pop("final_layer_norm.bias")}
    if "text_projection.weight" in state:  # SDXL's bigG projects; SD 2.x's ViT-H tower is used unprojected
        out[prefix + "text_projection"] = state.pop("text_projection.weight").T.contiguous()
    layers = sorted({int(m[1]) for k in state if (m := re.match(r"encoder\.layers\.(\d+)\.", k))})
    names = {"self_attn.out_proj": "attn.out_proj", "layer_norm1": "ln_1", "layer_norm2": "ln_2",
             "mlp.fc1": "mlp.c_fc", "mlp.fc2": "mlp.c_proj"}
    for i in layers:
        src, dst = f"encoder.layers.{i}.", f"{prefix}transformer.resblocks.{i}."
        for p in ("weight", "bias"):
            out[f"{dst}attn.in_proj_{p}"] = torch.cat([state.pop(f"{src}self_attn.{q}_proj.{p}") for q in "qkv"])
            for a, b in names.items():
                out[f"{dst}{b}.{p}"] = state.pop(f"{src}{a}.{p}")
    state.pop("embeddings.position_ids", None)
    assert not state, f"unmapped text-encoder keys: {sorted(state)[:5]}"
    return out


def sd_single_file(pipe: Any) -> dict[str, Tensor]:
    """An SD 1.x StableDiffusionPipeline as one original-layout state dict."""
    return {**unet_to_ldm(pipe.unet.state_dict(), pipe.unet.config),
            **vae_to_ldm(pipe.vae.state_dict(), pipe.vae.config),
            **clip_to_ldm(pipe.text_encoder.state_dict(), "cond_stage_model.transformer.")}


def sd2_single_file(pipe: Any) -> dict[str, Tensor]:
    """An SD 2.x StableDiffusionPipeline (OpenCLIP text tower) as one original-layout state dict."""
    return {**unet_to_ldm(pipe.unet.state_dict(), pipe.unet.config),
            **vae_to_ldm(pipe.vae.state_dict(), pipe.vae.config),
            **open_clip_to_ldm(pipe.text_encoder.state_dict(), "cond_stage_model.model.")}


def sdxl_single_file(pipe: Any) -> dict[str, Tensor]:
    """A StableDiffusionXLPipeline as one `sgm`-layout state dict (conditioner.embedders.0 / 1)."""
    return {**unet_to_ldm(pipe.unet.state_dict(), pipe.unet.config),
            **vae_to_ldm(pipe.vae.state_dict(), pipe.vae.config),
            **clip_to_ldm(pipe.text_encoder.state_dict(), "conditioner.embedders.0.transformer."),
            **open_clip_to_ldm(pipe.text_encoder_2.state_dict(), "conditioner.embedders.1.model.")}
