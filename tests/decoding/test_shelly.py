"""The Shelly Gen2 decoders: component status objects and NotifyStatus events."""

from __future__ import annotations

import pytest

from gateway.app import build_routes
from gateway.config import GatewayConfig
from gateway.decoding import FieldReject, Route
from gateway.decoding.options import DecoderOptions
from gateway.decoding.shelly import ShellyRpcDecoder, ShellyStatusDecoder
from gateway.errors import PayloadError
from gateway.points import encode_line
from gateway.sources.mqtt import MqttMessage

RX_NS = 1_700_000_090_000_000_000  # 2023-11-14T22:14:50Z, after every C07 input
C07_STATUS = (
    b'{"id":0, "source":"init", "output":true, "apower":412.3, "voltage":229.1, '
    b'"freq":50.0, "current":1.802, "pf":0.98, "aenergy":{"total":98211.442,'
    b'"by_minute":[6247.2,6253.9,6240.3],"minute_ts":1700000040}, '
    b'"temperature":{"tC":60.4, "tF":140.7}}'
)
C07_B1 = (
    b'{"src":"shellyplus1pm-a1b2c3d4e5f6","dst":"pv-relay-1/events",'
    b'"method":"NotifyStatus","params":{"ts":1700000061.37,"switch:0":{"id":0,'
    b'"aenergy":{"by_minute":[6251.0,6247.2,6253.9],"minute_ts":1700000100,'
    b'"total":98217.690}}}}'
)
C07_B2 = (
    b'{"src":"shellyplus1pm-a1b2c3d4e5f6","dst":"pv-relay-1/events",'
    b'"method":"NotifyStatus","params":{"ts":1700000075.02,"mqtt":{"connected":true}}}'
)
C07_B3 = (
    b'{"src":"shellyplus1pm-a1b2c3d4e5f6","dst":"pv-relay-1/events",'
    b'"method":"NotifyEvent","params":{"ts":1700000080.00,"events":[{"component":'
    b'"input:0","id":0,"event":"single_push","ts":1700000080.00}]}}'
)
RPC_TOPIC = "pv-relay-1/events/rpc"


def _message(topic: str, payload: bytes) -> MqttMessage:
    return MqttMessage(topic, payload, qos=1, retain=False, received_ns=RX_NS)


def _route(**subscription) -> Route:
    config = GatewayConfig.model_validate(
        {"subscriptions": [{"measurement": "shelly", **subscription}]}
    )
    return build_routes(config)[0]


def _rpc_route(**subscription) -> Route:
    # C07 B: topic_tags {0: device}, timestamp params.ts.
    return _route(
        topic_template="{device}/events/rpc",
        format="shelly_rpc",
        timestamp_key="params.ts",
        **subscription,
    )


def _notify(params: bytes, method: bytes = b"NotifyStatus") -> bytes:
    return (
        b'{"src":"shellypro3-0c8b","method":"' + method + b'","params":' + params + b"}"
    )


def test_shelly_status_decoder_c07_a2_stores_the_component_object():
    """Test that C07 A2 gives its expected point, minute_ts a field, not the time."""
    route = _route(topic_template="{device}/status/{component}", format="shelly")

    decoded = route.decode(_message("pv-relay-1/status/switch:0", C07_STATUS))

    assert [encode_line(p) for p in decoded.points] == [
        'shelly,component=switch:0,device=pv-relay-1 id=0.0,source="init",'
        "output=true,apower=412.3,voltage=229.1,freq=50.0,current=1.802,pf=0.98,"
        "aenergy_total=98211.442,aenergy_by_minute_0=6247.2,"
        "aenergy_by_minute_1=6253.9,aenergy_by_minute_2=6240.3,"
        "aenergy_minute_ts=1700000040.0,temperature_tC=60.4,temperature_tF=140.7 "
        f"{RX_NS}"
    ]
    assert decoded.rejected_fields == []


def test_shelly_status_decoder_reads_device_and_component_from_the_topic():
    """Test that without template tags, device and component come from the topic."""
    decoder = ShellyStatusDecoder(DecoderOptions())

    decoded = decoder.decode(
        _message("site-a/pv-relay-1/status/switch:0", C07_STATUS), "shelly", {}
    )

    assert decoded.points[0].tags == {
        "device": "site-a/pv-relay-1",
        "component": "switch:0",
    }


def test_shelly_status_decoder_leaves_the_sys_wall_clock_out():
    """Test that sys.time ("HH:MM") is no field and no reserved-key reject."""
    payload = (
        b'{"mac":"A8032AB12345","restart_required":false,"time":"23:14",'
        b'"unixtime":1700000090,"uptime":3605,"ram_free":151120,'
        b'"available_updates":{}}'
    )

    decoded = ShellyStatusDecoder().decode(
        _message("pv-relay-1/status/sys", payload), "shelly", {}
    )

    assert decoded.points[0].fields == {
        "mac": "A8032AB12345",
        "restart_required": False,
        "unixtime": 1700000090.0,
        "uptime": 3605.0,
        "ram_free": 151120.0,
    }
    assert decoded.rejected_fields == []


@pytest.mark.parametrize(
    ("topic", "payload"),
    [
        ("pv-relay-1/online", b"false"),
        ("pv-relay-1/online", b"true"),
        ("pv-relay-1/rpc", b'{"id":1,"src":"ops","method":"Switch.Set"}'),
        ("pv-relay-1/command", b"status_update"),
        ("pv-relay-1/debug/log", b"shelly_notification:163 Status change"),
    ],
)
def test_shelly_status_decoder_ignores_topics_that_are_not_status(topic, payload):
    """Test that liveness, requests and logs give no point and raise nothing."""
    decoded = ShellyStatusDecoder().decode(_message(topic, payload), "shelly", {})

    assert decoded.points == [] and decoded.rejected_fields == []


def test_shelly_status_decoder_hands_notifications_to_the_rpc_decoder():
    """Test that one <device>/# subscription reads status and events/rpc alike."""
    route = _route(topic="+/#", format="shelly", timestamp_key="params.ts")

    status = route.decode(_message("pv-relay-1/status/switch:0", C07_STATUS))
    notified = route.decode(_message(RPC_TOPIC, C07_B2))
    event = route.decode(_message(RPC_TOPIC, C07_B3))

    assert status.points[0].tags == {"device": "pv-relay-1", "component": "switch:0"}
    assert status.points[0].time_ns == RX_NS
    assert [encode_line(p) for p in notified.points] == [
        "shelly,component=mqtt,device=pv-relay-1 connected=true 1700000075020000000"
    ]
    assert event.points == []


def test_shelly_rpc_decoder_c07_b_stores_one_point_per_component_exactly():
    """Test that C07 B1-B3 give exactly its two expected points, B3 no error."""
    route = _rpc_route()

    lines = []
    for payload in (C07_B1, C07_B2, C07_B3):
        decoded = route.decode(_message(RPC_TOPIC, payload))
        assert decoded.rejected_fields == []
        lines.extend(encode_line(point) for point in decoded.points)

    assert lines == [
        "shelly,component=switch:0,device=pv-relay-1 id=0.0,"
        "aenergy_by_minute_0=6251.0,aenergy_by_minute_1=6247.2,"
        "aenergy_by_minute_2=6253.9,aenergy_minute_ts=1700000100.0,"
        "aenergy_total=98217.69 1700000061370000000",
        "shelly,component=mqtt,device=pv-relay-1 connected=true 1700000075020000000",
    ]


def test_shelly_rpc_decoder_c07_partial_update_fills_nothing_in():
    """Test that a partial NotifyStatus writes only the keys it carries."""
    decoded = _rpc_route().decode(_message(RPC_TOPIC, C07_B1))

    fields = decoded.points[0].fields
    assert set(fields) == {
        "id",
        "aenergy_by_minute_0",
        "aenergy_by_minute_1",
        "aenergy_by_minute_2",
        "aenergy_minute_ts",
        "aenergy_total",
    }
    assert decoded.points[0].time_ns != 1_700_000_061_369_999_872


@pytest.mark.parametrize(
    ("ts", "expected_ns"),
    [
        (b"1700000061.37", 1_700_000_061_370_000_000),
        (b"1700000075.02", 1_700_000_075_020_000_000),
        (b"1700000080.00", 1_700_000_080_000_000_000),
        (b"1700000061.123", 1_700_000_061_123_000_000),
        (b"1700000061.999999", 1_700_000_061_999_999_000),
        (b"1700000061", 1_700_000_061_000_000_000),
    ],
)
def test_shelly_rpc_decoder_reads_params_ts_exactly(ts, expected_ns):
    """Test that params.ts seconds with a fraction give the exact ns, never rounded."""
    payload = _notify(b'{"ts":' + ts + b',"wifi":{"rssi":-61}}')

    decoded = _rpc_route().decode(_message(RPC_TOPIC, payload))

    assert decoded.points[0].time_ns == expected_ns


def test_shelly_rpc_decoder_default_timestamp_key_reads_params_ts():
    """Test that the default timestamp_key "ts" names params.ts, and "" receive time."""
    default = ShellyRpcDecoder(DecoderOptions())
    receive = ShellyRpcDecoder(DecoderOptions(timestamp_key=""))

    at_ts = default.decode(_message(RPC_TOPIC, C07_B2), "shelly", {})
    at_rx = receive.decode(_message(RPC_TOPIC, C07_B2), "shelly", {})

    assert at_ts.points[0].time_ns == 1_700_000_075_020_000_000
    assert at_rx.points[0].time_ns == RX_NS


def test_shelly_rpc_decoder_reads_the_device_from_the_topic():
    """Test that without a template the device tag is the topic before /events/rpc."""
    decoded = ShellyRpcDecoder().decode(
        _message("site-a/pv-relay-1/events/rpc", C07_B2), "shelly", {}
    )

    assert decoded.points[0].tags == {
        "device": "site-a/pv-relay-1",
        "component": "mqtt",
    }


def test_shelly_rpc_decoder_full_status_gives_a_point_per_component():
    """Test that NotifyFullStatus gives one point per component, empty ones skipped."""
    params = (
        b'{"ts":1700000061.37,"switch:0":{"id":0,"output":false,"apower":0.0},'
        b'"switch:1":{"id":1,"output":true,"apower":12.5},"sys":{"time":"23:14",'
        b'"available_updates":{}},"wifi":{"sta_ip":"10.0.0.7","rssi":-61}}'
    )

    decoded = _rpc_route().decode(
        _message(RPC_TOPIC, _notify(params, b"NotifyFullStatus"))
    )

    assert [(p.tags["component"], p.fields) for p in decoded.points] == [
        ("switch:0", {"id": 0.0, "output": False, "apower": 0.0}),
        ("switch:1", {"id": 1.0, "output": True, "apower": 12.5}),
        ("wifi", {"sta_ip": "10.0.0.7", "rssi": -61.0}),
    ]
    assert {p.time_ns for p in decoded.points} == {1_700_000_061_370_000_000}


def test_shelly_rpc_decoder_empty_change_is_no_error():
    """Test that a NotifyStatus with only an empty object gives no point, no error."""
    payload = _notify(b'{"ts":1700000061.37,"sys":{"available_updates":{}}}')

    decoded = _rpc_route().decode(_message(RPC_TOPIC, payload))

    assert decoded.points == [] and decoded.rejected_fields == []


def test_shelly_rpc_decoder_leaves_out_nulls_and_keeps_other_components():
    """Test that a null is reported alone and the other components are stored."""
    payload = _notify(
        b'{"ts":1700000061.37,"switch:0":{"apower":null},"wifi":{"rssi":-61}}'
    )

    decoded = _rpc_route().decode(_message(RPC_TOPIC, payload))

    assert [p.tags["component"] for p in decoded.points] == ["wifi"]
    assert decoded.rejected_fields == [
        FieldReject("apower", "null_value", "value is null")
    ]


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"not json", "invalid_json"),
        (b"[1]", "not_a_notification"),
        (b'{"params":{"ts":1}}', "not_a_notification"),
        (_notify(b"[1, 2]"), "not_a_notification"),
        (_notify(b'{"ts":1700000061.37}', b"GetStatus"), "unsupported_method"),
        (_notify(b'{"ts":1700000061.37,"switch:0":{"apower":null}}'), "no_fields"),
        (_notify(b'{"ts":"soon","wifi":{"rssi":-61}}'), "bad_timestamp"),
    ],
)
def test_shelly_rpc_decoder_refuses_unusable_notifications(payload, reason):
    """Test that a notification with nothing usable raises PayloadError."""
    with pytest.raises(PayloadError) as caught:
        _rpc_route().decode(_message(RPC_TOPIC, payload))

    assert caught.value.reason == reason
    assert caught.value.topic == RPC_TOPIC
