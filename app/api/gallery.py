"""The gallery over HTTP: a page of finished images (with the total, and an optional prompt search),
one image's PNG as stored, and deleting an image. Included in app.api.routes' `/api` router, so the
Host guard, the cross-site rule for DELETE and the token apply as to every other /api route."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse

from app.api.deps import StudioDep
from app.api.errors import errors
from app.store.gallery import valid_id
from app.store.search import MAX_QUERY_CHARS

router = APIRouter(prefix="/gallery")
MAX_GALLERY_OFFSET = 2**31 - 1  # SQLite takes 64-bit integers; past this there are no images anyway
TOTAL_HEADER = "X-Total-Count"
ID_RULE = "must be an image id: 24 characters of 0-9 and a-f, as GET /api/gallery lists them"
LIST_HEADERS = {200: {"headers": {TOTAL_HEADER: {
    "description": "How many images match (all of them without `q`), for paging with limit and offset.",
    "schema": {"type": "integer"}}}}}


@router.get("", responses={**errors(422), **LIST_HEADERS})
def gallery(studio: StudioDep, response: Response, limit: Annotated[int, Query(ge=1, le=500)] = 100,
            offset: Annotated[int, Query(ge=0, le=MAX_GALLERY_OFFSET)] = 0,
            q: Annotated[str | None, Query(max_length=MAX_QUERY_CHARS, description=(
                "only images whose prompt contains this text (outer spaces ignored; % and _ are literal; "
                "ASCII letters in any case)"))] = None) -> list[dict[str, Any]]:
    """Finished images, newest first; the `X-Total-Count` header says how many match in all."""
    records, total = studio.gallery.page(limit=limit, offset=offset, q=q)
    response.headers[TOTAL_HEADER] = str(total)
    return [{**rec.to_dict(), "url": f"/api/gallery/{rec.id}.png"} for rec in records]


@router.get("/{image_id}.png", responses=errors(404, 422))
def gallery_image(studio: StudioDep, image_id: str) -> FileResponse:
    """The PNG as stored, with its `parameters` and `noisescope` text chunks. Only an id with a row is
    served: a file whose row was deleted (a crash mid-delete) is never shown again."""
    try:
        path = studio.gallery.path_for(image_id)
    except ValueError:
        raise HTTPException(404, "no such image") from None
    if studio.gallery.get(image_id) is None or not path.is_file():
        raise HTTPException(404, "no such image")
    return FileResponse(path, media_type="image/png")


@router.delete("/{image_id}", status_code=204, responses=errors(403, 404, 422))
def delete_image(studio: StudioDep, image_id: str) -> Response:
    """Delete an image: its row, then its file. 422 for a malformed id, 404 for an unknown one."""
    if not valid_id(image_id):
        raise RequestValidationError([{"loc": ("path", "image_id"), "msg": ID_RULE, "type": "value_error"}])
    if not studio.gallery.delete(image_id):
        raise HTTPException(404, "no such image")
    return Response(status_code=204)
