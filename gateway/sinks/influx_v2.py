"""Write points through the InfluxDB v2 write API with influxdb-client.

Serves InfluxDB 2.x, 3.x, InfluxDB Cloud, and VictoriaMetrics (which accepts
the v2 write path; it ignores org and bucket).
"""

from __future__ import annotations

import asyncio
import logging

import aiohttp
from influxdb_client import WritePrecision
from influxdb_client.client.influxdb_client_async import InfluxDBClientAsync
from influxdb_client.rest import ApiException

from gateway.config import InfluxConfig
from gateway.errors import PointsRejected, SinkError
from gateway.sinks.base import answer_text, describe_failure, refuses_points

__all__ = ["InfluxV2Sink"]

logger = logging.getLogger(__name__)


class InfluxV2Sink:
    """InfluxDB v2 write API: token, organisation and bucket."""

    def __init__(self, config: InfluxConfig) -> None:
        self._config = config
        self.url = config.url.rstrip("/")
        self.description = f"InfluxDB v2 API at {self.url} (bucket {config.bucket})"
        self._client: InfluxDBClientAsync | None = None

    async def open(self) -> None:
        """Create the client; the first write tells whether the server answers."""
        # The async client binds to the running loop, so it is made here.
        self._client = InfluxDBClientAsync(
            url=self.url,
            token=self._config.token or None,
            org=self._config.org,
            timeout=int(self._config.timeout_s * 1000),
        )
        self._write_api = self._client.write_api()

    async def write(self, lines: list[str]) -> None:
        """Send the lines in one write request."""
        if self._client is None:
            await self.open()
        try:
            await self._write_api.write(
                bucket=self._config.bucket,
                org=self._config.org,
                record="\n".join(lines),
                write_precision=WritePrecision.NS,
            )
        except ApiException as exc:
            status = int(exc.status or 0)
            body = answer_text(exc.body or exc.reason)[:2000]
            if refuses_points(status, body):
                raise PointsRejected(
                    f"{self.description} refused the write: HTTP {status}",
                    url=self.url,
                    status=status,
                    body=body,
                ) from exc
            raise SinkError(
                f"{self.description} failed: HTTP {status} {body[:200]}",
                url=self.url,
                status=status,
            ) from exc
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
            raise SinkError(
                f"{self.description} unreachable: {_describe(exc)}", url=self.url
            ) from exc

    async def close(self) -> None:
        """Close the client's connection pool."""
        if self._client is not None:
            await self._client.close()
            self._client = None


def _describe(exc: BaseException) -> str:
    if isinstance(exc, asyncio.TimeoutError):
        return "timed out"
    return describe_failure(exc)
