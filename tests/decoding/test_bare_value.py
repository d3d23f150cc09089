"""The bare-value decoder: one number, switch state or text per topic."""

from __future__ import annotations

import time

import orjson
import pytest

from gateway.decoding.bare_value import ValueDecoder
from gateway.decoding.options import DecoderOptions
from gateway.decoding.registry import make_decoder
from gateway.decoding.values import FieldTyper
from gateway.errors import PayloadError
from gateway.points import encode_line
from gateway.sources.mqtt import MqttMessage
from tests.conftest import wait_until

TOPIC = "esphome-node-3/sensor/power_factor/state"
RX_NS = 1_717_200_060_000_000_000
TAGS = {"node": "esphome-node-3", "sensor": "power_factor"}


def _message(payload: bytes) -> MqttMessage:
    return MqttMessage(TOPIC, payload, qos=1, retain=False, received_ns=RX_NS)


def _decode(payload: bytes, field: str = "value", **declared: str):
    decoder = ValueDecoder(DecoderOptions(typer=FieldTyper(declared)))
    return decoder.decode(_message(payload), "esphome", dict(TAGS), field)


def _refusal(payload: bytes, field: str = "value", **declared: str) -> PayloadError:
    with pytest.raises(PayloadError) as caught:
        _decode(payload, field, **declared)
    assert caught.value.topic == TOPIC
    return caught.value


def test_value_decoder_stores_a_number_as_float_at_receive_time():
    """Test that a bare number becomes one float field named by `field`."""
    decoded = _decode(b"0.87")

    [point] = decoded.points
    assert point.measurement == "esphome"
    assert point.tags == TAGS
    assert point.fields == {"value": 0.87}
    assert point.time_ns == RX_NS
    assert decoded.rejected_fields == []


@pytest.mark.parametrize(
    ("payload", "stored"),
    [
        (b"20", 20.0),
        (b"-3", -3.0),
        (b"+7", 7.0),
        (b".5", 0.5),
        (b"1e1", 10.0),
        (b"4.5E1", 45.0),
        (b"  21.5\r\n", 21.5),
        (b"\xef\xbb\xbf19.0", 19.0),
    ],
)
def test_value_decoder_reads_every_number_spelling_as_float(payload, stored):
    """Test that whole, signed, exponent and padded numbers all become floats."""
    [point] = _decode(payload).points

    assert point.fields == {"value": stored}
    assert type(point.fields["value"]) is float


@pytest.mark.parametrize(
    ("payload", "stored"),
    [
        (b"true", True),
        (b"false", False),
        (b"on", True),
        (b"off", False),
        (b"ON", True),
        (b"OFF", False),
        (b"True", True),
        (b"Off", False),
    ],
)
def test_value_decoder_reads_switch_states_as_booleans(payload, stored):
    """Test that true/false/on/off, in any letter case, become booleans."""
    [point] = _decode(payload).points

    assert point.fields["value"] is stored


@pytest.mark.parametrize(
    ("payload", "stored"),
    [
        (b"partially open", "partially open"),
        (b'"21.5"', "21.5"),
        (b'"say \\"hi\\""', 'say "hi"'),
        (b"0x1F", "0x1F"),
        (b"1_000", "1_000"),
        (b"yes", "yes"),
        ("Rüstung ✓".encode(), "Rüstung ✓"),
    ],
)
def test_value_decoder_keeps_other_text_as_string(payload, stored):
    """Test that text, and JSON strings without their quotes, are string fields."""
    [point] = _decode(payload).points

    assert point.fields == {"value": stored}


def test_value_decoder_writes_a_newline_in_text_as_backslash_n():
    """Test that text with a newline inside is stored, its newline written as \\n."""
    [point] = _decode(b"line1\nline2").points

    assert point.fields == {"value": "line1\nline2"}
    # A string value is quoted: the backslash of \n is escaped as well.
    assert encode_line(point).endswith(rf'value="line1\\nline2" {RX_NS}')


@pytest.mark.parametrize(
    "payload", [b"nan", b"-nan", b"NaN", b"inf", b"-inf", b"Infinity", b"1e999"]
)
def test_value_decoder_refuses_non_finite_values(payload):
    """Test that NaN and infinity give no point and the reason non_finite (C03)."""
    refusal = _refusal(payload)

    assert refusal.reason == "non_finite"
    assert payload.decode() in refusal.detail


def test_value_decoder_refuses_non_finite_text_for_declared_numbers():
    """Test that nan is non_finite for a declared integer too, not 'not an integer'."""
    refusal = _refusal(b"nan", field="pulses", pulses="integer")

    assert refusal.reason == "non_finite"
    assert refusal.detail.startswith("pulses: ")


def test_value_decoder_keeps_nan_text_of_a_declared_string():
    """Test that a field declared string stores the word nan as text."""
    [point] = _decode(b"nan", field="note", note="string").points

    assert point.fields == {"note": "nan"}


@pytest.mark.parametrize(
    ("payload", "kind"),
    [
        (
            b'{"id":0, "source":"init", "output":true, "apower":412.3, '
            b'"temperature":{"tC":60.4, "tF":140.7}}',
            "object",
        ),
        (b"[1, 2, 3]", "array"),
        (b"  {}", "object"),
    ],
)
def test_value_decoder_refuses_json_objects_and_arrays(payload, kind):
    """Test that a JSON object or array is refused by name, nothing read from it."""
    refusal = _refusal(payload)

    assert refusal.reason == "not_a_value"
    assert refusal.detail.startswith(f"payload is a JSON {kind}, not a plain value")
    assert "140.7" not in refusal.detail


def test_value_decoder_refuses_broken_json_rather_than_keeping_it_as_text():
    """Test that a cut JSON object is refused, not stored as a string field."""
    refusal = _refusal(b'{"apower":412.3, "temper')

    assert refusal.reason == "not_a_value"
    assert "looks like a JSON object" in refusal.detail


@pytest.mark.parametrize("payload", [b"", b"   ", b"\r\n"])
def test_value_decoder_refuses_an_empty_payload(payload):
    """Test that an empty or blank payload gives the reason empty_payload."""
    refusal = _refusal(payload)

    assert refusal.reason == "empty_payload"
    assert "empty" in refusal.detail


def test_value_decoder_refuses_bytes_that_are_not_utf8():
    """Test that non-UTF-8 bytes are refused naming the first bad byte."""
    refusal = _refusal(b"21\xff5")

    assert refusal.reason == "invalid_utf8"
    assert refusal.detail == "payload is not UTF-8 text (byte 2 is 0xff)"


def test_value_decoder_refuses_json_null():
    """Test that null (no reading) gives no point, with reason null_value."""
    assert _refusal(b"null").reason == "null_value"


@pytest.mark.parametrize(
    ("payload", "declared", "stored"),
    [
        (b"20", "integer", 20),
        (b"4.0", "integer", 4),
        (b"9223372036854775807", "integer", 9_223_372_036_854_775_807),
        (b"18446744073709551615", "unsigned", 18_446_744_073_709_551_615),
        (b"1042.5170", "float", 1042.517),
        (b"01042.5170", "string", "01042.5170"),
        (b"ON", "string", "ON"),
        (b"1", "boolean", True),
        (b"no", "boolean", False),
        (b'"17"', "integer", 17),
    ],
)
def test_value_decoder_applies_the_declared_type_to_the_text(payload, declared, stored):
    """Test that a declared type reads the payload's own text, keeping every digit."""
    [point] = _decode(payload, field="x", x=declared).points

    assert point.fields == {"x": stored}
    assert type(point.fields["x"]) is type(stored) or declared == "unsigned"


@pytest.mark.parametrize(
    ("payload", "declared", "reason", "detail"),
    [
        (b"4.5", "integer", "not_an_integer", "pulses: '4.5' is not an integer"),
        (b"N", "float", "not_a_number", "pulses: 'N' is not a number"),
        (b"9223372036854775808", "integer", "out_of_range", "out of int64 range"),
        (b"maybe", "boolean", "wrong_type", "pulses: 'maybe' is not a boolean"),
    ],
)
def test_value_decoder_refuses_text_that_does_not_fit_the_declared_type(
    payload, declared, reason, detail
):
    """Test that a value not fitting its declared type is refused, never truncated."""
    refusal = _refusal(payload, field="pulses", pulses=declared)

    assert refusal.reason == reason
    assert detail in refusal.detail


def test_value_decoder_skips_fields_that_include_leaves_out():
    """Test that `include` picks sensors: others give no point and no reject."""
    decoder = ValueDecoder(DecoderOptions(include=frozenset({"temperature"})))

    kept = decoder.decode(_message(b"21.5"), "esphome", {}, "temperature")
    skipped = decoder.decode(_message(b"80"), "esphome", {}, "uptime")

    assert kept.points[0].fields == {"temperature": 21.5}
    assert skipped.points == [] and skipped.rejected_fields == []


def test_value_decoder_refuses_an_empty_field_name():
    """Test that a field name that came out empty for a topic is refused clearly."""
    assert _refusal(b"1", field="").reason == "empty_field"


def test_value_decoder_is_the_registered_value_format():
    """Test that format "value" builds this decoder with the subscription's options."""
    decoder = make_decoder("value", DecoderOptions(typer=FieldTyper({"n": "integer"})))

    assert isinstance(decoder, ValueDecoder) and decoder.name == "value"
    assert decoder.decode(_message(b"3"), "m", {}, "n").points[0].fields == {"n": 3}


async def test_value_decoder_stores_esphome_states_through_the_real_broker(
    gateway_config, running_gateway, publisher, topic_prefix, influx_v1
):
    """Test that bare values published over MQTT land in InfluxDB 1.x exactly."""
    config = gateway_config(
        influx={"database": influx_v1.database},
        subscriptions=[
            {
                "format": "value",
                "topic_template": f"{topic_prefix}/{{node}}/{{component}}/"
                "{sensor}/state",
                "measurement": "{component}",
                "field": "{sensor}",
                "fields": {"boot_count": "integer"},
                "tags": {"site": "depok"},
            }
        ],
    )
    sent = [
        ("node-1", "sensor", "temperature", b"21.5"),
        ("node-1", "binary_sensor", "door", b"ON"),
        ("node-1", "text_sensor", "wifi_ssid", b"city iot"),
        ("node-1", "sensor", "boot_count", b"42"),
        ("node-1", "sensor", "humidity", b"nan"),
        ("node-1", "sensor", "status", b'{"uptime": 12}'),
    ]
    before_ns = time.time_ns()
    async with running_gateway(config) as gateway:
        for node, component, sensor, payload in sent:
            publisher.publish(
                f"{topic_prefix}/{node}/{component}/{sensor}/state", payload
            )
        sensors = await influx_v1.wait_for_rows("sensor", 2)
        doors = await influx_v1.wait_for_rows("binary_sensor", 1)
        texts = await influx_v1.wait_for_rows("text_sensor", 1)
        await wait_until(lambda: sum(gateway.stats.messages_rejected.values()) >= 2)
        stats = gateway.stats
    after_ns = time.time_ns()

    tags = {"node": "node-1", "site": "depok"}
    assert [{k: v for k, v in row.items() if k != "time"} for row in sensors] == [
        {**tags, "component": "sensor", "sensor": "temperature", "temperature": 21.5}
        | {"boot_count": None},
        {**tags, "component": "sensor", "sensor": "boot_count", "temperature": None}
        | {"boot_count": 42},
    ]
    assert doors[0]["door"] is True and texts[0]["wifi_ssid"] == "city iot"
    assert all(before_ns <= row["time"] <= after_ns for row in sensors + doors + texts)
    types = dict(influx_v1.query('SHOW FIELD KEYS FROM "sensor"')[0]["values"])
    assert types == {"temperature": "float", "boot_count": "integer"}
    assert stats.messages_rejected == {"non_finite": 1, "not_a_value": 1}
    dead = [
        orjson.loads(line)
        for line in config.dead_letters.path.read_bytes().splitlines()
    ]
    assert {(entry["reason"], entry["payload"]) for entry in dead} == {
        ("non_finite", "nan"),
        ("not_a_value", '{"uptime": 12}'),
    }
