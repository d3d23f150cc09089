"""The v1 sink and the batch writer against the real local InfluxDB 1.x."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from gateway.config import InfluxConfig
from gateway.deadletters import DeadLetterStore
from gateway.errors import PointsRejected, SinkError
from gateway.sinks import BatchWriter, InfluxV1Sink
from gateway.stats import GatewayStats
from tests.conftest import INFLUX_V1_URL, wait_until


def influx_config(database: str, **overrides: Any) -> InfluxConfig:
    """Return a v1 configuration for the local InfluxDB with short retries."""
    return InfluxConfig.model_validate(
        {
            "url": INFLUX_V1_URL,
            "api": "v1",
            "database": database,
            "flush_interval_s": 0.1,
            "retry_min_s": 0.05,
            "retry_max_s": 0.2,
        }
        | overrides
    )


@contextlib.asynccontextmanager
async def running_writer(
    config: InfluxConfig, tmp_path: Path
) -> AsyncIterator[tuple[BatchWriter, GatewayStats, DeadLetterStore]]:
    """Run a BatchWriter over a real InfluxV1Sink for the block."""
    stats = GatewayStats()
    dead_letters = DeadLetterStore(tmp_path / "dead-letters.jsonl", 1_000_000)
    writer = BatchWriter(InfluxV1Sink(config), config, stats, dead_letters)
    task = asyncio.create_task(writer.run(), name="test.influx.write")
    try:
        await asyncio.wait_for(writer.ready.wait(), timeout=10)
        yield writer, stats, dead_letters
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await writer.sink.close()
        dead_letters.close()


def read_dead_letters(store: DeadLetterStore) -> list[dict[str, Any]]:
    """Return the entries of a dead-letter file, or none if it was never written."""
    if not store.path.exists():
        return []
    return [orjson.loads(line) for line in store.path.read_bytes().splitlines()]


async def test_influx_v1_sink_reports_a_partial_write_as_points_rejected(influx_v1):
    """Test that InfluxDB 1.x's 400 partial write comes back as PointsRejected."""
    response = influx_v1.write("meter,device=m1 energy=100i 1717000000000000000\n")
    assert response.status_code == 204
    sink = InfluxV1Sink(influx_config(influx_v1.database))
    try:
        with pytest.raises(PointsRejected) as caught:
            await sink.write(
                [
                    "meter,device=m1 energy=101.5 1717200000000000000",
                    "meter,device=m2 power=230.5 1717200000000000000",
                ]
            )
    finally:
        await sink.close()

    assert caught.value.status == 400
    assert caught.value.body == (
        '{"error":"partial write: field type conflict: input field \\"energy\\" on '
        'measurement \\"meter\\" is type float, already exists as type integer '
        'dropped=1"}\n'
    )


async def test_influx_v1_writer_stores_the_parsable_lines_of_a_partial_write(
    influx_v1, tmp_path
):
    """Test that InfluxDB 1.x keeps good lines of a batch and only bad ones are kept."""
    lines = [
        "probe,device=a v=1 1717200000000000000",
        "probe,device=b v= 1717200000000000000",
        "probe,device=c v=3 1717200000000000000",
    ]
    config = influx_config(influx_v1.database, batch_size=3)
    async with running_writer(config, tmp_path) as (writer, stats, dead_letters):
        await writer.add(lines)
        await wait_until(lambda: writer.buffered == 0)

    rows = influx_v1.rows("probe")
    assert [(row["device"], row["v"]) for row in rows] == [("a", 1.0), ("c", 3.0)]
    assert stats.write_requests == 1
    assert stats.points_written == 2
    assert stats.points_rejected == {"unparsable_line": 1}
    [entry] = read_dead_letters(dead_letters)
    assert entry["payload"] == lines[1]
    assert "missing field value" in entry["detail"]


async def test_influx_v1_writer_retries_while_the_database_is_missing(
    influx_v1, tmp_path, caplog
):
    """Test that a 404 "database not found" is retried, not split and dead-lettered."""
    caplog.set_level(logging.DEBUG, logger="gateway.sinks")
    database = f"{influx_v1.database}_late"
    config = influx_config(database, create_database=False, batch_size=4)
    lines = [f"probe,device=d{i} v={i}.5 {1717200000000000000 + i}" for i in range(4)]
    admin = httpx.Client(base_url=INFLUX_V1_URL, timeout=10)
    try:
        async with running_writer(config, tmp_path) as (writer, stats, dead_letters):
            await writer.add(lines)
            assert await wait_until(lambda: stats.write_failures >= 3)
            assert stats.points_rejected == {}
            assert writer.buffered == 4

            admin.post("/query", params={"q": f'CREATE DATABASE "{database}"'})
            assert await wait_until(lambda: stats.points_written == 4)
        rows = admin.get(
            "/query", params={"db": database, "q": "SELECT * FROM probe"}
        ).json()["results"][0]["series"][0]["values"]
    finally:
        admin.post("/query", params={"q": f'DROP DATABASE "{database}"'})
        admin.close()

    assert len(rows) == 4
    assert read_dead_letters(dead_letters) == []
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "HTTP 404" in warnings[0] and "database not found" in warnings[0]
    assert sum("is back after" in r.getMessage() for r in caplog.records) == 1


async def test_influx_v1_sink_says_connection_refused_when_nothing_listens():
    """Test that an unreachable InfluxDB is a SinkError naming the URL and reason."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    sink = InfluxV1Sink(influx_config("decor", url=f"http://127.0.0.1:{port}"))
    try:
        with pytest.raises(SinkError) as caught:
            await sink.write(["probe v=1 1"])
    finally:
        await sink.close()

    assert not isinstance(caught.value, PointsRejected)
    assert str(caught.value) == (
        f"InfluxDB v1 at http://127.0.0.1:{port} (database decor) unreachable: "
        "Connection refused"
    )
