"""The line-protocol decoder: forwarded lines checked one by one, then re-encoded."""

from __future__ import annotations

import time

import line_protocol_parser
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.decoding.base import FieldReject
from gateway.decoding.line_protocol import (
    LineError,
    LineProtocolDecoder,
    ParsedLine,
    parse_line,
)
from gateway.decoding.options import DecoderOptions
from gateway.decoding.registry import make_decoder
from gateway.decoding.values import FieldTyper
from gateway.errors import PayloadError
from gateway.points import Unsigned, encode_line
from gateway.sources.mqtt import MqttMessage
from tests.conftest import wait_until
from tests.test_points import expected_refusal, points

TOPIC = "lp/dev-5"
RX_NS = 1_717_200_060_000_000_000  # 2024-06-01T00:01:00Z
TS_NS = 1_717_200_000_000_000_000
ANY_TIME = {"max_past_ns": 2**63, "max_future_ns": 2**63}


def _message(payload: bytes) -> MqttMessage:
    return MqttMessage(TOPIC, payload, qos=1, retain=False, received_ns=RX_NS)


def _decode(payload: bytes, tags: dict[str, str] | None = None, **options):
    decoder = LineProtocolDecoder(DecoderOptions(**options))
    return decoder.decode(_message(payload), "telemetry", dict(tags or {}))


def _lines(payload: bytes, **options) -> list[str]:
    return [encode_line(point) for point in _decode(payload, **options).points]


def _refusal(payload: bytes, **options) -> PayloadError:
    with pytest.raises(PayloadError) as caught:
        _decode(payload, **options)
    assert caught.value.topic == TOPIC
    return caught.value


# --- C18 part B ------------------------------------------------------------------


def test_line_protocol_decoder_c18_refuses_the_malformed_line_keeps_the_rest():
    """Test that C18 B's line 2 is refused by number and reason, 1 and 3 kept."""
    payload = (
        b"meter,device=m5 voltage=230.1 1717200000000000000\n"
        b"meter,device=m5 voltage= 1717200001000000000\n"
        b"meter,device=m5 voltage=230.3 1717200002000000000\n"
    )

    decoded = _decode(payload)

    assert [encode_line(p) for p in decoded.points] == [
        "meter,device=m5 voltage=230.1 1717200000000000000",
        "meter,device=m5 voltage=230.3 1717200002000000000",
    ]
    assert decoded.rejected_fields == [
        FieldReject(
            "line 2",
            "malformed_line",
            "missing field value for 'voltage': "
            "'meter,device=m5 voltage= 1717200001000000000'",
        )
    ]


def test_line_protocol_decoder_counts_comment_and_blank_lines_in_line_numbers():
    """Test that line numbers count every line, so they point at the payload's own."""
    payload = b"# exported by a logger\n\nm x=1 1717200000000000000\r\nm x=\r\n"

    decoded = _decode(payload)

    assert [p.fields for p in decoded.points] == [{"x": 1.0}]
    assert [(r.field, r.reason) for r in decoded.rejected_fields] == [
        ("line 4", "malformed_line")
    ]


# --- what a line can hold ---------------------------------------------------------


def test_parse_line_reads_every_value_type():
    """Test that floats, i, u, booleans and strings get their own Python type."""
    parsed = parse_line(
        'm f=1.5,g=1,h=-2e3,i=-42i,u=18446744073709551615u,b=t,c=FALSE,s="a b" 17'
    )

    assert parsed == ParsedLine(
        "m",
        {},
        {
            "f": 1.5,
            "g": 1.0,
            "h": -2000.0,
            "i": -42,
            "u": 18446744073709551615,
            "b": True,
            "c": False,
            "s": "a b",
        },
        17,
    )
    assert [type(v) for v in parsed.fields.values()] == [
        float,
        float,
        float,
        int,
        Unsigned,
        bool,
        bool,
        str,
    ]


@pytest.mark.parametrize(
    "spelling", ["t", "T", "true", "True", "TRUE", "f", "F", "false", "False", "FALSE"]
)
def test_parse_line_reads_the_ten_boolean_spellings(spelling):
    """Test that each boolean spelling InfluxDB accepts is read as a boolean."""
    assert parse_line(f"m b={spelling}").fields["b"] is spelling.lower().startswith("t")


def test_parse_line_unescapes_each_element_by_its_own_rules():
    """Test that names and strings are unescaped as InfluxDB reads them (C16)."""
    parsed = parse_line(
        r"boiler\ temp\,raw,room=Boiler\,\ Main\=A,a\=b=c\ d "
        r'water\ level=3,note="say \"hi\" C:\\temp\\",path="C:\new" 5'
    )

    assert parsed == ParsedLine(
        "boiler temp,raw",
        {"room": "Boiler, Main=A", "a=b": "c d"},
        {"water level": 3.0, "note": 'say "hi" C:\\temp\\', "path": "C:\\new"},
        5,
    )


def test_parse_line_keeps_other_backslashes_and_equals_in_measurement():
    """Test that a backslash before an ordinary character is kept as written."""
    parsed = parse_line(r"m\=x,t=a\b x\y=1")

    assert parsed.measurement == r"m\=x"
    assert parsed.tags == {"t": r"a\b"}
    assert list(parsed.fields) == [r"x\y"]


def test_parse_line_skips_extra_spaces_and_tabs_between_sections():
    """Test that runs of spaces, and tabs before a field key, separate sections."""
    assert parse_line("  m,t=a  \tx=1   17  ") == ParsedLine(
        "m", {"t": "a"}, {"x": 1.0}, 17
    )


@pytest.mark.parametrize(
    ("line", "problem"),
    [
        ("meter,device=m5 voltage= 17", "missing field value for 'voltage'"),
        ("meter,device=m5 voltage=", "missing field value for 'voltage'"),
        ("meter,device=m5", "missing fields"),
        ("meter ", "missing fields"),
        (",t=a x=1", "missing measurement"),
        ("m, x=1", "missing tag key"),
        ("m,t x=1", "missing tag value for 't'"),
        ("m,t= x=1", "missing tag value for 't'"),
        ("m,t=a=b x=1", "tag value for 't' has an unescaped '='"),
        ("m,t=a,t=b x=1", "tag key 't' appears twice"),
        ("m x=1,x=2", "field key 'x' appears twice"),
        ("m x", "missing '=' after field key 'x'"),
        ("m x=1,", "missing field key"),
        ("m =1", "missing field key"),
        ('m x="open', "unterminated string value for 'x'"),
        ('m x="a"b', "unexpected 'b' after the value of 'x'"),
        ("m x=NaN", "invalid field value 'NaN' for 'x'"),
        ("m x=inf", "invalid field value 'inf' for 'x'"),
        ("m x=+1", "invalid field value '+1' for 'x'"),
        ("m x=tRue", "invalid field value 'tRue' for 'x'"),
        ("m x=-1u", "invalid field value '-1u' for 'x'"),
        ("m x=1e999", "float '1e999' of 'x' is out of range"),
        ("m x=9223372036854775808i", "out of int64 range"),
        ("m x=18446744073709551616u", "out of uint64 range"),
        ("m x=1 1.5", "invalid timestamp '1.5'"),
        ("m x=1 17 18", "unexpected text after the timestamp"),
        ("# m x=1", "comment"),
        (r"m\\ x=1", "servers read in different ways"),
        (r"m,t=a\\,u x=1", "servers read in different ways"),
    ],
)
def test_parse_line_names_what_is_wrong(line, problem):
    """Test that each malformed line raises LineError saying what is missing."""
    with pytest.raises(LineError, match=problem.replace("+", r"\+")):
        parse_line(line)


@pytest.mark.parametrize(
    "line",
    [
        "m,t=a\\ x=1",
        'm x="a\\\\b\\"c\\n"',
        "m  x=1  5",
        "\tm x=1",
        "m x=.5,y=1.,z=-0",
        "m x=1E3,y=1e+3,z=1e-3",
        'my\\ m,ta\\,g=v\\ 1 fi\\=eld="x y" 12',
        "m x=1 -5",
        "m x=1,x=2",
        "m,t=a=b x=1",
        "m x=1u,y=-9223372036854775808i",
    ],
)
def test_parse_line_agrees_with_an_independent_parser(line):
    """Test that line-protocol-parser reads a line as ours does, or both refuse it.

    Ours is stricter on purpose for a field key given twice (InfluxDB 1.x keeps
    the last, line-protocol-parser the first).
    """
    try:
        ours = parse_line(line)
    except LineError:
        ours = None
    try:
        theirs = line_protocol_parser.parse_line(line)
    except line_protocol_parser.LineFormatError:
        theirs = None

    if ours is None and line == "m x=1,x=2":
        assert theirs is not None
        return
    assert theirs == (
        None
        if ours is None
        else {
            "measurement": ours.measurement,
            "tags": ours.tags,
            "fields": ours.fields,
            "time": ours.time,
        }
    )


@settings(max_examples=300, deadline=None)
@given(point=points(st.integers(0, 2**62), parser_safe=True))
def test_parse_line_reads_our_own_lines_as_the_independent_parser_does(point):
    """Test that every line encode_line writes is read alike by both parsers."""
    if expected_refusal(point) is not None:
        return
    line = encode_line(point)

    ours = parse_line(line)

    assert line_protocol_parser.parse_line(line) == {
        "measurement": ours.measurement,
        "tags": ours.tags,
        "fields": ours.fields,
        "time": ours.time,
    }


@settings(max_examples=300, deadline=None)
@given(point=points(st.integers(0, 2**62), parser_safe=True))
def test_line_protocol_decoder_passes_our_own_lines_through_unchanged(point):
    """Test that decoding a line encode_line wrote and encoding it again keeps it.

    The tags may come out in another order: encode_line sorts by the given
    key, and a sanitised key (a newline written as \\n) sorts differently.
    """
    if expected_refusal(point) is not None:
        return
    line = encode_line(point)
    options = DecoderOptions(timestamp_unit="ns", **ANY_TIME)

    decoded = LineProtocolDecoder(options).decode(_message(line.encode()), "x", {})

    assert [parse_line(encode_line(p)) for p in decoded.points] == [parse_line(line)]


# --- times ------------------------------------------------------------------------


def test_line_protocol_decoder_gives_lines_without_time_the_receive_time():
    """Test that a line without a timestamp takes the receive time."""
    assert _decode(b"m x=1").points[0].time_ns == RX_NS


@pytest.mark.parametrize(
    ("written", "unit", "time_ns"),
    [
        ("1717200000000000000", "auto", TS_NS),
        ("1717200000123456789", "auto", TS_NS + 123_456_789),
        ("1717200000123456", "auto", TS_NS + 123_456_000),
        ("1717200000123", "auto", TS_NS + 123_000_000),
        ("1717200000", "auto", TS_NS),
        ("1717200000", "s", TS_NS),
        ("1717200000000", "ms", TS_NS),
        ("1717200000000000000", "ns", TS_NS),
    ],
)
def test_line_protocol_decoder_reads_timestamps_in_the_subscription_unit(
    written, unit, time_ns
):
    """Test that auto tells units by magnitude and an explicit unit is the precision."""
    [point] = _decode(f"m x=1 {written}".encode(), timestamp_unit=unit).points

    assert point.time_ns == time_ns


def test_line_protocol_decoder_refuses_implausible_times_line_by_line():
    """Test that a line filed in 1970 by a wrong unit is refused, not the others."""
    decoded = _decode(
        b"m x=1 1717200000\nm x=2 1717200000000000000", timestamp_unit="ns"
    )

    assert [p.fields for p in decoded.points] == [{"x": 2.0}]
    [reject] = decoded.rejected_fields
    assert (reject.field, reject.reason) == ("line 1", "implausible_timestamp")
    assert "1970-01-01T00:00:01.717200000Z" in reject.detail


def test_line_protocol_decoder_refuses_negative_times():
    """Test that a time before 1970 is refused with its line."""
    [reject] = _decode(b"m x=1 -5\nm x=2").rejected_fields

    assert (reject.field, reject.reason) == ("line 1", "bad_timestamp")


# --- tags, types, filters ---------------------------------------------------------


def test_line_protocol_decoder_adds_subscription_tags_unless_the_line_has_them():
    """Test that topic and static tags are added; the line's own tag of a key wins."""
    decoded = _decode(
        b"meter,device=m5 v=1 1717200000000000000\nmeter v=2 1717200000000000000",
        tags={"device": "dev-5", "site": "depok"},
    )

    assert [p.tags for p in decoded.points] == [
        {"device": "m5", "site": "depok"},
        {"device": "dev-5", "site": "depok"},
    ]


def test_line_protocol_decoder_names_points_by_the_line_not_the_subscription():
    """Test that each line keeps its own measurement."""
    decoded = _decode(b"cpu usage=1\nmem used=2i")

    assert [p.measurement for p in decoded.points] == ["cpu", "mem"]


def test_line_protocol_decoder_keeps_undeclared_types_as_written():
    """Test that 20i stays an integer and 1u unsigned when nothing is declared."""
    [point] = _decode(b"m a=20i,b=1u,c=20").points

    assert point.fields == {"a": 20, "b": 1, "c": 20.0}
    assert [type(v) for v in point.fields.values()] == [int, Unsigned, float]


def test_line_protocol_decoder_applies_declared_types():
    """Test that declared types convert values; a misfit is left out with its line."""
    decoded = _decode(
        b"m value=20i,pulses=4.0\nm value=20.1,pulses=4.5",
        typer=FieldTyper({"value": "float", "pulses": "integer"}),
    )

    assert [p.fields for p in decoded.points] == [
        {"value": 20.0, "pulses": 4},
        {"value": 20.1},
    ]
    assert type(decoded.points[0].fields["value"]) is float
    assert decoded.rejected_fields == [
        FieldReject("pulses", "not_an_integer", "4.5 is not an integer (line 2)")
    ]


def test_line_protocol_decoder_keeps_only_included_fields():
    """Test that `include` filters fields; a line left with none is skipped quietly."""
    decoded = _decode(b"m a=1,b=2\nm c=3", include=frozenset({"a"}))

    assert [p.fields for p in decoded.points] == [{"a": 1.0}]
    assert decoded.rejected_fields == []
    assert _decode(b"m c=3", include=frozenset({"a"})).points == []


def test_line_protocol_decoder_refuses_a_line_influxdb_would_refuse():
    """Test that a field named time is refused with its line number, others kept."""
    decoded = _decode(b"m time=1,x=2\nm x=3")

    assert [p.fields for p in decoded.points] == [{"x": 3.0}]
    [reject] = decoded.rejected_fields
    assert (reject.field, reject.reason) == ("line 1", "unencodable_line")
    assert "reserved by InfluxDB" in reject.detail


def test_line_protocol_decoder_refuses_a_line_that_is_not_utf8_alone():
    """Test that a bad byte costs only its own line."""
    decoded = _decode(b'm x=1\nm s="\xff"\nm x=3')

    assert [p.fields for p in decoded.points] == [{"x": 1.0}, {"x": 3.0}]
    assert decoded.rejected_fields[0].detail.startswith("byte 5 is not UTF-8")


def test_line_protocol_decoder_refuses_a_payload_without_any_good_line():
    """Test that nothing usable raises PayloadError naming the first bad line."""
    refusal = _refusal(b"meter voltage=\nmeter x")

    assert refusal.reason == "malformed_line"
    assert refusal.detail == (
        "no line could be stored: line 1: missing field value for 'voltage': "
        "'meter voltage=' (and 1 more)"
    )


@pytest.mark.parametrize("payload", [b"", b"\n\n", b"# only a comment\n"])
def test_line_protocol_decoder_refuses_a_payload_without_lines(payload):
    """Test that an empty or comment-only payload is refused as empty."""
    assert _refusal(payload).reason == "empty_payload"


def test_line_protocol_decoder_is_the_registered_influx_format():
    """Test that format "influx" builds this decoder."""
    decoder = make_decoder("influx", DecoderOptions())

    assert isinstance(decoder, LineProtocolDecoder) and decoder.name == "influx"


# --- through the real broker ------------------------------------------------------


async def test_line_protocol_decoder_stores_forwarded_lines_through_the_real_broker(
    gateway_config, running_gateway, publisher, topic_prefix, influx_v1
):
    """Test that forwarded line protocol lands in InfluxDB 1.x with exact types."""
    config = gateway_config(
        influx={"database": influx_v1.database},
        subscriptions=[
            {
                "format": "influx",
                "topic_template": f"{topic_prefix}/telegraf/{{host}}",
                "tags": {"site": "depok"},
            }
        ],
    )
    base_ns = time.time_ns() - 60_000_000_000
    payload = (
        f"# from telegraf\n"
        f"cpu,cpu=cpu-total usage_idle=97.5,usage_user=1.25 {base_ns}\n"
        f"disk,path=/var\\ lib free=1024i,used_percent=41.5,ro=false {base_ns}\n"
        f'syslog,host=override message="disk \\"sda\\" ok, C:\\\\" {base_ns + 1}\n'
        f"cpu,cpu=cpu0 usage_idle=NaN {base_ns}\n"
    )
    async with running_gateway(config) as gateway:
        publisher.publish(f"{topic_prefix}/telegraf/edge-7", payload)
        cpu = await influx_v1.wait_for_rows("cpu", 1)
        disk = await influx_v1.wait_for_rows("disk", 1)
        syslog = await influx_v1.wait_for_rows("syslog", 1)
        await wait_until(lambda: sum(gateway.stats.fields_rejected.values()) >= 1)
        stats = gateway.stats

    tags = {"host": "edge-7", "site": "depok"}
    assert cpu == [
        {"time": base_ns, **tags, "cpu": "cpu-total", "usage_idle": 97.5}
        | {"usage_user": 1.25}
    ]
    assert disk == [
        {"time": base_ns, **tags, "path": "/var lib", "free": 1024}
        | {"used_percent": 41.5, "ro": False}
    ]
    assert syslog == [
        {"time": base_ns + 1, "host": "override", "site": "depok"}
        | {"message": 'disk "sda" ok, C:\\'}
    ]
    types = dict(influx_v1.query('SHOW FIELD KEYS FROM "disk"')[0]["values"])
    assert types == {"free": "integer", "used_percent": "float", "ro": "boolean"}
    assert stats.fields_rejected == {"malformed_line": 1}
    [dead] = [
        orjson.loads(x) for x in config.dead_letters.path.read_bytes().splitlines()
    ]
    assert dead["topic"] == f"{topic_prefix}/telegraf/edge-7"
    assert dead["detail"].startswith("line 5: invalid field value 'NaN'")
