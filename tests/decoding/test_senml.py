"""The SenML decoder: RFC 8428 packs to points, one per time and unit."""

from __future__ import annotations

import time

import orjson
import pytest

from gateway.decoding.base import FieldReject
from gateway.decoding.options import DecoderOptions
from gateway.decoding.registry import make_decoder
from gateway.decoding.senml import SenmlDecoder
from gateway.decoding.values import FieldTyper
from gateway.errors import PayloadError
from gateway.points import encode_line
from gateway.sources.mqtt import MqttMessage
from tests.conftest import wait_until

TOPIC = "senml/meter-9"
RX_NS = 1_717_200_060_000_000_000  # 2024-06-01T00:01:00Z
TS_NS = 1_717_200_000_000_000_000  # 2024-06-01T00:00:00Z
S = 1_000_000_000


def _message(payload: bytes) -> MqttMessage:
    return MqttMessage(TOPIC, payload, qos=1, retain=False, received_ns=RX_NS)


def _decode(pack: object, **options):
    payload = pack if isinstance(pack, bytes) else orjson.dumps(pack)
    decoder = SenmlDecoder(DecoderOptions(**options))
    return decoder.decode(_message(payload), "senml", {"device": "meter-9"})


def _lines(pack: object, **options) -> list[str]:
    return [encode_line(point) for point in _decode(pack, **options).points]


def _refusal(pack: object, **options) -> PayloadError:
    with pytest.raises(PayloadError) as caught:
        _decode(pack, **options)
    assert caught.value.topic == TOPIC
    return caught.value


def test_senml_decoder_reads_a_single_record_at_receive_time():
    """Test that a record without time is stored now, its unit as the unit tag."""
    assert _lines([{"n": "temperature", "u": "Cel", "v": 23.1}]) == [
        f"senml,device=meter-9,unit=Cel temperature=23.1 {RX_NS}"
    ]


def test_senml_decoder_resolves_base_name_time_and_unit_rfc_example():
    """Test that RFC 8428's multiple-measurements example resolves to its points."""
    pack = [
        {
            "bn": "urn:dev:ow:10e2073a01080063:",
            "bt": 1.7172e9,
            "bu": "A",
            "bver": 5,
            "n": "voltage",
            "u": "V",
            "v": 120.1,
        },
        {"n": "current", "t": -5, "v": 1.2},
        {"n": "current", "t": -4, "v": 1.3},
        {"n": "current", "t": -3, "v": 1.4},
    ]

    assert _lines(pack) == [
        f"senml,device=meter-9,unit=V urn:dev:ow:10e2073a01080063:voltage=120.1 "
        f"{TS_NS}",
        f"senml,device=meter-9,unit=A urn:dev:ow:10e2073a01080063:current=1.2 "
        f"{TS_NS - 5 * S}",
        f"senml,device=meter-9,unit=A urn:dev:ow:10e2073a01080063:current=1.3 "
        f"{TS_NS - 4 * S}",
        f"senml,device=meter-9,unit=A urn:dev:ow:10e2073a01080063:current=1.4 "
        f"{TS_NS - 3 * S}",
    ]


def test_senml_decoder_groups_records_of_one_time_and_unit_into_one_point():
    """Test that records sharing a time and unit share a point; no unit, no tag."""
    pack = [
        {"bn": "dev:", "bt": 1717200000, "n": "t1", "u": "Cel", "v": 20.5},
        {"n": "t2", "u": "Cel", "v": 21.5},
        {"n": "rh", "u": "%RH", "v": 40},
        {"n": "label", "vs": "hall"},
        {"n": "door", "vb": True},
    ]

    decoded = _decode(pack)

    assert [(p.tags, p.fields) for p in decoded.points] == [
        ({"device": "meter-9", "unit": "Cel"}, {"dev:t1": 20.5, "dev:t2": 21.5}),
        ({"device": "meter-9", "unit": "%RH"}, {"dev:rh": 40.0}),
        ({"device": "meter-9"}, {"dev:label": "hall", "dev:door": True}),
    ]
    assert {p.time_ns for p in decoded.points} == {TS_NS}


def test_senml_decoder_reads_relative_times_from_the_receive_time():
    """Test that times below 2**28 count seconds from now, fractions included."""
    pack = [
        {"n": "a", "v": 1, "t": -60},
        {"n": "a", "v": 2, "t": -1.5},
        {"n": "a", "v": 3, "t": 0},
        {"bt": -10, "n": "a", "v": 4, "t": 2},
    ]

    assert [p.time_ns for p in _decode(pack).points] == [
        RX_NS - 60 * S,
        RX_NS - 1_500_000_000,
        RX_NS,
        RX_NS - 8 * S,
    ]


def test_senml_decoder_keeps_fractions_of_absolute_times_exactly():
    """Test that base time plus time keeps the decimals the device sent."""
    [point] = _decode([{"bt": 1717200000.25, "n": "a", "v": 1, "t": 0.125}]).points

    assert point.time_ns == TS_NS + 375_000_000


def test_senml_decoder_adds_base_value_and_base_sum():
    """Test that bv is added to v, bs to s; the sum goes to <name>_sum."""
    pack = [
        {"bn": "m:", "bv": 1000, "bs": 500, "n": "energy", "v": 1.5, "s": 10},
        {"n": "energy", "t": -1, "v": 2.5},
        {"n": "pulses", "t": -2, "s": 7},
    ]

    assert [p.fields for p in _decode(pack).points] == [
        {"m:energy": 1001.5, "m:energy_sum": 510.0},
        {"m:energy": 1002.5},
        {"m:pulses_sum": 507.0},
    ]


def test_senml_decoder_stores_numbers_as_floats_unless_declared():
    """Test that v is a float field by default and follows a declared type."""
    pack = [{"n": "count", "v": 3}, {"n": "level", "v": 3}]

    [point] = _decode(pack, typer=FieldTyper({"count": "integer"})).points

    assert point.fields == {"count": 3, "level": 3.0}
    assert [type(v) for v in point.fields.values()] == [int, float]


def test_senml_decoder_keeps_data_values_as_their_base64_text():
    """Test that vd is stored as the text the device sent."""
    [point] = _decode([{"n": "blob", "vd": "aGVsbG8"}]).points

    assert point.fields == {"blob": "aGVsbG8"}


def test_senml_decoder_refuses_invalid_records_one_by_one():
    """Test that each unusable record is left out with its reason, the rest kept."""
    pack = [
        {"n": "ok", "v": 1},
        {"n": "x", "v": "21"},
        {"v": 3},
        {"n": "z"},
        5,
        {"n": "two", "v": 1, "vs": "one"},
        {"n": "flag", "vb": "yes"},
    ]
    # Firmware writes a missing reading as a bare nan, which JSON lacks.
    payload = orjson.dumps(pack)[:-1] + b', {"n": "temp", "v": nan}]'

    decoded = _decode(payload)

    assert [p.fields for p in decoded.points] == [{"ok": 1.0}]
    assert decoded.rejected_fields == [
        FieldReject(
            "x", "invalid_record", "record 1 has v '21', which must be a number"
        ),
        FieldReject(
            "record 2", "missing_name", "record 2 has no name (n) and no base name (bn)"
        ),
        FieldReject(
            "z", "missing_value", "record 3 has no value (v, vs, vb, vd) or sum (s)"
        ),
        FieldReject("record 4", "invalid_record", "record 4 is int, not an object"),
        FieldReject(
            "two", "invalid_record", "record 5 has more than one value (v, vs)"
        ),
        FieldReject(
            "flag", "invalid_record", "record 6 has vb 'yes', which must be a boolean"
        ),
        FieldReject("temp", "non_finite", "value is nan, which InfluxDB cannot store"),
    ]


def test_senml_decoder_refuses_records_outside_the_plausibility_window():
    """Test that a record too far in time is left out; its neighbours are stored."""
    pack = [
        {"n": "a", "v": 1, "t": 100_000},
        {"n": "b", "v": 2, "t": 1_000_000_000},
        {"n": "c", "v": 3},
    ]

    decoded = _decode(pack)

    assert [p.fields for p in decoded.points] == [{"c": 3.0}]
    assert [r.reason for r in decoded.rejected_fields] == [
        "implausible_timestamp",
        "implausible_timestamp",
    ]
    assert "relative time of 100000 s" in decoded.rejected_fields[0].detail
    assert "2001-09-09T01:46:40" in decoded.rejected_fields[1].detail


def test_senml_decoder_keeps_the_later_of_two_equal_readings():
    """Test that one name twice at one time keeps the later value and says so."""
    decoded = _decode([{"n": "a", "v": 1}, {"n": "a", "v": 2}])

    assert decoded.points[0].fields == {"a": 2.0}
    assert [r.reason for r in decoded.rejected_fields] == ["duplicate_record"]


def test_senml_decoder_skips_records_of_base_fields_alone():
    """Test that a header record of base fields stores nothing and is no error."""
    decoded = _decode([{"bn": "dev:", "bt": 1717200000}, {"n": "a", "v": 1}])

    assert [(p.fields, p.time_ns) for p in decoded.points] == [({"dev:a": 1.0}, TS_NS)]
    assert decoded.rejected_fields == []


def test_senml_decoder_keeps_only_included_fields():
    """Test that `include` filters by full name; a pack left empty gives nothing."""
    pack = [{"bn": "d:", "n": "a", "v": 1}, {"n": "b", "v": 2}]

    assert _decode(pack, include=frozenset({"d:b"})).points[0].fields == {"d:b": 2.0}
    assert _decode(pack, include=frozenset({"other"})).points == []


def test_senml_decoder_adds_payload_tags_from_the_pack():
    """Test that payload_tags reach into the array, e.g. the base name."""
    [point] = _decode(
        [{"bn": "urn:dev:mac:0024befffe804ff1:", "n": "t", "v": 1}],
        payload_tags={"base_name": "0.bn"},
    ).points

    assert point.tags["base_name"] == "urn:dev:mac:0024befffe804ff1:"


@pytest.mark.parametrize(
    ("pack", "reason", "detail"),
    [
        ({"n": "a", "v": 1}, "not_senml", "got dict"),
        ([], "no_records", "holds no record with a value"),
        ([{"bn": "x:"}], "no_records", "holds no record with a value"),
        ([{"bn": 5, "n": "a", "v": 1}], "invalid_senml", "record 0 has bn 5"),
        ([{"bt": "soon", "n": "a", "v": 1}], "invalid_senml", "must be a number"),
        (
            [{"n": "a", "v": 1, "ext_": 1}],
            "unsupported_senml",
            "must-understand label 'ext_'",
        ),
        ([{"n": "a", "v": "1"}], "invalid_record", "no record could be stored: a:"),
    ],
)
def test_senml_decoder_refuses_packs_it_cannot_use(pack, reason, detail):
    """Test that a pack with nothing usable is refused with a clear reason."""
    refusal = _refusal(pack)

    assert refusal.reason == reason
    assert detail in refusal.detail


def test_senml_decoder_refuses_invalid_json():
    """Test that a payload that is not JSON gives invalid_json."""
    assert _refusal(b"[{").reason == "invalid_json"


def test_senml_decoder_is_the_registered_senml_format():
    """Test that format "senml" builds this decoder."""
    decoder = make_decoder("senml", DecoderOptions())

    assert isinstance(decoder, SenmlDecoder) and decoder.name == "senml"


async def test_senml_decoder_stores_packs_through_the_real_broker(
    gateway_config, running_gateway, publisher, topic_prefix, influx_v1
):
    """Test that a SenML pack over MQTT lands in InfluxDB 1.x with its times."""
    config = gateway_config(
        influx={"database": influx_v1.database},
        subscriptions=[
            {
                "format": "senml",
                "topic_template": f"{topic_prefix}/senml/{{device}}",
                "measurement": "energy",
            }
        ],
    )
    base_s = time.time() // 1 - 120
    base_ns = int(base_s) * 1_000_000_000
    pack = [
        {"bn": "meter:", "bt": base_s, "bu": "W", "n": "power", "v": 412.5},
        {"n": "power", "t": 60, "v": 398},
        {"n": "energy", "u": "Wh", "t": 60, "v": 98211.5, "s": 12},
        {"n": "state", "t": 60, "vs": "on grid"},
        {"n": "broken", "v": "12"},
    ]
    async with running_gateway(config) as gateway:
        publisher.publish(f"{topic_prefix}/senml/em-1", orjson.dumps(pack))
        rows = await influx_v1.wait_for_rows("energy", 3)
        await wait_until(lambda: sum(gateway.stats.fields_rejected.values()) >= 1)
        stats = gateway.stats

    nothing = dict.fromkeys(
        ["meter:power", "meter:energy", "meter:energy_sum", "meter:state"]
    )
    assert sorted(rows, key=lambda row: (row["time"], row["unit"])) == [
        {**nothing, "time": base_ns, "device": "em-1", "unit": "W"}
        | {"meter:power": 412.5},
        # The base unit W applies to every record that names no unit of its own.
        {**nothing, "time": base_ns + 60 * S, "device": "em-1", "unit": "W"}
        | {"meter:power": 398.0, "meter:state": "on grid"},
        {**nothing, "time": base_ns + 60 * S, "device": "em-1", "unit": "Wh"}
        | {"meter:energy": 98211.5, "meter:energy_sum": 12.0},
    ]
    assert stats.fields_rejected == {"invalid_record": 1}
