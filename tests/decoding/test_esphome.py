"""The ESPHome decoder: plain-text states, non-finite readings, non-state topics."""

from __future__ import annotations

import logging

import pytest

from gateway.app import build_routes
from gateway.config import GatewayConfig
from gateway.decoding import Route
from gateway.decoding.esphome import EsphomeDecoder
from gateway.decoding.options import DecoderOptions
from gateway.decoding.values import FieldTyper
from gateway.errors import PayloadError
from gateway.points import encode_line
from gateway.sources.mqtt import MqttMessage

RX_NS = 1_764_800_000_000_000_000
C03_TOPIC = "esphome-node-3/sensor/power_factor/state"
# The C03 configuration in our keys: topic_tags {0: node, 2: sensor}.
C03_SUBSCRIPTION = {
    "topic": "+/sensor/+/state",
    "topic_template": "{node}/+/{sensor}/state",
    "format": "esphome",
    "measurement": "esphome",
    "field": "value",
}


def _message(topic: str, payload: bytes, received_ns: int = RX_NS) -> MqttMessage:
    return MqttMessage(topic, payload, qos=1, retain=False, received_ns=received_ns)


def _route(**subscription) -> Route:
    config = GatewayConfig.model_validate({"subscriptions": [subscription]})
    return build_routes(config)[0]


def _value(topic: str, payload: bytes, **options):
    decoder = EsphomeDecoder(DecoderOptions(**options))
    [point] = decoder.decode(_message(topic, payload), "esphome", {}, "value").points
    return point.fields["value"]


def _refusal(topic: str, payload: bytes, **options) -> PayloadError:
    decoder = EsphomeDecoder(DecoderOptions(**options))
    with pytest.raises(PayloadError) as caught:
        decoder.decode(_message(topic, payload), "esphome", {}, "value")
    assert caught.value.topic == topic
    return caught.value


def test_esphome_decoder_c03_stores_only_the_finite_reading(caplog):
    """Test that C03 inputs 1, 2, 6 give one point and two refusals, no traceback.

    The warning C03 asks for is logged by the app for every refused message
    (rate-limited per topic): see tests/test_firmware_end_to_end.py.
    """
    caplog.set_level(logging.DEBUG, logger="gateway.decoding")
    route = _route(**C03_SUBSCRIPTION)

    lines, reasons = [], []
    for index, payload in enumerate([b"nan", b"0.87", b"inf"], start=1):
        try:
            decoded = route.decode(_message(C03_TOPIC, payload, RX_NS + index))
        except PayloadError as exc:
            reasons.append(exc.reason)
        else:
            lines.extend(encode_line(point) for point in decoded.points)

    assert lines == [
        f"esphome,node=esphome-node-3,sensor=power_factor value=0.87 {RX_NS + 2}"
    ]
    assert reasons == ["non_finite", "non_finite"]
    assert not any(r.exc_info for r in caplog.records)


@pytest.mark.parametrize(
    "payload",
    [b"nan", b"NaN", b"-nan", b"inf", b"-inf", b"Infinity", b"1e999", b" nan\n"],
)
def test_esphome_decoder_refuses_every_non_finite_spelling(payload):
    """Test that each spelling of NaN or infinity stores nothing, reason non_finite."""
    assert _refusal(C03_TOPIC, payload).reason == "non_finite"


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        (b"0.87", 0.87),
        (b"23", 23.0),
        (b"-3.5", -3.5),
        (b"1013.25\n", 1013.25),
        (b"1.5e3", 1500.0),
    ],
)
def test_esphome_decoder_stores_numbers_as_floats(payload, expected):
    """Test that sensor text becomes a float, integers included."""
    value = _value(C03_TOPIC, payload)

    assert value == expected and type(value) is float


@pytest.mark.parametrize(
    ("topic", "payload", "expected"),
    [
        ("node-3/binary_sensor/door/state", b"ON", True),
        ("node-3/binary_sensor/door/state", b"OFF", False),
        ("node-3/switch/pump/state", b"ON", True),
        ("node-3/cover/gate/state", b"open", "open"),
        ("node-3/lock/gate/state", b"LOCKED", "LOCKED"),
    ],
)
def test_esphome_decoder_types_states_by_their_text(topic, payload, expected):
    """Test that ON/OFF become booleans and other words stay text."""
    value = _value(topic, payload)

    assert value == expected and type(value) is type(expected)


@pytest.mark.parametrize(
    ("topic", "payload"),
    [
        ("node-3/text_sensor/firmware/state", b"2024.6.1"),
        ("node-3/text_sensor/serial/state", b"42"),
        ("node-3/text_sensor/health/state", b"nan"),
        ("node-3/text_sensor/relay/state", b"ON"),
        ("node-3/select/mode/state", b"1"),
        ("node-3/text_sensor/json/state", b'{"a": 1}'),
    ],
)
def test_esphome_decoder_keeps_text_entities_as_text(topic, payload):
    """Test that text sensors and selects stay strings even when they look numeric."""
    assert _value(topic, payload) == payload.decode()


@pytest.mark.parametrize(
    ("declared", "payload", "expected"),
    [
        ("integer", b"12", 12),
        ("boolean", b"ON", True),
        ("string", b"23.5", "23.5"),
        ("float", b"23.5", 23.5),
    ],
)
def test_esphome_decoder_follows_declared_types(declared, payload, expected):
    """Test that a declared field type wins over the text's own look."""
    value = _value(C03_TOPIC, payload, typer=FieldTyper({"value": declared}))

    assert value == expected and type(value) is type(expected)


@pytest.mark.parametrize(
    ("declared", "payload", "reason"),
    [("float", b"nan", "non_finite"), ("integer", b"12.5", "not_an_integer")],
)
def test_esphome_decoder_refuses_values_that_miss_their_declared_type(
    declared, payload, reason
):
    """Test that a value not fitting its declared type is refused with the reason."""
    refusal = _refusal(C03_TOPIC, payload, typer=FieldTyper({"value": declared}))

    assert refusal.reason == reason


def test_esphome_decoder_names_the_field_from_the_template():
    """Test that field = "{sensor}" names the field after the object id."""
    route = _route(
        **{
            **C03_SUBSCRIPTION,
            "topic_template": "{node}/+/{sensor}/state",
            "field": "{sensor}",
        }
    )

    decoded = route.decode(_message(C03_TOPIC, b"0.87"))

    assert decoded.points[0].fields == {"power_factor": 0.87}


def test_esphome_decoder_stores_a_json_light_state_as_one_point():
    """Test that a light's JSON state becomes one point of its keys."""
    payload = b'{"state":"ON","brightness":255,"color_mode":"rgb","color":{"r":255}}'
    decoder = EsphomeDecoder()

    decoded = decoder.decode(
        _message("node-3/light/porch/state", payload), "esphome", {}, "value"
    )

    assert decoded.points[0].fields == {
        "state": "ON",
        "brightness": 255.0,
        "color_mode": "rgb",
        "color_r": 255.0,
    }


@pytest.mark.parametrize(
    ("topic", "payload"),
    [
        ("esphome-node-3/status", b"online"),
        ("esphome-node-3/status", b"offline"),
        ("esphome-node-3/debug", b"[D][sensor:094]: 'power_factor': Sending nan"),
        ("esphome-node-3/switch/pump/command", b"ON"),
        ("esphome-node-3/climate/hall/mode/command", b"heat"),
    ],
)
def test_esphome_decoder_ignores_topics_that_are_not_state(topic, payload):
    """Test that availability, logs and commands give no point and raise nothing."""
    decoded = EsphomeDecoder().decode(_message(topic, payload), "esphome", {}, "value")

    assert decoded.points == [] and decoded.rejected_fields == []


@pytest.mark.parametrize(
    ("payload", "reason"),
    [(b"", "empty_payload"), (b"  \n", "empty_payload"), (b"\xff\xfe", "not_text")],
)
def test_esphome_decoder_refuses_payloads_without_text(payload, reason):
    """Test that an empty or non-UTF-8 payload is refused with its reason."""
    assert _refusal(C03_TOPIC, payload).reason == reason


def test_esphome_decoder_refuses_a_field_left_out_by_include():
    """Test that include without the field refuses the message as no_fields."""
    refusal = _refusal(C03_TOPIC, b"0.87", include=frozenset({"voltage"}))

    assert refusal.reason == "no_fields"
