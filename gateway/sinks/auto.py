"""Choose the InfluxDB write API from the server's own /ping answer."""

from __future__ import annotations

import logging

import httpx

from gateway.config import InfluxConfig
from gateway.errors import SinkError
from gateway.sinks.base import Sink, describe_failure
from gateway.sinks.influx_v1 import InfluxV1Sink
from gateway.sinks.influx_v2 import InfluxV2Sink

__all__ = ["AutoSink", "make_sink", "pick_api"]

logger = logging.getLogger(__name__)

VERSION_HEADER = "X-Influxdb-Version"


def make_sink(config: InfluxConfig) -> Sink:
    """Return the sink the configuration asks for."""
    if config.api == "v1":
        return InfluxV1Sink(config)
    if config.api == "v2":
        return InfluxV2Sink(config)
    return AutoSink(config)


def pick_api(version_header: str | None) -> str:
    """Return "v1" for an InfluxDB 1.x version header, "v2" for anything else.

    InfluxDB 2.x and 3.x answer with their version; VictoriaMetrics sends no
    version header and accepts the v2 write path.
    """
    if version_header and version_header.lstrip("v").startswith("1."):
        return "v1"
    return "v2"


class AutoSink:
    """Ask /ping which InfluxDB this is, then write through the matching API."""

    def __init__(self, config: InfluxConfig) -> None:
        self._config = config
        self.url = config.url.rstrip("/")
        self.description = f"InfluxDB at {self.url} (API not yet known)"
        self._inner: Sink | None = None

    async def open(self) -> None:
        """Ping the server, choose the API and open it; raise SinkError if down."""
        if self._inner is None:
            try:
                async with httpx.AsyncClient(timeout=self._config.timeout_s) as client:
                    response = await client.get(f"{self.url}/ping")
            except httpx.HTTPError as exc:
                raise SinkError(
                    f"InfluxDB at {self.url} unreachable: {describe_failure(exc)}",
                    url=self.url,
                ) from exc
            version = response.headers.get(VERSION_HEADER)
            api = pick_api(version)
            logger.info(
                "InfluxDB at %s reports version %s: using the %s write API",
                self.url,
                version or "(none)",
                api,
            )
            self._inner = (InfluxV1Sink if api == "v1" else InfluxV2Sink)(self._config)
            self.description = self._inner.description
        await self._inner.open()

    async def write(self, lines: list[str]) -> None:
        """Write through the chosen API."""
        if self._inner is None:
            await self.open()
        assert self._inner is not None
        await self._inner.write(lines)

    async def close(self) -> None:
        """Close the chosen sink."""
        if self._inner is not None:
            await self._inner.close()
