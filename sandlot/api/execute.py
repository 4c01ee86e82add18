"""``POST /execute`` and ``GET /execute/languages``: the one-shot code runner (`sandlot.runner`).

Both need a team API key, as the control plane does. A run's answer is 200 whatever the
program did (its status says); 400 is a request to fix, 429 (with ``Retry-After``) a full
queue, 503 no runner free in time.
"""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from sandlot.api import auth, openapi
from sandlot.runner import models, service

__all__ = ["router"]

router = APIRouter(
    responses=openapi.errors(
        {
            400: "Bad request: the message says what to fix",
            401: openapi.BAD_KEY,
            429: "The queue is full: retry after Retry-After seconds",
            503: "No runner became free in time",
        }
    )
)


def _executor(request: Request) -> service.Executor:
    return request.app.state.executor  # type: ignore[no-any-return]


@router.post("/execute", response_model=models.ExecuteResult, summary="Run a program once, in a fresh sandbox")
async def execute(request: Request, team: auth.Team, body: models.ExecuteRequest) -> Response:
    result = await _executor(request).execute(body)
    return Response(result.model_dump_json(), media_type="application/json")


@router.get("/execute/languages", response_model=list[models.LanguageInfo], summary="Languages and their versions")
async def languages(request: Request, team: auth.Team) -> Response:
    found = await _executor(request).languages()
    return Response(b"[" + b",".join(i.model_dump_json().encode() for i in found) + b"]", media_type="application/json")
