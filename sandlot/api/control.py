"""The control plane's routes: E2B's REST shape, both SDK generations (docs/e2b-wire.md §2).

Success statuses are exactly the ones the SDK expects (create 201, connect 200 running or 201
resumed, kill, timeout and pause 204, fork and snapshot 201, snapshot delete 204); every error is
``{"code", "message"}`` (`sandlot.api.errors`). Responses are serialised once, by pydantic,
straight to bytes: ``GET /sandboxes/{id}`` is the hot path.
"""

from __future__ import annotations

import dataclasses
import platform
from datetime import UTC, datetime
from typing import Annotated, Any
from urllib.parse import parse_qsl, unquote

from fastapi import APIRouter, Depends, Query, Request, Response

import sandlot
from sandlot.api import auth, errors, models, openapi
from sandlot.lifecycle import manager as lifecycle
from sandlot.lifecycle import records, snapshots
from sandlot.runtime.models import SandboxState
from sandlot.store import models as store

__all__ = ["ENVD_VERSION", "router"]

ENVD_VERSION = "0.6.4"
"""The envd version reported to SDKs: the lowest that turns on every feature of e2b 2.45.1
and 2.63.0 (docs/e2b-wire.md §9)."""

router = APIRouter(
    responses=openapi.errors(
        {400: "Bad request", 401: openapi.BAD_KEY, 404: "No such sandbox", 500: "Server error"}
    )
)

_ADMISSION = openapi.errors(
    {
        503: "The host's memory is fully promised: retry after Retry-After seconds",
        507: "It would pass the data filesystem's free-space floor or the team's storage quota",
    }
)
"""What admission control answers (`sandlot.lifecycle.admission`)."""

Team = Annotated[str, Depends(auth.team)]
Metadata = Annotated[str | None, Query(max_length=8192)]
Limit = Annotated[int, Query(ge=1, le=1000)]
NextToken = Annotated[str | None, Query(alias="nextToken", max_length=512)]


def _manager(request: Request) -> lifecycle.SandboxManager:
    return request.app.state.manager  # type: ignore[no-any-return]


def _json(model: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(
        model.model_dump_json(by_alias=True, exclude_none=True),
        status_code=status,
        media_type="application/json",
        headers=headers,
    )


def _list_json(items: list[Any], headers: dict[str, str] | None = None) -> Response:
    body = b"[" + b",".join(i.model_dump_json(by_alias=True, exclude_none=True).encode() for i in items) + b"]"
    return Response(body, media_type="application/json", headers=headers)


def _page(items: list[Any], token: str | None) -> Response:
    """One page of a list; the next page's token, when there is one, in ``X-Next-Token``."""
    return _list_json(items, headers={"X-Next-Token": token} if token else None)


def _named(sbx: records.LiveSandbox) -> dict[str, str]:
    """The keys that start every answer about a sandbox (`models._Named`)."""
    return {
        "template_id": sbx.template,
        "sandbox_id": sbx.id,
        "client_id": models.CLIENT_ID,
        "envd_version": ENVD_VERSION,
    }


def _sandbox(request: Request, sbx: records.LiveSandbox) -> models.Sandbox:
    return models.Sandbox(
        **_named(sbx),
        envd_access_token=sbx.access_token,
        domain=request.app.state.domain,
        alias=sbx.alias,
    )


def _listed(sbx: records.LiveSandbox) -> models.ListedSandbox:
    return models.ListedSandbox(
        **_named(sbx),
        started_at=sbx.started_at,
        end_at=sbx.end_at,
        cpu_count=max(1, round(sbx.cpu_count)),
        memory_mb=sbx.memory_mb,
        disk_size_mb=sbx.disk_mb,
        state=sbx.state,
        alias=sbx.alias,
        metadata=sbx.metadata,
    )


def _detail(request: Request, sbx: records.LiveSandbox) -> models.SandboxDetail:
    return models.SandboxDetail(
        **_listed(sbx).model_dump(),
        envd_access_token=sbx.access_token,
        domain=request.app.state.domain,
        allow_internet_access=sbx.allow_internet,
        network=sbx.network,
        lifecycle=models.Lifecycle(auto_resume=sbx.auto_resume, on_timeout="pause" if sbx.auto_pause else "kill"),
        boot=sbx.boot,
        idle_timeout=sbx.idle_timeout,
    )


def _snapshot(row: store.SnapshotRecord) -> models.SnapshotInfo:
    tag = snapshots.tag_of(row)
    return models.SnapshotInfo(
        snapshot_id=tag,
        names=[tag],
        sandbox_id=row.sandbox_id,
        memory=row.memory,
        created_at=row.created_at,
        size_bytes=row.size_bytes,
    )


# -- create ---------------------------------------------------------------------------------


async def _create(request: Request, team: str, body: models.NewSandbox) -> Response:
    network = body.network or models.NetworkConfig()
    if body.auto_pause_memory is False:
        raise errors.ApiError(
            400, "a filesystem-only auto-pause (autoPauseMemory: false) is not supported: pause keeps memory"
        )
    sbx = await _manager(request).create(
        team,
        template=body.template_id,
        timeout=body.timeout,
        metadata=body.metadata,
        env_vars=body.env_vars,
        secure=body.secure,
        allow_internet=body.allow_internet_access,
        allow_out=network.allow_out or (),
        deny_out=network.deny_out or (),
        auto_pause=body.auto_pause,
        cpu_count=body.cpu_count,
        memory_mb=body.memory_mb,
        disk_mb=body.disk_size_mb,
        auto_resume=body.auto_resume is not None and body.auto_resume.enabled,
        idle_timeout=body.idle_timeout,
    )
    return _json(_sandbox(request, sbx), 201)


# The two generations of E2B's routes take the same body and answer the same: one handler.
@router.post("/sandboxes", status_code=201, response_model=models.Sandbox, responses=_ADMISSION,
             summary="Create a sandbox (e2b ≤ 2.45)")
@router.post("/v2/sandboxes", status_code=201, response_model=models.Sandbox, responses=_ADMISSION,
             summary="Create a sandbox")
async def create(request: Request, team: Team, body: models.NewSandbox) -> Response:
    return await _create(request, team, body)


# -- read -----------------------------------------------------------------------------------


@router.get("/sandboxes/{sandbox_id}", response_model=models.SandboxDetail, summary="A sandbox's details")
async def get_sandbox(request: Request, team: Team, sandbox_id: str) -> Response:
    return _json(_detail(request, _manager(request).get(team, sandbox_id)))


def _metadata_filter(raw: str | None) -> dict[str, str] | None:
    """The SDK's metadata filter: ``k=v&k2=v2`` with each key and value percent-encoded once
    more (docs/e2b-wire.md §2.6); the framework has already undone the outer encoding."""
    if not raw:
        return None
    try:
        pairs = parse_qsl(raw, keep_blank_values=True, strict_parsing=True)
    except ValueError:
        raise errors.ApiError(400, f"metadata filter {raw!r} is not of the form key=value&key2=value2") from None
    return {unquote(k): unquote(v) for k, v in pairs}


@router.get("/sandboxes", response_model=list[models.ListedSandbox], summary="Running sandboxes (v1 list)")
async def list_v1(
    request: Request, team: Team, metadata: Metadata = None
) -> Response:
    manager = _manager(request)
    found, _ = manager.list(team, metadata=_metadata_filter(metadata), states={SandboxState.RUNNING}, limit=1000)
    return _list_json([_listed(s) for s in found])


@router.get(
    "/v2/sandboxes",
    response_model=list[models.ListedSandbox],
    summary="Sandboxes, filtered and paged (next page token in X-Next-Token)",
)
async def list_v2(
    request: Request,
    team: Team,
    metadata: Metadata = None,
    state: Annotated[str | None, Query(max_length=64, description="running, paused, or both comma-joined")] = None,
    order: Annotated[str, Query(pattern="^(asc|desc)$")] = "desc",
    started_after: Annotated[datetime | None, Query(alias="startedAfter")] = None,
    template: Annotated[str | None, Query(max_length=200)] = None,
    limit: Limit = 100,
    next_token: NextToken = None,
) -> Response:
    states = None
    if state:
        states = {s.strip() for s in state.split(",") if s.strip()}
        unknown = states - {SandboxState.RUNNING, SandboxState.PAUSED}
        if unknown:
            raise errors.ApiError(400, f"state: {', '.join(sorted(unknown))} is not running or paused")
    if started_after is not None and started_after.tzinfo is None:
        started_after = started_after.replace(tzinfo=UTC)
    page, token = _manager(request).list(
        team,
        metadata=_metadata_filter(metadata),
        states=states,
        order=order,
        started_after=started_after,
        template=template,
        limit=limit,
        next_token=next_token,
    )
    return _page([_listed(s) for s in page], token)


@router.get(
    "/sandboxes/{sandbox_id}/metrics", response_model=list[models.SandboxMetric], summary="CPU, memory and disk now"
)
async def metrics(
    request: Request,
    team: Team,
    sandbox_id: str,
    start: Annotated[int | None, Query(ge=0, le=2**40)] = None,
    end: Annotated[int | None, Query(ge=0, le=2**40)] = None,
) -> Response:
    points = await _manager(request).metrics(team, sandbox_id)
    if start is not None:
        points = [p for p in points if p.timestamp.timestamp() >= start]
    if end is not None:
        points = [p for p in points if p.timestamp.timestamp() <= end + 1]
    return _list_json(
        [models.SandboxMetric(**dataclasses.asdict(p), timestamp_unix=int(p.timestamp.timestamp())) for p in points]
    )


# -- change ---------------------------------------------------------------------------------


@router.delete("/sandboxes/{sandbox_id}", status_code=204, response_class=Response, summary="Kill a sandbox")
async def kill(request: Request, team: Team, sandbox_id: str) -> Response:
    await _manager(request).kill(team, sandbox_id)
    return Response(status_code=204)


@router.post(
    "/sandboxes/{sandbox_id}/timeout",
    status_code=204,
    response_class=Response,
    summary="End the sandbox this many seconds from now",
)
async def set_timeout(request: Request, team: Team, sandbox_id: str, body: models.TimeoutRequest) -> Response:
    await _manager(request).set_timeout(team, sandbox_id, body.timeout)
    return Response(status_code=204)


async def _connect(request: Request, team: str, sandbox_id: str, body: models.ConnectRequest | None) -> Response:
    sbx, resumed = await _manager(request).connect(
        team, sandbox_id, body.timeout if body else None, memory=body is None or body.memory is not False
    )
    return _json(_sandbox(request, sbx), 201 if resumed else 200)


_CONNECT: openapi.Responses = {
    200: {"model": models.Sandbox, "description": "It was running"},
    201: {"model": models.Sandbox, "description": "It was paused and is resumed"},
    **_ADMISSION,
}


@router.post(
    "/sandboxes/{sandbox_id}/connect",
    response_model=models.Sandbox,
    responses=_CONNECT,
    summary="Connect to a sandbox (e2b ≤ 2.45), resuming it when paused; never shortens its timeout",
)
@router.post(
    "/v2/sandboxes/{sandbox_id}/connect",
    response_model=models.Sandbox,
    responses=_CONNECT,
    summary="Connect to a sandbox, resuming it when paused; never shortens its timeout",
)
async def connect(request: Request, team: Team, sandbox_id: str, body: models.ConnectRequest | None = None) -> Response:
    return await _connect(request, team, sandbox_id, body)


_CONFLICT = {**openapi.errors({409: "Not in a state that allows it"}), **_ADMISSION}


@router.post(
    "/sandboxes/{sandbox_id}/pause",
    status_code=204,
    response_class=Response,
    responses=_CONFLICT,
    summary="Pause a sandbox with its memory (409 when already paused)",
)
async def pause(request: Request, team: Team, sandbox_id: str, body: models.PauseRequest | None = None) -> Response:
    if body is not None and body.memory is False:
        raise errors.ApiError(400, "a filesystem-only pause (memory: false) is not supported: pause keeps memory")
    await _manager(request).pause(team, sandbox_id)
    return Response(status_code=204)


@router.post(
    "/sandboxes/{sandbox_id}/resume",
    status_code=201,
    response_model=models.Sandbox,
    responses=_CONFLICT,
    summary="Resume a paused sandbox (E2B's older route; 409 when it is running)",
)
async def resume(request: Request, team: Team, sandbox_id: str, body: models.ResumeRequest | None = None) -> Response:
    sbx = await _manager(request).resume(
        team, sandbox_id, body.timeout if body else None, memory=body is None or body.memory is not False
    )
    return _json(_sandbox(request, sbx), 201)


@router.post(
    "/sandboxes/{sandbox_id}/fork",
    status_code=201,
    response_model=list[models.ForkResult],
    responses=_CONFLICT,
    summary="Copies of a running sandbox, memory and files (409 when it is paused)",
)
async def fork(request: Request, team: Team, sandbox_id: str, body: models.ForkRequest | None = None) -> Response:
    body = body or models.ForkRequest()
    children = await _manager(request).fork(team, sandbox_id, count=body.count, timeout=body.timeout)
    response = _list_json([models.ForkResult(sandbox=_sandbox(request, c)) for c in children])
    response.status_code = 201
    return response


@router.post(
    "/sandboxes/{sandbox_id}/restart",
    response_model=models.Sandbox,
    summary="Restart a running or paused sandbox: every process ends, it boots clean on its files",
)
async def restart(request: Request, team: Team, sandbox_id: str, body: models.RestartRequest | None = None) -> Response:
    sbx = await _manager(request).restart(team, sandbox_id, body.timeout if body else None)
    return _json(_sandbox(request, sbx))


# -- snapshots ------------------------------------------------------------------------------


@router.post(
    "/sandboxes/{sandbox_id}/snapshots",
    status_code=201,
    response_model=models.SnapshotInfo,
    responses=_CONFLICT,
    summary="Snapshot a running sandbox (files, and memory unless memory: false) to start sandboxes from",
)
async def create_snapshot(
    request: Request, team: Team, sandbox_id: str, body: models.SnapshotRequest | None = None
) -> Response:
    body = body or models.SnapshotRequest()
    row = await _manager(request).snapshot(team, sandbox_id, name=body.name, memory=body.memory)
    return _json(_snapshot(row), 201)


@router.get(
    "/snapshots",
    response_model=list[models.SnapshotInfo],
    summary="The team's snapshots, newest first (next page token in X-Next-Token)",
)
async def list_snapshots(
    request: Request,
    team: Team,
    sandbox_id: Annotated[str | None, Query(alias="sandboxID", max_length=64)] = None,
    name: Annotated[str | None, Query(max_length=80, description="name or name:vN")] = None,
    limit: Limit = 100,
    next_token: NextToken = None,
) -> Response:
    rows, token = await _manager(request).snapshots.list(
        team, sandbox_id=sandbox_id, ref=name, limit=limit, next_token=next_token
    )
    return _page([_snapshot(r) for r in rows], token)


@router.delete(
    "/templates/{snapshot_id}",
    status_code=204,
    response_class=Response,
    responses=openapi.errors({404: "No such snapshot"}),
    summary="Delete a snapshot (name:vN) or every version of a name; sandboxes made from it stay whole",
)
async def delete_snapshot(request: Request, team: Team, snapshot_id: str) -> Response:
    if not await _manager(request).snapshots.delete(team, snapshot_id):
        raise errors.ApiError(404, f"snapshot {snapshot_id!r} not found")
    return Response(status_code=204)


# -- health ---------------------------------------------------------------------------------


@router.get(
    "/health",
    include_in_schema=True,
    response_model=models.Health,
    responses={503: {"model": models.Error}},
    summary="200 when the server and its warm pools are healthy; details with a key",
)
async def health(request: Request, team: Annotated[str | None, Depends(auth.team_if_any)]) -> Response:
    """``status`` ``ok``, and nothing else without a key: a probe needs no more, and pool
    errors and versions tell an attacker what to try. With a team key, each pool's figures
    and the versions. 503 while starting, or when a pool's creates keep failing (its
    ``lastError`` says why, to a caller with a key)."""
    if not getattr(request.app.state, "ready", False):
        raise errors.ApiError(503, "starting")
    found = {**request.app.state.executor.health()}
    pool = request.app.state.manager.pool
    if pool is not None:
        found[pool.name] = pool.stats()
    healthy = all(s.healthy for s in found.values())
    if team is None:
        if not healthy:
            raise errors.ApiError(503, "unhealthy")
        return _json(models.Health(status="ok"))
    report = models.Health(
        status="ok" if healthy else "unhealthy",
        pools={name: models.PoolHealth.model_validate(dataclasses.asdict(s)) for name, s in found.items()},
        versions={"sandlot": sandlot.__version__, "envd": ENVD_VERSION, "python": platform.python_version()},
    )
    if not healthy:
        broken = ", ".join(name for name, s in found.items() if not s.healthy)
        return _json(models.UnhealthyError(code=503, message=f"pools failing: {broken}", **report.model_dump()), 503)
    return _json(report)
