"""Real outages: a broker or InfluxDB that is not there, goes away, comes back.

Each test starts its own Mosquitto or VictoriaMetrics on a free loopback port
and always stops it, so the shared services are never disturbed. Delays are
configured small, so each outage lasts a few seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import socket
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import IO, Any

import gmqtt
import httpx
import orjson
import pytest

from gateway.app import Gateway
from gateway.config import GatewayConfig
from tests.conftest import WAIT_S, Victoria, wait_until

VICTORIA_BIN = "/usr/bin/victoria-metrics"
START_TIMEOUT_S = 15.0
STOP_TIMEOUT_S = 10.0
MS = 1_000_000


def free_port() -> int:
    """Return a loopback TCP port nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class PrivateService:
    """One server process owned by one test: started on demand, always stopped."""

    def __init__(self, name: str, argv: list[str], port: int, log_path: Path) -> None:
        self.name = name
        self.argv = argv
        self.port = port
        self.log_path = log_path
        self._process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    async def start(self) -> None:
        """Launch the process and wait until its port accepts connections."""
        assert self._process is None, f"{self.name} is already running"
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        self._process = subprocess.Popen(
            self.argv,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                break
            if await self._answers():
                return
            await asyncio.sleep(0.05)
        log = self.log_path.read_text(errors="replace")[-2000:]
        await self.stop()
        pytest.fail(f"{self.name} did not come up on 127.0.0.1:{self.port}:\n{log}")

    async def stop(self) -> None:
        """Terminate the process (kill it if it lingers) and close its log."""
        process, self._process = self._process, None
        if process is not None:
            process.terminate()
            try:
                await asyncio.to_thread(process.wait, STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                process.kill()
                await asyncio.to_thread(process.wait, STOP_TIMEOUT_S)
        if self._log is not None:
            self._log.close()
            self._log = None

    async def _answers(self) -> bool:
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", self.port)
        except OSError:
            return False
        writer.close()
        await writer.wait_closed()
        return True


class PrivateVictoria(PrivateService):
    """VictoriaMetrics, ready once /health says so (not just once it listens)."""

    async def _answers(self) -> bool:
        try:
            async with httpx.AsyncClient(timeout=2) as client:
                response = await client.get(f"http://127.0.0.1:{self.port}/health")
        except httpx.HTTPError:
            return False
        return response.status_code == 200


@pytest.fixture
async def private_mosquitto(tmp_path: Path) -> AsyncIterator[PrivateService]:
    """Give a Mosquitto on a free port, not yet started, stopped at the end."""
    port = free_port()
    conf = tmp_path / "mosquitto.conf"
    lines = [f"listener {port} 127.0.0.1", "allow_anonymous true", "persistence false"]
    if os.geteuid() == 0:
        # As root Mosquitto would switch to the 'mosquitto' user.
        lines.append("user root")
    conf.write_text("\n".join(lines) + "\n")
    service = PrivateService(
        "Mosquitto", ["mosquitto", "-c", str(conf)], port, tmp_path / "mosquitto.log"
    )
    yield service
    await service.stop()


@pytest.fixture
async def private_victoria(tmp_path: Path) -> AsyncIterator[PrivateVictoria]:
    """Give a VictoriaMetrics on a free port, not yet started, stopped at the end."""
    port = free_port()
    argv = [
        VICTORIA_BIN,
        f"-httpListenAddr=127.0.0.1:{port}",
        f"-storageDataPath={tmp_path / 'victoria'}",
        # By default the newest 30 s are hidden from queries.
        "-search.latencyOffset=0s",
    ]
    service = PrivateVictoria("VictoriaMetrics", argv, port, tmp_path / "victoria.log")
    yield service
    await service.stop()


@contextlib.asynccontextmanager
async def gateway_running(config: GatewayConfig) -> AsyncIterator[Gateway]:
    """Run a gateway for the block without waiting for its services to answer."""
    gateway = Gateway(config)
    stop = asyncio.Event()
    task = asyncio.create_task(gateway.run(stop), name="test.gateway")
    try:
        yield gateway
    finally:
        stop.set()
        await asyncio.wait_for(task, timeout=WAIT_S + 10)


@contextlib.asynccontextmanager
async def mqtt_client(port: int) -> AsyncIterator[gmqtt.Client]:
    """Give a real MQTT client connected to the broker on `port`."""
    client = gmqtt.Client(f"test-pub-{uuid.uuid4().hex[:8]}")
    await client.connect("127.0.0.1", port)
    try:
        yield client
    finally:
        # Let QoS 1 publishes reach the broker before disconnecting.
        await asyncio.sleep(0.2)
        await client.disconnect()


@contextlib.contextmanager
def victoria_at(port: int) -> Iterator[Victoria]:
    """Give a reader of the VictoriaMetrics on `port`."""
    victoria = Victoria(f"http://127.0.0.1:{port}")
    try:
        yield victoria
    finally:
        victoria.close()


def logged(
    caplog: pytest.LogCaptureFixture, logger: str, level: int, pattern: str = ""
) -> list[str]:
    """Return the messages `logger` logged at exactly `level` that match `pattern`."""
    return [
        record.getMessage()
        for record in caplog.records
        if record.name == logger
        and record.levelno == level
        and re.search(pattern, record.getMessage())
    ]


def gateway_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    """Return every warning or error the gateway's own loggers wrote."""
    return [
        f"{record.name}: {record.getMessage()}"
        for record in caplog.records
        if record.name.startswith("gateway.")
        and record.levelno >= logging.WARNING
        and not record.name.startswith("gateway.sources.gmqtt")
    ]


def reading(ts_ms: int, **values: Any) -> bytes:
    """Return the JSON payload of one reading at `ts_ms`."""
    return orjson.dumps({"ts": ts_ms, **values})


async def test_gateway_waits_for_an_unreachable_broker_and_connects_when_it_starts(
    gateway_config, topic_prefix, influx_v1, private_mosquitto, caplog
):
    """Test that a broker down at start-up is one warning, then one info on connect."""
    caplog.set_level(logging.DEBUG, logger="gateway")
    port = private_mosquitto.port
    address = f"127.0.0.1:{port}"
    config = gateway_config(
        mqtt={"port": port}, influx={"database": influx_v1.database}
    )
    mqtt_log = "gateway.sources.mqtt"
    topic = f"{topic_prefix}/bpbd/river_gauge/rg-late-01/telemetry"
    ts_ms = int(time.time() * 1000) - 5_000

    async with gateway_running(config) as gateway:
        # Several attempts fail; only the first is worth a warning.
        assert await wait_until(
            lambda: len(logged(caplog, mqtt_log, logging.DEBUG, "Still cannot")) >= 3
        )
        assert logged(caplog, mqtt_log, logging.WARNING) == [
            f"Cannot connect to MQTT broker {address}: Connection refused; retrying "
            "with backoff"
        ]

        await private_mosquitto.start()
        await asyncio.wait_for(gateway.subscriber.subscribed.wait(), WAIT_S)
        async with mqtt_client(port) as client:
            client.publish(topic, reading(ts_ms, water_level_cm=120.5), qos=1)
            rows = await influx_v1.wait_for_rows("river_gauge", 1)

    assert [(row["time"], row["water_level_cm"]) for row in rows] == [
        (ts_ms * MS, 120.5)
    ]
    [back] = logged(caplog, mqtt_log, logging.INFO, "again after")
    assert re.fullmatch(
        rf"Connected to MQTT broker {re.escape(address)} again after \d+\.\d s", back
    )
    assert gateway_warnings(caplog) == [
        f"{mqtt_log}: Cannot connect to MQTT broker {address}: Connection refused; "
        "retrying with backoff"
    ]


async def test_gateway_resubscribes_after_the_broker_restarts(
    gateway_config, topic_prefix, influx_v1, private_mosquitto, caplog
):
    """Test that a broker restart gives one warning and one info, and data flows on."""
    caplog.set_level(logging.DEBUG, logger="gateway")
    await private_mosquitto.start()
    port = private_mosquitto.port
    address = f"127.0.0.1:{port}"
    config = gateway_config(
        mqtt={"port": port}, influx={"database": influx_v1.database}
    )
    mqtt_log = "gateway.sources.mqtt"
    topic = f"{topic_prefix}/bpbd/river_gauge/rg-restart-01/telemetry"
    ts_ms = int(time.time() * 1000) - 5_000

    async with gateway_running(config) as gateway:
        await asyncio.wait_for(gateway.subscriber.subscribed.wait(), WAIT_S)
        async with mqtt_client(port) as client:
            client.publish(topic, reading(ts_ms, water_level_cm=100.0), qos=1)
            await influx_v1.wait_for_rows("river_gauge", 1)

        await private_mosquitto.stop()
        assert await wait_until(lambda: not gateway.subscriber.connected.is_set())
        assert await wait_until(
            lambda: len(logged(caplog, mqtt_log, logging.DEBUG, "Still cannot")) >= 2
        )
        # A fresh broker knows nothing of our subscription: we must subscribe again.
        await private_mosquitto.start()
        await asyncio.wait_for(gateway.subscriber.subscribed.wait(), WAIT_S)
        async with mqtt_client(port) as client:
            client.publish(topic, reading(ts_ms + 1000, water_level_cm=101.0), qos=1)
            rows = await influx_v1.wait_for_rows("river_gauge", 2)

    assert [row["water_level_cm"] for row in rows] == [100.0, 101.0]
    assert gateway_warnings(caplog) == [
        f"{mqtt_log}: Lost connection to MQTT broker {address}; reconnecting"
    ]
    [back] = logged(caplog, mqtt_log, logging.INFO, "again after")
    assert re.fullmatch(
        rf"Connected to MQTT broker {re.escape(address)} again after \d+\.\d s", back
    )
    assert len(logged(caplog, mqtt_log, logging.INFO, "^Subscribed to")) == 2


@pytest.mark.parametrize("spooled", [True, False], ids=["spool", "memory"])
async def test_gateway_keeps_readings_while_influxdb_is_down_and_writes_them_later(
    gateway_config,
    running_gateway,
    publisher,
    topic_prefix,
    private_victoria,
    caplog,
    spooled,
):
    """Test that readings sent during an InfluxDB outage are stored once it is
    back, kept meanwhile in the spool, or in memory when the spool is off."""
    caplog.set_level(logging.DEBUG, logger="gateway")
    port = private_victoria.port
    url = f"http://127.0.0.1:{port}"
    config = gateway_config(
        influx={"url": url, "api": "v2"}, spool={"enabled": spooled}
    )
    device = f"rain-{topic_prefix}"
    topic = f"{topic_prefix}/bpbd/rain_gauge/{device}/telemetry"
    base_ms = int(time.time() * 1000) - 30_000
    sink_log = "gateway.sinks.batcher"

    async with running_gateway(config) as gateway:
        for index in range(5):
            payload = reading(base_ms + index * 1000, rain_mm=index * 0.5)
            publisher.publish(topic, payload)
        assert await wait_until(lambda: gateway.stats.messages_received == 5)
        assert await wait_until(lambda: gateway.stats.write_failures >= 3)
        assert gateway.stats.points_written == 0
        if spooled:
            assert await wait_until(lambda: gateway.stats.spool_points == 5)
            assert gateway.stats.points_buffered == 0
            assert len(list(config.spool.path.glob("*.lp"))) == 1
        else:
            assert gateway.stats.points_buffered == 5
            assert gateway.stats.spool_points == 0

        await private_victoria.start()
        assert await wait_until(lambda: gateway.stats.points_written == 5)
        with victoria_at(port) as victoria:
            series = await victoria.wait_for_series(
                f'rain_gauge_rain_mm{{device_id="{device}"}}', 1
            )
        assert await wait_until(lambda: gateway.stats.spool_points == 0)

    [stored] = series
    assert dict(zip(stored["timestamps"], stored["values"], strict=True)) == {
        base_ms + index * 1000: index * 0.5 for index in range(5)
    }
    assert gateway.stats.points_rejected == {}
    assert gateway.stats.points_replayed == (5 if spooled else 0)
    assert not config.dead_letters.path.exists()
    assert not spooled or list(config.spool.path.iterdir()) == []
    description = f"InfluxDB v2 API at {url} (bucket decor)"
    keeping = (
        f"spooling batches to {config.spool.path}" if spooled else "buffering"
    )
    assert gateway_warnings(caplog) == [
        f"{sink_log}: {description} unreachable: Connection refused; {keeping} "
        "and retrying with backoff"
    ]
    assert logged(caplog, sink_log, logging.DEBUG, "^Still failing")
    [back] = logged(caplog, sink_log, logging.INFO, "is back after")
    in_memory, then = (0, ", then the 5 spooled") if spooled else (5, "")
    assert re.fullmatch(
        rf"{re.escape(description)} is back after \d+\.\d s; writing the "
        rf"{in_memory} points buffered meanwhile{then}",
        back,
    )


async def test_gateway_keeps_a_type_conflict_apart_and_stores_the_rest_of_the_batch(
    gateway_config, running_gateway, publisher, topic_prefix, influx_v1, caplog
):
    """Test C18 part A on InfluxDB 1.x: one request, m2 and m3 stored, m1 rejected."""
    response = influx_v1.write("meter,device=m1 energy=100i 1717000000000000000\n")
    assert response.status_code == 204
    config = gateway_config(
        influx={
            "database": influx_v1.database,
            "batch_size": 3,
            "flush_interval_s": 60,
        },
        subscriptions=[
            {
                "topic_template": f"{topic_prefix}/{{device}}/telemetry",
                "measurement": "meter",
            }
        ],
    )
    ts_ms = 1_717_200_000_000

    async with running_gateway(config) as gateway:
        publisher.publish(f"{topic_prefix}/m1/telemetry", reading(ts_ms, energy=101.5))
        publisher.publish(f"{topic_prefix}/m2/telemetry", reading(ts_ms, power=230.5))
        publisher.publish(f"{topic_prefix}/m3/telemetry", reading(ts_ms, voltage=229.9))
        rows = await influx_v1.wait_for_rows("meter", 3)
        assert await wait_until(lambda: gateway.stats.points_rejected.total() == 1)
        stats = gateway.stats

    assert rows == [
        {
            "time": 1717000000000000000,
            "device": "m1",
            "energy": 100,
            "power": None,
            "voltage": None,
        },
        {
            "time": ts_ms * MS,
            "device": "m2",
            "energy": None,
            "power": 230.5,
            "voltage": None,
        },
        {
            "time": ts_ms * MS,
            "device": "m3",
            "energy": None,
            "power": None,
            "voltage": 229.9,
        },
    ]
    assert stats.write_requests == 1
    assert stats.points_written == 2
    assert stats.points_rejected == {"field_type_conflict": 1}
    [dead] = [
        orjson.loads(line)
        for line in config.dead_letters.path.read_bytes().splitlines()
    ]
    assert dead["reason"] == "field_type_conflict"
    assert dead["payload"] == "meter,device=m1 energy=101.5 1717200000000000000"
    assert "already exists as type integer" in dead["detail"]
    [warning] = gateway_warnings(caplog)
    assert warning.startswith(
        "gateway.sinks.batcher: Field 'energy' of measurement 'meter' already exists "
        "as type integer in InfluxDB v1 at "
    )
    assert "1 point(s) of type float refused" in warning


async def test_gateway_picks_the_write_api_once_an_unreachable_influxdb_starts(
    gateway_config, publisher, topic_prefix, private_victoria, caplog
):
    """Test that api="auto" retries /ping while InfluxDB is down, then writes."""
    caplog.set_level(logging.DEBUG, logger="gateway")
    port = private_victoria.port
    url = f"http://127.0.0.1:{port}"
    config = gateway_config(influx={"url": url, "api": "auto"})
    device = f"aq-{topic_prefix}"
    topic = f"{topic_prefix}/dlh/air_quality/{device}/telemetry"
    ts_ms = int(time.time() * 1000) - 10_000
    sink_log = "gateway.sinks.batcher"

    async with gateway_running(config) as gateway:
        await asyncio.wait_for(gateway.subscriber.subscribed.wait(), WAIT_S)
        publisher.publish(topic, reading(ts_ms, pm25_ugm3=41.5))
        assert await wait_until(
            lambda: len(logged(caplog, sink_log, logging.DEBUG, "^Still failing")) >= 2
        )
        assert not gateway.writer.ready.is_set()

        await private_victoria.start()
        assert await wait_until(lambda: gateway.stats.points_written == 1)
        with victoria_at(port) as victoria:
            [stored] = await victoria.wait_for_series(
                f'air_quality_pm25_ugm3{{device_id="{device}"}}', 1
            )

    assert stored["values"] == [41.5] and stored["timestamps"] == [ts_ms]
    assert gateway_warnings(caplog) == [
        f"{sink_log}: InfluxDB at {url} unreachable: Connection refused; spooling "
        f"batches to {config.spool.path} and retrying with backoff"
    ]
    assert logged(caplog, "gateway.sinks.auto", logging.INFO) == [
        f"InfluxDB at {url} reports version (none): using the v2 write API"
    ]
    [back] = logged(caplog, sink_log, logging.INFO, "is back after")
    assert back.startswith(f"InfluxDB v2 API at {url} (bucket decor) is back after ")
