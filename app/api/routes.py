"""HTTP routes: the page, model info, init-image uploads, the gallery and the evaluation's truncation plot."""

from __future__ import annotations

import io
import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Depends, File, HTTPException, Query, Request, UploadFile
from fastapi.responses import FileResponse, HTMLResponse
from PIL import Image, UnidentifiedImageError

from app.api.deps import SettingsDep, StudioDep, remember_token, require_token, supplied_token, token_ok
from app.api.messages import size_text
from app.engine.limits import pixels_text
from app.measured import PLOT_URL, truncation_plot_path
from app.params import DiffusionParams, GanParams, LiveParams
from app.settings import REPO_ROOT

FRONTEND = REPO_ROOT / "frontend"
router = APIRouter()
api = APIRouter(prefix="/api", dependencies=[Depends(require_token)])
MAX_GALLERY_OFFSET = 2**31 - 1  # SQLite takes 64-bit integers; past this there are no images anyway


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
        "samplers": ["ddpm", "ddim", "euler", "euler_a", "dpmpp_2m"],
        "defaults": {"diffusion": DiffusionParams.model_construct(prompt="").model_dump(exclude={"prompt"}),
                     "live": LiveParams().model_dump(), "gan": GanParams().model_dump()},
        "limits": {"max_pixels": settings.max_pixels, "max_batch": settings.max_batch,
                   "max_steps": settings.max_steps, "max_cutouts": settings.max_cutouts,
                   "max_prompt_chars": settings.max_prompt_chars, "queue_size": settings.queue_size,
                   "max_init_image_bytes": settings.max_init_image_bytes},
    }


@api.post("/uploads")
async def upload(studio: StudioDep, settings: SettingsDep, file: Annotated[UploadFile, File()]) -> dict[str, str]:
    """An init image: checked in bytes and pixels before decoding, stored as PNG under a fresh id."""
    data = await file.read(settings.max_init_image_bytes + 1)
    if len(data) > settings.max_init_image_bytes:
        raise HTTPException(413, f"images are limited to {size_text(settings.max_init_image_bytes)}")
    try:
        with Image.open(io.BytesIO(data)) as probe:
            if probe.width * probe.height > settings.max_pixels * 4:
                raise HTTPException(413, f"images are limited to {pixels_text(settings.max_pixels * 4)}")
            image = probe.convert("RGB")
    except (UnidentifiedImageError, OSError, Image.DecompressionBombError):
        raise HTTPException(400, "that file is not an image Pillow can read") from None
    upload_id = uuid.uuid4().hex
    tmp = studio.upload_dir / f".{upload_id}.tmp"
    image.save(tmp, "PNG")
    tmp.replace(studio.upload_dir / f"{upload_id}.png")
    return {"id": upload_id}


@api.get("/gallery")
def gallery(studio: StudioDep, limit: Annotated[int, Query(ge=1, le=500)] = 100,
            offset: Annotated[int, Query(ge=0, le=MAX_GALLERY_OFFSET)] = 0) -> list[dict[str, Any]]:
    return [{**rec.to_dict(), "url": f"/api/gallery/{rec.id}.png"}
            for rec in studio.gallery.list(limit=limit, offset=offset)]


@api.get("/gallery/{image_id}.png")
def gallery_image(studio: StudioDep, image_id: str) -> FileResponse:
    try:
        path = studio.gallery.path_for(image_id)
    except (KeyError, ValueError):
        raise HTTPException(404, "no such image") from None
    if not path.is_file():
        raise HTTPException(404, "no such image")
    return FileResponse(path, media_type="image/png")


@api.get(PLOT_URL.removeprefix("/api"))
def truncation_plot(studio: StudioDep, settings: SettingsDep) -> FileResponse:
    """The GAN truncation sweep's plot: only the one PNG the evaluation file names, from that file's folder,
    and only when /api/info offers it (the loaded GAN is the one it was measured on)."""
    path = truncation_plot_path(settings.evaluation) if studio.measured.get("truncation_plot") else None
    if path is None:
        raise HTTPException(404, "no truncation plot for the loaded weights")
    return FileResponse(path, media_type="image/png")
