"""Wire the camera sampler to InfluxDB, MQTT and HTTP, and run it until stopped."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from gateway.cctv.publish import StatusPublisher
from gateway.cctv.service import CctvService
from gateway.config import GatewayConfig
from gateway.deadletters import DeadLetterStore
from gateway.sinks import BatchWriter, make_sink
from gateway.stats import GatewayStats

__all__ = ["run_cctv"]

logger = logging.getLogger(__name__)


async def run_cctv(
    config: GatewayConfig,
    stop: asyncio.Event,
    *,
    http_host: str = "127.0.0.1",
    http_port: int | None = None,
    ready: asyncio.Event | None = None,
) -> CctvService:
    """Sample the configured cameras until `stop` is set; return the service."""
    stats = GatewayStats()
    dead = config.dead_letters
    dead_letters = DeadLetterStore(dead.path, dead.max_bytes, dead.max_files)
    writer = BatchWriter(make_sink(config.influx), config.influx, stats, dead_letters)
    publisher = None
    if config.cctv.status_topic_prefix:
        publisher = StatusPublisher(config.mqtt, config.cctv.status_topic_prefix)
    service = CctvService(
        config.cctv,
        config.cameras,
        writer=writer,
        publisher=publisher,
        log_level=config.log_level,
    )
    tasks = [
        asyncio.create_task(writer.run(), name="influx.write"),
        asyncio.create_task(dead_letters.run(), name="deadletters.write"),
        asyncio.create_task(service.run(), name="cctv.sample"),
    ]
    if publisher is not None:
        tasks.append(asyncio.create_task(publisher.run(), name="cctv.publish"))
    server = None
    serving: asyncio.Task[None] | None = None
    if http_port is not None:
        server = _http_server(service, http_host, http_port)
        serving = asyncio.create_task(server.serve(), name="cctv.http")
    try:
        await service.started.wait()
        if ready is not None:
            ready.set()
        waiting = asyncio.create_task(stop.wait())
        watched = [waiting, *tasks] + ([serving] if serving is not None else [])
        await asyncio.wait(watched, return_when=asyncio.FIRST_COMPLETED)
        waiting.cancel()
        for task in watched[1:]:
            if task.done() and task.exception() is not None:
                raise task.exception()  # type: ignore[misc]
    finally:
        logger.info("Stopping camera sampling")
        if server is not None and serving is not None:
            # Let uvicorn close its sockets itself; cancelling would leak them.
            server.should_exit = True
            with contextlib.suppress(Exception):
                await asyncio.wait_for(asyncio.shield(serving), 5)
            serving.cancel()
            await asyncio.gather(serving, return_exceptions=True)
        for task in tasks[2:]:
            task.cancel()
        await asyncio.gather(*tasks[2:], return_exceptions=True)
        if publisher is not None:
            await publisher.close()
        tasks[0].cancel()
        await asyncio.gather(tasks[0], return_exceptions=True)
        await writer.flush_remaining()
        await writer.sink.close()
        tasks[1].cancel()
        await asyncio.gather(tasks[1], return_exceptions=True)
        with contextlib.suppress(Exception):
            await dead_letters.aclose()
        logger.info(
            "Stopped after %d samples, %d failed attempts, %d points written",
            service.stats.samples,
            service.stats.failures,
            stats.points_written,
        )
    return service


def _http_server(service: CctvService, host: str, port: int):  # type: ignore[no-untyped-def]
    import uvicorn
    from fastapi import FastAPI

    from gateway.cctv.http import make_router

    app = FastAPI(title="DeCOR Gateway cameras")
    app.include_router(make_router(service))
    return uvicorn.Server(
        uvicorn.Config(app, host=host, port=port, log_level="warning", lifespan="off")
    )
