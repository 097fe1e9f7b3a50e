"""The wire format: the one place it lives (documented in docs/protocol.md).

Client -> server: JSON text frames, one of the `ClientMessage` models below.
Server -> client: JSON text frames for events, binary frames for images:

    offset 0   uint8   magic 0x4E ('N')
    offset 1   uint8   frame type (1 = preview, 2 = final image, 3 = timeline preview on request)
    offset 2   uint16  header length H (big-endian), bytes of UTF-8 JSON metadata
    offset 4   H bytes JSON: {"run_id", "step", "width", "height", "format", "engine", ...}
    offset 4+H         the encoded image (JPEG, WebP or PNG bytes)
"""

from __future__ import annotations

import json
import struct
from enum import IntEnum
from typing import Annotated, Any, Literal

from pydantic import Field, TypeAdapter

from app.params import DiffusionParams, GanParams, LiveUpdate, StrictModel, UpscaleParams

MAGIC = 0x4E
HEADER = struct.Struct(">BBH")
MAX_META_BYTES = 0xFFFF
MAX_REF_CHARS = 64  # a client's own label for a message, echoed in the `queued` or `error` answering it


class FrameType(IntEnum):
    PREVIEW = 1
    FINAL = 2
    TIMELINE = 3


def encode_frame(frame_type: FrameType, meta: dict[str, Any], image: bytes) -> bytes:
    """Pack one binary image frame."""
    raw = json.dumps(meta, separators=(",", ":")).encode()
    if len(raw) > MAX_META_BYTES:
        raise ValueError("frame metadata too large")
    return HEADER.pack(MAGIC, int(frame_type), len(raw)) + raw + image


def decode_frame(data: bytes) -> tuple[FrameType, dict[str, Any], bytes]:
    """Unpack one binary image frame; raises ValueError on anything malformed."""
    if len(data) < HEADER.size:
        raise ValueError("frame shorter than its header")
    magic, ftype, hlen = HEADER.unpack_from(data)
    if magic != MAGIC:
        raise ValueError("bad frame magic")
    end = HEADER.size + hlen
    if len(data) < end:
        raise ValueError("frame shorter than its metadata")
    return FrameType(ftype), json.loads(data[HEADER.size:end]), data[end:]


# ---- client -> server -------------------------------------------------------------------------

Ref = Annotated[str | None, Field(max_length=MAX_REF_CHARS)]


class GenerateDiffusion(StrictModel):
    type: Literal["generate"]
    engine: Literal["diffusion"] = "diffusion"
    params: DiffusionParams
    ref: Ref = None


class GenerateGan(StrictModel):
    type: Literal["generate_gan"]
    params: GanParams
    ref: Ref = None


class Upscale(StrictModel):
    """Upscale a gallery image or an upload x4: the GAN upscaler, the diffusion upscaler, or both."""

    type: Literal["upscale"]
    params: UpscaleParams
    ref: Ref = None


class Update(StrictModel):
    type: Literal["update"]
    run_id: str = Field(..., max_length=64)
    params: LiveUpdate


class Rewind(StrictModel):
    type: Literal["rewind"]
    run_id: str = Field(..., max_length=64)
    step: int = Field(..., ge=0, le=10000)
    params: LiveUpdate | None = None  # applied to the fork only
    ref: Ref = None


class Cancel(StrictModel):
    type: Literal["cancel"]
    run_id: str = Field(..., max_length=64)


class PreviewRequest(StrictModel):
    type: Literal["preview"]
    run_id: str = Field(..., max_length=64)
    step: int = Field(..., ge=0, le=10000)


class Hello(StrictModel):
    """The page's secret, as the first message: runs this connection starts belong to whoever
    presents the same secret (the page and its reconnects). Never logged; kept only as a hash."""

    type: Literal["hello"]
    owner: str = Field(..., min_length=16, max_length=128, pattern=r"^[A-Za-z0-9_-]+$")


ClientMessage = Annotated[
    Hello | GenerateDiffusion | GenerateGan | Upscale | Update | Rewind | Cancel | PreviewRequest,
    Field(discriminator="type")
]
client_message = TypeAdapter(ClientMessage)


# ---- server -> client events (JSON) -----------------------------------------------------------

def event(kind: str, **fields: Any) -> str:
    """One JSON event: queued, started, step, done, error, cancelled, rewound, models_changed."""
    return json.dumps({"type": kind, **fields}, separators=(",", ":"))


def error_event(code: str, message: str, run_id: str | None = None, ref: str | None = None) -> str:
    extra = {"ref": ref} if ref is not None else {}
    return event("error", code=code, message=message, run_id=run_id, **extra)
