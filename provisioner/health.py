"""Liveness and readiness probes (the only routes that need no credentials)."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from sqlalchemy import text

from provisioner.auth.deps import StateDep
from provisioner.observability.queue import queue_depth

router = APIRouter(tags=["health"])


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    """The process is up."""
    return {"status": "ok"}


@router.get("/readyz")
async def readyz(state: StateDep) -> JSONResponse:
    """The process can serve: the database and the delivery queue answer, a provider exists."""
    checks: dict[str, str] = {}
    try:
        async with state.db.session() as session:
            await session.execute(text("SELECT 1"))
        checks["database"] = "ok"
    except Exception as exc:  # readiness reports any failure, never raises it
        checks["database"] = f"failed: {type(exc).__name__}"
    checks["providers"] = "ok" if state.providers else "none configured"
    depth: int | None = None
    try:  # the delivery queue (outbox) answers its count; the depth is reported
        depth = await queue_depth(state.db)
        checks["queue"] = "ok"
    except Exception as exc:
        checks["queue"] = f"failed: {type(exc).__name__}"
    degraded = False
    if state.secrets is not None and state.secrets.in_use:
        # A store outage within max_stale still serves (cached values): ready, but degraded.
        secrets = state.secrets.status()
        degraded = secrets.state == "degraded"
        checks["secrets"] = "ok" if secrets.state == "ok" else f"{secrets.state}: {secrets.detail}"
    ready = all(value == "ok" or value.startswith("degraded") for value in checks.values())
    status = "not ready" if not ready else "degraded" if degraded else "ready"
    return JSONResponse(
        {"status": status, "checks": checks, "queue_depth": depth},
        status_code=200 if ready else 503,
    )
