"""Serve /metrics, /healthz and /readyz over HTTP from the running gateway.

The server runs on the gateway's own event loop: each answer only reads
counters, so it never waits on the broker or InfluxDB, and the counters are
read from the thread that changes them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Iterator
from typing import TYPE_CHECKING

from gateway.errors import ConfigError
from gateway.monitoring.health import ReadinessCheck, readiness

if TYPE_CHECKING:
    import uvicorn
    from fastapi import FastAPI

    from gateway.app import Gateway

__all__ = ["MonitoringServer"]

logger = logging.getLogger(__name__)

# Longest wait for open connections to finish at shutdown.
STOP_WAIT_S = 3.0


class MonitoringServer:
    """The HTTP endpoints of one gateway; started and stopped by `Gateway.run`."""

    def __init__(self, gateway: Gateway, source: str = "") -> None:
        self._gateway = gateway
        self._settings = gateway.config.monitoring
        self._source = source
        self._checks: dict[str, ReadinessCheck] = {}
        self._server: uvicorn.Server | None = None
        self._task: asyncio.Task[None] | None = None
        self.port = self._settings.port
        # Set once the server answers requests.
        self.started = asyncio.Event()

    def add_check(self, name: str, check: ReadinessCheck) -> None:
        """Add a readiness check shown, and required, by /readyz.

        The seam for parts built elsewhere (cameras): the check runs on the
        event loop at each request and must not block.
        """
        if name in self._checks or name in ("mqtt", "influx"):
            raise ValueError(f"readiness check {name!r} is already registered")
        self._checks[name] = check

    async def start(self) -> None:
        """Bind the address and serve; raise ConfigError if it cannot be bound."""
        host = self._settings.host
        try:
            listener = socket.create_server((host, self._settings.port))
        except OSError as exc:
            raise ConfigError(
                f"cannot listen on {host}:{self._settings.port}: {exc.strerror}",
                key="monitoring.port",
                source=self._source,
            ) from None
        self.port = listener.getsockname()[1]
        # Imported here: a gateway without [monitoring] never loads them.
        import uvicorn

        class QuietServer(uvicorn.Server):
            """A uvicorn server that leaves SIGINT and SIGTERM to the gateway."""

            @contextlib.contextmanager
            def capture_signals(self) -> Iterator[None]:
                yield

        config = uvicorn.Config(
            self._build_app(),
            lifespan="off",
            # The gateway's own logging (text or JSON) stays in charge.
            log_config=None,
            access_log=False,
        )
        server = QuietServer(config)
        self._server = server
        self._task = asyncio.create_task(
            server.serve([listener]), name="monitoring.serve"
        )
        while not server.started and not self._task.done():
            await asyncio.sleep(0.02)
        if self._task.done():
            self._task.result()
        self.started.set()
        logger.info(
            "Serving /metrics, /healthz and /readyz on http://%s:%d", host, self.port
        )

    async def stop(self) -> None:
        """Stop serving; answers in progress get a short time to finish."""
        if self._server is None or self._task is None:
            return
        self.started.clear()
        self._server.should_exit = True
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(self._task), STOP_WAIT_S)
        if not self._task.done():
            self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)

    def _build_app(self) -> FastAPI:
        from fastapi import FastAPI
        from fastapi.responses import JSONResponse, Response
        from prometheus_client import CONTENT_TYPE_LATEST

        app = FastAPI(
            title="DeCOR Gateway monitoring",
            docs_url=None,
            redoc_url=None,
            openapi_url=None,
        )
        gateway = self._gateway

        # async: FastAPI runs plain functions in a thread pool, and the
        # counters must be read from the event loop's thread.
        @app.get("/metrics")
        async def metrics() -> Response:
            return Response(
                gateway.metrics.exposition(), media_type=CONTENT_TYPE_LATEST
            )

        @app.get("/healthz")
        async def healthz() -> dict[str, str]:
            # Answering at all shows the event loop is turning.
            return {"status": "alive"}

        @app.get("/readyz")
        async def readyz() -> JSONResponse:
            verdict = readiness(gateway, self._settings, self._checks)
            return JSONResponse(
                verdict.as_json(), status_code=200 if verdict.ready else 503
            )

        return app
