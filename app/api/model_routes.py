"""GET /api/models and POST /api/models/load: the models of `--models-dir`, and loading one into the
running studio (app.engine.switcher). The page polls GET while a load runs."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, HTTPException
from pydantic import BaseModel, ConfigDict, Field

from app.api.deps import SwitcherDep, require_token
from app.api.errors import errors
from app.engine.switcher import SwitchError

router = APIRouter(prefix="/api/models", dependencies=[Depends(require_token)], responses=errors(400, 401))
OFF = "model switching is not available with --ray: start each replica with the model it serves"


class LoadRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str = Field(min_length=1, max_length=1024, description="a model id as GET /api/models lists it")


@router.get("")
def models(switcher: SwitcherDep) -> dict[str, Any]:
    """{"enabled", "note", "models": [{"id", "kind", "family", "bytes", "problem", "active"}], "load"}:
    `kind` is "diffusion", "gan" or null (listed, not loadable: `problem` says why); `load` is the
    latest load's progress ({"id", "state": loading / ready / failed, "stage", "stage_words",
    "stage_index", "stages", "seconds", "notes", "error"}) or null."""
    if switcher is None:
        return {"enabled": False, "note": OFF, "models": [], "load": None}
    return switcher.catalogue()


@router.post("/load", status_code=202, responses=errors(403, 404, 409, 422))
def load(body: LoadRequest, switcher: SwitcherDep) -> dict[str, Any]:
    """Start loading a model; runs of the loaded model go on meanwhile and the swap happens between
    their steps. 404: no such id; 400: not loadable here, or no --models-dir; 409: a load is in
    progress, or the model would not fit in memory next to the loaded one."""
    if switcher is None:
        raise HTTPException(400, OFF)
    try:
        return {"load": switcher.load(body.id)}
    except SwitchError as exc:
        raise HTTPException(exc.status, exc.message) from None
