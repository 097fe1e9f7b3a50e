"""Dependencies as Annotated aliases, and the token check for non-loopback listening."""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Depends, HTTPException, Request, WebSocket
from starlette.responses import Response

from app.engine.studio import Studio
from app.engine.switcher import Switcher
from app.settings import Settings
from app.store.uploads import UploadStore

TOKEN_COOKIE = "noisescope_token"


def token_ok(settings: Settings, supplied: str | None) -> bool:
    """Constant-time comparison on UTF-8 bytes: `hmac.compare_digest` raises TypeError on non-ASCII
    str, and a client-chosen token must never turn into a 500."""
    if not settings.require_token():
        return True
    if not supplied or not settings.token:
        return False
    return hmac.compare_digest(supplied.encode("utf-8", "surrogatepass"), settings.token.encode("utf-8", "surrogatepass"))


def supplied_token(query: dict, headers: dict, cookies: dict) -> str | None:
    auth = headers.get("authorization", "")
    if auth.lower().startswith("bearer "):
        return auth[7:].strip()
    return query.get("token") or cookies.get(TOKEN_COOKIE)


def get_settings(request: Request) -> Settings:
    return request.app.state.settings


def get_studio(request: Request) -> Studio:
    return request.app.state.studio


def require_token(request: Request) -> None:
    settings: Settings = request.app.state.settings
    token = supplied_token(dict(request.query_params), dict(request.headers), request.cookies)
    if not token_ok(settings, token):
        raise HTTPException(status_code=401, detail="a valid token is required (see the server's start-up output)")


def remember_token(response: Response, request: Request, settings: Settings) -> None:
    """A page opened with a valid ?token= gets it as a same-site, script-proof cookie, so the requests
    it makes without the query (stylesheets, /openapi.json) pass too."""
    token = supplied_token(dict(request.query_params), dict(request.headers), request.cookies)
    if settings.require_token() and token and token_ok(settings, token):
        response.set_cookie(TOKEN_COOKIE, token, httponly=True, samesite="strict")


def get_uploads(request: Request) -> UploadStore:
    return request.app.state.uploads


def get_switcher(request: Request) -> Switcher | None:
    return getattr(request.app.state, "switcher", None)


def ws_studio(websocket: WebSocket) -> Studio:
    return websocket.app.state.studio


SettingsDep = Annotated[Settings, Depends(get_settings)]
StudioDep = Annotated[Studio, Depends(get_studio)]
UploadsDep = Annotated[UploadStore, Depends(get_uploads)]
SwitcherDep = Annotated["Switcher | None", Depends(get_switcher)]
