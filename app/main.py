"""create_app(settings) -> FastAPI. Models load in the lifespan, never at import."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.staticfiles import StaticFiles

from app.api import docs, model_routes, pngsettings, routes, vocab, ws
from app.api.guard import SECURITY_HEADERS, Guard, redact_uvicorn_logs
from app.api.uploads import sweep_periodically, upload_store
from app.api.ws import settle
from app.registry import Models, load_models
from app.settings import Settings

log = logging.getLogger("noisescope")


def create_app(settings: Settings | None = None, *, models: Models | None = None,
               front: Callable[[Settings], Awaitable[Any]] | None = None) -> FastAPI:
    """Build the app. `models` may be passed in (tests share loaded models across apps). `front` builds
    the studio the routes talk to instead of a local engine: app.cluster.front.RemoteStudio.connect
    when the engine runs as a Ray Serve deployment."""
    settings = settings or Settings()
    settings.ensure_token()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        from app.engine.studio import Studio
        from app.store.gallery import Gallery

        redact_uvicorn_logs()  # after uvicorn configured its loggers
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        if front is not None:
            studio = await front(settings)
        else:
            studio = Studio(settings, models or load_models(settings), Gallery(settings.data_dir / "gallery"))
            studio.start()
        app.state.studio = studio
        if front is None:  # model switching loads into this process's engine (not into Ray replicas)
            from app.engine.switcher import Switcher

            app.state.switcher = Switcher(studio, settings, settings.models_dir)
        app.state.uploads = uploads = upload_store(settings, studio.upload_dir)
        uploads.sweep()  # a killed server's temp files, and uploads that expired while it was down
        sweeper = asyncio.create_task(sweep_periodically(uploads))
        try:
            yield
        finally:
            sweeper.cancel()
            await settle(studio.stop())

    # The docs come from app.api.docs, behind the token like the API.
    app = FastAPI(title="Noisescope", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    app.state.settings = settings

    @app.exception_handler(RequestValidationError)
    async def _bad_request(_: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [{"loc": e.get("loc"), "msg": e.get("msg")} for e in exc.errors()[:5]]
        return JSONResponse({"detail": errors}, status_code=422)

    @app.exception_handler(Exception)
    async def _internal(_: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error", exc_info=exc)
        return JSONResponse({"detail": "internal error; see the server log"}, status_code=500,
                            headers=SECURITY_HEADERS)  # this handler runs outside the Guard middleware

    app.include_router(routes.router)
    app.include_router(routes.api)
    app.include_router(model_routes.router)
    app.include_router(pngsettings.router)
    app.include_router(vocab.router)
    app.include_router(ws.router)
    app.include_router(docs.router)
    app.mount("/static", StaticFiles(directory=routes.FRONTEND), name="static")
    app.add_middleware(Guard, settings=settings)  # Host allow-list, Origin rule, security headers
    return app
