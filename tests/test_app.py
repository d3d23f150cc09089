"""End to end: a real MQTT client publishes, the gateway stores, we read back."""

from __future__ import annotations

import asyncio
import time

import orjson

from tests.conftest import wait_until

MS = 1_000_000


async def test_gateway_stores_json_readings_in_influxdb_v1_exactly(
    gateway_config, running_gateway, publisher, topic_prefix, influx_v1
):
    """Test that values, tags and timestamps arrive in InfluxDB 1.x as sent."""
    config = gateway_config(
        influx={"database": influx_v1.database}, quality={"enabled": True}
    )
    base_ms = int(time.time() * 1000) - 60_000
    sent = [
        (
            "bpbd",
            "river_gauge",
            "rg-ciliwung-01",
            {
                "ts": base_ms,
                "water_level_cm": 182.4,
                "battery": {"voltage_v": 3.91},
                "pump_on": True,
                "status": "ok",
            },
        ),
        (
            "bpbd",
            "river_gauge",
            "rg-pesanggrahan-02",
            {
                "ts": base_ms + 1500,
                "water_level_cm": 95.0,
                "battery": {"voltage_v": 3.7},
                "pump_on": False,
                "status": "sensor cleaned, ok",
            },
        ),
        (
            "dlh",
            "air_quality",
            "aq-beji-01",
            {"ts": base_ms + 2000, "pm25_ugm3": 41, "co_ppm": 0.4},
        ),
    ]
    async with running_gateway(config):
        for agency, kind, device, payload in sent:
            publisher.publish(
                f"{topic_prefix}/{agency}/{kind}/{device}/telemetry",
                orjson.dumps(payload),
            )
        rivers = await influx_v1.wait_for_rows("river_gauge", 2)
        air = await influx_v1.wait_for_rows("air_quality", 1)

    assert rivers == [
        {
            "time": base_ms * MS,
            "agency": "bpbd",
            "device_type": "river_gauge",
            "device_id": "rg-ciliwung-01",
            "water_level_cm": 182.4,
            "battery_voltage_v": 3.91,
            "pump_on": True,
            "status": "ok",
            "quality": 0,
        },
        {
            "time": (base_ms + 1500) * MS,
            "agency": "bpbd",
            "device_type": "river_gauge",
            "device_id": "rg-pesanggrahan-02",
            "water_level_cm": 95.0,
            "battery_voltage_v": 3.7,
            "pump_on": False,
            "status": "sensor cleaned, ok",
            "quality": 0,
        },
    ]
    assert air == [
        {
            "time": (base_ms + 2000) * MS,
            "agency": "dlh",
            "device_type": "air_quality",
            "device_id": "aq-beji-01",
            "pm25_ugm3": 41.0,
            "co_ppm": 0.4,
            "quality": 0,
        },
    ]
    # JSON integers are stored as floats, so a later 41.5 cannot conflict.
    field_types = influx_v1.query('SHOW FIELD KEYS FROM "air_quality"')[0]["values"]
    assert dict(field_types)["pm25_ugm3"] == "float"


async def test_gateway_stores_readings_in_victoriametrics_through_v2_api(
    gateway_config, running_gateway, publisher, topic_prefix, victoria
):
    """Test that the v2 write path stores exact values and times in VictoriaMetrics."""
    config = gateway_config(
        influx={"url": victoria.url, "api": "v2", "bucket": "decor", "org": "decor"}
    )
    base_ms = int(time.time() * 1000) - 30_000
    device = f"rain-limo-{topic_prefix}"
    async with running_gateway(config):
        for index in range(3):
            publisher.publish(
                f"{topic_prefix}/bpbd/rain_gauge/{device}/telemetry",
                orjson.dumps(
                    {
                        "ts": base_ms + index * 1000,
                        "rain_mm": 0.2 * index,
                        "battery": {"voltage_v": 3.8},
                    }
                ),
            )
        selector = f'{{__name__=~"rain_gauge_.*",device_id="{device}",agency="bpbd"}}'
        series = await victoria.wait_for_series(selector, 2)

    by_name = {s["metric"]["__name__"]: s for s in series}
    rain = by_name["rain_gauge_rain_mm"]
    expected_times = [base_ms + i * 1000 for i in range(3)]
    points = dict(zip(rain["timestamps"], rain["values"], strict=True))
    assert [points[t] for t in expected_times] == [0.0, 0.2, 0.4]
    assert rain["metric"]["device_type"] == "rain_gauge"
    battery = dict(
        zip(
            by_name["rain_gauge_battery_voltage_v"]["timestamps"],
            by_name["rain_gauge_battery_voltage_v"]["values"],
            strict=True,
        )
    )
    assert [battery[t] for t in expected_times] == [3.8, 3.8, 3.8]


async def test_gateway_rejects_bad_messages_and_stores_the_rest_of_the_batch(
    gateway_config, running_gateway, publisher, topic_prefix, influx_v1
):
    """Test that bad payloads are counted and kept with reasons, good ones stored."""
    config = gateway_config(
        influx={"database": influx_v1.database},
        subscriptions=[
            {
                "topic": f"{topic_prefix}/#",
                "topic_template": f"{topic_prefix}/{{agency}}/{{device_type}}/"
                "{device_id}/telemetry",
                "measurement": "{device_type}",
            }
        ],
    )
    topic = f"{topic_prefix}/bpbd/river_gauge/rg-cilodong-01/telemetry"
    async with running_gateway(config) as gateway:
        publisher.publish(topic, b'{"water_level_cm": 100.0}')
        publisher.publish(topic, b"not json at all")
        publisher.publish(topic, b"[1, 2, 3]")
        publisher.publish(topic, b'{"water_level_cm": null}')
        publisher.publish(f"{topic_prefix}/bpbd/river_gauge/telemetry", b'{"x": 1}')
        publisher.publish(topic, b'{"water_level_cm": 101.0, "flow": null}')
        publisher.publish(topic, b"\xff\xfe\x00garbage")
        rows = await influx_v1.wait_for_rows("river_gauge", 2)
        await wait_until(lambda: gateway.stats.messages_received >= 7)
        stats = gateway.stats

    assert [row["water_level_cm"] for row in rows] == [100.0, 101.0]
    assert stats.messages_rejected == {
        "invalid_json": 2,
        "not_an_object": 1,
        "no_fields": 1,
        "unmatched_topic": 1,
    }
    assert stats.fields_rejected == {"null_value": 1}
    dead = [
        orjson.loads(line)
        for line in config.dead_letters.path.read_bytes().splitlines()
    ]
    reasons = sorted(entry["reason"] for entry in dead)
    assert reasons == sorted(
        [
            "invalid_json",
            "invalid_json",
            "not_an_object",
            "no_fields",
            "unmatched_topic",
            "null_value",
        ]
    )
    garbage = next(e for e in dead if "payload_base64" in e)
    assert garbage["topic"] == topic and garbage["reason"] == "invalid_json"


class _BrokenDecoder:
    """A decoder with a bug, at our own decoder seam."""

    name = "broken"

    def decode(self, message, measurement, tags, field="value"):
        raise KeyError("a bug in a decoder")


async def test_gateway_keeps_a_message_whose_decoder_crashes(gateway_config, tmp_path):
    """Test that a decoder bug dead-letters the message instead of losing it."""
    import dataclasses

    from gateway.app import Gateway
    from gateway.sources import MqttMessage

    gateway = Gateway(gateway_config())
    gateway.routes = [dataclasses.replace(gateway.routes[0], decoder=_BrokenDecoder())]
    topic = gateway.routes[0].topic_filter.replace("+", "x")
    await gateway.handle_message(
        MqttMessage(
            topic=topic,
            payload=b'{"a": 1.0}',
            qos=1,
            retain=False,
            received_ns=time.time_ns(),
        )
    )
    gateway.dead_letters.close()

    assert gateway.stats.messages_rejected == {"decoder_error": 1}
    assert gateway.writer.buffered == 0
    [entry] = [
        orjson.loads(line)
        for line in gateway.config.dead_letters.path.read_bytes().splitlines()
    ]
    assert entry["reason"] == "decoder_error"
    assert entry["payload"] == '{"a": 1.0}'
    assert "a bug in a decoder" in entry["detail"]


async def test_gateway_refuses_an_impossible_value_and_keeps_the_rest(
    gateway_config, running_gateway, publisher, topic_prefix, influx_v1
):
    """Test that a value outside its profile's possible range is left out alone."""
    config = gateway_config(
        influx={"database": influx_v1.database}, quality={"enabled": True}
    )
    ts_ms = int(time.time() * 1000)
    async with running_gateway(config) as gateway:
        publisher.publish(
            f"{topic_prefix}/bpbd/river_gauge/rg-beji-09/telemetry",
            orjson.dumps({"ts": ts_ms, "water_level_cm": -5000.0, "flow_m3s": 3.5}),
        )
        rows = await influx_v1.wait_for_rows("river_gauge", 1)
        await wait_until(lambda: gateway.stats.fields_rejected)

    assert len(rows) == 1
    assert rows[0]["flow_m3s"] == 3.5
    assert "water_level_cm" not in rows[0]
    assert gateway.stats.fields_rejected == {"impossible_value": 1}


async def test_gateway_stores_a_message_of_overlapping_subscriptions_once(
    gateway_config, running_gateway, publisher, topic_prefix, influx_v1
):
    """Test that two filters matching one topic store its reading once (MQTT 5)."""
    config = gateway_config(
        influx={"database": influx_v1.database},
        subscriptions=[
            {
                "topic_template": f"{topic_prefix}/{{room}}/status",
                "measurement": "status",
            },
            {
                "topic_template": f"{topic_prefix}/{{room}}/{{kind}}",
                "measurement": "{kind}",
            },
        ],
    )
    async with running_gateway(config) as gateway:
        publisher.publish(f"{topic_prefix}/shade-2/status", b'{"pos": 40.0}')
        publisher.publish(f"{topic_prefix}/shade-2/temp", b'{"t": 21.5}')
        await influx_v1.wait_for_rows("temp", 1)
        await wait_until(lambda: gateway.stats.messages_received >= 3)
        status = influx_v1.rows("status")

    assert [row["pos"] for row in status] == [40.0]
    assert gateway.stats.messages_duplicate == 1
    assert gateway.stats.points_written == 2


async def test_gateway_passes_an_excluded_topic_to_the_next_subscription(
    gateway_config, running_gateway, publisher, topic_prefix, influx_v1
):
    """Test that exclude_topics hands a topic on instead of dropping it (C16)."""
    config = gateway_config(
        influx={"database": influx_v1.database},
        mqtt={"protocol": "3.1.1"},
        subscriptions=[
            {
                "topic_template": f"{topic_prefix}/{{room}}/{{kind}}",
                "exclude_topics": [f"{topic_prefix}/+/status"],
                "measurement": "{kind}",
            },
            {
                "topic_template": f"{topic_prefix}/{{room}}/status",
                "measurement": "status",
            },
        ],
    )
    async with running_gateway(config) as gateway:
        publisher.publish(f"{topic_prefix}/shade-3/status", b'{"pos": 10.0}')
        rows = await influx_v1.wait_for_rows("status", 1)
        await wait_until(lambda: gateway.stats.messages_received >= 2)

    assert [(row["room"], row["pos"]) for row in rows] == [("shade-3", 10.0)]
    assert gateway.stats.messages_rejected == {}


async def test_gateway_skips_a_retained_reading_without_its_own_time(
    gateway_config, running_gateway, publisher, topic_prefix, influx_v1
):
    """Test that a retained message replayed at subscribe adds no phantom point."""
    topic = f"{topic_prefix}/bpbd/rain_gauge/arg-limo-01/telemetry"
    publisher.publish(topic, b'{"rain_mm": 0.2}', qos=1)
    publisher._client.publish(topic, b'{"rain_mm": 0.4}', qos=1, retain=True)
    await asyncio.sleep(0.3)
    config = gateway_config(influx={"database": influx_v1.database})
    try:
        async with running_gateway(config) as gateway:
            await wait_until(lambda: gateway.stats.messages_received >= 1)
            publisher.publish(topic, b'{"rain_mm": 0.6}')
            rows = await influx_v1.wait_for_rows("rain_gauge", 1)
            await asyncio.sleep(0.5)
            rows = influx_v1.rows("rain_gauge")
    finally:
        # Clear the retained message so it outlives no test.
        publisher._client.publish(topic, b"", qos=1, retain=True)

    assert [row["rain_mm"] for row in rows] == [0.6]
    assert gateway.stats.retained_skipped == 1
