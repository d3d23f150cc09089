"""Fixtures shared by the tests: the real local services and a running gateway.

The services are the ones `scripts/services up` starts (Mosquitto on 18830,
InfluxDB 1.x on 18086, VictoriaMetrics on 18428); `make test` starts them.
Each test gets its own topic prefix and its own InfluxDB database, so tests
never see each other's data.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gmqtt
import httpx
import orjson
import pytest

from gateway.app import Gateway
from gateway.config import GatewayConfig

MQTT_HOST = "127.0.0.1"
MQTT_PORT = int(os.environ.get("SERVICES_MQTT_PORT", "18830"))
INFLUX_V1_URL = f"http://127.0.0.1:{os.environ.get('SERVICES_INFLUX_PORT', '18086')}"
VICTORIA_URL = f"http://127.0.0.1:{os.environ.get('SERVICES_VM_PORT', '18428')}"
WAIT_S = 15.0


def _require_port(port: int, name: str) -> None:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
    except OSError:
        pytest.fail(
            f"{name} is not answering on 127.0.0.1:{port}: run `scripts/services up` "
            "(or `make test`, which starts it)"
        )


@dataclass(frozen=True)
class Broker:
    """The Mosquitto broker the tests publish to."""

    host: str
    port: int


@pytest.fixture
def broker() -> Broker:
    """Give the local Mosquitto broker, failing clearly if it is down."""
    _require_port(MQTT_PORT, "Mosquitto")
    return Broker(MQTT_HOST, MQTT_PORT)


@pytest.fixture
def topic_prefix() -> str:
    """Give a topic prefix no other test uses."""
    return f"test-{uuid.uuid4().hex[:10]}"


class InfluxV1:
    """A fresh database on the local InfluxDB 1.x, queried with InfluxQL."""

    def __init__(self, url: str, database: str) -> None:
        self.url = url
        self.database = database
        self._http = httpx.Client(base_url=url, timeout=10)

    def query(self, q: str) -> list[dict[str, Any]]:
        """Run an InfluxQL query and return its series (empty list if none)."""
        response = self._http.get(
            "/query", params={"db": self.database, "q": q, "epoch": "ns"}
        )
        response.raise_for_status()
        result = response.json()["results"][0]
        assert "error" not in result, result
        return list(result.get("series", []))

    def rows(self, measurement: str) -> list[dict[str, Any]]:
        """Return every row of a measurement as dicts, oldest first."""
        rows = []
        for series in self.query(f'SELECT * FROM "{measurement}"'):
            for values in series["values"]:
                rows.append(dict(zip(series["columns"], values, strict=True)))
        return rows

    def write(self, body: str) -> httpx.Response:
        """Write raw line protocol, as another tool would."""
        return self._http.post(
            "/write", params={"db": self.database, "precision": "ns"}, content=body
        )

    async def wait_for_rows(self, measurement: str, count: int) -> list[dict[str, Any]]:
        """Poll until a measurement has at least `count` rows, or time out.

        InfluxDB 1.x stores a point's fields one by one, so a query that runs
        while a write is being applied can see a row with only some of its
        fields. Rows are returned once two reads in a row agree.
        """
        deadline = time.monotonic() + WAIT_S
        rows: list[dict[str, Any]] = []
        previous: list[dict[str, Any]] | None = None
        while time.monotonic() < deadline:
            rows = self.rows(measurement)
            if len(rows) >= count and rows == previous:
                return rows
            previous = rows if len(rows) >= count else None
            await asyncio.sleep(0.1)
        return rows

    def close(self) -> None:
        """Drop the database."""
        self._http.post("/query", params={"q": f'DROP DATABASE "{self.database}"'})
        self._http.close()


@pytest.fixture
def influx_v1() -> Iterator[InfluxV1]:
    """Give a new database on the local InfluxDB 1.x, dropped afterwards."""
    _require_port(int(INFLUX_V1_URL.rsplit(":", 1)[1]), "InfluxDB 1.x")
    database = f"test_{uuid.uuid4().hex[:10]}"
    influx = InfluxV1(INFLUX_V1_URL, database)
    influx._http.post("/query", params={"q": f'CREATE DATABASE "{database}"'})
    yield influx
    influx.close()


class Victoria:
    """The local VictoriaMetrics, written to through the InfluxDB v2 API."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._http = httpx.Client(base_url=url, timeout=10)

    def export(self, selector: str) -> list[dict[str, Any]]:
        """Return the series matching a selector, as /api/v1/export gives them."""
        self._http.get("/internal/force_flush")
        response = self._http.post("/api/v1/export", data={"match[]": selector})
        response.raise_for_status()
        return [orjson.loads(line) for line in response.text.splitlines() if line]

    def close(self) -> None:
        """Close the HTTP connections."""
        self._http.close()

    async def wait_for_series(self, selector: str, count: int) -> list[dict[str, Any]]:
        """Poll until `count` series match, or time out (new series take ~1 s)."""
        deadline = time.monotonic() + WAIT_S
        series: list[dict[str, Any]] = []
        while time.monotonic() < deadline:
            series = self.export(selector)
            if len(series) >= count and all(s["values"] for s in series):
                return series
            await asyncio.sleep(0.2)
        return series


@pytest.fixture
def victoria() -> Iterator[Victoria]:
    """Give the local VictoriaMetrics."""
    _require_port(int(VICTORIA_URL.rsplit(":", 1)[1]), "VictoriaMetrics")
    victoria = Victoria(VICTORIA_URL)
    yield victoria
    victoria.close()


@pytest.fixture
def gateway_config(
    broker: Broker, topic_prefix: str, tmp_path: Path
) -> Callable[..., GatewayConfig]:
    """Give a factory of gateway configurations for this test's prefix and broker.

    Keyword arguments: `subscriptions` (list of dicts), `influx`, `mqtt`,
    `quality` and `spool` (dicts) are merged over defaults pointing at the
    local services and this test's directory; the quality checks are off
    unless `quality={"enabled": True}`.
    """

    def make(
        *,
        subscriptions: list[dict[str, Any]] | None = None,
        influx: dict[str, Any] | None = None,
        mqtt: dict[str, Any] | None = None,
        quality: dict[str, Any] | None = None,
        spool: dict[str, Any] | None = None,
    ) -> GatewayConfig:
        raw: dict[str, Any] = {
            "log_level": "debug",
            "mqtt": {
                "host": broker.host,
                "port": broker.port,
                "client_id": f"decor-{topic_prefix}",
                "reconnect_min_s": 0.2,
                "reconnect_max_s": 1.0,
                **(mqtt or {}),
            },
            "influx": {
                "url": INFLUX_V1_URL,
                "api": "v1",
                "flush_interval_s": 0.2,
                "retry_min_s": 0.1,
                "retry_max_s": 0.5,
                **(influx or {}),
            },
            "dead_letters": {"path": str(tmp_path / "dead-letters.jsonl")},
            "spool": {"path": str(tmp_path / "spool"), **(spool or {})},
            # Profile checks add a `quality` field to points of the simulated
            # device types; tests of other things keep the points as sent.
            "quality": {"enabled": False, **(quality or {})},
            "subscriptions": subscriptions
            or [
                {
                    "topic_template": f"{topic_prefix}/{{agency}}/{{device_type}}/"
                    "{device_id}/telemetry",
                    "measurement": "{device_type}",
                }
            ],
        }
        return GatewayConfig.model_validate(raw)

    return make


@contextlib.asynccontextmanager
async def run_gateway(config: GatewayConfig) -> AsyncIterator[Gateway]:
    """Run a gateway until the block ends, once it is subscribed and writing."""
    gateway = Gateway(config)
    stop = asyncio.Event()
    task = asyncio.create_task(gateway.run(stop), name="test.gateway")
    try:
        async with asyncio.timeout(WAIT_S):
            await gateway.subscriber.subscribed.wait()
            await gateway.writer.ready.wait()
        yield gateway
    finally:
        stop.set()
        await asyncio.wait_for(task, timeout=WAIT_S + 10)


@pytest.fixture
def running_gateway() -> Callable[
    [GatewayConfig], contextlib.AbstractAsyncContextManager[Gateway]
]:
    """Give `run_gateway`: an async context manager running a real gateway."""
    return run_gateway


class Publisher:
    """A real MQTT client publishing test messages."""

    def __init__(self, client: gmqtt.Client) -> None:
        self._client = client

    def publish(self, topic: str, payload: bytes | str, qos: int = 1) -> None:
        """Publish one message."""
        self._client.publish(topic, payload, qos=qos)


@pytest.fixture
async def publisher(broker: Broker) -> AsyncIterator[Publisher]:
    """Give a connected MQTT publisher."""
    client = gmqtt.Client(f"test-pub-{uuid.uuid4().hex[:8]}")
    await client.connect(broker.host, broker.port)
    yield Publisher(client)
    # Let QoS 1 publishes reach the broker before disconnecting.
    await asyncio.sleep(0.2)
    await client.disconnect()


async def wait_until(predicate: Callable[[], bool], timeout_s: float = WAIT_S) -> bool:
    """Poll `predicate` until it holds or the time runs out; return its last value."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        await asyncio.sleep(0.05)
    return predicate()
