"""The Zigbee2MQTT decoder: device state objects, nulls, and non-state topics."""

from __future__ import annotations

import pytest

from gateway.app import build_routes
from gateway.config import GatewayConfig
from gateway.decoding import Route
from gateway.decoding.options import DecoderOptions
from gateway.decoding.zigbee2mqtt import Zigbee2MqttDecoder
from gateway.errors import PayloadError
from gateway.points import encode_line
from gateway.sources.mqtt import MqttMessage

RX_NS = 1_714_550_760_000_000_000  # 2024-05-01T08:06:00Z, after both C02 inputs
C02_INPUT_1 = (
    b'{"state":"ON","linkquality":23,"power":null,"current":null,"voltage":231.4,'
    b'"energy":3.42,"update":{"state":"idle","installed_version":16909577},'
    b'"update_available":false,"last_seen":"2024-05-01T10:00:00+02:00"}'
)
C02_INPUT_2 = (
    b'{"state":"ON","linkquality":26,"power":9.7,"current":0.05,"voltage":230.8,'
    b'"energy":3.43,"update":{"state":"idle","installed_version":16909577},'
    b'"update_available":false,"last_seen":"2024-05-01T10:05:00+02:00"}'
)
# The C02 configuration in our keys: topic_tags {1: device} is the template.
C02_SUBSCRIPTION = {
    "topic": "zigbee2mqtt/+",
    "exclude_topics": ["zigbee2mqtt/bridge/#"],
    "format": "zigbee2mqtt",
    "measurement": "zigbee",
    "topic_template": "zigbee2mqtt/{device}",
    "timestamp_key": "last_seen",
}
SENSOR = (
    b'{"battery":97,"humidity":61.2,"linkquality":134,"occupancy":true,'
    b'"temperature":24.3,"voltage":3005}'
)


def _message(topic: str, payload: bytes) -> MqttMessage:
    return MqttMessage(topic, payload, qos=1, retain=False, received_ns=RX_NS)


def _route(**subscription) -> Route:
    config = GatewayConfig.model_validate({"subscriptions": [subscription]})
    return build_routes(config)[0]


def _decode(topic: str, payload: bytes, tags: dict | None = None, **options):
    decoder = Zigbee2MqttDecoder(DecoderOptions(**options))
    return decoder.decode(_message(topic, payload), "zigbee", tags or {})


def test_zigbee2mqtt_decoder_c02_stores_both_inputs_exactly():
    """Test that C02's inputs 1 and 2 give its expected points, nulls left out."""
    route = _route(**C02_SUBSCRIPTION)

    first = route.decode(_message("zigbee2mqtt/plug-07", C02_INPUT_1))
    second = route.decode(_message("zigbee2mqtt/plug-07", C02_INPUT_2))

    assert encode_line(first.points[0]) == (
        'zigbee,device=plug-07 state="ON",linkquality=23.0,voltage=231.4,'
        'energy=3.42,update_state="idle",update_installed_version=16909577.0,'
        "update_available=false 1714550400000000000"
    )
    assert encode_line(second.points[0]) == (
        'zigbee,device=plug-07 state="ON",linkquality=26.0,power=9.7,current=0.05,'
        'voltage=230.8,energy=3.43,update_state="idle",'
        "update_installed_version=16909577.0,update_available=false "
        "1714550700000000000"
    )
    # Nulls are reported quietly (the app logs null_value at no level) and kept
    # out; power/current first appear, as floats, in point 2.
    assert [(r.field, r.reason) for r in first.rejected_fields] == [
        ("power", "null_value"),
        ("current", "null_value"),
    ]
    assert second.rejected_fields == []
    assert type(second.points[0].fields["power"]) is float


def test_zigbee2mqtt_decoder_c02_must_not_write_null_or_zero():
    """Test that C02 input 1 is kept and neither power=null nor power=0 is written."""
    decoded = _route(**C02_SUBSCRIPTION).decode(
        _message("zigbee2mqtt/plug-07", C02_INPUT_1)
    )

    line = encode_line(decoded.points[0])
    assert "null" not in line
    assert "power" not in line and "current" not in line


def test_zigbee2mqtt_decoder_c02_bridge_topic_writes_nothing():
    """Test that C02 input 3 is excluded and never becomes a device called bridge."""
    route = _route(**{**C02_SUBSCRIPTION, "topic": "zigbee2mqtt/#"})

    assert route.excludes("zigbee2mqtt/bridge/state")
    # Even when not excluded, the bridge's own topics are not device state.
    decoded = _decode("zigbee2mqtt/bridge/state", b'{"state":"online"}')
    assert decoded.points == [] and decoded.rejected_fields == []


def test_zigbee2mqtt_decoder_names_friendly_names_with_slashes():
    """Test that without a template the device is everything after the base topic."""
    decoded = _decode("zigbee2mqtt/garden/sensor-1", SENSOR)

    point = decoded.points[0]
    assert point.tags == {"device": "garden/sensor-1"}
    assert point.fields == {
        "battery": 97.0,
        "humidity": 61.2,
        "linkquality": 134.0,
        "occupancy": True,
        "temperature": 24.3,
        "voltage": 3005.0,
    }
    assert point.time_ns == RX_NS


def test_zigbee2mqtt_decoder_keeps_a_device_tag_the_template_captured():
    """Test that a captured device tag wins over the one read from the topic."""
    decoded = _decode("zigbee2mqtt/0x00158d0001a9ec71", SENSOR, {"device": "hall"})

    assert decoded.points[0].tags == {"device": "hall"}


@pytest.mark.parametrize(
    ("topic", "payload"),
    [
        ("zigbee2mqtt/plug-07/availability", b"online"),
        ("zigbee2mqtt/plug-07/availability", b"offline"),
        ("zigbee2mqtt/plug-07/availability", b'{"state":"online"}'),
        ("zigbee2mqtt/garden/sensor-1/availability", b'{"state":"offline"}'),
        ("zigbee2mqtt/plug-07/set", b'{"state":"ON"}'),
        ("zigbee2mqtt/plug-07/get", b'{"state":""}'),
        ("zigbee2mqtt/plug-07/set/state", b"OFF"),
        ("zigbee2mqtt/plug-07/l1/set", b'{"state":"ON"}'),
        ("zigbee2mqtt/bridge/info", b'{"version":"1.40.0"}'),
        ("zigbee2mqtt/bridge/state", b"online"),
    ],
)
def test_zigbee2mqtt_decoder_ignores_topics_that_are_not_device_state(topic, payload):
    """Test that availability, commands and bridge topics give no point, no error."""
    decoded = _decode(topic, payload)

    assert decoded.points == [] and decoded.rejected_fields == []


@pytest.mark.parametrize(
    ("last_seen", "expected_ns"),
    [
        (b'"2024-05-01T10:00:00+02:00"', 1_714_550_400_000_000_000),  # ISO_8601_local
        (b'"2024-05-01T08:00:00.123Z"', 1_714_550_400_123_000_000),  # ISO_8601
        (b"1714550400123", 1_714_550_400_123_000_000),  # epoch (ms)
    ],
)
def test_zigbee2mqtt_decoder_reads_every_last_seen_style(last_seen, expected_ns):
    """Test that each last_seen setting gives the exact time and no last_seen field."""
    payload = b'{"temperature":24.3,"last_seen":' + last_seen + b"}"

    decoded = _decode("zigbee2mqtt/hall", payload, timestamp_key="last_seen")

    assert decoded.points[0].time_ns == expected_ns
    assert decoded.points[0].fields == {"temperature": 24.3}


def test_zigbee2mqtt_decoder_leaves_last_seen_out_unless_included():
    """Test that last_seen is no field when it is not the time, unless included."""
    payload = b'{"temperature":24.3,"last_seen":"2024-05-01T10:00:00+02:00"}'

    plain = _decode("zigbee2mqtt/hall", payload)
    included = _decode(
        "zigbee2mqtt/hall", payload, include=frozenset({"temperature", "last_seen"})
    )

    assert plain.points[0].fields == {"temperature": 24.3}
    assert plain.points[0].time_ns == RX_NS
    assert included.points[0].fields == {
        "temperature": 24.3,
        "last_seen": "2024-05-01T10:00:00+02:00",
    }


def test_zigbee2mqtt_decoder_flattens_colour_and_keeps_text_actions():
    """Test that nested colour objects flatten and action text stays text."""
    payload = (
        b'{"action":"single","brightness":254,"color":{"x":0.3,"y":0.31},'
        b'"color_mode":"xy","state":"OFF"}'
    )

    decoded = _decode("zigbee2mqtt/lamp", payload)

    assert decoded.points[0].fields == {
        "action": "single",
        "brightness": 254.0,
        "color_x": 0.3,
        "color_y": 0.31,
        "color_mode": "xy",
        "state": "OFF",
    }


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"online", "invalid_json"),
        (b"[1]", "not_an_object"),
        (b'{"power":null,"current":null}', "no_fields"),
    ],
)
def test_zigbee2mqtt_decoder_refuses_device_messages_without_readings(payload, reason):
    """Test that a device topic with nothing storable raises PayloadError."""
    with pytest.raises(PayloadError) as caught:
        _decode("zigbee2mqtt/plug-07", payload)

    assert caught.value.reason == reason
    assert caught.value.topic == "zigbee2mqtt/plug-07"
