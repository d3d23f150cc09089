"""The JSON decoder: objects of readings to one point, and reading times."""

from __future__ import annotations

from datetime import UTC

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.decoding import FieldReject, JsonDecoder, Route, TopicTemplate
from gateway.decoding.json_readings import MAX_NESTING_DEPTH
from gateway.decoding.options import DecoderOptions
from gateway.decoding.timestamps import parse_timestamp
from gateway.errors import PayloadError
from gateway.points import encode_line
from gateway.sources.mqtt import MqttMessage

TOPIC = "city/bpbd/river_gauge/rg-01/telemetry"
RX_NS = 1_717_200_060_000_000_000  # 2024-06-01T00:01:00Z, the receive time of C11
TS_NS = 1_717_200_000_000_000_000  # 2024-06-01T00:00:00Z
# Tests of reading times alone switch the plausibility window off.
ANY_TIME = {"max_past_ns": 2**63, "max_future_ns": 2**63}


def _message(payload: bytes, topic: str = TOPIC) -> MqttMessage:
    return MqttMessage(topic, payload, qos=1, retain=False, received_ns=RX_NS)


def _decode(payload: bytes, **options):
    decoder = JsonDecoder(DecoderOptions(**options))
    return decoder.decode(_message(payload), "river_gauge", {"device_id": "rg-01"})


def _refusal(payload: bytes, **options) -> PayloadError:
    with pytest.raises(PayloadError) as caught:
        _decode(payload, **options)
    assert caught.value.topic == TOPIC
    return caught.value


def _meter_route(**options) -> Route:
    template = TopicTemplate.parse("meters/{device}/reading")
    return Route(
        topic_filter=template.topic_filter,
        qos=1,
        template=template,
        measurement="meter",
        static_tags={},
        decoder=JsonDecoder(DecoderOptions(**options)),
    )


def test_json_decoder_turns_flat_object_into_one_point():
    """Test that a flat object gives one point with its fields, tags, receive time."""
    decoded = _decode(b'{"water_level_cm": 182.4, "flow_m3s": 3.5}')

    assert len(decoded.points) == 1
    point = decoded.points[0]
    assert point.measurement == "river_gauge"
    assert point.tags == {"device_id": "rg-01"}
    assert point.fields == {"water_level_cm": 182.4, "flow_m3s": 3.5}
    assert point.time_ns == RX_NS
    assert decoded.rejected_fields == []


def test_json_decoder_joins_nested_keys_with_underscore():
    """Test that nested objects become fields named by their keys joined with _."""
    decoded = _decode(b'{"battery": {"voltage_v": 3.91, "charge": {"pct": 80.5}}}')

    assert decoded.points[0].fields == {
        "battery_voltage_v": 3.91,
        "battery_charge_pct": 80.5,
    }


def test_json_decoder_names_array_elements_by_index():
    """Test that array elements become <key>_<index>, also inside arrays of objects."""
    decoded = _decode(b'{"temps_c": [20.5, 21.0], "probes": [{"ph": 7.1}, [1.5]]}')

    assert decoded.points[0].fields == {
        "temps_c_0": 20.5,
        "temps_c_1": 21.0,
        "probes_0_ph": 7.1,
        "probes_1_0": 1.5,
    }


def test_json_decoder_stores_integers_as_floats():
    """Test that JSON integers become float fields, so a later 41.5 cannot conflict."""
    decoded = _decode(b'{"pm25_ugm3": 41, "count": -3, "zero": 0}')

    fields = decoded.points[0].fields
    assert fields == {"pm25_ugm3": 41.0, "count": -3.0, "zero": 0.0}
    assert all(type(value) is float for value in fields.values())
    assert encode_line(decoded.points[0]) == (
        f"river_gauge,device_id=rg-01 pm25_ugm3=41.0,count=-3.0,zero=0.0 {RX_NS}"
    )


def test_json_decoder_keeps_booleans_and_strings():
    """Test that booleans stay booleans and strings stay strings, not numbers."""
    decoded = _decode(
        b'{"pump_on": true, "door_open": false, "status": "ok", "v": "12"}'
    )

    fields = decoded.points[0].fields
    assert fields == {"pump_on": True, "door_open": False, "status": "ok", "v": "12"}
    assert fields["pump_on"] is True and fields["door_open"] is False


def test_json_decoder_leaves_out_null_with_field_reject():
    """Test that a null is left out of the point and reported as a FieldReject."""
    decoded = _decode(b'{"power": null, "voltage": 231.4, "update": {"state": null}}')

    assert decoded.points[0].fields == {"voltage": 231.4}
    assert decoded.rejected_fields == [
        FieldReject("power", "null_value", "value is null"),
        FieldReject("update_state", "null_value", "value is null"),
    ]


def test_json_decoder_c02_zigbee2mqtt_state_with_nulls():
    """Test that C02's first message is stored without its null fields."""
    payload = (
        b'{"state":"ON","linkquality":23,"power":null,"current":null,"voltage":231.4,'
        b'"energy":3.42,"update":{"state":"idle","installed_version":16909577},'
        b'"update_available":false,"last_seen":"2024-05-01T10:00:00+02:00"}'
    )

    decoded = _decode(payload, timestamp_key="last_seen")

    point = decoded.points[0]
    assert point.fields == {
        "state": "ON",
        "linkquality": 23.0,
        "voltage": 231.4,
        "energy": 3.42,
        "update_state": "idle",
        "update_installed_version": 16909577.0,
        "update_available": False,
    }
    assert point.time_ns == 1_714_550_400_000_000_000
    assert sorted(r.field for r in decoded.rejected_fields) == ["current", "power"]
    assert "null" not in encode_line(point)


def test_json_decoder_rejects_empty_keys_and_keeps_the_rest():
    """Test that an empty key is left out with reason empty_key, naming its parent."""
    decoded = _decode(b'{"": 1, "battery": {"": 2, "voltage_v": 3.9}, "level": 5}')

    assert decoded.points[0].fields == {"battery_voltage_v": 3.9, "level": 5.0}
    assert [(r.field, r.reason) for r in decoded.rejected_fields] == [
        ("", "empty_key"),
        ("battery", "empty_key"),
    ]


def test_json_decoder_rejects_values_nested_too_deeply():
    """Test that nesting past the limit is left out with reason too_deep."""
    deep: object = 1.0
    for _ in range(MAX_NESTING_DEPTH + 2):
        deep = {"a": deep}

    decoded = _decode(orjson.dumps({"deep": deep, "level": 5}))

    assert decoded.points[0].fields == {"level": 5.0}
    assert [r.reason for r in decoded.rejected_fields] == ["too_deep"]


@pytest.mark.parametrize(
    ("payload", "kind"),
    [
        (b"[1, 2, 3]", "list"),
        (b"42", "int"),
        (b"21.5", "float"),
        (b'"on"', "str"),
        (b"true", "bool"),
        (b"null", "NoneType"),
    ],
)
def test_json_decoder_refuses_non_object_payload(payload, kind):
    """Test that valid JSON other than an object is refused as not_an_object."""
    error = _refusal(payload)

    assert error.reason == "not_an_object"
    assert kind in error.detail


@pytest.mark.parametrize(
    "payload",
    [
        b"not json at all",
        b"",
        b'{"water_level_cm": 100.0',
        b"{'water_level_cm': 100.0}",
        b"\xff\xfe\x00garbage",
        b'{"status": "\xff\xfe"}',
        b'{"status": "\\ud800"}',
    ],
)
def test_json_decoder_refuses_invalid_json(payload):
    """Test that text that is not JSON, or not UTF-8, is refused as invalid_json."""
    assert _refusal(payload).reason == "invalid_json"


@pytest.mark.parametrize(
    "payload",
    [
        b"{}",
        b'{"ts": 1717200000}',
        b'{"power": null}',
        b'{"a": {}, "b": []}',
        b'{"": 1}',
    ],
)
def test_json_decoder_refuses_object_without_storable_value(payload):
    """Test that an object with nothing to store is refused as no_fields."""
    assert _refusal(payload).reason == "no_fields"


def test_json_decoder_names_reject_reasons_when_no_field_is_left():
    """Test that no_fields says why the values were left out."""
    assert "null_value" in _refusal(b'{"power": null}').detail


@pytest.mark.parametrize(
    ("ts", "time_ns"),
    [
        ("1717200000", TS_NS),  # seconds
        ("1717200000123", TS_NS + 123_000_000),  # milliseconds
        ("1717200000123456", TS_NS + 123_456_000),  # microseconds
        ("1717200000123456789", TS_NS + 123_456_789),  # nanoseconds, all 19 digits
        ("1717200000.123", TS_NS + 123_000_000),
        ("1717200000.5", TS_NS + 500_000_000),
        ("1717200000123.456", TS_NS + 123_456_000),
        ("1717200000.123456", TS_NS + 123_456_000),
        ("1.717200000123e9", TS_NS + 123_000_000),
        ("0", 0),
        ("9223372036", 9_223_372_036 * 10**9),  # 2262-04-11, the last ns InfluxDB has
        ("100000000000", 100_000_000_000 * 10**6),  # the smallest auto-detected ms
    ],
)
def test_json_decoder_detects_epoch_unit_by_magnitude(ts, time_ns):
    """Test that numeric times in s, ms, µs and ns are told apart and kept exactly."""
    decoded = _decode(b'{"ts": %s, "level": 1}' % ts.encode(), **ANY_TIME)

    assert decoded.points[0].time_ns == time_ns
    assert "ts" not in decoded.points[0].fields


@pytest.mark.parametrize(
    ("unit", "ts", "time_ns"),
    [
        ("s", "1717200000", TS_NS),
        ("s", "1717200000.123", TS_NS + 123_000_000),
        ("ms", "1717200000123", TS_NS + 123_000_000),
        ("ms", "1717200000123.456", TS_NS + 123_456_000),
        ("us", "1717200000123456", TS_NS + 123_456_000),
        ("ns", "1717200000123456789", TS_NS + 123_456_789),
        # The unit is taken as configured, even where auto would say seconds.
        ("ms", "1717200000", 1_717_200_000_000_000),
    ],
)
def test_json_decoder_uses_explicit_timestamp_unit(unit, ts, time_ns):
    """Test that a configured unit is used instead of guessing by magnitude."""
    decoded = _decode(
        b'{"ts": %s, "level": 1}' % ts.encode(), timestamp_unit=unit, **ANY_TIME
    )

    assert decoded.points[0].time_ns == time_ns


@pytest.mark.parametrize(
    ("ts", "time_ns"),
    [
        ("2024-06-01T00:00:00Z", TS_NS),
        ("2024-06-01T07:00:00+07:00", TS_NS),  # WIB, Depok's zone
        ("2024-06-01T00:00:00", TS_NS),  # no zone: the configured one, UTC here
        ("2024-06-01 00:00:00", TS_NS),
        ("2024-06-01T00:00:00.5Z", TS_NS + 500_000_000),
        ("2024-06-01T00:00:00.123Z", TS_NS + 123_000_000),
        ("2024-06-01T07:00:00.123456+07:00", TS_NS + 123_456_000),
        ("2024-06-01T00:00:00.123456789Z", TS_NS + 123_456_789),
        ("2024-06-01T00:00:00.1234567891Z", TS_NS + 123_456_789),
        ("2024-06-01T00:00:00,25Z", TS_NS + 250_000_000),
        ("2024-06-01T02:00:00.5+02:00", TS_NS + 500_000_000),  # C11 input 5
        ("2024-03-05T07:15:02+0100", 1_709_619_302_000_000_000),  # C01's offset
        ("2024-06-01", TS_NS),
    ],
)
def test_json_decoder_reads_iso_8601_timestamps(ts, time_ns):
    """Test that ISO-8601 times honour their zone and keep fractions to the ns."""
    decoded = _decode(orjson.dumps({"ts": ts, "level": 1}), zone=UTC)

    assert decoded.points[0].time_ns == time_ns


@pytest.mark.parametrize(
    ("payload", "line"),
    [
        (
            b'{"ts":1717200000,"p":230.5}',
            "meter,device=em-4 p=230.5 1717200000000000000",
        ),
        (
            b'{"ts":1717200000123,"p":230.6}',
            "meter,device=em-4 p=230.6 1717200000123000000",
        ),
        (
            b'{"ts":1717200000123456,"p":230.7}',
            "meter,device=em-4 p=230.7 1717200000123456000",
        ),
        (
            b'{"ts":1717200000123456789,"p":230.8}',
            "meter,device=em-4 p=230.8 1717200000123456789",
        ),
        (
            b'{"ts":"2024-06-01T02:00:00.5+02:00","p":230.9}',
            "meter,device=em-4 p=230.9 1717200000500000000",
        ),
        # C11 writes p=231; a float field is written as 231.0, the same number.
        (
            b'{"ts":"1717200000","p":231.0}',
            "meter,device=em-4 p=231.0 1717200000000000000",
        ),
    ],
)
def test_json_decoder_c11_timestamp_table(payload, line):
    """Test that C11's six inputs give its six lines with their exact times."""
    decoded = _meter_route().decode(_message(payload, "meters/em-4/reading"))

    assert [encode_line(point) for point in decoded.points] == [line]


@given(
    ticks=st.integers(0, 4_102_444_800_000_000),  # up to 2100, in µs
    per_second=st.sampled_from([1_000, 1_000_000]),
)
def test_json_decoder_keeps_fractional_seconds_exactly(ticks, per_second):
    """Test that a float of seconds with ms or µs digits becomes exactly those ns."""
    ticks //= 1_000_000 // per_second
    seconds = ticks / per_second

    decoded = _decode(orjson.dumps({"ts": seconds, "level": 1}), **ANY_TIME)

    assert decoded.points[0].time_ns == ticks * (10**9 // per_second)


def test_json_decoder_uses_receive_time_without_timestamp_key():
    """Test that a message without the timestamp key gets its receive time."""
    assert _decode(b'{"level": 1}').points[0].time_ns == RX_NS


def test_json_decoder_reads_configured_timestamp_key():
    """Test that the configured key is the time and the default key is a field."""
    payload = b'{"time": 1717200000, "ts": 5, "level": 1}'

    decoded = _decode(payload, timestamp_key="time")

    assert decoded.points[0].time_ns == TS_NS
    assert decoded.points[0].fields == {"ts": 5.0, "level": 1.0}


def test_json_decoder_with_empty_timestamp_key_always_uses_receive_time():
    """Test that an empty timestamp key stores ts as a field and uses receive time."""
    decoded = _decode(b'{"ts": 1717200000, "level": 1}', timestamp_key="")

    assert decoded.points[0].time_ns == RX_NS
    assert decoded.points[0].fields == {"ts": 1717200000.0, "level": 1.0}


@pytest.mark.parametrize(
    ("ts", "shown"),
    [
        ("true", "True"),
        ('"yesterday"', "'yesterday'"),
        ('"2024-13-01T00:00:00Z"', "'2024-13-01T00:00:00Z'"),
        ("99999999999", "99999999999"),  # seconds by magnitude, but past 2262
        ('" 1717200000"', "' 1717200000'"),
        ("-5", "-5"),
        ("-1.5", "-1.5"),
        ("[1717200000]", "[1717200000]"),
        ('{"s": 1717200000}', "{'s': 1717200000}"),
        ("1e30", "1e+30"),  # past 2262, beyond InfluxDB's int64 ns
        ("9223372036854775808", "9223372036854775808"),
        ('"9999-12-31T00:00:00Z"', "'9999-12-31T00:00:00Z'"),
        ("NaN", "nan"),
    ],
)
def test_json_decoder_refuses_bad_timestamp_naming_the_value(ts, shown):
    """Test that an unusable time refuses the message as bad_timestamp, naming it."""
    error = _refusal(b'{"ts": %s, "level": 1}' % ts.encode())

    assert error.reason == "bad_timestamp"
    assert shown in error.detail


def test_parse_timestamp_shortens_long_values_in_its_message():
    """Test that a long bad timestamp is cut in the message, not copied whole."""
    with pytest.raises(ValueError) as caught:
        parse_timestamp("x" * 10_000)

    assert len(str(caught.value)) < 200


@pytest.mark.parametrize(
    ("payload", "fields", "rejected"),
    [
        # C03 inputs 3, 4 and 5.
        (
            (
                b'{"contactor_cycles": 57, "avg_startup_temp":nan, "energy_wh": 1184220, '
                b'"uptime_s": 20417733}'
            ),
            {"contactor_cycles": 57.0, "energy_wh": 1184220.0, "uptime_s": 20417733.0},
            ["avg_startup_temp"],
        ),
        (
            (
                b'{"contactor_cycles": 58, "avg_startup_temp": -nan, "energy_wh": 1184290, '
                b'"uptime_s": 20418333}'
            ),
            {"contactor_cycles": 58.0, "energy_wh": 1184290.0, "uptime_s": 20418333.0},
            ["avg_startup_temp"],
        ),
        (
            (
                b'{"contactor_cycles": 59, "avg_startup_temp": NaN, "peak_temp": Infinity, '
                b'"energy_wh": 1184365, "uptime_s": 20418933}'
            ),
            {"contactor_cycles": 59.0, "energy_wh": 1184365.0, "uptime_s": 20418933.0},
            ["avg_startup_temp", "peak_temp"],
        ),
        (
            (
                b'{"a": -Infinity, "b": inf, "c": -INF, "d": [NaN, 1], "e": {"f": nan}, '
                b'"g": 2}'
            ),
            {"d_1": 1.0, "g": 2.0},
            ["a", "b", "c", "d_0", "e_f"],
        ),
    ],
)
def test_json_decoder_leaves_out_non_finite_fields(payload, fields, rejected):
    """Test that NaN and Infinity tokens drop only their fields, reason non_finite."""
    decoded = _decode(payload)

    assert decoded.points[0].fields == fields
    assert [r.field for r in decoded.rejected_fields] == rejected
    assert {r.reason for r in decoded.rejected_fields} == {"non_finite"}
    line = encode_line(decoded.points[0]).lower()
    assert "nan" not in line and "inf" not in line


def test_json_decoder_leaves_nan_inside_strings_alone():
    """Test that nan and inf inside strings and keys stay text."""
    decoded = _decode(b'{"nan": 1, "status": "NaN, inf \\" -nan", "x": NaN}')

    assert decoded.points[0].fields == {"nan": 1.0, "status": 'NaN, inf " -nan'}
    assert [r.field for r in decoded.rejected_fields] == ["x"]


def test_json_decoder_refuses_object_of_only_non_finite_values():
    """Test that an object holding only NaN is refused as no_fields (non_finite)."""
    error = _refusal(b'{"t": NaN}')

    assert error.reason == "no_fields"
    assert "non_finite" in error.detail


@pytest.mark.parametrize(
    "payload",
    [
        b'{"t": NaN',
        b'{"t": NaN, "s": "\\ud800"}',
        b'{"t": nanx}',
        b'{"t": NaN, "u": undefined}',
        b'{"t": NaN, "s": "\xff"}',
        b'{"t": NaN, "s": "unterminated}',
    ],
)
def test_json_decoder_still_refuses_invalid_json_with_nan(payload):
    """Test that accepting NaN tokens lets nothing else through that orjson refuses."""
    assert _refusal(payload).reason == "invalid_json"


@pytest.mark.parametrize(("payload", "kind"), [(b"nan", "float"), (b"[NaN]", "list")])
def test_json_decoder_refuses_bare_nan_as_not_an_object(payload, kind):
    """Test that a payload that is only a NaN is refused without a crash."""
    error = _refusal(payload)

    assert error.reason == "not_an_object"
    assert kind in error.detail


def test_json_decoder_leaves_out_a_field_named_time_and_keeps_the_rest():
    """Test that a 'time' key (reserved by InfluxDB) is rejected alone."""
    from gateway.decoding.json_readings import JsonDecoder
    from gateway.sources.mqtt import MqttMessage

    message = MqttMessage("t/a", b'{"time": "12:00", "level": 1.5}', 1, False, 7)
    decoded = JsonDecoder().decode(message, "m", {})

    assert decoded.points[0].fields == {"level": 1.5}
    assert [(r.field, r.reason) for r in decoded.rejected_fields] == [
        ("time", "reserved_key")
    ]


def test_json_decoder_stores_a_null_timestamp_at_receive_time():
    """Test that {"ts": null} means no reading time: the receive time is used."""
    decoded = _decode(b'{"ts": null, "level": 1}')

    assert decoded.points[0].time_ns == RX_NS
    assert decoded.points[0].fields == {"level": 1.0}


def test_json_decoder_uses_receive_time_for_zoneless_text_without_a_zone(caplog):
    """Test that ISO text without offset and no zone is not guessed to be UTC."""
    decoded = _decode(b'{"ts": "2024-06-01T00:00:00", "level": 1}')

    assert decoded.points[0].time_ns == RX_NS
    assert "no timezone is configured" in caplog.text


def test_json_decoder_reads_zoneless_text_in_the_configured_zone():
    """Test that a configured IANA zone gives the offset in force on that date."""
    from zoneinfo import ZoneInfo

    decoded = _decode(
        b'{"ts": "2024-06-01T07:00:00", "level": 1}', zone=ZoneInfo("Asia/Jakarta")
    )

    assert decoded.points[0].time_ns == TS_NS


def test_json_decoder_refuses_an_implausible_time_naming_value_unit_and_date():
    """Test that C11's wrong-unit variant stores nothing and says why."""
    error = _refusal(b'{"ts": 1717200000, "p": 231.1}', timestamp_unit="ms")

    assert error.reason == "implausible_timestamp"
    assert "1717200000" in error.detail
    assert "ms" in error.detail
    assert "1970-01-20T21:00:00" in error.detail
