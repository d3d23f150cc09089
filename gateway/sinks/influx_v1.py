"""Write points to InfluxDB 1.x through its /write endpoint."""

from __future__ import annotations

import logging

import httpx

from gateway.config import InfluxConfig
from gateway.errors import PointsRejected, SinkError
from gateway.sinks.base import describe_failure, refuses_points

__all__ = ["InfluxV1Sink"]

logger = logging.getLogger(__name__)


class InfluxV1Sink:
    """InfluxDB 1.x: database, retention policy, optional user and password."""

    def __init__(self, config: InfluxConfig) -> None:
        self._config = config
        self.url = config.url.rstrip("/")
        self.description = f"InfluxDB v1 at {self.url} (database {config.database})"
        self._params = {"db": config.database, "precision": "ns"}
        if config.retention_policy:
            self._params["rp"] = config.retention_policy
        auth = (config.username, config.password or "") if config.username else None
        self._client = httpx.AsyncClient(
            base_url=self.url, auth=auth, timeout=config.timeout_s
        )

    async def open(self) -> None:
        """Create the database if configured to; raise SinkError if unreachable."""
        if not self._config.create_database:
            return
        # CREATE DATABASE is idempotent in InfluxDB 1.x.
        query = f'CREATE DATABASE "{_quote_identifier(self._config.database)}"'
        response = await self._request("POST", "/query", params={"q": query})
        if response.status_code >= 400:
            raise SinkError(
                f"{self.description}: cannot create the database: "
                f"HTTP {response.status_code} {response.text[:200]}",
                url=self.url,
                status=response.status_code,
            )

    async def write(self, lines: list[str]) -> None:
        """Send the lines in one /write request."""
        body = ("\n".join(lines) + "\n").encode("utf-8")
        response = await self._request(
            "POST", "/write", params=self._params, content=body
        )
        if response.status_code == 204:
            return
        text = response.text[:2000]
        if refuses_points(response.status_code, text):
            raise PointsRejected(
                f"{self.description} refused the write: HTTP {response.status_code}",
                url=self.url,
                status=response.status_code,
                body=text,
            )
        raise SinkError(
            f"{self.description} failed: HTTP {response.status_code} {text[:200]}",
            url=self.url,
            status=response.status_code,
        )

    async def close(self) -> None:
        """Close the HTTP connection pool."""
        await self._client.aclose()

    async def _request(
        self, method: str, path: str, **kwargs: object
    ) -> httpx.Response:
        try:
            return await self._client.request(method, path, **kwargs)  # type: ignore[arg-type]
        except httpx.HTTPError as exc:
            raise SinkError(
                f"{self.description} unreachable: {describe_failure(exc)}",
                url=self.url,
            ) from exc


def _quote_identifier(name: str) -> str:
    return name.replace("\\", "\\\\").replace('"', '\\"')
