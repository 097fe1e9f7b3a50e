"""POST /api/png-settings: the settings a PNG carries (Noisescope's or AUTOMATIC1111's), read
from its text chunks without decoding its pixels, for the page to restore."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, File, HTTPException, UploadFile

from app.api.deps import SettingsDep, require_token
from app.store.pngread import PngTextError, text_chunks
from app.store.readback import NoSettings, settings_from_chunks

router = APIRouter(prefix="/api", dependencies=[Depends(require_token)])


@router.post("/png-settings")
async def png_settings(settings: SettingsDep, file: Annotated[UploadFile, File()]) -> dict[str, Any]:
    """{"source", "engine", "params", "seed", "schedule", "lineage", "notes"}; 400 for a file that is
    not a PNG or carries no settings, 413 beyond the upload cap."""
    data = await file.read(settings.max_init_image_bytes + 1)
    if len(data) > settings.max_init_image_bytes:
        raise HTTPException(413, f"files are limited to {settings.max_init_image_bytes // (1024 * 1024)} MB")
    try:
        return settings_from_chunks(text_chunks(data), settings.max_steps)
    except (PngTextError, NoSettings) as exc:
        raise HTTPException(400, str(exc)) from None
