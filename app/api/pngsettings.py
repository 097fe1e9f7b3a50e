"""POST /api/png-settings: the settings a PNG carries (Noisescope's or AUTOMATIC1111's), read
from its text chunks without decoding its pixels, for the page to restore."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Request

from app.api.deps import SettingsDep, require_token
from app.api.errors import errors
from app.api.routes import UPLOAD_BODY
from app.api.uploads import receive_file_bytes
from app.store.pngread import PngTextError, text_chunks
from app.store.readback import NoSettings, settings_from_chunks
from app.store.uploads import UploadError

router = APIRouter(prefix="/api", dependencies=[Depends(require_token)], responses=errors(400, 401))


@router.post("/png-settings", responses=errors(403, 413, 415), openapi_extra=UPLOAD_BODY)
async def png_settings(request: Request, settings: SettingsDep) -> dict[str, Any]:
    """{"source", "engine", "params", "seed", "schedule", "lineage", "notes"}; 400 for a file that is
    not a PNG or carries no settings, 413 beyond the upload cap (enforced while the body arrives)."""
    try:
        data = await receive_file_bytes(request, settings.max_init_image_bytes)
    except UploadError as exc:
        raise HTTPException(exc.status, exc.message) from None
    try:
        return settings_from_chunks(text_chunks(data), settings.max_steps)
    except (PngTextError, NoSettings) as exc:
        raise HTTPException(400, str(exc)) from None
