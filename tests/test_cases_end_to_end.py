"""The real-world cases for JSON and bare values, end to end on real services.

Each case of ../shared/cases is mapped onto our configuration keys, published
by a real MQTT client through Mosquitto into a running gateway, and read back
from the real InfluxDB 1.x (C06 also from VictoriaMetrics through the v2 API).
T_RX, the receive time, is not known to the test: a point stored at receive
time must lie between the moment before publishing and the moment after
reading back.
"""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path
from typing import Any

import orjson
import pytest

from gateway.app import build_routes
from gateway.points import encode_line
from gateway.sources.mqtt import MqttMessage
from tests.conftest import WAIT_S, Victoria, wait_until

MS = 1_000_000
# A batch that only fills up once every message of a case is in, so the case's
# points travel in one write request, as its "same batch" clauses ask.
ONE_BATCH_FLUSH_S = 5.0


def dead_letters(path: Path) -> list[dict[str, Any]]:
    """Return every dead-letter entry the gateway kept, oldest first."""
    files = sorted(path.parent.glob(path.name + "*"), reverse=True)
    return [
        orjson.loads(line)
        for file in files
        if not file.name.endswith(".replayed")
        for line in file.read_bytes().splitlines()
        if line
    ]


def warnings_about(caplog: pytest.LogCaptureFixture, *words: str) -> list[str]:
    """Return the warnings logged by the gateway that contain every word."""
    return [
        record.getMessage()
        for record in caplog.records
        if record.levelno == logging.WARNING
        and record.name.startswith("gateway")
        and all(word in record.getMessage() for word in words)
    ]


def without(row: dict[str, Any], *keys: str) -> dict[str, Any]:
    """Return a row without some columns (the receive time, checked apart)."""
    return {k: v for k, v in row.items() if k not in keys}


# --- C01: numbers sent as JSON strings --------------------------------------------


async def test_case_c01_meter_numbers_sent_as_strings(
    gateway_config, running_gateway, publisher, topic_prefix, influx_v1, caplog
):
    """Test that C01's strings become declared floats, N is left out with a warning."""
    caplog.set_level(logging.DEBUG, logger="gateway")
    config = gateway_config(
        influx={"database": influx_v1.database},
        subscriptions=[
            {
                "format": "json",
                "topic_template": f"{topic_prefix}/meters/{{device}}/main/json",
                "measurement": "watermeter",
                "timestamp_key": "timestamp",
                "fields": {
                    "value": "float",
                    "pre": "float",
                    "rate": "float",
                    "raw": "string",
                    "error": "string",
                },
                # "undeclared keys ignored"
                "include": ["value", "pre", "rate", "raw", "error"],
            }
        ],
    )
    topic = f"{topic_prefix}/meters/wm-01/main/json"
    async with running_gateway(config) as gateway:
        publisher.publish(
            topic,
            b'{"value":"1042.5170","raw":"01042.5170","pre":"1042.5170",'
            b'"error":"no error","rate":"0.001250",'
            b'"timestamp":"2024-03-05T07:15:02+0100"}',
        )
        publisher.publish(
            topic,
            b'{"value":"N","raw":"0104N.5170","pre":"1042.5170",'
            b'"error":"digit 4 unreadable","rate":"N",'
            b'"timestamp":"2024-03-05T07:20:02+0100"}',
        )
        rows = await influx_v1.wait_for_rows("watermeter", 2)
        await wait_until(lambda: gateway.stats.messages_received >= 2)
        stats = gateway.stats

    assert rows == [
        {
            "time": 1709619302000000000,
            "device": "wm-01",
            "value": 1042.517,
            "pre": 1042.517,
            "rate": 0.00125,
            "raw": "01042.5170",
            "error": "no error",
        },
        {
            "time": 1709619602000000000,
            "device": "wm-01",
            "value": None,
            "pre": 1042.517,
            "rate": None,
            "raw": "0104N.5170",
            "error": "digit 4 unreadable",
        },
    ]
    types = dict(influx_v1.query('SHOW FIELD KEYS FROM "watermeter"')[0]["values"])
    assert types == {
        "value": "float",
        "pre": "float",
        "rate": "float",
        "raw": "string",
        "error": "string",
    }
    assert stats.messages_rejected == {}
    assert stats.fields_rejected == {"not_a_number": 2}
    for field in ("value", "rate"):
        assert len(warnings_about(caplog, topic, repr(field), "'N'")) == 1


# --- C03: NaN and Infinity --------------------------------------------------------


def _c03_config(gateway_config, topic_prefix, database):
    return gateway_config(
        influx={"database": database},
        subscriptions=[
            {
                "format": "value",
                "topic_template": f"{topic_prefix}/{{node}}/sensor/{{sensor}}/state",
                "measurement": "esphome",
                "field": "value",
            },
            {
                "format": "json",
                "topic_template": f"{topic_prefix}/chargers/{{device}}/lifetime",
                "measurement": "charger",
            },
        ],
    )


C03_INPUTS = [
    ("{p}/esphome-node-3/sensor/power_factor/state", b"nan"),
    ("{p}/esphome-node-3/sensor/power_factor/state", b"0.87"),
    (
        "{p}/chargers/wc-01/lifetime",
        b'{"contactor_cycles": 57, "avg_startup_temp":nan, "energy_wh": 1184220, '
        b'"uptime_s": 20417733}',
    ),
    (
        "{p}/chargers/wc-01/lifetime",
        b'{"contactor_cycles": 58, "avg_startup_temp": -nan, "energy_wh": 1184290, '
        b'"uptime_s": 20418333}',
    ),
    (
        "{p}/chargers/wc-01/lifetime",
        b'{"contactor_cycles": 59, "avg_startup_temp": NaN, "peak_temp": Infinity, '
        b'"energy_wh": 1184365, "uptime_s": 20418933}',
    ),
    ("{p}/esphome-node-3/sensor/power_factor/state", b"inf"),
]


async def test_case_c03_non_finite_values_are_left_out_alone(
    gateway_config, running_gateway, publisher, topic_prefix, influx_v1, caplog
):
    """Test that C03 stores its four points; NaN/inf give no point and no NaN line."""
    caplog.set_level(logging.DEBUG, logger="gateway")
    config = _c03_config(gateway_config, topic_prefix, influx_v1.database)
    before_ns = time.time_ns()
    async with running_gateway(config) as gateway:
        for topic, payload in C03_INPUTS:
            publisher.publish(topic.format(p=topic_prefix), payload)
        esphome = await influx_v1.wait_for_rows("esphome", 1)
        chargers = await influx_v1.wait_for_rows("charger", 3)
        await wait_until(lambda: gateway.stats.messages_received >= 6)
        await asyncio.sleep(0.5)  # let a wrongly stored nan point show up
        esphome = influx_v1.rows("esphome")
        stats = gateway.stats
    after_ns = time.time_ns()

    assert [without(row, "time") for row in esphome] == [
        {"node": "esphome-node-3", "sensor": "power_factor", "value": 0.87}
    ]
    assert [without(row, "time") for row in chargers] == [
        {"device": "wc-01", "contactor_cycles": cycles, "energy_wh": energy}
        | {"uptime_s": uptime}
        for cycles, energy, uptime in [
            (57.0, 1184220.0, 20417733.0),
            (58.0, 1184290.0, 20418333.0),
            (59.0, 1184365.0, 20418933.0),
        ]
    ]
    times = [row["time"] for row in esphome + chargers]
    assert all(before_ns <= t <= after_ns for t in times)
    assert times[0] < times[1] < times[2] < times[3]  # T_RX2 < T_RX3 < ...
    assert stats.messages_rejected == {"non_finite": 2}
    assert stats.fields_rejected == {"non_finite": 4}
    # No request with a NaN reached InfluxDB: nothing was refused or retried.
    assert stats.points_rejected == {} and stats.write_failures == 0
    assert warnings_about(caplog, "'avg_startup_temp'", "nan")
    assert warnings_about(caplog, "'peak_temp'", "inf")
    assert not [
        r for r in caplog.records if r.exc_info and r.name.startswith("gateway")
    ]  # no stack trace
    entries = dead_letters(config.dead_letters.path)
    assert sorted(e["payload"] for e in entries if e["kind"] == "message") == [
        "inf",
        "nan",
    ]


async def test_case_c03_plain_nan_logs_a_warning(
    gateway_config, running_gateway, publisher, topic_prefix, influx_v1, caplog
):
    """Test that a bare nan on a state topic is logged as a warning (C03 1 and 6)."""
    caplog.set_level(logging.DEBUG, logger="gateway")
    config = _c03_config(gateway_config, topic_prefix, influx_v1.database)
    topic = f"{topic_prefix}/esphome-node-3/sensor/power_factor/state"
    async with running_gateway(config) as gateway:
        publisher.publish(topic, b"nan")
        await wait_until(lambda: gateway.stats.messages_received >= 1)
        stats = gateway.stats

    assert stats.messages_rejected == {"non_finite": 1}
    assert warnings_about(caplog, topic)


# --- C06: 64-bit integers ---------------------------------------------------------

C06_PAYLOAD = (
    b'{"bsEui": 8121069193333309417, "frames_total": 2882429806056571139, '
    b'"bytes_total": 18446744073709551600, "rssi": -71}'
)
C06_VARIANT = (
    b'{"bsEui": 8121069193333309417, "frames_total": 9223372036854775808, "rssi": -70}'
)
C06_EUI = "8121069193333309417"


def _c06_subscription(topic_prefix: str, **changes: Any) -> dict[str, Any]:
    return {
        "format": "json",
        "topic_template": f"{topic_prefix}/lns/{{station}}/status",
        "measurement": "basestation",
        "payload_tags": {"bsEui": "bsEui"},
        "fields": {
            "frames_total": "integer",
            "bytes_total": "unsigned",
            "rssi": "float",
        },
    } | changes


def test_case_c06_line_keeps_every_digit(gateway_config, topic_prefix):
    """Test that C06's point leaves the gateway with every digit, i and u suffixes."""
    config = gateway_config(subscriptions=[_c06_subscription(topic_prefix)])
    [route] = build_routes(config)
    message = MqttMessage(
        f"{topic_prefix}/lns/bs-01/status",
        C06_PAYLOAD,
        qos=1,
        retain=False,
        received_ns=1,
    )

    [point] = route.decode(message).points

    assert encode_line(point) == (
        f"basestation,bsEui={C06_EUI},station=bs-01 "
        "frames_total=2882429806056571139i,bytes_total=18446744073709551600u,"
        "rssi=-71.0 1"
    )


async def _victoria_series(
    victoria: Victoria, selector: str, since_ms: int, count: int
) -> dict[str, dict[str, Any]]:
    """Poll until `count` series have a value since `since_ms`; keep only those."""
    deadline = time.monotonic() + WAIT_S
    found: dict[str, dict[str, Any]] = {}
    while time.monotonic() < deadline:
        found = {}
        for series in victoria.export(selector):
            recent = [
                (t, v)
                for t, v in zip(series["timestamps"], series["values"], strict=True)
                if t >= since_ms
            ]
            if recent:
                found[series["metric"]["__name__"]] = {
                    "labels": series["metric"],
                    "values": recent,
                }
        if len(found) >= count:
            return found
        await asyncio.sleep(0.2)
    return found


async def test_case_c06_int64_and_uint64_reach_victoriametrics_v2(
    gateway_config, running_gateway, publisher, topic_prefix, victoria
):
    """Test that C06's point, u suffix included, is accepted through the v2 API.

    VictoriaMetrics keeps every value as a 64-bit float, so it cannot show the
    last digits; they are checked on the wire by test_case_c06_line_keeps_every_
    digit. The tag keeps every digit here too.
    """
    station = f"bs-01-{topic_prefix}"
    config = gateway_config(
        influx={"url": victoria.url, "api": "v2", "bucket": "decor", "org": "decor"},
        subscriptions=[_c06_subscription(topic_prefix)],
    )
    since_ms = time.time_ns() // MS
    async with running_gateway(config) as gateway:
        publisher.publish(f"{topic_prefix}/lns/{station}/status", C06_PAYLOAD)
        series = await _victoria_series(
            victoria, f'{{__name__=~"basestation_.*",station="{station}"}}', since_ms, 3
        )
        stats = gateway.stats

    assert sorted(series) == [
        "basestation_bytes_total",
        "basestation_frames_total",
        "basestation_rssi",
    ]
    for found in series.values():
        assert found["labels"]["bsEui"] == C06_EUI
        assert len(found["values"]) == 1
    [(_, frames)] = series["basestation_frames_total"]["values"]
    [(_, sent_bytes)] = series["basestation_bytes_total"]["values"]
    [(_, rssi)] = series["basestation_rssi"]["values"]
    assert frames == pytest.approx(2882429806056571139, rel=1e-15)
    assert sent_bytes == pytest.approx(18446744073709551600, rel=1e-15)
    assert rssi == -71
    assert stats.points_rejected == {} and stats.points_written == 1


async def test_case_c06_on_influxdb_1x_unsigned_is_dead_lettered_batch_kept(
    gateway_config, running_gateway, publisher, topic_prefix, influx_v1
):
    """Test that 1.x refuses C06's u line alone: dead-lettered, the variant stored."""
    config = gateway_config(
        influx={
            "database": influx_v1.database,
            "batch_size": 2,
            "flush_interval_s": ONE_BATCH_FLUSH_S,
        },
        subscriptions=[_c06_subscription(topic_prefix)],
    )
    before_ns = time.time_ns()
    async with running_gateway(config) as gateway:
        publisher.publish(f"{topic_prefix}/lns/bs-01/status", C06_PAYLOAD)
        publisher.publish(f"{topic_prefix}/lns/bs-01/status", C06_VARIANT)
        rows = await influx_v1.wait_for_rows("basestation", 1)
        await wait_until(lambda: sum(gateway.stats.points_rejected.values()) >= 1)
        stats = gateway.stats
    after_ns = time.time_ns()

    # The variant's point: frames_total out of int64 range is left out alone.
    assert [without(row, "time") for row in rows] == [
        {"bsEui": C06_EUI, "station": "bs-01", "rssi": -70.0}
    ]
    assert before_ns <= rows[0]["time"] <= after_ns
    assert stats.write_requests == 1
    assert stats.points_rejected == {"unparsable_line": 1}
    assert stats.fields_rejected == {"out_of_range": 1}
    entries = dead_letters(config.dead_letters.path)
    [refused] = [e for e in entries if e["kind"] == "point"]
    assert refused["reason"] == "unparsable_line"
    assert "invalid number" in refused["detail"]
    assert "bytes_total=18446744073709551600u" in refused["payload"]
    [left_out] = [e for e in entries if e["kind"] == "field"]
    assert (
        "frames_total: 9223372036854775808 is out of int64 range"
        in (left_out["detail"])
    )


async def test_case_c06_int64_keeps_every_digit_in_influxdb_1x(
    gateway_config, running_gateway, publisher, topic_prefix, influx_v1
):
    """Test that 1.x stores C06's int64 field and tag exactly (unsigned left out)."""
    config = gateway_config(
        influx={"database": influx_v1.database},
        subscriptions=[
            _c06_subscription(topic_prefix, include=["frames_total", "rssi"])
        ],
    )
    async with running_gateway(config):
        publisher.publish(f"{topic_prefix}/lns/bs-01/status", C06_PAYLOAD)
        rows = await influx_v1.wait_for_rows("basestation", 1)

    assert [without(row, "time") for row in rows] == [
        {
            "bsEui": C06_EUI,
            "station": "bs-01",
            "frames_total": 2882429806056571139,
            "rssi": -71.0,
        }
    ]
    types = dict(influx_v1.query('SHOW FIELD KEYS FROM "basestation"')[0]["values"])
    assert types == {"frames_total": "integer", "rssi": "float"}


# --- C07 A1: a JSON object on a bare-value topic --------------------------------


async def test_case_c07_a1_json_object_on_value_topic_stores_nothing(
    gateway_config, running_gateway, publisher, topic_prefix, influx_v1
):
    """Test that a Shelly status object sent to a value subscription is refused."""
    config = gateway_config(
        influx={"database": influx_v1.database},
        subscriptions=[
            {
                "format": "value",
                "topic_template": f"{topic_prefix}/{{device}}/status/{{component}}",
                "measurement": "shelly",
                "field": "value",
            }
        ],
    )
    topic = f"{topic_prefix}/pv-relay-1/status/switch:0"
    async with running_gateway(config) as gateway:
        publisher.publish(
            topic,
            b'{"id":0, "source":"init", "output":true, "apower":412.3, '
            b'"voltage":229.1, "freq":50.0, "current":1.802, "pf":0.98, '
            b'"aenergy":{"total":98211.442,"by_minute":[6247.2,6253.9,6240.3],'
            b'"minute_ts":1700000040}, "temperature":{"tC":60.4, "tF":140.7}}',
        )
        await wait_until(lambda: gateway.stats.messages_received >= 1)
        stats = gateway.stats

    assert influx_v1.rows("shelly") == []
    assert stats.messages_rejected == {"not_a_value": 1}
    [entry] = dead_letters(config.dead_letters.path)
    assert entry["topic"] == topic
    assert entry["detail"].startswith("payload is a JSON object, not a plain value")


# --- C11: timestamp units -------------------------------------------------------

C11_INPUTS = [
    (b'{"ts":1717200000,"p":230.5}', 1717200000000000000, 230.5),
    (b'{"ts":1717200000123,"p":230.6}', 1717200000123000000, 230.6),
    (b'{"ts":1717200000123456,"p":230.7}', 1717200000123456000, 230.7),
    (b'{"ts":1717200000123456789,"p":230.8}', 1717200000123456789, 230.8),
    (b'{"ts":"2024-06-01T02:00:00.5+02:00","p":230.9}', 1717200000500000000, 230.9),
    (b'{"ts":"1717200000","p":231.0}', 1717200000000000000, 231.0),
]


def _c11_subscription(topic_prefix: str, unit: str) -> dict[str, Any]:
    return {
        "format": "json",
        "topic_template": f"{topic_prefix}/meters/{{device}}/reading",
        "measurement": "meter",
        "timestamp_key": "ts",
        "timestamp_unit": unit,
    }


async def test_case_c11_timestamps_in_every_unit_are_stored_exactly(
    gateway_config, running_gateway, publisher, topic_prefix, influx_v1
):
    """Test that C11's six inputs are stored at their exact nanosecond times.

    Inputs 1 and 6 have the same series and time, so InfluxDB keeps one point
    for both (the later value); input 1 is checked before input 6 is sent.
    """
    config = gateway_config(
        influx={"database": influx_v1.database},
        subscriptions=[_c11_subscription(topic_prefix, "auto")],
    )
    topic = f"{topic_prefix}/meters/em-4/reading"
    async with running_gateway(config):
        publisher.publish(topic, C11_INPUTS[0][0])
        first = await influx_v1.wait_for_rows("meter", 1)
        for payload, _, _ in C11_INPUTS[1:5]:
            publisher.publish(topic, payload)
        await influx_v1.wait_for_rows("meter", 5)
        publisher.publish(topic, C11_INPUTS[5][0])
        rows = influx_v1.rows("meter")
        for _ in range(50):
            if rows[0]["p"] == 231.0:
                break
            await asyncio.sleep(0.1)
            rows = influx_v1.rows("meter")

    assert first == [{"time": 1717200000000000000, "device": "em-4", "p": 230.5}]
    assert rows == [
        {"time": time_ns, "device": "em-4", "p": p}
        for _, time_ns, p in sorted(C11_INPUTS[1:], key=lambda i: i[1])
    ]
    assert (
        influx_v1.query(
            "SELECT * FROM meter WHERE time < '2000-01-01T00:00:00Z' "
            "OR time > '2100-01-01T00:00:00Z'"
        )
        == []
    )


async def test_case_c11_wrong_unit_stores_nothing_and_says_why(
    gateway_config, running_gateway, publisher, topic_prefix, influx_v1, caplog
):
    """Test that seconds read as ms are refused naming topic, value, unit and date."""
    caplog.set_level(logging.DEBUG, logger="gateway")
    config = gateway_config(
        influx={"database": influx_v1.database},
        subscriptions=[_c11_subscription(topic_prefix, "ms")],
    )
    topic = f"{topic_prefix}/meters/em-4/reading"
    async with running_gateway(config) as gateway:
        publisher.publish(topic, b'{"ts":1717200000,"p":231.1}')
        await wait_until(lambda: gateway.stats.messages_received >= 1)
        stats = gateway.stats

    assert influx_v1.rows("meter") == []
    assert stats.messages_rejected == {"implausible_timestamp": 1}
    [entry] = dead_letters(config.dead_letters.path)
    assert entry["topic"] == topic
    for fact in ("1717200000", "unit ms", "1970-01-20T21:00:00"):
        assert fact in entry["detail"]
    [logged] = [
        r.getMessage()
        for r in caplog.records
        if "implausible_timestamp" in r.getMessage()
    ]
    assert topic in logged and "1970-01-20T21:00:00" in logged


# --- C16: special characters --------------------------------------------------------


async def test_case_c16_special_characters_in_one_batch(
    gateway_config, running_gateway, publisher, topic_prefix, influx_v1
):
    """Test that C16's inputs and the control point are stored from one request."""
    site = f"{topic_prefix}/site"
    value = {"format": "value", "field": "value"}
    config = gateway_config(
        influx={
            "database": influx_v1.database,
            "batch_size": 8,
            "flush_interval_s": ONE_BATCH_FLUSH_S,
        },
        subscriptions=[
            # The case's site/+/+ with measurement_from_topic_level: 2, as one
            # subscription per measurement, so that no extra tag names the
            # level (see the next test for the {kind} mapping).
            {**value, "topic_template": f"{site}/{{room}}/temp"}
            | {"measurement": "temp"},
            {
                **value,
                "topic_template": f"{site}/{{room}}/boiler temp,raw",
                "measurement": "boiler temp,raw",
            },
            {**value, "topic_template": f"{site}/{{room}}/control"}
            | {"measurement": "control"},
            {**value, "topic_template": f"{site}/{{room}}/note"}
            | {"measurement": "note"},
            {
                "format": "json",
                "topic_template": f"{site}/{{room}}/status",
                "measurement": "status",
            },
        ],
    )
    inputs = [
        ("Living Room/temp", b"21.5"),
        ("Boiler, Main=A/temp", b"55"),
        ("attic/boiler temp,raw", b"60.5"),
        (
            "shade-2/status",
            b'{"state":"partially open","note":"say \\"hi\\" C:\\\\temp\\\\",'
            b'"water level":3}',
        ),
        ("shade-3/status", b'{"state":"line1\\nline2","pos":40}'),
        ("C:\\/temp", b"19.0"),
        # A neighbour of input 5: a newline in a bare text value.
        ("hall/note", b"line1\nline2"),
        ("probe/control", b"1"),
    ]
    async with running_gateway(config) as gateway:
        for path, payload in inputs:
            publisher.publish(f"{site}/{path}", payload)
        control = await influx_v1.wait_for_rows("control", 1)
        stats = gateway.stats
        temp = influx_v1.rows("temp")
        raw = influx_v1.rows("boiler temp,raw")
        status = influx_v1.rows("status")
        note = influx_v1.rows("note")

    assert stats.write_requests == 1 and stats.points_written == 8
    assert stats.points_rejected == {} and stats.messages_rejected == {}
    assert [without(row, "time") for row in temp] == [
        {"room": "Living Room", "value": 21.5},
        {"room": "Boiler, Main=A", "value": 55.0},
        # Input 6: the trailing backslash is removed (gateway.points, rule 2).
        {"room": "C:", "value": 19.0},
    ]
    assert [without(row, "time") for row in raw] == [{"room": "attic", "value": 60.5}]
    assert [without(row, "time") for row in status] == [
        {
            "room": "shade-2",
            "state": "partially open",
            "note": 'say "hi" C:\\temp\\',
            "water level": 3.0,
            "pos": None,
        },
        # Input 5: the newline is stored as the two characters \n (documented).
        {
            "room": "shade-3",
            "state": "line1\\nline2",
            "note": None,
            "water level": None,
            "pos": 40.0,
        },
    ]
    assert [without(row, "time") for row in note] == [
        {"room": "hall", "value": "line1\\nline2"}
    ]
    assert [without(row, "time") for row in control] == [
        {"room": "probe", "value": 1.0}
    ]


async def test_case_c16_measurement_from_a_topic_level_also_tags_it(
    gateway_config, running_gateway, publisher, topic_prefix, influx_v1
):
    """Test that C16's site/+/+ mapped with {kind} stores its values, tagged kind.

    Our measurement template can only use a level the topic template names,
    and a named level is a tag: the points carry kind=<measurement> besides
    the case's room tag.
    """
    site = f"{topic_prefix}/site"
    config = gateway_config(
        influx={"database": influx_v1.database},
        subscriptions=[
            {
                "format": "value",
                "topic": f"{site}/+/+",
                "topic_template": f"{site}/{{room}}/{{kind}}",
                "exclude_topics": [f"{site}/+/status"],
                "measurement": "{kind}",
                "field": "value",
            },
            {
                "format": "json",
                "topic_template": f"{site}/{{room}}/status",
                "measurement": "status",
            },
        ],
    )
    async with running_gateway(config):
        publisher.publish(f"{site}/Living Room/temp", b"21.5")
        publisher.publish(f"{site}/attic/boiler temp,raw", b"60.5")
        publisher.publish(f"{site}/shade-2/status", b'{"state":"partially open"}')
        raw = await influx_v1.wait_for_rows("boiler temp,raw", 1)
        temp = await influx_v1.wait_for_rows("temp", 1)
        status = await influx_v1.wait_for_rows("status", 1)

    assert [without(row, "time") for row in temp] == [
        {"kind": "temp", "room": "Living Room", "value": 21.5}
    ]
    assert [without(row, "time") for row in raw] == [
        {"kind": "boiler temp,raw", "room": "attic", "value": 60.5}
    ]
    assert [without(row, "time") for row in status] == [
        {"room": "shade-2", "state": "partially open"}
    ]


# --- C17: integer vs float ----------------------------------------------------------


def _c17_config(gateway_config, topic_prefix, database):
    plant = f"{topic_prefix}/plant/{{device}}"
    return gateway_config(
        influx={"database": database},
        subscriptions=[
            {
                "format": "value",
                "topic_template": f"{plant}/temp",
                "measurement": "temp",
            },
            {"format": "json", "topic_template": f"{plant}/env", "measurement": "env"},
            {
                "format": "json",
                "topic_template": f"{plant}/counter",
                "measurement": "counter",
                "fields": {"pulses": "integer"},
            },
            # A neighbour: the same declared integer on a bare-value topic.
            {
                "format": "value",
                "topic_template": f"{plant}/pulses",
                "measurement": "pulses",
                "field": "pulses",
                "fields": {"pulses": "integer"},
            },
        ],
    )


async def test_case_c17_whole_numbers_stay_floats_declared_integers_stay_exact(
    gateway_config, running_gateway, publisher, topic_prefix, influx_v1
):
    """Test that C17's eight writes succeed with stable types; 4.5 is refused."""
    config = _c17_config(gateway_config, topic_prefix, influx_v1.database)
    device = f"{topic_prefix}/plant/ite-05"
    inputs = [
        ("temp", b"20"),
        ("temp", b"20.1"),
        ("temp", b"21.0"),
        ("env", b'{"t":20,"rh":45}'),
        ("env", b'{"t":20.5,"rh":45.5}'),
        ("env", b'{"t":1e1,"rh":4.5E1}'),
        ("counter", b'{"pulses":3}'),
        ("counter", b'{"pulses":4.0}'),
        ("counter", b'{"pulses":4.5}'),
        ("pulses", b"3"),
        ("pulses", b"4.0"),
        ("pulses", b"4.5"),
    ]
    async with running_gateway(config) as gateway:
        for kind, payload in inputs:
            publisher.publish(f"{device}/{kind}", payload)
        await wait_until(lambda: gateway.stats.messages_received >= len(inputs))
        temp = await influx_v1.wait_for_rows("temp", 3)
        env = await influx_v1.wait_for_rows("env", 3)
        counter = await influx_v1.wait_for_rows("counter", 2)
        pulses = await influx_v1.wait_for_rows("pulses", 2)
        stats = gateway.stats

    assert [without(row, "time") for row in temp] == [
        {"device": "ite-05", "value": v} for v in (20.0, 20.1, 21.0)
    ]
    assert [without(row, "time") for row in env] == [
        {"device": "ite-05", "t": t, "rh": rh}
        for t, rh in ((20.0, 45.0), (20.5, 45.5), (10.0, 45.0))
    ]
    assert [without(row, "time") for row in counter] == [
        {"device": "ite-05", "pulses": 3},
        {"device": "ite-05", "pulses": 4},
    ]
    assert [without(row, "time") for row in pulses] == [
        {"device": "ite-05", "pulses": 3},
        {"device": "ite-05", "pulses": 4},
    ]
    schema = {
        (series["name"], key): kind
        for series in influx_v1.query("SHOW FIELD KEYS")
        for key, kind in series["values"]
    }
    assert schema == {
        ("temp", "value"): "float",
        ("env", "t"): "float",
        ("env", "rh"): "float",
        ("counter", "pulses"): "integer",
        ("pulses", "pulses"): "integer",
    }
    # No field type conflict anywhere: every write was accepted.
    assert stats.points_rejected == {} and stats.write_failures == 0
    assert sum(stats.messages_rejected.values()) == 2
    details = [e["detail"] for e in dead_letters(config.dead_letters.path)]
    assert "pulses: '4.5' is not an integer" in details


async def test_case_c17_json_refusal_names_field_and_value(
    gateway_config, running_gateway, publisher, topic_prefix, influx_v1
):
    """Test that C17 input 9's error says "pulses: 4.5 is not an integer"."""
    config = _c17_config(gateway_config, topic_prefix, influx_v1.database)
    async with running_gateway(config) as gateway:
        publisher.publish(f"{topic_prefix}/plant/ite-05/counter", b'{"pulses":4.5}')
        await wait_until(lambda: gateway.stats.messages_received >= 1)

    [entry] = dead_letters(config.dead_letters.path)
    assert "pulses: 4.5 is not an integer" in entry["detail"]


# --- C18 part B: malformed forwarded line protocol --------------------------------


async def test_case_c18_b_malformed_line_refused_at_ingest_rest_stored(
    gateway_config, running_gateway, publisher, topic_prefix, influx_v1, caplog
):
    """Test that C18 B's line 2 is refused citing topic and line; the flush is whole."""
    caplog.set_level(logging.DEBUG, logger="gateway")
    config = gateway_config(
        influx={
            "database": influx_v1.database,
            "batch_size": 3,
            "flush_interval_s": ONE_BATCH_FLUSH_S,
        },
        subscriptions=[{"format": "influx", "topic": f"{topic_prefix}/lp/+"}],
    )
    topic = f"{topic_prefix}/lp/dev-5"
    async with running_gateway(config) as gateway:
        publisher.publish(
            topic,
            b"meter,device=m5 voltage=230.1 1717200000000000000\n"
            b"meter,device=m5 voltage= 1717200001000000000\n"
            b"meter,device=m5 voltage=230.3 1717200002000000000\n",
        )
        # Another device's point in the same flush.
        publisher.publish(
            f"{topic_prefix}/lp/dev-6",
            b"meter,device=m6 voltage=229.9 1717200001500000000",
        )
        rows = await influx_v1.wait_for_rows("meter", 3)
        stats = gateway.stats

    assert rows == [
        {"time": 1717200000000000000, "device": "m5", "voltage": 230.1},
        {"time": 1717200001500000000, "device": "m6", "voltage": 229.9},
        {"time": 1717200002000000000, "device": "m5", "voltage": 230.3},
    ]
    assert stats.write_requests == 1 and stats.points_rejected == {}
    assert stats.fields_rejected == {"malformed_line": 1}
    [warning] = warnings_about(caplog, topic, "'line 2'", "missing field value")
    assert "voltage= 1717200001000000000" in warning
    [entry] = dead_letters(config.dead_letters.path)
    assert entry["topic"] == topic and entry["reason"] == "malformed_line"
    assert entry["detail"].startswith("line 2: missing field value for 'voltage'")
