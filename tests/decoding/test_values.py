"""Payload values: lenient JSON reading and field typing, one bad value at a time."""

from __future__ import annotations

import json
import time

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.decoding import FieldReject, JsonDecoder
from gateway.decoding.options import DecoderOptions
from gateway.decoding.values import FieldTyper, LongInteger, load_json
from gateway.errors import PayloadError
from gateway.points import MAX_STRING_FIELD_BYTES, encode_line
from gateway.sources.mqtt import MqttMessage
from tests.conftest import wait_until

TOPIC = "city/bpbd/river_gauge/rg-01/telemetry"
RX_NS = 1_717_200_060_000_000_000
MS = 1_000_000
LONG = 123456789012345678901234567890
# A field key InfluxDB cannot take even with a one-letter measurement and no tags.
LONG_KEY = "k" * 70_000
LONG_TEXT = "t" * 70_000
JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda inner: st.lists(inner, max_size=4)
    | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)


def _refusal(payload: bytes) -> PayloadError:
    with pytest.raises(PayloadError) as caught:
        load_json(payload, TOPIC)
    assert caught.value.reason == "invalid_json"
    assert caught.value.topic == TOPIC
    return caught.value


def _decode(payload: bytes, **options):
    message = MqttMessage(TOPIC, payload, qos=1, retain=False, received_ns=RX_NS)
    decoder = JsonDecoder(DecoderOptions(**options))
    return decoder.decode(message, "river_gauge", {"device_id": "rg-01"})


def test_load_json_skips_a_utf8_byte_order_mark():
    """Test that JSON starting with a UTF-8 BOM is read as if it had none."""
    assert load_json(b'\xef\xbb\xbf{"v": 1}', TOPIC) == {"v": 1}


@pytest.mark.parametrize(
    "payload",
    [b'{"v": 1e400, "w": 3}', b'{"w": 3, "v": -1e400}', b'{"v": 1E+400, "w": 3}'],
)
def test_load_json_reads_a_number_beyond_float_range_as_infinity(payload):
    """Test that 1e400 or -1e400 becomes an infinite float and the rest is kept."""
    document = load_json(payload, TOPIC)

    assert document["w"] == 3 and type(document["w"]) is int
    assert abs(document["v"]) == float("inf")


def test_load_json_reads_integers_beyond_64_bits_as_long_integers():
    """Test that integers past 64 bits keep their digits; those within stay ints."""
    payload = (
        b'{"big": 123456789012345678901234567890, "low": -9223372036854775809, '
        b'"top": 18446744073709551616, "u64": 18446744073709551615, '
        b'"i64": -9223372036854775808, "ts": 1717200000123456789, "v": 1.5}'
    )

    document = load_json(payload, TOPIC)

    exact = json.loads(payload)
    assert {k: v for k, v in document.items() if k not in ("big", "low", "top")} == {
        k: v for k, v in exact.items() if k not in ("big", "low", "top")
    }
    longs = {k: v.digits for k, v in document.items() if isinstance(v, LongInteger)}
    assert longs == {
        "big": "123456789012345678901234567890",
        "low": "-9223372036854775809",
        "top": "18446744073709551616",
    }
    assert [type(document[k]) for k in ("u64", "i64", "ts", "v")] == [
        int,
        int,
        int,
        float,
    ]


def test_load_json_reads_a_long_integer_beside_a_nan_token():
    """Test that the lenient reading for NaN also reads long integers exactly."""
    document = load_json(b'{"t": NaN, "big": 100000000000000000000000}', TOPIC)

    assert document["big"].digits == "100000000000000000000000"
    assert document["t"] != document["t"]


def test_load_json_reads_an_integer_of_5000_digits_without_refusing_it():
    """Test that an integer too long for int() is still one LongInteger field."""
    document = load_json(b'{"v": ' + b"9" * 5000 + b', "w": 1}', TOPIC)

    assert document["v"].digits == "9" * 5000 and document["w"] == 1


def test_load_json_leaves_digits_inside_strings_alone():
    """Test that 20 digits inside a string stay text (the exact reading agrees)."""
    payload = b'{"iccid": "89860012345678901234", "v": 2}'

    assert load_json(payload, TOPIC) == {"iccid": "89860012345678901234", "v": 2}


@pytest.mark.parametrize(
    "payload",
    [
        b'{"s": "\\ud800"}',
        b'{"s": "\\udc00", "t": NaN}',
        b'{"s": "\\ud800", "big": 100000000000000000000000}',
        b'{"s": "\\ud800", "v": 1e400}',
    ],
)
def test_load_json_still_refuses_a_lone_surrogate(payload):
    """Test that an escaped lone surrogate is refused on every reading path."""
    assert "surrogate" in _refusal(payload).detail


def test_load_json_keeps_an_escaped_surrogate_pair():
    """Test that a surrogate pair, escaped, is read as the one character it is."""
    assert load_json(b'{"s": "\\ud83d\\ude00", "t": NaN}', TOPIC)["s"] == "😀"


@pytest.mark.parametrize(
    ("payload", "byte"),
    [(b'{"v": "\xff"}', 7), (b"\xff\xfe\x00garbage", 0), (b'{"v": 1e400, "\xc3"}', 14)],
)
def test_load_json_names_the_byte_that_is_not_utf8(payload, byte):
    """Test that a payload that is not UTF-8 text is refused naming the byte."""
    assert _refusal(payload).detail == f"payload is not UTF-8 text (byte {byte})"


@pytest.mark.parametrize(
    ("payload", "detail"),
    [
        (b'{"v": 1e400, }', "Expecting property name"),
        (b'{"t": NaN', "Expecting ',' delimiter"),
        (b"[" * 2000 + b"]" * 2000, "depth limit exceeded"),
    ],
)
def test_load_json_refuses_other_faults_beside_a_lenient_value(payload, detail):
    """Test that JSON broken elsewhere is refused, saying what is broken."""
    assert _refusal(payload).detail.startswith(detail)


def test_load_json_keeps_the_last_of_repeated_keys():
    """Test that a repeated key keeps its last value (a documented limitation)."""
    assert load_json(b'{"v": 1, "v": "one"}', TOPIC) == {"v": "one"}


@given(JSON_VALUES)
def test_load_json_reads_what_orjson_writes_unchanged(value):
    """Test that any JSON orjson writes reads back equal, with the same types."""
    document = load_json(orjson.dumps({"v": value}), TOPIC)

    assert orjson.dumps(document) == orjson.dumps({"v": value})


@given(st.integers(min_value=2**64) | st.integers(max_value=-(2**63) - 1))
def test_load_json_keeps_every_digit_of_a_long_integer(number):
    """Test that any integer beyond 64 bits becomes a LongInteger with its digits."""
    document = load_json(f'{{"v": {number}}}'.encode(), TOPIC)

    assert isinstance(document["v"], LongInteger)
    assert document["v"].digits == str(number)


@pytest.mark.parametrize(
    ("declared", "expected"),
    [
        (None, "out_of_range"),
        ("integer", "out_of_range"),
        ("unsigned", "out_of_range"),
        ("boolean", "out_of_range"),
        ("string", str(LONG)),
        ("float", float(LONG)),
    ],
)
def test_field_typer_leaves_out_a_long_integer_unless_declared_string_or_float(
    declared, expected
):
    """Test that an integer beyond 64 bits is out_of_range unless declared so."""
    typer = FieldTyper({"v": declared} if declared else {})

    converted = typer.convert("v", LongInteger(str(LONG)))

    if isinstance(converted, FieldReject):
        assert converted == FieldReject(
            "v",
            "out_of_range",
            f"{LONG} is an integer of 30 digits, beyond 64 bits; declare the field "
            "string to keep its digits",
        )
        converted = converted.reason
    assert converted == expected
    assert type(converted) is type(expected)


def test_field_typer_leaves_out_a_long_integer_past_float_range_as_out_of_range():
    """Test that a 400-digit integer declared float is out_of_range, not non_finite."""
    typer = FieldTyper({"v": "float"})

    assert typer.convert("v", LongInteger("9" * 400)).reason == "out_of_range"


@pytest.mark.parametrize(
    ("text", "size"),
    [("t" * 70_000, 70_000), ("é" * 40_000, 80_000), ("😀" * 16_385, 65_540)],
)
def test_field_typer_leaves_out_a_string_longer_than_influxdb_stores(text, size):
    """Test that a string over 64 KiB in UTF-8 is left out as too_long."""
    for typer in (FieldTyper(), FieldTyper({"v": "string"})):
        assert typer.convert("v", text) == FieldReject(
            "v",
            "too_long",
            f"value is a string of {size} bytes; InfluxDB stores at most 65536",
        )


def test_field_typer_keeps_a_string_of_exactly_64_kib():
    """Test that a string of exactly MAX_STRING_FIELD_BYTES is kept and encodable."""
    text = "é" * (MAX_STRING_FIELD_BYTES // 2)

    assert FieldTyper().convert("v", text) == text


def test_field_typer_leaves_out_a_key_longer_than_influxdb_allows():
    """Test that a key no point can carry is left out as too_long, shortened."""
    reject = FieldTyper().convert(LONG_KEY, 1.0)

    assert reject == FieldReject(
        "k" * 64 + "…", "too_long", "key is 70000 bytes; InfluxDB allows at most 65530"
    )


def test_field_typer_counts_escapes_in_a_long_key():
    """Test that the escaping of commas, equals signs and spaces counts in a key."""
    typer = FieldTyper()

    assert typer.convert("k" * 65_000, 1.0) == 1.0
    assert typer.convert("k" * 65_000 + " " * 600, 1.0).reason == "too_long"


def test_json_decoder_keeps_the_rest_of_a_message_with_1e400():
    """Test that {"v": 1e400, "w": 3} stores w and leaves v out as non_finite."""
    decoded = _decode(b'{"v": 1e400, "w": 3}')

    assert decoded.points[0].fields == {"w": 3.0}
    assert [(r.field, r.reason) for r in decoded.rejected_fields] == [
        ("v", "non_finite")
    ]


def test_json_decoder_keeps_the_rest_of_a_message_with_long_text_and_keys():
    """Test that a 70 KB string or key is left out and the point stays encodable."""
    payload = orjson.dumps({"note": LONG_TEXT, LONG_KEY: 1, "w": 3})

    decoded = _decode(payload)

    assert decoded.points[0].fields == {"w": 3.0}
    assert [(r.field[:4], r.reason) for r in decoded.rejected_fields] == [
        ("note", "too_long"),
        ("kkkk", "too_long"),
    ]
    assert encode_line(decoded.points[0]).startswith(
        "river_gauge,device_id=rg-01 w=3.0"
    )


async def test_gateway_stores_the_usable_values_of_awkward_json(
    gateway_config, running_gateway, publisher, topic_prefix, influx_v1
):
    """Test that BOM, 1e400, long integers and long texts cost only their field."""
    config = gateway_config(
        influx={"database": influx_v1.database},
        subscriptions=[
            {
                "topic_template": f"{topic_prefix}/{{agency}}/{{device_type}}/"
                "{device_id}/telemetry",
                "measurement": "{device_type}",
                "fields": {"iccid": "string"},
            }
        ],
    )
    topic = f"{topic_prefix}/bpbd/river_gauge/rg-awkward-01/telemetry"
    base_ms = int(time.time() * 1000) - 60_000
    payloads = [
        b'\xef\xbb\xbf{"ts": %d, "w": 1}' % base_ms,
        b'{"ts": %d, "v": 1e400, "w": 2}' % (base_ms + 1),
        b'{"ts": %d, "big": %d, "iccid": 89860012345678901234, "w": 3}'
        % (base_ms + 2, LONG),
        orjson.dumps({"ts": base_ms + 3, "note": LONG_TEXT, LONG_KEY: 5, "w": 4}),
    ]

    async with running_gateway(config) as gateway:
        for payload in payloads:
            publisher.publish(topic, payload)
        rows = await influx_v1.wait_for_rows("river_gauge", len(payloads))
        assert await wait_until(
            lambda: sum(gateway.stats.fields_rejected.values()) == 4
        )
        stats = gateway.stats

    assert [(r["time"], r["w"], r["iccid"]) for r in rows] == [
        (base_ms * MS, 1.0, None),
        ((base_ms + 1) * MS, 2.0, None),
        ((base_ms + 2) * MS, 3.0, "89860012345678901234"),
        ((base_ms + 3) * MS, 4.0, None),
    ]
    assert set(rows[0]) == {"time", "agency", "device_id", "device_type", "iccid", "w"}
    assert not stats.messages_rejected
    assert stats.fields_rejected == {"non_finite": 1, "out_of_range": 1, "too_long": 2}
    dead = [
        orjson.loads(line)
        for line in config.dead_letters.path.read_bytes().splitlines()
    ]
    assert [[(f["field"][:4], f["reason"]) for f in e["fields"]] for e in dead] == [
        [("v", "non_finite")],
        [("big", "out_of_range")],
        [("note", "too_long"), ("kkkk", "too_long")],
    ]
