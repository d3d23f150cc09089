"""End to end per firmware: real payload shapes through Mosquitto into InfluxDB 1.x."""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime

import orjson

from tests.conftest import wait_until
from tests.decoding.test_esphome import C03_TOPIC
from tests.decoding.test_shelly import C07_B1, C07_B2, C07_B3, C07_STATUS
from tests.decoding.test_tasmota import (
    C04_INCLUDE,
    C04_SUMMER,
    C04_SUMMER_NS,
    C04_WINTER,
    C04_WINTER_NS,
    STATE,
)
from tests.decoding.test_zigbee2mqtt import C02_INPUT_1, C02_INPUT_2

LOS_ANGELES = "America/Los_Angeles"


def _stored(rows: list[dict]) -> list[dict]:
    """Drop the columns a row has no value in (SELECT * gives every column)."""
    return [{k: v for k, v in row.items() if v is not None} for row in rows]


def _field_types(influx_v1, measurement: str) -> dict[str, str]:
    return dict(influx_v1.query(f'SHOW FIELD KEYS FROM "{measurement}"')[0]["values"])


async def test_tasmota_sensor_and_state_reach_influxdb_at_local_time(
    gateway_config, running_gateway, publisher, topic_prefix, influx_v1
):
    """Test that C04 SENSOR and a STATE are stored at their zoned Time; LWT is not."""
    tasmota = {"format": "tasmota", "timezone": LOS_ANGELES}
    config = gateway_config(
        influx={"database": influx_v1.database},
        subscriptions=[
            {
                **tasmota,
                "topic_template": f"{topic_prefix}/tele/{{device}}/SENSOR",
                "measurement": "tasmota",
                "include": C04_INCLUDE,
            },
            {
                **tasmota,
                "topic_template": f"{topic_prefix}/tele/{{device}}/STATE",
                "measurement": "tasmota_state",
            },
            {**tasmota, "topic": f"{topic_prefix}/tele/+/LWT"},
        ],
    )
    device = f"{topic_prefix}/tele/plug-lab-3"
    async with running_gateway(config) as gateway:
        publisher.publish(f"{device}/LWT", b"Online")
        publisher.publish(f"{device}/SENSOR", C04_SUMMER)
        publisher.publish(f"{device}/SENSOR", C04_WINTER)
        publisher.publish(f"{device}/STATE", STATE)
        energy = await influx_v1.wait_for_rows("tasmota", 2)
        state = await influx_v1.wait_for_rows("tasmota_state", 1)
        await wait_until(lambda: gateway.stats.messages_received >= 4)
        stats = gateway.stats

    c04 = {"device": "plug-lab-3", "ENERGY_Voltage": 231.0, "ENERGY_Current": 0.134}
    c04 |= {"ENERGY_Total": 12.345, "ENERGY_Factor": 0.74}
    assert _stored(energy) == [
        {"time": C04_WINTER_NS, **c04, "ENERGY_Power": 25.0},
        {"time": C04_SUMMER_NS, **c04, "ENERGY_Power": 23.0},
    ]
    assert _stored(state) == [
        {
            "time": C04_SUMMER_NS,
            "device": "plug-lab-3",
            "UptimeSec": 5025.0,
            "Heap": 25.0,
            "SleepMode": "Dynamic",
            "Sleep": 50.0,
            "LoadAvg": 19.0,
            "MqttCount": 1.0,
            "POWER": "ON",
            "Wifi_AP": 1.0,
            "Wifi_SSId": "city-iot",
            "Wifi_BSSId": "AA:BB:CC:DD:EE:FF",
            "Wifi_Channel": 6.0,
            "Wifi_Mode": "11n",
            "Wifi_RSSI": 64.0,
            "Wifi_Signal": -68.0,
            "Wifi_LinkCount": 1.0,
        }
    ]
    assert set(_field_types(influx_v1, "tasmota").values()) == {"float"}
    assert stats.messages_rejected == {} and stats.fields_rejected == {}
    assert stats.points_decoded == 3


async def test_zigbee2mqtt_device_state_reaches_influxdb_without_nulls(
    gateway_config, running_gateway, publisher, topic_prefix, influx_v1
):
    """Test that C02 is stored exactly; bridge and availability write nothing."""
    base = topic_prefix  # stands for Zigbee2MQTT's base topic, "zigbee2mqtt"
    config = gateway_config(
        influx={"database": influx_v1.database},
        subscriptions=[
            {
                "topic": f"{base}/#",
                "exclude_topics": [f"{base}/bridge/#"],
                "format": "zigbee2mqtt",
                "measurement": "zigbee",
                "timestamp_key": "last_seen",
            }
        ],
    )
    seen = datetime.fromtimestamp(int(time.time()) - 30, UTC)
    sensor = {
        "battery": 97,
        "linkquality": 134,
        "occupancy": True,
        "temperature": 24.3,
        "last_seen": seen.isoformat(timespec="milliseconds"),
    }
    async with running_gateway(config) as gateway:
        publisher.publish(f"{base}/bridge/state", b'{"state":"online"}')
        publisher.publish(f"{base}/plug-07/availability", b'{"state":"online"}')
        publisher.publish(f"{base}/plug-07", C02_INPUT_1)
        publisher.publish(f"{base}/plug-07", C02_INPUT_2)
        publisher.publish(f"{base}/plug-07/set", b'{"state":"OFF"}')
        publisher.publish(f"{base}/garden/sensor-1", orjson.dumps(sensor))
        rows = await influx_v1.wait_for_rows("zigbee", 3)
        await wait_until(lambda: gateway.stats.messages_received >= 6)
        stats = gateway.stats

    update = {
        "update_state": "idle",
        "update_installed_version": 16909577.0,
        "update_available": False,
    }
    assert _stored(rows) == [
        {
            "time": 1_714_550_400_000_000_000,
            "device": "plug-07",
            "state": "ON",
            "linkquality": 23.0,
            "voltage": 231.4,
            "energy": 3.42,
            **update,
        },
        {
            "time": 1_714_550_700_000_000_000,
            "device": "plug-07",
            "state": "ON",
            "linkquality": 26.0,
            "power": 9.7,
            "current": 0.05,
            "voltage": 230.8,
            "energy": 3.43,
            **update,
        },
        {
            "time": int(seen.timestamp()) * 1_000_000_000,
            "device": "garden/sensor-1",
            "battery": 97.0,
            "linkquality": 134.0,
            "occupancy": True,
            "temperature": 24.3,
        },
    ]
    types = _field_types(influx_v1, "zigbee")
    assert (types["power"], types["linkquality"], types["state"]) == (
        "float",
        "float",
        "string",
    )
    assert stats.messages_excluded == 1
    assert stats.messages_rejected == {}
    assert stats.fields_rejected == {"null_value": 2}


async def test_shelly_status_object_reaches_influxdb_as_one_point(
    gateway_config, running_gateway, publisher, topic_prefix, influx_v1
):
    """Test that C07 A2 is stored as one point tagged device and component."""
    config = gateway_config(
        influx={"database": influx_v1.database},
        subscriptions=[
            {
                "topic_template": f"{topic_prefix}/{{device}}/status/{{component}}",
                "format": "shelly",
                "measurement": "shelly",
            }
        ],
    )
    async with running_gateway(config):
        sent_ns = time.time_ns()
        publisher.publish(f"{topic_prefix}/pv-relay-1/status/switch:0", C07_STATUS)
        rows = await influx_v1.wait_for_rows("shelly", 1)
        stored_by_ns = time.time_ns()

    [row] = _stored(rows)
    assert sent_ns <= row.pop("time") <= stored_by_ns
    assert row == {
        "device": "pv-relay-1",
        "component": "switch:0",
        "id": 0.0,
        "source": "init",
        "output": True,
        "apower": 412.3,
        "voltage": 229.1,
        "freq": 50.0,
        "current": 1.802,
        "pf": 0.98,
        "aenergy_total": 98211.442,
        "aenergy_by_minute_0": 6247.2,
        "aenergy_by_minute_1": 6253.9,
        "aenergy_by_minute_2": 6240.3,
        "aenergy_minute_ts": 1700000040.0,
        "temperature_tC": 60.4,
        "temperature_tF": 140.7,
    }
    types = _field_types(influx_v1, "shelly")
    assert (types["id"], types["output"], types["source"]) == (
        "float",
        "boolean",
        "string",
    )


async def test_shelly_rpc_notifications_reach_influxdb_at_params_ts(
    gateway_config, running_gateway, publisher, topic_prefix, influx_v1
):
    """Test that C07 B stores a point per component at params.ts; events nothing."""
    config = gateway_config(
        influx={"database": influx_v1.database},
        subscriptions=[
            {
                "topic_template": f"{topic_prefix}/{{device}}/events/rpc",
                "format": "shelly_rpc",
                "measurement": "shelly",
                "timestamp_key": "params.ts",
            }
        ],
    )
    topic = f"{topic_prefix}/pv-relay-1/events/rpc"
    async with running_gateway(config) as gateway:
        for payload in (C07_B1, C07_B2, C07_B3):
            publisher.publish(topic, payload)
        rows = await influx_v1.wait_for_rows("shelly", 2)
        await wait_until(lambda: gateway.stats.messages_received >= 3)
        stats = gateway.stats

    assert _stored(rows) == [
        {
            "time": 1_700_000_061_370_000_000,
            "device": "pv-relay-1",
            "component": "switch:0",
            "id": 0.0,
            "aenergy_total": 98217.69,
            "aenergy_by_minute_0": 6251.0,
            "aenergy_by_minute_1": 6247.2,
            "aenergy_by_minute_2": 6253.9,
            "aenergy_minute_ts": 1700000100.0,
        },
        {
            "time": 1_700_000_075_020_000_000,
            "device": "pv-relay-1",
            "component": "mqtt",
            "connected": True,
        },
    ]
    assert stats.messages_rejected == {} and stats.fields_rejected == {}
    assert stats.points_decoded == 2


async def test_esphome_states_reach_influxdb_and_nan_is_refused_with_a_warning(
    gateway_config, running_gateway, publisher, topic_prefix, influx_v1, caplog
):
    """Test that C03 inputs 1, 2, 6 store only 0.87; states typed; status ignored."""
    caplog.set_level(logging.WARNING, logger="gateway.decoding.esphome")
    esphome = {"format": "esphome", "field": "value"}
    config = gateway_config(
        influx={"database": influx_v1.database},
        subscriptions=[
            {
                **esphome,
                "topic_template": f"{topic_prefix}/{{node}}/sensor/{{sensor}}/state",
                "measurement": "esphome",
            },
            {
                **esphome,
                "topic_template": f"{topic_prefix}/{{node}}/binary_sensor/"
                "{sensor}/state",
                "measurement": "esphome_binary",
            },
            {**esphome, "topic": f"{topic_prefix}/+/status"},
        ],
    )
    sensor_topic = f"{topic_prefix}/{C03_TOPIC}"
    async with running_gateway(config) as gateway:
        publisher.publish(f"{topic_prefix}/esphome-node-3/status", b"online")
        publisher.publish(sensor_topic, b"nan")
        sent_ns = time.time_ns()
        publisher.publish(sensor_topic, b"0.87")
        publisher.publish(sensor_topic, b"inf")
        door = f"{topic_prefix}/esphome-node-3/binary_sensor/door/state"
        publisher.publish(door, b"ON")
        readings = await influx_v1.wait_for_rows("esphome", 1)
        doors = await influx_v1.wait_for_rows("esphome_binary", 1)
        await wait_until(lambda: gateway.stats.messages_received >= 5)
        stored_by_ns = time.time_ns()
        stats = gateway.stats

    [reading] = readings
    assert sent_ns <= reading.pop("time") <= stored_by_ns
    assert reading == {
        "node": "esphome-node-3",
        "sensor": "power_factor",
        "value": 0.87,
    }
    assert [(row["sensor"], row["value"]) for row in doors] == [("door", True)]
    assert _field_types(influx_v1, "esphome_binary") == {"value": "boolean"}
    assert stats.messages_rejected == {"non_finite": 2}
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    # Two refusals on one topic, one warning: the app rate-limits them.
    assert warnings == [
        f"Rejected a message on {sensor_topic!r} (non_finite): "
        "value: 'nan' is not a reading"
    ]
