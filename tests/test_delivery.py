"""Nothing lost: numbered readings under load survive every fault we can cause.

Each test publishes a known, numbered set of QoS 1 readings through its own
Mosquitto (the shipped config/mosquitto.conf: persistence on, deep queues),
causes one fault mid-stream, and then checks that InfluxDB holds every number
exactly once. Every reading carries its device time, so a message the broker
delivers twice (at-least-once) is stored as the same point twice, which
InfluxDB keeps once.

- InfluxDB stopped (a real influxd process, SIGTERM) and started again;
- the gateway process killed with SIGKILL and started again;
- the spool filled to its limit while InfluxDB is away.

The broker restart is in tests/test_broker_config.py and two gateways on one
shared subscription in tests/test_scale_out.py.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import orjson
import pytest

from gateway.config import GatewayConfig
from tests.conftest import WAIT_S, wait_until
from tests.test_broker_config import _publish_batch, private_brokers  # noqa: F401
from tests.test_faults import PrivateService, free_port

logger = logging.getLogger(__name__)

DATABASE = "decor"
MEASUREMENT = "counter"
# Readings per test and per publish batch; the publisher paces the batches so
# that the fault lands mid-stream.
READINGS = 8_000
PUBLISH_BATCH = 50  # below the broker's Receive Maximum for publishers (100)
PUBLISH_PAUSE_S = 0.03
OUTAGE_S = 6.0
MS = 1_000_000
DECOR = str(Path(sys.executable).with_name("decor"))


class PrivateInflux(PrivateService):
    """An InfluxDB 1.x process of one test's own, ready once /ping answers."""

    def __init__(self, directory: Path) -> None:
        self.rpc_port = free_port()
        port = free_port()
        directory.mkdir(parents=True, exist_ok=True)
        config = directory / "influxdb.conf"
        config.write_text(
            "reporting-disabled = true\n"
            f'bind-address = "127.0.0.1:{self.rpc_port}"\n'
            f'[meta]\n  dir = "{directory}/meta"\n'
            f'[data]\n  dir = "{directory}/data"\n  wal-dir = "{directory}/wal"\n'
            "[http]\n  enabled = true\n"
            f'  bind-address = "127.0.0.1:{port}"\n'
            "  suppress-write-log = true\n"
        )
        super().__init__(
            "InfluxDB",
            ["influxd", "run", "-config", str(config)],
            port,
            directory / "influxd.log",
        )
        self.url = f"http://127.0.0.1:{port}"

    async def _answers(self) -> bool:
        try:
            async with httpx.AsyncClient(timeout=2) as client:
                response = await client.get(f"{self.url}/ping")
        except httpx.HTTPError:
            return False
        return response.status_code == 204

    async def numbers(self) -> list[int]:
        """Return the `n` of every stored reading, sorted (duplicates kept)."""
        async with httpx.AsyncClient(timeout=30) as client:
            response = await client.get(
                f"{self.url}/query",
                params={"db": DATABASE, "q": f"SELECT n FROM {MEASUREMENT}"},
            )
        response.raise_for_status()
        [result] = response.json()["results"]
        values = result.get("series", [{}])[0].get("values", [])
        return sorted(int(row[1]) for row in values)

    async def wait_for_all(self, count: int) -> list[int]:
        """Wait until `count` readings are stored (or WAIT_S * 4 passes)."""
        numbers: list[int] = []
        deadline = time.monotonic() + WAIT_S * 4
        while time.monotonic() < deadline:
            numbers = await self.numbers()
            if len(numbers) >= count:
                # Settled: InfluxDB applies a batch's points one by one.
                await asyncio.sleep(0.3)
                return await self.numbers()
            await asyncio.sleep(0.25)
        return numbers


@pytest.fixture
async def private_influx(tmp_path: Path) -> AsyncIterator[PrivateInflux]:
    """Give a started InfluxDB 1.x on free ports, stopped at the end."""
    influx = PrivateInflux(tmp_path / "influxdb")
    await influx.start()
    yield influx
    await influx.stop()


@dataclass
class Publisher:
    """Numbered readings, published in paced QoS 1 batches until acknowledged."""

    port: int
    topic: str
    base_ms: int
    acked: int = 0
    retries: int = 0

    async def run(self, count: int = READINGS) -> None:
        for start in range(0, count, PUBLISH_BATCH):
            numbers = range(start, min(start + PUBLISH_BATCH, count))
            payloads = [orjson.dumps({"ts": self.base_ms + n, "n": n}) for n in numbers]
            while not await _publish_batch(self.port, self.topic, payloads):
                self.retries += 1
                await asyncio.sleep(0.2)
            self.acked += len(payloads)
            await asyncio.sleep(PUBLISH_PAUSE_S)


def _config(
    topic_prefix: str,
    broker_port: int,
    influx_url: str,
    tmp_path: Path,
    **spool: object,
) -> dict[str, object]:
    return {
        "log_level": "info",
        "mqtt": {
            "host": "127.0.0.1",
            "port": broker_port,
            "client_id": f"decor-{topic_prefix}",
            "reconnect_min_s": 0.2,
            "reconnect_max_s": 1.0,
        },
        "influx": {
            "url": influx_url,
            "api": "v1",
            "database": DATABASE,
            "batch_size": 1000,
            "flush_interval_s": 0.2,
            "timeout_s": 2.0,
            "retry_min_s": 0.2,
            "retry_max_s": 1.0,
        },
        "spool": {"path": str(tmp_path / "spool"), **spool},
        "dead_letters": {"path": str(tmp_path / "dead-letters.jsonl")},
        "subscriptions": [
            {
                "topic_template": f"{topic_prefix}/{{agency}}/{{device_type}}/"
                "{device_id}/telemetry",
                "measurement": "{device_type}",
                "timestamp_key": "ts",
                "timestamp_unit": "ms",
                "fields": {"n": "integer"},
            }
        ],
    }


def _topic(topic_prefix: str) -> str:
    return f"{topic_prefix}/dishub/{MEASUREMENT}/{MEASUREMENT}-01/telemetry"


def _assert_each_once(numbers: list[int], count: int = READINGS) -> None:
    missing = sorted(set(range(count)) - set(numbers))
    assert not missing, f"{len(missing)} readings lost, first {missing[:10]}"
    assert numbers == list(range(count)), "a reading was stored twice"


async def test_readings_survive_influxdb_stopped_mid_stream(
    private_brokers,  # noqa: F811
    private_influx,
    running_gateway,
    topic_prefix,
    tmp_path,
):
    """Test that readings sent while InfluxDB is stopped are spooled, then all
    stored once it is back, the newest live batch before the spooled ones."""
    broker = private_brokers(shipped=True)
    await broker.start()
    config = GatewayConfig.model_validate(
        _config(topic_prefix, broker.port, private_influx.url, tmp_path)
    )
    publisher = Publisher(broker.port, _topic(topic_prefix), _recent_ms())

    async with running_gateway(config) as gateway:
        publishing = asyncio.create_task(publisher.run())
        assert await wait_until(lambda: gateway.stats.points_written >= READINGS // 5)
        await private_influx.stop()
        stopped_at = publisher.acked
        await asyncio.sleep(OUTAGE_S)
        spooled = gateway.stats.points_spooled
        acked_during_outage = publisher.acked - stopped_at
        await private_influx.start()
        async with asyncio.timeout(WAIT_S * 4):
            await publishing
        numbers = await private_influx.wait_for_all(READINGS)
        assert await wait_until(lambda: gateway.stats.spool_points == 0)
        replayed = gateway.stats.points_replayed
    logger.info(
        "InfluxDB stopped %.0f s: %d readings acknowledged to devices meanwhile, "
        "%d points spooled, %d replayed; %d stored",
        OUTAGE_S,
        acked_during_outage,
        spooled,
        replayed,
        len(numbers),
    )

    _assert_each_once(numbers)
    # Readings kept flowing during the outage: the spool took them.
    assert acked_during_outage > 0
    assert spooled > 0
    assert replayed == gateway.stats.points_spooled
    assert list(config.spool.path.iterdir()) == []
    assert not config.dead_letters.path.exists()


async def test_readings_survive_the_gateway_killed_mid_stream(
    private_brokers,  # noqa: F811
    private_influx,
    topic_prefix,
    tmp_path,
):
    """Test that a gateway killed with SIGKILL and started again stores every
    reading: what it had not acknowledged, the broker sends again."""
    broker = private_brokers(shipped=True)
    await broker.start()
    config_path = tmp_path / "gateway.toml"
    config_path.write_text(
        _to_toml(_config(topic_prefix, broker.port, private_influx.url, tmp_path))
    )
    publisher = Publisher(broker.port, _topic(topic_prefix), _recent_ms())
    log_path = tmp_path / "gateway.log"

    first = _start_gateway(config_path, log_path)
    try:
        # The first start creates the broker session; before it, nothing is queued.
        assert await wait_until(lambda: "Subscribed to" in _text(log_path))
        publishing = asyncio.create_task(publisher.run())
        assert await wait_until(
            lambda: publisher.acked >= READINGS // 3, timeout_s=WAIT_S * 2
        )
        first.send_signal(signal.SIGKILL)
        await asyncio.to_thread(first.wait, 10)
        killed_at = publisher.acked
        await asyncio.sleep(1.0)
        second = _start_gateway(config_path, log_path)
        try:
            async with asyncio.timeout(WAIT_S * 4):
                await publishing
            numbers = await private_influx.wait_for_all(READINGS)
        finally:
            await _stop_gateway(second)
    finally:
        if first.poll() is None:
            first.kill()
            first.wait(10)
    logger.info(
        "Gateway killed after %d readings were acknowledged to devices; %d stored",
        killed_at,
        len(numbers),
    )

    assert 0 < killed_at < READINGS
    _assert_each_once(numbers)
    assert second.returncode == 0, log_path.read_text()[-3000:]


async def test_a_full_spool_holds_readings_back_at_the_broker_and_loses_none(
    private_brokers,  # noqa: F811
    private_influx,
    running_gateway,
    topic_prefix,
    tmp_path,
    caplog,
):
    """Test that with InfluxDB away and the spool full, the gateway stops
    acknowledging (the broker keeps the rest), then resumes and stores all."""
    broker = private_brokers(shipped=True)
    await broker.start()
    spool_limit = 60_000  # bytes: some hundreds of points
    raw = _config(
        topic_prefix, broker.port, private_influx.url, tmp_path, max_bytes=spool_limit
    )
    raw["influx"] |= {"max_buffered_points": 500, "batch_size": 250}  # type: ignore[operator]
    config = GatewayConfig.model_validate(raw)
    publisher = Publisher(broker.port, _topic(topic_prefix), _recent_ms())

    async with running_gateway(config) as gateway:
        await private_influx.stop()
        publishing = asyncio.create_task(publisher.run())
        assert await wait_until(lambda: gateway.stats.spool_points > 0)
        assert await wait_until(lambda: publisher.acked >= READINGS // 2)
        spool_bytes = gateway.stats.spool_bytes
        received = gateway.stats.messages_received
        in_memory = gateway.stats.points_buffered
        await private_influx.start()
        async with asyncio.timeout(WAIT_S * 4):
            await publishing
        numbers = await private_influx.wait_for_all(READINGS)
        assert await wait_until(lambda: gateway.stats.spool_points == 0)
    logger.info(
        "Spool full at %d of %d bytes; gateway had taken %d of %d readings "
        "acknowledged to devices (%d in memory); the broker held the rest",
        spool_bytes,
        spool_limit,
        received,
        READINGS // 2,
        in_memory,
    )

    _assert_each_once(numbers)
    assert 0 < spool_bytes <= spool_limit
    # The broker, not the gateway, held what neither spool nor memory took.
    assert received < READINGS // 2
    assert in_memory <= 500 + 1
    assert any("is full" in r.getMessage() for r in caplog.records)


def _recent_ms() -> int:
    # Inside the database's retention and shard range, in the past.
    return int(time.time() * 1000) - 3_600_000


def _text(path: Path) -> str:
    return path.read_text(errors="replace") if path.exists() else ""


def _start_gateway(config_path: Path, log_path: Path) -> subprocess.Popen[bytes]:
    log = open(log_path, "ab")  # noqa: SIM115 - the child holds it
    try:
        return subprocess.Popen(
            [DECOR, "run", "--config", str(config_path), "--no-summary"],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=os.environ | {"PYTHONUNBUFFERED": "1"},
        )
    finally:
        log.close()


async def _stop_gateway(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            await asyncio.to_thread(process.wait, 30)
        except subprocess.TimeoutExpired:
            process.kill()
            await asyncio.to_thread(process.wait, 10)


def _to_toml(raw: dict[str, object]) -> str:
    """Write a configuration as TOML: tables, arrays of tables, plain values."""
    lines = [
        f"{key} = {_toml_value(value)}"
        for key, value in raw.items()
        if not isinstance(value, dict | list)
    ]
    for key, value in raw.items():
        if isinstance(value, dict):
            lines.append(f"[{key}]")
            lines += [f"{k} = {_toml_value(v)}" for k, v in value.items()]
        elif isinstance(value, list):
            for table in value:
                lines.append(f"[[{key}]]")
                lines += [f"{k} = {_toml_value(v)}" for k, v in table.items()]
    return "\n".join(lines) + "\n"


def _toml_value(value: object) -> str:
    if isinstance(value, dict):
        return (
            "{" + ", ".join(f"{k} = {_toml_value(v)}" for k, v in value.items()) + "}"
        )
    if isinstance(value, bool):
        return "true" if value else "false"
    # JSON strings and numbers are TOML strings and numbers.
    return orjson.dumps(value).decode()


async def test_a_second_signal_exits_at_once_and_loses_nothing_acknowledged(
    private_brokers,  # noqa: F811
    private_influx,
    topic_prefix,
    tmp_path,
):
    """Test that SIGTERM twice ends a gateway stuck writing to an InfluxDB that
    never answers at once, and the readings it held come from the broker to
    the next gateway."""
    broker = private_brokers(shipped=True)
    await broker.start()

    # A server that accepts connections and never answers: the first stop
    # waits on it, so only the second signal can end the gateway quickly.
    held: list[asyncio.StreamWriter] = []
    silent = await asyncio.start_server(
        lambda reader, writer: held.append(writer), "127.0.0.1", 0
    )
    silent_port = silent.sockets[0].getsockname()[1]
    stuck = _config(
        topic_prefix,
        broker.port,
        f"http://127.0.0.1:{silent_port}",
        tmp_path,
        enabled=False,
    )
    stuck["influx"] |= {"timeout_s": 60.0}  # type: ignore[operator]
    stuck_path = tmp_path / "stuck.toml"
    stuck_path.write_text(_to_toml(stuck))
    log_path = tmp_path / "gateway.log"
    publisher = Publisher(broker.port, _topic(topic_prefix), _recent_ms())

    gateway = _start_gateway(stuck_path, log_path)
    try:
        assert await wait_until(lambda: "Subscribed to" in _text(log_path))
        await publisher.run(count=200)
        gateway.send_signal(signal.SIGTERM)
        assert await wait_until(lambda: "Stopping" in _text(log_path))
        gateway.send_signal(signal.SIGTERM)
        returncode = await asyncio.to_thread(gateway.wait, WAIT_S)
    finally:
        if gateway.poll() is None:
            gateway.kill()
            gateway.wait(10)
        for writer in held:
            writer.close()
        silent.close()
        await silent.wait_closed()
    assert returncode == 128 + signal.SIGTERM, _text(log_path)[-3000:]
    assert "SIGTERM again: exiting now" in _text(log_path)

    good_path = tmp_path / "good.toml"
    good_path.write_text(
        _to_toml(_config(topic_prefix, broker.port, private_influx.url, tmp_path))
    )
    second = _start_gateway(good_path, log_path)
    try:
        numbers = await private_influx.wait_for_all(200)
    finally:
        await _stop_gateway(second)
    _assert_each_once(numbers, count=200)
