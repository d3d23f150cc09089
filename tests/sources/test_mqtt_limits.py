"""Oversized messages: refused without holding up the other devices' readings.

Each test starts its own Mosquitto (see tests/sources/test_mqtt.py), runs a real
gateway against it and publishes, with a real MQTT client, a payload of a few
MB beside a normal device's readings. Readings go all the way to InfluxDB 1.x.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import AsyncIterator
from pathlib import Path

import orjson
import pytest

from tests.conftest import wait_until
from tests.sources.test_mqtt import (
    MEASUREMENT,
    PrivateMosquitto,
    device_topic,
    gateway_running,
    mqtt_client,
    subscribed,
)
from tests.test_faults import free_port, reading

MS = 1_000_000
LIMIT_BYTES = 1024 * 1024
BIG_BYTES = 3 * 1024 * 1024
READINGS = 20
# CONNACK: session not present, connection accepted.
CONNACK_ACCEPTED = b"\x20\x02\x00\x00"


@pytest.fixture
async def private_broker(tmp_path: Path) -> AsyncIterator[PrivateMosquitto]:
    """Give a started Mosquitto on a free port, logging everything, stopped after."""
    port = free_port()
    lines = ["persistence false", "log_dest stderr", "log_type all"]
    if os.geteuid() == 0:
        # As root Mosquitto would switch to the 'mosquitto' user.
        lines.append("user root")
    lines += [f"listener {port} 127.0.0.1", "allow_anonymous true"]
    conf = tmp_path / "mosquitto.conf"
    conf.write_text("\n".join(lines) + "\n")
    broker = PrivateMosquitto(
        "Mosquitto", ["mosquitto", "-c", str(conf)], port, tmp_path / "mosquitto.log"
    )
    await broker.start()
    yield broker
    await broker.stop()


def dead_letters(config) -> list[dict]:
    """Return the gateway's dead letters, as written once it has stopped."""
    path = config.dead_letters.path
    return [orjson.loads(line) for line in path.read_bytes().splitlines()]


async def publish_beside_readings(client, topic_prefix: str, big: bytes) -> int:
    """Publish READINGS readings of one device with `big` among them; return ms."""
    normal = device_topic(topic_prefix, "rg-normal-01")
    flood = device_topic(topic_prefix, "rg-flood-01")
    base_ms = int(time.time() * 1000) - 60_000
    for index in range(READINGS):
        if index == READINGS // 2:
            client.publish(flood, big, qos=1)
        client.publish(normal, reading(base_ms + index, level_cm=float(index)), qos=1)
        await asyncio.sleep(0.01)
    return base_ms


def stored_readings(influx_v1) -> list[tuple[int, str, float]]:
    """Return (time, device, level) of every stored river gauge reading."""
    return [
        (row["time"], row["device_id"], row["level_cm"])
        for row in influx_v1.rows(MEASUREMENT)
    ]


async def test_subscriber_has_the_broker_drop_an_oversized_message_under_mqtt5(
    gateway_config, topic_prefix, influx_v1, private_broker
):
    """Test that under MQTT 5 the broker drops a 3 MB message and readings flow."""
    broker = private_broker
    config = gateway_config(
        mqtt={"port": broker.port, "protocol": "5", "max_payload_bytes": LIMIT_BYTES},
        influx={"database": influx_v1.database},
    )

    async with gateway_running(config) as gateway:
        await subscribed(gateway)
        async with mqtt_client(broker.port) as client:
            base_ms = await publish_beside_readings(
                client, topic_prefix, os.urandom(BIG_BYTES)
            )
            await influx_v1.wait_for_rows(MEASUREMENT, READINGS)
            # The dropped message would come in order, before the last reading.
            assert await wait_until(lambda: gateway.stats.messages_received == READINGS)
        stats = gateway.stats

    assert stored_readings(influx_v1) == [
        (ms * MS, "rg-normal-01", float(ms - base_ms))
        for ms in range(base_ms, base_ms + READINGS)
    ]
    assert stats.messages_received == READINGS
    assert not stats.messages_rejected
    assert not config.dead_letters.path.exists()
    assert (
        f"Dropping too large outgoing PUBLISH for {config.mqtt.client_id} ("
        in broker.log()
    )


async def test_gateway_refuses_an_oversized_message_as_too_large_under_mqtt311(
    gateway_config, topic_prefix, influx_v1, private_broker
):
    """Test that under MQTT 3.1.1 a 3 MB message is refused and readings flow."""
    broker = private_broker
    config = gateway_config(
        mqtt={
            "port": broker.port,
            "protocol": "3.1.1",
            "max_payload_bytes": LIMIT_BYTES,
        },
        influx={"database": influx_v1.database},
    )
    big = b'{"level_cm": 1.0, "junk": "' + b"x" * BIG_BYTES + b'"}'

    async with gateway_running(config) as gateway:
        await subscribed(gateway)
        # gmqtt's own read loop is quadratic in a message's size; ours must
        # have replaced it (a gmqtt upgrade could silently undo that).
        protocol = gateway.subscriber._client._connection._protocol
        assert protocol._read_loop_future.get_coro().__name__ == "_read_packets"
        async with mqtt_client(broker.port) as client:
            base_ms = await publish_beside_readings(client, topic_prefix, big)
            await influx_v1.wait_for_rows(MEASUREMENT, READINGS)
            assert await wait_until(
                lambda: gateway.stats.messages_received == READINGS + 1
            )
        stats = gateway.stats

    assert stored_readings(influx_v1) == [
        (ms * MS, "rg-normal-01", float(ms - base_ms))
        for ms in range(base_ms, base_ms + READINGS)
    ]
    assert stats.messages_rejected == {"too_large": 1}
    [entry] = dead_letters(config)
    assert entry["reason"] == "too_large"
    assert entry["topic"] == device_topic(topic_prefix, "rg-flood-01")
    assert entry["detail"] == (
        f"payload is {len(big)} bytes; mqtt.max_payload_bytes is {LIMIT_BYTES}"
    )
    # The dead letter keeps the payload's start only, and says so.
    assert entry["payload_truncated"] is True
    assert entry["payload_bytes"] == len(big)
    assert big.startswith(entry["payload"].encode())
    assert len(entry["payload"]) < len(big)


@pytest.mark.parametrize("protocol", ["5", "3.1.1"])
async def test_gateway_takes_a_payload_at_the_limit_and_refuses_one_byte_more(
    gateway_config, topic_prefix, influx_v1, private_broker, protocol
):
    """Test that max_payload_bytes is the largest payload stored, in both protocols."""
    broker = private_broker
    limit = 1000
    config = gateway_config(
        mqtt={"port": broker.port, "protocol": protocol, "max_payload_bytes": limit},
        influx={"database": influx_v1.database},
    )
    ts_ms = int(time.time() * 1000) - 5_000
    head = reading(ts_ms, level_cm=2.5)[:-1] + b', "note": "'
    at_limit = head + b"a" * (limit - len(head) - 2) + b'"}'
    over = head + b"a" * (limit - len(head) - 1) + b'"}'
    assert (len(at_limit), len(over)) == (limit, limit + 1)
    topic = device_topic(topic_prefix, "rg-edge-01")

    async with gateway_running(config) as gateway:
        await subscribed(gateway)
        async with mqtt_client(broker.port) as client:
            client.publish(topic, over, qos=1)
            client.publish(topic, at_limit, qos=1)
            rows = await influx_v1.wait_for_rows(MEASUREMENT, 1)
            # MQTT 5 leaves room for the topic around the payload, so one
            # byte over still arrives, and the gateway refuses it.
            assert await wait_until(lambda: gateway.stats.messages_received == 2)
        stats = gateway.stats

    assert [(row["time"], row["level_cm"]) for row in rows] == [(ts_ms * MS, 2.5)]
    assert len(rows[0]["note"]) == limit - len(head) - 2
    assert stats.messages_rejected == {"too_large": 1}
    [entry] = dead_letters(config)
    assert entry["reason"] == "too_large"
    assert entry["payload"].encode() == over
    assert "payload_truncated" not in entry


async def test_subscriber_reconnects_after_a_packet_length_mqtt_does_not_allow(
    gateway_config, caplog
):
    """Test that a remaining length over four bytes closes and reopens the session."""
    # No real broker sends this, so a socket server plays one: it accepts the
    # CONNECT, then sends a PUBLISH whose length runs over MQTT's four bytes.
    caplog.set_level(logging.WARNING, logger="gateway.sources.mqtt")
    connections = 0

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        nonlocal connections
        connections += 1
        await reader.read(1024)
        writer.write(CONNACK_ACCEPTED + b"\x30\xff\xff\xff\xff\x01")
        try:
            await reader.read()
        finally:
            writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    config = gateway_config(mqtt={"port": port, "protocol": "3.1.1"})

    async with server, gateway_running(config):
        assert await wait_until(lambda: connections >= 2)

    assert (
        "The MQTT broker sent a packet length longer than MQTT allows; closing the "
        "connection"
    ) in caplog.messages
