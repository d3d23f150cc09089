"""The Sparkplug B decoder: BIRTH alias maps, typed DATA metrics, rebirth requests."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st
from line_protocol_parser import parse_line

from gateway.decoding import Route
from gateway.decoding.options import DecoderOptions
from gateway.decoding.registry import detect_format, make_decoder
from gateway.decoding.sparkplug import (
    REBIRTH_INTERVAL_S,
    SparkplugDecoder,
    SparkplugTopic,
)
from gateway.decoding.sparkplug_b_pb2 import DataType, Payload
from gateway.decoding.values import FieldTyper
from gateway.errors import PayloadError
from gateway.points import Point, encode_line
from gateway.sources.mqtt import MqttMessage

RX_NS = 1_717_200_060_000_000_000  # a minute after C14's first timestamp
T0_MS = 1_717_200_000_000
NODE = "spBv1.0/plant-a/{verb}/edge-01"
DEVICE = "spBv1.0/plant-a/{verb}/edge-01/press-07"
NCMD = "spBv1.0/plant-a/NCMD/edge-01"

# C14, inputs 1-6 in order: (topic, payload hex), exactly as the case gives them.
C14_INPUTS = [
    (
        "spBv1.0/plant-a/NBIRTH/edge-01",
        "0880a8e288fd31120b0a05626453657120085800121a0a144e6f646520436f6e74726f6c2f"
        "52656269727468200b70001800",
    ),
    (
        "spBv1.0/plant-a/DBIRTH/edge-01/press-07",
        "0880a8e288fd31121d0a0e4879647261756c69632f54656d7010031880a8e288fd31200350"
        "2312280a124879647261756c69632f507265737375726510041880a8e288fd31200a690000"
        "000000d06640121c0a0b4379636c652f436f756e7410051880a8e288fd31200458e2a90712"
        "180a09446f6f722f4f70656e10061880a8e288fd31200b70001801",
    ),
    (
        "spBv1.0/plant-a/DDATA/edge-01/press-07",
        "0888cfe288fd31120f10031888cfe288fd3150f4ffffff0f121210041888cfe288fd316900"
        "00000000a86640120d10051888cfe288fd3158e3a9071802",
    ),
    (
        "spBv1.0/plant-a/DDATA/edge-01/press-07",
        "0890f6e288fd31120b10091890f6e288fd3150071803",
    ),
    (
        "spBv1.0/plant-a/DBIRTH/edge-01/press-07",
        "08989de388fd31121e0a0f4879647261756c69632f4c6576656c100318989de388fd312003"
        "503212280a124879647261756c69632f5072657373757265100418989de388fd31200a6900"
        "000000008066401804",
    ),
    (
        "spBv1.0/plant-a/DDATA/edge-01/press-07",
        "08a0c4e388fd31120b100318a0c4e388fd3150071805",
    ),
]
# C14's expected points, verbatim. We store them with the field named by the
# value's type (value_int, value_float, value_bool): InfluxDB keeps one type
# per field key per measurement, so one "value" field cannot hold all three.
C14_EXPECTED = """\
sparkplug,group=plant-a,edge_node=edge-01,device=press-07,metric=Hydraulic/Temp value=35i 1717200000000000000
sparkplug,group=plant-a,edge_node=edge-01,device=press-07,metric=Hydraulic/Pressure value=182.5 1717200000000000000
sparkplug,group=plant-a,edge_node=edge-01,device=press-07,metric=Cycle/Count value=120034i 1717200000000000000
sparkplug,group=plant-a,edge_node=edge-01,device=press-07,metric=Door/Open value=false 1717200000000000000
sparkplug,group=plant-a,edge_node=edge-01,device=press-07,metric=Hydraulic/Temp value=-12i 1717200005000000000
sparkplug,group=plant-a,edge_node=edge-01,device=press-07,metric=Hydraulic/Pressure value=181.25 1717200005000000000
sparkplug,group=plant-a,edge_node=edge-01,device=press-07,metric=Cycle/Count value=120035i 1717200005000000000
sparkplug,group=plant-a,edge_node=edge-01,device=press-07,metric=Hydraulic/Level value=50i 1717200015000000000
sparkplug,group=plant-a,edge_node=edge-01,device=press-07,metric=Hydraulic/Pressure value=180 1717200015000000000
sparkplug,group=plant-a,edge_node=edge-01,device=press-07,metric=Hydraulic/Level value=7i 1717200020000000000
"""  # noqa: E501


class FakeClock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now_s = 1000.0

    def __call__(self) -> float:
        return self.now_s


def _message(topic: str, payload: bytes, received_ns: int = RX_NS) -> MqttMessage:
    return MqttMessage(topic, payload, qos=0, retain=False, received_ns=received_ns)


def _decode(decoder: SparkplugDecoder, topic: str, payload: bytes, **kwargs):
    return decoder.decode(_message(topic, payload), "sparkplug", {}, **kwargs)


def _payload(*metrics: dict, seq: int | None = 1, timestamp: int | None = T0_MS):
    payload = Payload()
    if timestamp is not None:
        payload.timestamp = timestamp
    if seq is not None:
        payload.seq = seq
    for fields in metrics:
        metric = payload.metrics.add()
        for key, value in fields.items():
            setattr(metric, key, value)
    return payload.SerializeToString()


def _rows(points: list[Point]) -> list[tuple]:
    return [
        (
            p.measurement,
            p.tags,
            {k: (type(v), v) for k, v in p.fields.items()},
            p.time_ns,
        )
        for p in points
    ]


def _as_stored(line: str) -> tuple:
    """Read a C14 expected line, naming its field as the decoder does."""
    parsed = parse_line(line)
    ((_, value),) = parsed["fields"].items()
    if type(value) is int:
        fields = {"value_int": (int, value)}
    elif type(value) is bool:
        fields = {"value_bool": (bool, value)}
    else:
        fields = {"value_float": (float, float(value))}
    return (parsed["measurement"], parsed["tags"], fields, parsed["time"])


def _birth_press(decoder: SparkplugDecoder, *metrics: dict) -> None:
    decoder.decode(
        _message(DEVICE.format(verb="DBIRTH"), _payload(*metrics)), "sparkplug", {}
    )


def _rebirth_metrics(outgoing) -> list:
    return list(Payload.FromString(outgoing.payload).metrics)


# C14, as a whole and input by input.


def test_sparkplug_decoder_stores_c14_sequence_as_expected():
    """Test that C14's six inputs give its ten points, typed, fields named by type."""
    decoder = SparkplugDecoder()
    points = []
    for topic, payload_hex in C14_INPUTS:
        points += _decode(decoder, topic, bytes.fromhex(payload_hex)).points

    expected = [_as_stored(line) for line in C14_EXPECTED.splitlines()]
    assert _rows(points) == expected
    lines = [encode_line(p) for p in points]
    assert lines[4] == (
        "sparkplug,device=press-07,edge_node=edge-01,group=plant-a,"
        "metric=Hydraulic/Temp value_int=-12i 1717200005000000000"
    )


def test_sparkplug_decoder_c14_must_not_happen_list():
    """Test that C14's forbidden results do not occur: raw uint, alias, old name."""
    decoder = SparkplugDecoder()
    lines = []
    for topic, payload_hex in C14_INPUTS:
        points = _decode(decoder, topic, bytes.fromhex(payload_hex)).points
        lines += [encode_line(p) for p in points]

    assert not any("4294967284" in line for line in lines)
    assert not any("metric=3" in line or "metric=alias" in line for line in lines)
    ddata_at_3 = [line for line in lines if line.endswith(" 1717200005000000000")]
    assert len(ddata_at_3) == 3
    last = lines[-1]
    assert "metric=Hydraulic/Level" in last and "Hydraulic/Temp" not in last


def test_sparkplug_decoder_keeps_node_control_metrics_out_of_c14_nbirth():
    """Test that C14's NBIRTH (bdSeq, Node Control/Rebirth) stores no point."""
    topic, payload_hex = C14_INPUTS[0]

    decoded = _decode(SparkplugDecoder(), topic, bytes.fromhex(payload_hex))

    assert decoded.points == []
    assert decoded.rejected_fields == []
    assert decoded.outgoing == []


def test_sparkplug_decoder_c14_unknown_alias_stores_nothing_and_asks_rebirth():
    """Test that C14 input 4 stores nothing, names alias 9, and sends an NCMD."""
    decoder = SparkplugDecoder()
    for topic, payload_hex in C14_INPUTS[:3]:
        _decode(decoder, topic, bytes.fromhex(payload_hex))
    topic, payload_hex = C14_INPUTS[3]

    decoded = _decode(decoder, topic, bytes.fromhex(payload_hex))

    assert decoded.points == []
    assert [(r.field, r.reason, r.detail) for r in decoded.rejected_fields] == [
        ("alias 9", "unknown_alias", "unknown alias 9 for plant-a/edge-01/press-07")
    ]
    (request,) = decoded.outgoing
    assert (request.topic, request.qos) == (NCMD, 0)
    command = Payload.FromString(request.payload)
    assert command.timestamp == RX_NS // 1_000_000
    assert not command.HasField("seq")
    (metric,) = command.metrics
    assert metric.name == "Node Control/Rebirth"
    assert metric.datatype == DataType.Boolean
    assert metric.boolean_value is True


def test_sparkplug_decoder_c14_rebirth_replaces_alias_map():
    """Test that after C14's second DBIRTH alias 3 is Hydraulic/Level, not Temp."""
    decoder = SparkplugDecoder()
    for topic, payload_hex in C14_INPUTS[:5]:
        _decode(decoder, topic, bytes.fromhex(payload_hex))
    topic, payload_hex = C14_INPUTS[5]

    (point,) = _decode(decoder, topic, bytes.fromhex(payload_hex)).points

    assert point.tags["metric"] == "Hydraulic/Level"
    assert point.fields == {"value_int": 7}


# Neighbours: states and orders C14 does not show.


def test_sparkplug_decoder_stores_ndata_without_device_tag():
    """Test that node-level DATA by alias is stored with no device tag."""
    decoder = SparkplugDecoder()
    birth = _payload(
        {"name": "bdSeq", "datatype": DataType.UInt64, "long_value": 0},
        {
            "name": "Supply Voltage",
            "alias": 1,
            "datatype": DataType.Float,
            "float_value": 12.1,
        },
        seq=0,
    )
    first = _decode(decoder, NODE.format(verb="NBIRTH"), birth).points

    data = _payload({"alias": 1, "float_value": 12.3, "timestamp": T0_MS + 1000})
    (point,) = _decode(decoder, NODE.format(verb="NDATA"), data).points

    assert [p.fields for p in first] == [{"value_float": 12.1}]
    assert point.tags == {
        "group": "plant-a",
        "edge_node": "edge-01",
        "metric": "Supply Voltage",
    }
    assert point.fields == {"value_float": 12.3}
    assert point.time_ns == (T0_MS + 1000) * 1_000_000


def test_sparkplug_decoder_ddata_before_any_birth_asks_rebirth():
    """Test that DDATA of a device never born stores nothing and asks a rebirth."""
    data = _payload({"alias": 3, "int_value": 7}, {"alias": 4, "double_value": 1.5})

    decoded = _decode(SparkplugDecoder(), DEVICE.format(verb="DDATA"), data)

    assert decoded.points == []
    assert [(r.field, r.reason, r.detail) for r in decoded.rejected_fields] == [
        (
            "alias 3",
            "no_birth",
            "no DBIRTH seen for plant-a/edge-01/press-07 (alias 3)",
        ),
        (
            "alias 4",
            "no_birth",
            "no DBIRTH seen for plant-a/edge-01/press-07 (alias 4)",
        ),
    ]
    assert [o.topic for o in decoded.outgoing] == [NCMD]


def test_sparkplug_decoder_ndata_before_nbirth_asks_rebirth():
    """Test that NDATA of an edge node never born asks that node for a rebirth."""
    data = _payload({"alias": 1, "float_value": 12.3})

    decoded = _decode(SparkplugDecoder(), NODE.format(verb="NDATA"), data)

    assert decoded.rejected_fields[0].detail == (
        "no NBIRTH seen for plant-a/edge-01 (alias 1)"
    )
    assert [o.topic for o in decoded.outgoing] == [NCMD]


def test_sparkplug_decoder_rate_limits_rebirth_requests_per_edge_node():
    """Test that one edge node is asked at most once per interval, others apart."""
    clock = FakeClock()
    decoder = SparkplugDecoder(clock=clock)
    data = _payload({"alias": 3, "int_value": 7})
    other_node = "spBv1.0/plant-a/DDATA/edge-02/press-01"

    first = _decode(decoder, DEVICE.format(verb="DDATA"), data)
    clock.now_s += REBIRTH_INTERVAL_S - 1
    second = _decode(decoder, DEVICE.format(verb="DDATA"), data)
    other = _decode(decoder, other_node, data)
    clock.now_s += 1
    third = _decode(decoder, DEVICE.format(verb="DDATA"), data)

    assert [o.topic for o in first.outgoing] == [NCMD]
    assert second.outgoing == []
    assert second.rejected_fields[0].reason == "no_birth"
    assert [o.topic for o in other.outgoing] == ["spBv1.0/plant-a/NCMD/edge-02"]
    assert [o.topic for o in third.outgoing] == [NCMD]


def test_sparkplug_decoder_stores_reordered_data_at_own_times():
    """Test that DDATA arriving out of seq order is stored, each at its own time."""
    decoder = SparkplugDecoder()
    _birth_press(
        decoder,
        {"name": "Temp", "alias": 3, "datatype": DataType.Int32, "int_value": 1},
    )
    later = _payload({"alias": 3, "int_value": 3}, seq=3, timestamp=T0_MS + 2000)
    earlier = _payload({"alias": 3, "int_value": 2}, seq=2, timestamp=T0_MS + 1000)

    points = _decode(decoder, DEVICE.format(verb="DDATA"), later).points
    points += _decode(decoder, DEVICE.format(verb="DDATA"), earlier).points

    assert [(p.fields, p.time_ns) for p in points] == [
        ({"value_int": 3}, (T0_MS + 2000) * 1_000_000),
        ({"value_int": 2}, (T0_MS + 1000) * 1_000_000),
    ]


def test_sparkplug_decoder_new_nbirth_drops_device_maps():
    """Test that a new NBIRTH starts a session: old device aliases are forgotten."""
    decoder = SparkplugDecoder()
    _birth_press(
        decoder,
        {"name": "Temp", "alias": 3, "datatype": DataType.Int32, "int_value": 1},
    )
    _decode(decoder, NODE.format(verb="NBIRTH"), _payload(seq=0))

    data = _payload({"alias": 3, "int_value": 7})
    decoded = _decode(decoder, DEVICE.format(verb="DDATA"), data)

    assert decoded.points == []
    assert decoded.rejected_fields[0].reason == "no_birth"


@pytest.mark.parametrize(
    ("datatype", "carried", "raw", "expected"),
    [
        (DataType.Int8, "int_value", 2**32 - 12, -12),
        (DataType.Int8, "int_value", 244, -12),  # two's complement of 8 bits
        (DataType.Int8, "int_value", 127, 127),
        (DataType.Int16, "int_value", 2**32 - 300, -300),
        (DataType.Int16, "int_value", 2**16 - 300, -300),
        (DataType.Int32, "int_value", 2**32 - 1, -1),
        (DataType.Int32, "long_value", 2**64 - 12, -12),
        (DataType.Int64, "long_value", 2**64 - 5, -5),
        (DataType.Int64, "long_value", 2**63 - 1, 2**63 - 1),
        (DataType.UInt8, "int_value", 255, 255),
        (DataType.UInt32, "int_value", 2**32 - 1, 2**32 - 1),
        (DataType.UInt32, "long_value", 2**32 - 1, 2**32 - 1),
        (DataType.UInt64, "long_value", 2**63 - 1, 2**63 - 1),
        (DataType.DateTime, "long_value", T0_MS, T0_MS),
    ],
)
def test_sparkplug_decoder_types_integers_by_birth_datatype(
    datatype, carried, raw, expected
):
    """Test that integers are sign-converted by their BIRTH datatype, kept exact."""
    decoder = SparkplugDecoder()
    _birth_press(decoder, {"name": "X", "alias": 1, "datatype": datatype})

    data = _payload({"alias": 1, carried: raw})
    (point,) = _decode(decoder, DEVICE.format(verb="DDATA"), data).points

    assert point.fields == {"value_int": expected}
    assert type(point.fields["value_int"]) is int


@pytest.mark.parametrize(
    ("datatype", "carried", "raw"),
    [
        (DataType.Int8, "int_value", 2**31),
        (DataType.Int16, "int_value", 70_000),
        (DataType.UInt8, "int_value", 256),
        (DataType.UInt64, "long_value", 2**63),
    ],
)
def test_sparkplug_decoder_leaves_out_integers_beyond_their_type(
    datatype, carried, raw
):
    """Test that an integer outside its type (or int64) is left out, not wrapped."""
    decoder = SparkplugDecoder()
    _birth_press(decoder, {"name": "X", "alias": 1, "datatype": datatype})

    data = _payload({"alias": 1, carried: raw}, {"alias": 1, carried: 1})
    decoded = _decode(decoder, DEVICE.format(verb="DDATA"), data)

    assert [p.fields for p in decoded.points] == [{"value_int": 1}]
    (reject,) = decoded.rejected_fields
    assert (reject.field, reject.reason) == ("X", "out_of_range")
    assert str(raw) in reject.detail
    assert decoded.outgoing == []


@pytest.mark.parametrize(
    ("datatype", "carried", "raw", "expected"),
    [
        (DataType.Float, "float_value", 0.1, 0.1),
        (DataType.Float, "float_value", 182.3, 182.3),
        (DataType.Float, "float_value", 16_777_217.0, 16_777_216.0),
        (DataType.Float, "float_value", 3.4028234663852886e38, 3.4028235e38),
        (DataType.Double, "double_value", 0.1, 0.1),
        (DataType.Double, "double_value", 0.30000000000000004, 0.30000000000000004),
        (DataType.Double, "float_value", 21.7, 21.7),
        (DataType.Float, "double_value", 21.7, 21.7),
    ],
)
def test_sparkplug_decoder_keeps_float_precision(datatype, carried, raw, expected):
    """Test that a 32-bit Float is stored as its shortest decimal, a Double as is."""
    decoder = SparkplugDecoder()
    _birth_press(decoder, {"name": "X", "alias": 1, "datatype": datatype})

    data = _payload({"alias": 1, carried: raw})
    (point,) = _decode(decoder, DEVICE.format(verb="DDATA"), data).points

    assert point.fields == {"value_float": expected}
    assert type(point.fields["value_float"]) is float
    if carried == "float_value":
        as_float32 = struct.unpack("<f", struct.pack("<f", raw))[0]
        assert struct.unpack("<f", struct.pack("<f", expected))[0] == as_float32


def test_sparkplug_decoder_stores_string_text_and_uuid_metrics():
    """Test that String, Text and UUID metrics are stored as string fields."""
    decoder = SparkplugDecoder()
    _birth_press(
        decoder,
        {
            "name": "Mode",
            "alias": 1,
            "datatype": DataType.String,
            "string_value": "auto",
        },
        {
            "name": "Note",
            "alias": 2,
            "datatype": DataType.Text,
            "string_value": 'says "hi",\nok',
        },
        {
            "name": "Batch",
            "alias": 3,
            "datatype": DataType.UUID,
            "string_value": "0b7c1e9a-3f1d-4c55-9a51-6f3e2a9b8c11",
        },
    )
    data = _payload({"alias": 1, "string_value": "manual"})

    points = _decode(decoder, DEVICE.format(verb="DDATA"), data).points

    assert [(p.tags["metric"], p.fields) for p in points] == [
        ("Mode", {"value_str": "manual"})
    ]


def test_sparkplug_decoder_stores_birth_strings_and_booleans():
    """Test that BIRTH values of every stored kind become points of their type."""
    decoder = SparkplugDecoder()

    points = decoder.decode(
        _message(
            DEVICE.format(verb="DBIRTH"),
            _payload(
                {
                    "name": "Mode",
                    "alias": 1,
                    "datatype": DataType.String,
                    "string_value": "auto",
                },
                {
                    "name": "Door",
                    "alias": 2,
                    "datatype": DataType.Boolean,
                    "boolean_value": True,
                },
            ),
        ),
        "sparkplug",
        {},
    ).points

    assert [p.fields for p in points] == [{"value_str": "auto"}, {"value_bool": True}]


def test_sparkplug_decoder_leaves_out_null_and_non_finite_metrics():
    """Test that is_null and NaN metrics are left out, the others kept."""
    decoder = SparkplugDecoder()
    _birth_press(
        decoder,
        {"name": "A", "alias": 1, "datatype": DataType.Double},
        {"name": "B", "alias": 2, "datatype": DataType.Float},
        {"name": "C", "alias": 3, "datatype": DataType.Int32},
    )
    data = _payload(
        {"alias": 1, "is_null": True},
        {"alias": 2, "float_value": float("nan")},
        {"alias": 3, "int_value": 5},
    )

    decoded = _decode(decoder, DEVICE.format(verb="DDATA"), data)

    assert [p.fields for p in decoded.points] == [{"value_int": 5}]
    assert [(r.field, r.reason) for r in decoded.rejected_fields] == [
        ("A", "null_value"),
        ("B", "non_finite"),
    ]
    assert decoded.outgoing == []


def test_sparkplug_decoder_leaves_out_datasets_and_templates_with_reason():
    """Test that DataSet, Template and Bytes metrics are left out as unsupported."""
    decoder = SparkplugDecoder()
    payload = Payload(timestamp=T0_MS, seq=1)
    table = payload.metrics.add(name="Table", alias=1, datatype=DataType.DataSet)
    table.dataset_value.num_of_columns = 1
    table.dataset_value.columns.append("a")
    payload.metrics.add(name="Blob", alias=2, datatype=DataType.Bytes, bytes_value=b"x")
    udt = payload.metrics.add(name="Motor", alias=3, datatype=DataType.Template)
    udt.template_value.is_definition = False
    payload.metrics.add(
        name="Speed", alias=4, datatype=DataType.Double, double_value=3.5
    )

    decoded = _decode(
        decoder, DEVICE.format(verb="DBIRTH"), payload.SerializeToString()
    )

    assert [p.tags["metric"] for p in decoded.points] == ["Speed"]
    assert [(r.field, r.reason) for r in decoded.rejected_fields] == [
        ("Table", "unsupported_datatype"),
        ("Blob", "unsupported_datatype"),
        ("Motor", "unsupported_datatype"),
    ]
    assert decoded.rejected_fields[0].detail.startswith("DataSet values are not stored")


def test_sparkplug_decoder_value_not_matching_birth_type_asks_rebirth():
    """Test that a value in the wrong protobuf field is left out and asks a rebirth."""
    decoder = SparkplugDecoder()
    _birth_press(decoder, {"name": "Temp", "alias": 3, "datatype": DataType.Int32})

    data = _payload({"alias": 3, "double_value": 21.5})
    decoded = _decode(decoder, DEVICE.format(verb="DDATA"), data)

    assert decoded.points == []
    (reject,) = decoded.rejected_fields
    assert (reject.field, reject.reason) == ("Temp", "type_mismatch")
    assert reject.detail == "Temp is Int32 but carries double_value"
    assert [o.topic for o in decoded.outgoing] == [NCMD]


def test_sparkplug_decoder_stores_named_data_with_datatype_without_birth():
    """Test that DATA naming its metrics and datatypes needs no BIRTH."""
    data = _payload({"name": "Flow", "datatype": DataType.Double, "double_value": 3.5})

    decoded = _decode(SparkplugDecoder(), DEVICE.format(verb="DDATA"), data)

    assert [(p.tags["metric"], p.fields) for p in decoded.points] == [
        ("Flow", {"value_float": 3.5})
    ]
    assert decoded.outgoing == []


def test_sparkplug_decoder_finds_named_data_type_in_birth():
    """Test that DATA naming a metric without a datatype takes it from the BIRTH."""
    decoder = SparkplugDecoder()
    _birth_press(decoder, {"name": "Temp", "alias": 3, "datatype": DataType.Int16})

    data = _payload({"name": "Temp", "int_value": 2**32 - 2})
    (point,) = _decode(decoder, DEVICE.format(verb="DDATA"), data).points

    assert point.fields == {"value_int": -2}


def test_sparkplug_decoder_ddeath_forgets_the_device():
    """Test that after DDEATH the device's aliases are unknown until its DBIRTH."""
    decoder = SparkplugDecoder()
    _birth_press(decoder, {"name": "Temp", "alias": 3, "datatype": DataType.Int32})

    death = _decode(decoder, DEVICE.format(verb="DDEATH"), _payload())
    data = _payload({"alias": 3, "int_value": 7})
    decoded = _decode(decoder, DEVICE.format(verb="DDATA"), data)

    assert death.points == death.rejected_fields == death.outgoing == []
    assert decoded.rejected_fields[0].reason == "no_birth"


@pytest.mark.parametrize(("death_bd_seq", "forgotten"), [(4, True), (3, False)])
def test_sparkplug_decoder_ndeath_forgets_only_its_own_session(death_bd_seq, forgotten):
    """Test that NDEATH drops the maps unless its bdSeq is of an older session."""
    decoder = SparkplugDecoder()
    birth = _payload(
        {"name": "bdSeq", "datatype": DataType.UInt64, "long_value": 4},
        {
            "name": "Volts",
            "alias": 1,
            "datatype": DataType.Double,
            "double_value": 12.0,
        },
        seq=0,
    )
    _decode(decoder, NODE.format(verb="NBIRTH"), birth)
    death = _payload(
        {"name": "bdSeq", "datatype": DataType.UInt64, "long_value": death_bd_seq},
        seq=None,
    )

    _decode(decoder, NODE.format(verb="NDEATH"), death)
    data = _payload({"alias": 1, "double_value": 12.5})
    decoded = _decode(decoder, NODE.format(verb="NDATA"), data)

    assert (decoded.points == []) is forgotten


@pytest.mark.parametrize(
    "topic",
    [
        "spBv1.0/STATE/scada-01",
        NCMD,
        "spBv1.0/plant-a/DCMD/edge-01/press-07",
    ],
)
def test_sparkplug_decoder_ignores_commands_and_state(topic):
    """Test that STATE, NCMD and DCMD (our own rebirth requests too) store nothing."""
    payload = b'{"online": true, "timestamp": 1717200000000}'
    if "CMD" in topic:
        payload = _payload({"name": "Node Control/Rebirth", "boolean_value": True})

    decoded = _decode(SparkplugDecoder(), topic, payload)

    assert decoded.points == decoded.rejected_fields == decoded.outgoing == []


def test_sparkplug_decoder_skips_transient_and_control_metrics():
    """Test that is_transient and Node/Device Control metrics are not stored."""
    decoder = SparkplugDecoder()
    _birth_press(
        decoder,
        {
            "name": "Scratch",
            "alias": 1,
            "datatype": DataType.Int32,
            "is_transient": True,
            "int_value": 1,
        },
        {
            "name": "Device Control/Reset",
            "alias": 2,
            "datatype": DataType.Boolean,
            "boolean_value": False,
        },
        {"name": "Temp", "alias": 3, "datatype": DataType.Int32, "int_value": 20},
    )
    data = _payload({"alias": 1, "int_value": 2}, {"alias": 3, "int_value": 21})

    decoded = _decode(decoder, DEVICE.format(verb="DDATA"), data)

    assert [p.tags["metric"] for p in decoded.points] == ["Temp"]
    assert decoded.rejected_fields == []


def test_sparkplug_decoder_times_metric_then_payload_then_receive():
    """Test that a point's time is the metric's, else the payload's, else receipt."""
    decoder = SparkplugDecoder()
    _birth_press(decoder, {"name": "T", "alias": 1, "datatype": DataType.Int32})
    own = _payload({"alias": 1, "int_value": 1, "timestamp": T0_MS + 7})
    inherited = _payload({"alias": 1, "int_value": 2}, timestamp=T0_MS + 9)
    none = _payload({"alias": 1, "int_value": 3}, timestamp=None)

    times = [
        _decode(decoder, DEVICE.format(verb="DDATA"), p).points[0].time_ns
        for p in (own, inherited, none)
    ]

    assert times == [(T0_MS + 7) * 1_000_000, (T0_MS + 9) * 1_000_000, RX_NS]


def test_sparkplug_decoder_leaves_out_metric_of_implausible_time():
    """Test that a metric stamped 1970 is left out while its neighbour is kept."""
    decoder = SparkplugDecoder()
    _birth_press(decoder, {"name": "T", "alias": 1, "datatype": DataType.Int32})
    data = _payload(
        {"alias": 1, "int_value": 1, "timestamp": 5},
        {"alias": 1, "int_value": 2, "timestamp": T0_MS},
    )

    decoded = _decode(decoder, DEVICE.format(verb="DDATA"), data)

    assert [p.fields for p in decoded.points] == [{"value_int": 2}]
    assert [(r.field, r.reason) for r in decoded.rejected_fields] == [
        ("T", "implausible_timestamp")
    ]


def test_sparkplug_decoder_names_field_after_subscription_field():
    """Test that the subscription's field name is the stem of the stored key."""
    decoder = SparkplugDecoder()
    _birth_press(decoder, {"name": "T", "alias": 1, "datatype": DataType.Int32})

    data = _payload({"alias": 1, "int_value": 4})
    (point,) = _decode(
        decoder, DEVICE.format(verb="DDATA"), data, field="reading"
    ).points

    assert point.fields == {"reading_int": 4}


def test_sparkplug_decoder_declared_field_type_stores_one_bare_field():
    """Test that declaring the field float stores numbers under it, as floats."""
    decoder = SparkplugDecoder(DecoderOptions(typer=FieldTyper({"value": "float"})))
    _birth_press(
        decoder,
        {"name": "T", "alias": 1, "datatype": DataType.Int32, "int_value": 35},
        {"name": "P", "alias": 2, "datatype": DataType.Double, "double_value": 1.5},
        {"name": "D", "alias": 3, "datatype": DataType.Boolean, "boolean_value": True},
    )
    data = _payload({"alias": 1, "int_value": 2**32 - 12})

    decoded = _decode(decoder, DEVICE.format(verb="DDATA"), data)

    assert decoded.points[0].fields == {"value": -12.0}
    assert type(decoded.points[0].fields["value"]) is float


def test_sparkplug_decoder_declared_field_type_rejects_what_does_not_convert():
    """Test that a boolean metric is left out when the field is declared float."""
    decoder = SparkplugDecoder(DecoderOptions(typer=FieldTyper({"value": "float"})))

    payload = _payload(
        {"name": "D", "alias": 3, "datatype": DataType.Boolean, "boolean_value": True}
    )
    decoded = _decode(decoder, DEVICE.format(verb="DBIRTH"), payload)

    assert decoded.points == []
    assert [(r.field, r.reason) for r in decoded.rejected_fields] == [
        ("D", "wrong_type")
    ]


@pytest.mark.parametrize(
    ("topic", "payload", "reason"),
    [
        ("plant-a/DDATA/edge-01", _payload(), "bad_topic"),
        ("spBv1.0/plant-a/DDATA/edge-01", _payload(), "bad_topic"),
        ("spBv1.0/plant-a/NDATA/edge-01/press-07", _payload(), "bad_topic"),
        ("spBv1.0/plant-a/XDATA/edge-01", _payload(), "bad_topic"),
        ("spBv1.0//DDATA/edge-01/press-07", _payload(), "bad_topic"),
        ("spBv1.0/plant-a/DDATA/edge-01/", _payload(), "bad_topic"),
        (NODE.format(verb="NDATA"), b"\xff\xff\xff", "invalid_protobuf"),
        (NODE.format(verb="NDATA"), b'{"value": 1}', "invalid_protobuf"),
        (NODE.format(verb="NDATA"), _payload(), "no_metrics"),
    ],
)
def test_sparkplug_decoder_refuses_bad_topics_and_payloads(topic, payload, reason):
    """Test that a bad topic, unreadable protobuf or empty DATA is a PayloadError."""
    with pytest.raises(PayloadError) as caught:
        _decode(SparkplugDecoder(), topic, payload)

    assert caught.value.reason == reason
    assert caught.value.topic == topic


def test_sparkplug_topic_parses_node_and_device_topics():
    """Test that topics split into group, verb, edge node and device."""
    assert SparkplugTopic.parse(DEVICE.format(verb="DDATA")) == SparkplugTopic(
        "plant-a", "DDATA", "edge-01", "press-07"
    )
    node = SparkplugTopic.parse(NODE.format(verb="NBIRTH"))
    assert (node.device, node.descriptor) == (None, "plant-a/edge-01")


def test_sparkplug_decoder_is_the_registered_and_detected_format():
    """Test that format sparkplug_b and auto on spBv1.0 topics use this decoder."""
    decoder = make_decoder("sparkplug_b", DecoderOptions())
    message = _message(DEVICE.format(verb="DDATA"), b"")

    assert isinstance(decoder, SparkplugDecoder)
    assert decoder.name == "sparkplug_b"
    assert detect_format(message) == "sparkplug_b"


def test_sparkplug_decoder_behind_route_keeps_static_tags():
    """Test that a Route over spBv1.0/# passes its tags and field through."""
    route = Route(
        topic_filter="spBv1.0/#",
        qos=0,
        template=None,
        measurement="sparkplug",
        static_tags={"site": "depot"},
        decoder=SparkplugDecoder(),
        field="v",
    )
    topic, payload_hex = C14_INPUTS[1]

    points = route.decode(_message(topic, bytes.fromhex(payload_hex))).points

    assert points[0].tags == {
        "site": "depot",
        "group": "plant-a",
        "edge_node": "edge-01",
        "device": "press-07",
        "metric": "Hydraulic/Temp",
    }
    assert points[0].fields == {"v_int": 35}


def test_sparkplug_decoder_reads_empty_name_as_absent():
    """Test that a DATA metric with an empty name is found by its alias."""
    decoder = SparkplugDecoder()
    _birth_press(decoder, {"name": "T", "alias": 1, "datatype": DataType.Int32})

    data = _payload({"name": "", "alias": 1, "int_value": 4})
    (point,) = _decode(decoder, DEVICE.format(verb="DDATA"), data).points

    assert point.tags["metric"] == "T"


def test_sparkplug_decoder_reads_bdseq_sent_as_int_value():
    """Test that an NDEATH whose bdSeq is in int_value still matches its NBIRTH."""
    decoder = SparkplugDecoder()
    birth = _payload(
        {"name": "bdSeq", "datatype": DataType.Int64, "int_value": 2},
        {"name": "V", "alias": 1, "datatype": DataType.Double, "double_value": 1.0},
        seq=0,
    )
    _decode(decoder, NODE.format(verb="NBIRTH"), birth)
    death = _payload({"name": "bdSeq", "int_value": 2}, seq=None)

    _decode(decoder, NODE.format(verb="NDEATH"), death)
    data = _payload({"alias": 1, "double_value": 2.0})

    assert _decode(decoder, NODE.format(verb="NDATA"), data).points == []


_METRICS = st.fixed_dictionaries(
    {},
    optional={
        "name": st.sampled_from(["", "T", "bdSeq", "Node Control/Rebirth"]),
        "alias": st.integers(0, 3),
        "timestamp": st.integers(0, 2**64 - 1),
        "datatype": st.integers(0, 40),
        "is_null": st.booleans(),
        "is_transient": st.booleans(),
        "int_value": st.integers(0, 2**32 - 1),
        "long_value": st.integers(0, 2**64 - 1),
        "float_value": st.floats(width=32),
        "double_value": st.floats(),
        "boolean_value": st.booleans(),
        "string_value": st.text(max_size=8),
        "bytes_value": st.binary(max_size=8),
    },
)


@given(
    verbs=st.lists(st.sampled_from(["NBIRTH", "DBIRTH", "NDATA", "DDATA"]), max_size=4),
    metrics=st.lists(_METRICS, max_size=4),
)
def test_sparkplug_decoder_never_fails_on_odd_metrics(verbs, metrics):
    """Test that any mix of metric fields decodes or raises PayloadError only."""
    decoder = SparkplugDecoder()
    payload = _payload(*metrics)
    for verb in verbs:
        topic = (NODE if verb[0] == "N" else DEVICE).format(verb=verb)
        try:
            decoded = _decode(decoder, topic, payload)
        except PayloadError:
            continue
        for point in decoded.points:
            (value,) = point.fields.values()
            assert type(value) in (int, float, bool, str)


@given(st.binary(max_size=64))
def test_sparkplug_decoder_never_fails_on_random_bytes(payload):
    """Test that arbitrary bytes give a result or a PayloadError, nothing else."""
    try:
        _decode(SparkplugDecoder(), DEVICE.format(verb="DDATA"), payload)
    except PayloadError as exc:
        assert exc.reason in {"invalid_protobuf", "no_metrics"}


def test_sparkplug_decoder_leaves_out_names_and_strings_not_utf8():
    """Test that a name or string value that is not UTF-8 is left out, not mangled."""
    metrics = [
        bytes.fromhex("0a01ff200c7a026f6b"),  # name b"\xff", String "ok"
        bytes.fromhex("0a0153200c7a01fe"),  # name "S", String b"\xfe"
        bytes.fromhex("0a015420035005"),  # name "T", Int32 5
    ]
    payload = Payload(timestamp=T0_MS, seq=1).SerializeToString() + b"".join(
        b"\x12" + bytes([len(m)]) + m for m in metrics
    )

    decoded = _decode(SparkplugDecoder(), DEVICE.format(verb="DBIRTH"), payload)

    assert [(p.tags["metric"], p.fields) for p in decoded.points] == [
        ("T", {"value_int": 5})
    ]
    assert [(r.field, r.reason) for r in decoded.rejected_fields] == [
        ("\ufffd", "invalid_text"),
        ("S", "invalid_text"),
    ]
