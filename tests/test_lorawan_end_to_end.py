"""End to end: TTS v3 and ChirpStack v4 events through Mosquitto into InfluxDB 1.x."""

from __future__ import annotations

import logging
import time
from typing import Any

import orjson

from tests.conftest import wait_until
from tests.decoding.test_lorawan import (
    C12_EXPECTED_1,
    C12_EXPECTED_2,
    C12_INPUT_1,
    C12_INPUT_2,
    C13_EXPECTED_1,
    C13_EXPECTED_2,
    C13_EXPECTED_3,
    C13_INPUT_1,
    C13_INPUT_2,
    TIME_WARNING,
    c13_input_3,
    parse_line,
)

TTS_DEVICE_TOPIC = "v3/farm-sensors@ttn/devices/soil-probe-04"
CS_DEVICE_TOPIC = (
    "application/3f5e2d1c-7b9a-4c8e-9d0f-112233445566/device/a84041000181c2d7"
)
# C12's and C13's link metadata, mapped onto declared field types.
C12_FIELDS = {
    "f_port": "integer",
    "f_cnt": "integer",
    "rssi": "float",
    "snr": "float",
    "spreading_factor": "integer",
    "frequency": "integer",
}
C13_FIELDS = {
    "f_cnt": "integer",
    "dr": "integer",
    "f_port": "integer",
    "rssi": "float",
    "snr": "float",
}


async def test_tts_v3_uplinks_of_case_c12_arrive_in_influxdb_v1_exactly(
    gateway_config, running_gateway, publisher, topic_prefix, influx_v1
):
    """Test that C12's two uplinks are stored with exact values, types and ns times."""
    config = gateway_config(
        influx={"database": influx_v1.database},
        subscriptions=[
            {
                "topic": f"{topic_prefix}/v3/+/devices/+/up",
                "format": "tts_v3",
                "measurement": "lorawan",
                "fields": C12_FIELDS,
                "timestamp_key": "received_at",
            }
        ],
    )
    topic = f"{topic_prefix}/{TTS_DEVICE_TOPIC}/up"

    async with running_gateway(config) as gateway:
        publisher.publish(topic, C12_INPUT_1)
        publisher.publish(topic, C12_INPUT_2)
        rows = await influx_v1.wait_for_rows("lorawan", 2)
        stats = gateway.stats

    expected = [parse_line(C12_EXPECTED_1), parse_line(C12_EXPECTED_2)]
    assert rows == _rows(expected)
    assert _field_types(influx_v1, "lorawan") == {
        "soil_moisture": "float",
        "soil_temp": "float",
        "battery_v": "float",
        **C12_FIELDS,
    }
    assert stats.messages_rejected == {} and stats.fields_rejected == {}


async def test_tts_v3_join_on_a_wide_topic_filter_is_refused_as_not_an_uplink(
    gateway_config, running_gateway, publisher, topic_prefix, influx_v1
):
    """Test that a join-accept next to an uplink is counted and dead-lettered."""
    config = gateway_config(
        influx={"database": influx_v1.database},
        subscriptions=[
            {
                "topic": f"{topic_prefix}/v3/+/devices/#",
                "format": "tts_v3",
                "measurement": "lorawan",
            }
        ],
    )
    join = {
        "end_device_ids": orjson.loads(C12_INPUT_1)["end_device_ids"],
        "received_at": "2024-04-18T09:00:00.123456789Z",
        "join_accept": {"session_key_id": "AY7xK2bQm9w3T1Z0pL4sVQ=="},
    }

    async with running_gateway(config) as gateway:
        publisher.publish(f"{topic_prefix}/{TTS_DEVICE_TOPIC}/join", orjson.dumps(join))
        publisher.publish(f"{topic_prefix}/{TTS_DEVICE_TOPIC}/up", C12_INPUT_2)
        rows = await influx_v1.wait_for_rows("lorawan", 1)
        await wait_until(lambda: gateway.stats.messages_received >= 2)
        stats = gateway.stats

    assert [row["f_cnt"] for row in rows] == [1188]
    assert stats.messages_rejected == {"not_an_uplink": 1}
    [dead] = [
        orjson.loads(line)
        for line in config.dead_letters.path.read_bytes().splitlines()
    ]
    assert dead["reason"] == "not_an_uplink" and "join_accept" in dead["detail"]


async def test_chirpstack_v4_uplinks_of_case_c13_arrive_in_influxdb_v1_exactly(
    gateway_config, running_gateway, publisher, topic_prefix, influx_v1, caplog
):
    """Test that C13's three uplinks are stored exactly, the last at receive time."""
    caplog.set_level(logging.WARNING, logger="gateway.decoding.lorawan")
    config = gateway_config(
        influx={"database": influx_v1.database},
        subscriptions=[
            {
                "topic": f"{topic_prefix}/application/+/device/+/event/up",
                "format": "chirpstack_v4",
                "measurement": "lorawan_cs",
                "fields": C13_FIELDS,
                "timestamp_key": "time",
            }
        ],
    )
    topic = f"{topic_prefix}/{CS_DEVICE_TOPIC}/event/up"

    async with running_gateway(config) as gateway:
        publisher.publish(topic, C13_INPUT_1)
        publisher.publish(topic, C13_INPUT_2)
        before_ns = time.time_ns()
        publisher.publish(topic, c13_input_3())
        rows = await influx_v1.wait_for_rows("lorawan_cs", 3)
        after_ns = time.time_ns()
        stats = gateway.stats

    received_ns = rows[2]["time"]
    assert before_ns <= received_ns <= after_ns
    expected = [
        parse_line(C13_EXPECTED_1),
        parse_line(C13_EXPECTED_2),
        parse_line(C13_EXPECTED_3, rx_ns=received_ns),
    ]
    assert rows == _rows(expected)
    assert _field_types(influx_v1, "lorawan_cs") == {
        "temperature": "float",
        "humidity": "float",
        "door_open": "boolean",
        **C13_FIELDS,
    }
    warnings = [r.getMessage() for r in caplog.records if TIME_WARNING in r.message]
    assert len(warnings) == 1
    assert stats.messages_rejected == {} and stats.fields_rejected == {}


async def test_chirpstack_v4_status_event_stores_battery_and_refuses_join(
    gateway_config, running_gateway, publisher, topic_prefix, influx_v1
):
    """Test that status events store battery and margin; join events are refused."""
    config = gateway_config(
        influx={"database": influx_v1.database},
        subscriptions=[
            {
                "topic": f"{topic_prefix}/application/+/device/+/event/+",
                "format": "chirpstack_v4",
                "measurement": "lorawan_cs",
            }
        ],
    )
    device_info = orjson.loads(C13_INPUT_1)["deviceInfo"]
    status = {
        "deduplicationId": "1b2c3d4e-3333-4f5a-8b9c-0d1e2f3a4b5c",
        "time": "2024-09-23T02:04:00.123456+00:00",
        "deviceInfo": device_info,
        "margin": 9,
        "batteryLevel": 87.5,
    }
    join = {"time": "2024-09-23T02:01:00+00:00", "deviceInfo": device_info}
    base = f"{topic_prefix}/{CS_DEVICE_TOPIC}/event"

    async with running_gateway(config) as gateway:
        publisher.publish(f"{base}/join", orjson.dumps(join))
        publisher.publish(f"{base}/status", orjson.dumps(status))
        rows = await influx_v1.wait_for_rows("lorawan_cs", 1)
        await wait_until(lambda: gateway.stats.messages_received >= 2)
        stats = gateway.stats

    assert rows == [
        {
            "time": 1_727_057_040_123_456_000,
            "application": "cold-rooms",
            "device": "cold-room-2",
            "dev_eui": "a84041000181c2d7",
            "battery_percentage": 87.5,
            "margin": 9,
            "external_power_source": False,
        }
    ]
    assert _field_types(influx_v1, "lorawan_cs") == {
        "battery_percentage": "float",
        "margin": "integer",
        "external_power_source": "boolean",
    }
    assert stats.messages_rejected == {"not_an_uplink": 1}


def _rows(points: list[Any]) -> list[dict[str, Any]]:
    """Return points as InfluxDB 1.x rows: every column, None where absent."""
    columns = {key for p in points for key in (*p.tags, *p.fields)}
    return [
        {
            "time": p.time_ns,
            **{column: None for column in columns},
            **p.tags,
            **p.fields,
        }
        for p in points
    ]


def _field_types(influx_v1: Any, measurement: str) -> dict[str, str]:
    [series] = influx_v1.query(f'SHOW FIELD KEYS FROM "{measurement}"')
    return dict(series["values"])
