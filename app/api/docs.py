"""The API docs (/docs, /redoc, /openapi.json) behind the same token as the API.

FastAPI's built-in docs routes take no dependencies, so create_app turns them off and includes
this router instead. The pages load Swagger UI / ReDoc from their CDN and run one inline script,
so they carry their own CSP: the CDN and a per-response nonce, still no framing.
"""

from __future__ import annotations

import secrets
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse

from app.api.deps import SettingsDep, remember_token, require_token

CDN = "https://cdn.jsdelivr.net"
router = APIRouter(dependencies=[Depends(require_token)], include_in_schema=False)


def docs_csp(nonce: str) -> str:
    return (f"default-src 'self'; script-src 'self' 'nonce-{nonce}' {CDN}; "
            f"style-src 'self' 'unsafe-inline' {CDN} https://fonts.googleapis.com; font-src https://fonts.gstatic.com; "
            "img-src 'self' data: https:; worker-src blob:; connect-src 'self'; object-src 'none'; "
            "base-uri 'none'; frame-ancestors 'none'")


def _with_nonce(page: HTMLResponse, request: Request, settings: SettingsDep) -> HTMLResponse:
    nonce = secrets.token_urlsafe(16)
    html = bytes(page.body).decode().replace("<script>", f'<script nonce="{nonce}">')
    response = HTMLResponse(html, headers={"content-security-policy": docs_csp(nonce)})
    remember_token(response, request, settings)  # the page then fetches /openapi.json with the cookie
    return response


@router.get("/openapi.json")
def openapi(request: Request) -> JSONResponse:
    schema: dict[str, Any] = request.app.openapi()
    return JSONResponse(schema)


@router.get("/docs")
def swagger(request: Request, settings: SettingsDep) -> HTMLResponse:
    page = get_swagger_ui_html(openapi_url="/openapi.json", title="Noisescope API")
    return _with_nonce(page, request, settings)


@router.get("/redoc")
def redoc(request: Request, settings: SettingsDep) -> HTMLResponse:
    page = get_redoc_html(openapi_url="/openapi.json", title="Noisescope API")
    return _with_nonce(page, request, settings)
