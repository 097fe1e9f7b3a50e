"""Dependencies as Annotated aliases, and the token check for non-loopback listening."""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Depends, HTTPException, Request, WebSocket

from app.engine.studio import Studio
from app.settings import Settings

TOKEN_COOKIE = "noisescope_token"


def token_ok(settings: Settings, supplied: str | None) -> bool:
    if not settings.require_token():
        return True
    return bool(supplied) and bool(settings.token) and hmac.compare_digest(supplied, settings.token or "")


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


def ws_studio(websocket: WebSocket) -> Studio:
    return websocket.app.state.studio


SettingsDep = Annotated[Settings, Depends(get_settings)]
StudioDep = Annotated[Studio, Depends(get_studio)]
