"""Serve the latest snapshots and camera states over HTTP (a FastAPI router).

Routes (mount them on any FastAPI app, or run `decor cctv run --http-port`):

- ``GET /cameras``: every camera's status.
- ``GET /cameras/{id}/status``: one camera's status.
- ``GET /cameras/{id}/snapshot.jpg``: its latest snapshot (masked), ready for
  a Grafana image panel; ``GET /cameras/{id}/thumbnail.jpg``: a small copy.
- ``POST /cameras/{id}/sample``: take a sample now; answers with the status
  once it is stored (504 if the camera gives none in time).
- ``POST /cameras/{id}/burst?interval_s=&duration_s=``: sample faster for a
  while (an incident at the camera's site), then return to the plan.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query
from fastapi.responses import FileResponse

from gateway.cctv.service import CctvService

__all__ = ["make_router"]

# Browsers and Grafana must fetch the newest picture every time.
NO_CACHE = {"Cache-Control": "no-store"}


def make_router(service: CctvService) -> APIRouter:
    """Return the camera routes backed by a running CctvService."""
    router = APIRouter(tags=["cameras"])

    def known(camera: str) -> None:
        if camera not in service.health:
            raise HTTPException(404, f"no camera {camera!r}")

    @router.get("/cameras")
    def list_cameras() -> list[dict[str, Any]]:
        """Return every camera's status."""
        return service.statuses()

    @router.get("/cameras/{camera}/status")
    def camera_status(camera: str) -> dict[str, Any]:
        """Return one camera's status."""
        known(camera)
        return service.health[camera].status()

    @router.get("/cameras/{camera}/snapshot.jpg", response_class=FileResponse)
    def snapshot(camera: str) -> FileResponse:
        """Return the camera's latest snapshot."""
        known(camera)
        path = service.store.latest(camera)
        if path is None:
            raise HTTPException(404, f"camera {camera!r} has no snapshot yet")
        return FileResponse(path, media_type="image/jpeg", headers=NO_CACHE)

    @router.get("/cameras/{camera}/thumbnail.jpg", response_class=FileResponse)
    def thumbnail(camera: str) -> FileResponse:
        """Return a thumbnail of the camera's latest snapshot."""
        known(camera)
        path = service.store.thumbnail(camera)
        if path is None:
            raise HTTPException(404, f"camera {camera!r} has no snapshot yet")
        return FileResponse(path, media_type="image/jpeg", headers=NO_CACHE)

    @router.post("/cameras/{camera}/sample")
    async def sample(camera: str) -> dict[str, Any]:
        """Take a sample now and return the camera's status after it."""
        known(camera)
        config = service.config
        wait_s = config.open_timeout_s + config.read_timeout_s + config.stall_timeout_s
        try:
            result = await service.sample_now(camera, wait_s)
        except TimeoutError:
            raise HTTPException(504, f"camera {camera!r} gave no sample in {wait_s} s")
        status = service.health[camera].status()
        return {"ok": result.ok, "error": result.error_kind, "status": status}

    @router.post("/cameras/{camera}/burst", status_code=202)
    def burst(
        camera: str,
        interval_s: Annotated[float | None, Query(gt=0, le=3600)] = None,
        duration_s: Annotated[float | None, Query(gt=0, le=86_400)] = None,
    ) -> dict[str, Any]:
        """Sample the camera faster for a while."""
        known(camera)
        service.burst(camera, interval_s, duration_s)
        return {"camera": camera, "burst": True}

    return router
