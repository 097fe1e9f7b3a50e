"""HTTP routes: the page, model info, init-image uploads and the evaluation's truncation plot; the gallery
routes (app.api.gallery) join the same `/api` router."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import FileResponse, HTMLResponse
from pydantic import BaseModel

from app.api import gallery as gallery_routes
from app.api.deps import (
    SettingsDep,
    StudioDep,
    UploadsDep,
    remember_token,
    require_token,
    supplied_token,
    token_ok,
)
from app.api.errors import errors
from app.api.uploads import receive_upload
from app.measured import PLOT_URL, truncation_plot_path
from app.params import DiffusionParams, GanParams, LiveParams
from app.settings import REPO_ROOT
from app.store.uploads import UploadError

FRONTEND = REPO_ROOT / "frontend"
router = APIRouter()
# Every /api route: 400 from the Host guard, 401 from the token check.
api = APIRouter(prefix="/api", dependencies=[Depends(require_token)], responses=errors(400, 401))


@router.get("/", response_class=HTMLResponse, include_in_schema=False)
def index(request: Request, settings: SettingsDep) -> HTMLResponse:
    token = supplied_token(dict(request.query_params), dict(request.headers), request.cookies)
    if not token_ok(settings, token):
        return HTMLResponse("<h1>Noisescope</h1><p>Open the URL with the token the server printed.</p>", 401)
    response = HTMLResponse((FRONTEND / "index.html").read_text(encoding="utf-8"))
    remember_token(response, request, settings)
    return response


@api.get("/info")
def info(studio: StudioDep, settings: SettingsDep) -> dict[str, Any]:
    gan = studio.models.gan
    return {
        **studio.models.info(),
        "gan": None if gan is None else gan.info(),
        "measured": studio.measured,
        "sizes": studio.sizes.info(),
        "samplers": ["ddpm", "ddim", "euler", "euler_a", "dpmpp_2m"],
        "defaults": {"diffusion": DiffusionParams.model_construct(prompt="").model_dump(exclude={"prompt"}),
                     "live": LiveParams().model_dump(), "gan": GanParams().model_dump()},
        "limits": {"max_pixels": settings.max_pixels, "max_batch": settings.max_batch,
                   "max_steps": settings.max_steps, "max_cutouts": settings.max_cutouts,
                   "max_prompt_chars": settings.max_prompt_chars, "queue_size": settings.queue_size,
                   "max_init_image_bytes": settings.max_init_image_bytes,
                   "upload_quota_bytes": settings.upload_quota_bytes,
                   "upload_max_age_hours": settings.upload_max_age_hours,
                   "max_walk_frames": settings.max_walk_frames},
    }


class UploadId(BaseModel):
    id: str


UPLOAD_BODY = {"requestBody": {"required": True, "content": {"multipart/form-data": {"schema": {
    "type": "object", "required": ["file"], "properties": {"file": {"type": "string", "format": "binary"}}}}}}}


@api.post("/uploads", responses=errors(403, 413, 415), openapi_extra=UPLOAD_BODY)
async def upload(request: Request, uploads: UploadsDep) -> UploadId:
    """An init image (multipart/form-data, field `file`): the size cap is enforced while it arrives, it is
    decoded and re-encoded as PNG in a worker thread, counted against the quota and kept until it expires."""
    try:
        return UploadId(id=await receive_upload(request, uploads))
    except UploadError as exc:
        raise HTTPException(exc.status, exc.message) from None


@api.get(PLOT_URL.removeprefix("/api"), responses=errors(404))
def truncation_plot(studio: StudioDep, settings: SettingsDep) -> FileResponse:
    """The GAN truncation sweep's plot: only the one PNG the evaluation file names, from that file's folder,
    and only when /api/info offers it (the loaded GAN is the one it was measured on)."""
    path = truncation_plot_path(settings.evaluation) if studio.measured.get("truncation_plot") else None
    if path is None:
        raise HTTPException(404, "no truncation plot for the loaded weights")
    return FileResponse(path, media_type="image/png")


api.include_router(gallery_routes.router)  # /api/gallery: list, PNG, delete
