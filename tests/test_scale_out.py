"""Scale out: gateways sharing one MQTT shared subscription store each reading once."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid

import gmqtt
import orjson
from gmqtt.storage import PersistentStorage

from gateway.app import Gateway
from tests.conftest import WAIT_S, Broker, InfluxV1, wait_until

__all__: list[str] = []

logger = logging.getLogger(__name__)

READINGS = 2_000
SMALL_READINGS = 200
DEVICES = 20
# Below Mosquitto's default in-flight window (20): gmqtt raises, rather than
# waits, when the broker's receive maximum is used up.
BATCH_READINGS = 10
MEASUREMENT = "river_gauge"


async def test_scale_out_two_gateways_store_each_reading_once(
    gateway_config, running_gateway, broker, topic_prefix, influx_v1
):
    """Test that two gateways on one shared subscription store every reading once."""
    subscription = {
        "topic": f"$share/decor-{topic_prefix}/{topic_prefix}/+/+/+/telemetry",
        "topic_template": f"{topic_prefix}/{{agency}}/{{device_type}}/"
        "{device_id}/telemetry",
        "measurement": "{device_type}",
        "fields": {"n": "integer"},
    }
    configs = [
        gateway_config(
            subscriptions=[subscription],
            influx={"database": influx_v1.database},
            mqtt={"client_id": f"decor-{topic_prefix}-{name}"},
        )
        for name in ("a", "b")
    ]
    base_ms = int(time.time() * 1000) - 600_000

    async with running_gateway(configs[0]) as first:
        async with running_gateway(configs[1]) as second:
            await _publish_numbered(broker, topic_prefix, base_ms)
            stored = await _wait_for_count(influx_v1, READINGS)
            gateways = (first, second)
            await _wait_until_written(gateways, READINGS)

    received = [g.stats.messages_received for g in gateways]
    duplicates = sum(received) - READINGS
    logger.info("Received %s; %d duplicates", received, duplicates)
    assert stored == (READINGS, READINGS)
    values = influx_v1.query(f'SELECT "n" FROM "{MEASUREMENT}"')[0]["values"]
    assert sorted(n for _, n in values) == list(range(READINGS))
    # InfluxDB overwrites a point with the same series and time, so a second
    # copy would hide there: the gateways' own counters show duplicates.
    assert duplicates == 0
    assert all(count > 0 for count in received), received
    assert [g.stats.messages_duplicate for g in gateways] == [0, 0]
    assert sum(g.stats.points_written for g in gateways) == READINGS


async def test_scale_out_shared_copy_kept_beside_an_overlapping_filter(
    gateway_config, running_gateway, broker, topic_prefix, influx_v1
):
    """Test that the shared copy is stored and an overlapping filter's is dropped."""
    shared = {
        "topic": f"$share/decor-{topic_prefix}/{topic_prefix}/+/+/+/telemetry",
        "topic_template": f"{topic_prefix}/{{agency}}/{{device_type}}/"
        "{device_id}/telemetry",
        "measurement": "{device_type}",
        "fields": {"n": "integer"},
    }
    # Not shared: every gateway gets a copy of each reading for this filter,
    # which the MQTT 5 subscription identifiers must mark as the extra one.
    everything = {"topic": f"{topic_prefix}/#", "measurement": "other"}
    configs = [
        gateway_config(
            subscriptions=[shared, everything],
            influx={"database": influx_v1.database},
            mqtt={"client_id": f"decor-{topic_prefix}-{name}"},
        )
        for name in ("a", "b")
    ]
    base_ms = int(time.time() * 1000) - 600_000

    async with running_gateway(configs[0]) as first:
        async with running_gateway(configs[1]) as second:
            await _publish_numbered(broker, topic_prefix, base_ms, SMALL_READINGS)
            stored = await _wait_for_count(influx_v1, SMALL_READINGS)
            gateways = (first, second)
            await _wait_until_written(gateways, SMALL_READINGS)
            # The extra copies travel beside the stored ones; let them land.
            await wait_until(
                lambda: sum(g.stats.messages_duplicate for g in gateways)
                >= 2 * SMALL_READINGS
            )

    assert stored == (SMALL_READINGS, SMALL_READINGS)
    assert [g.stats.messages_received for g in gateways] == [
        SMALL_READINGS + g.stats.points_written for g in gateways
    ]
    assert [g.stats.messages_duplicate for g in gateways] == [SMALL_READINGS] * 2
    assert sum(g.stats.points_written for g in gateways) == SMALL_READINGS
    assert influx_v1.query('SELECT COUNT(*) FROM "other"') == []


async def _publish_numbered(
    broker: Broker, topic_prefix: str, base_ms: int, count: int = READINGS
) -> None:
    """Publish the numbered readings at QoS 1, a batch at a time until acked."""
    storage = PersistentStorage()
    client = gmqtt.Client(
        f"test-pub-{uuid.uuid4().hex[:8]}", persistent_storage=storage
    )
    await client.connect(broker.host, broker.port)
    try:
        for n in range(count):
            device = f"rg-{n % DEVICES:02d}"
            client.publish(
                f"{topic_prefix}/bpbd/{MEASUREMENT}/{device}/telemetry",
                orjson.dumps({"ts": base_ms + n, "n": n}),
                qos=1,
            )
            if (n + 1) % BATCH_READINGS == 0:
                # gmqtt keeps each QoS 1 message in `storage` until its PUBACK.
                await asyncio.wait_for(storage.wait_empty(), WAIT_S)
        await asyncio.wait_for(storage.wait_empty(), WAIT_S)
    finally:
        await client.disconnect()


async def _wait_for_count(influx: InfluxV1, count: int) -> tuple[int, int]:
    """Poll until `count` readings are stored; return (count, distinct count)."""
    query = f'SELECT COUNT("n"), COUNT(DISTINCT("n")) FROM "{MEASUREMENT}"'
    deadline = time.monotonic() + WAIT_S
    counts = (0, 0)
    while time.monotonic() < deadline:
        series = influx.query(query)
        if series:
            _, total, distinct = series[0]["values"][0]
            counts = (total, distinct)
            if total >= count:
                return counts
        await asyncio.sleep(0.2)
    return counts


async def _wait_until_written(gateways: tuple[Gateway, ...], count: int) -> None:
    """Wait until the gateways' counters have caught up with InfluxDB."""
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        if sum(g.stats.points_written for g in gateways) >= count:
            return
        await asyncio.sleep(0.05)
