"""The format registry: decoders by name, and the format "auto" picks per message."""

from __future__ import annotations

import pytest

from gateway.decoding.bare_value import ValueDecoder
from gateway.decoding.json_readings import JsonDecoder
from gateway.decoding.line_protocol import LineProtocolDecoder
from gateway.decoding.options import DecoderOptions
from gateway.decoding.registry import FORMATS, AutoDecoder, detect_format, make_decoder
from gateway.decoding.senml import SenmlDecoder
from gateway.errors import ConfigError
from gateway.points import encode_line
from gateway.sources.mqtt import MqttMessage

RX_NS = 1_717_200_060_000_000_000


def _message(payload: bytes, topic: str = "site/hall/temp") -> MqttMessage:
    return MqttMessage(topic, payload, qos=0, retain=False, received_ns=RX_NS)


@pytest.mark.parametrize(
    ("topic", "expected"),
    [
        ("spBv1.0/plant/DDATA/edge-1/pump-2", "sparkplug_b"),
        ("tele/kitchen-plug/SENSOR", "tasmota"),
        ("tele/kitchen-plug/STATE", "tasmota"),
        ("v3/depok-app@city/devices/eui-70b3d57ed0061a2b/up", "tts_v3"),
        ("application/7/device/0018b20000001122/event/up", "chirpstack_v4"),
        ("pv-relay-1/events/rpc", "shelly_rpc"),
        ("zigbee2mqtt/hall-sensor", "zigbee2mqtt"),
    ],
)
def test_detect_format_knows_formats_by_their_topic(topic, expected):
    """Test that topics that name their format win over the payload's look."""
    assert detect_format(_message(b'{"temperature": 21.5}', topic)) == expected


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        (b'{"temperature": 21.5}', "json"),
        (b'  \n{"a": 1}', "json"),
        (b'[{"n": "temperature", "v": 21.5}]', "senml"),
        (b"21.5", "value"),
        (b" -3e2 \n", "value"),
        (b".5", "value"),
        (b"ON", "value"),
        (b"off", "value"),
        (b"true", "value"),
        (b"nan", "value"),
        (b"-NaN", "value"),
        (b"inf", "value"),
        (b"partially open", "value"),
        (b'"quoted text"', "value"),
        (b"", "value"),
        (b"meter,device=m5 voltage=230.1 1717200000000000000", "influx"),
        (b"cpu usage_idle=97.5", "influx"),
        (b"boiler\\ temp,room=attic value=60.5", "influx"),
        (b'syslog message="disk ok, C:" 17\nsyslog message="again" 18', "influx"),
        (
            b"meter,device=m5 voltage=230.1 1717200000000000000\n"
            b"meter,device=m5 voltage= 1717200001000000000",
            "influx",
        ),
    ],
)
def test_detect_format_tells_formats_by_their_payload(payload, expected):
    """Test that the first bytes tell JSON, SenML, bare values and line protocol."""
    assert detect_format(_message(payload)) == expected


@pytest.mark.parametrize(
    ("topic", "expected"),
    [
        ("zigbee2mqtt/bridge/state", "json"),
        ("shellyplus1pm-a8032ab12345/status/switch:0", "json"),
        ("esphome-node-3/sensor/power_factor/state", "value"),
        ("tele/kitchen-plug/LWT", "value"),
    ],
)
def test_detect_format_falls_back_to_the_payload_for_other_topics(topic, expected):
    """Test that formats told only by config (shelly, esphome) detect as json/value."""
    payload = b'{"state": "online"}' if expected == "json" else b"Online"

    assert detect_format(_message(payload, topic)) == expected


def test_detect_format_knows_line_protocol_after_a_comment_line():
    """Test that line protocol starting with a # comment is detected as influx."""
    payload = b"# exported by a logger\ncpu usage_idle=97.5 1717200000000000000"

    assert detect_format(_message(payload)) == "influx"


def test_detect_format_knows_line_protocol_with_an_escaped_space():
    """Test that a measurement with an escaped space and no tags is line protocol."""
    payload = b"boiler\\ temp value=60.5"

    assert detect_format(_message(payload)) == "influx"


def test_detect_format_sends_multi_line_text_to_the_value_decoder():
    """Test that text that is no known format goes to the value decoder."""
    assert detect_format(_message(b"line1\nline2")) == "value"


@pytest.mark.parametrize(
    ("format_name", "decoder_type"),
    [
        ("json", JsonDecoder),
        ("value", ValueDecoder),
        ("influx", LineProtocolDecoder),
        ("senml", SenmlDecoder),
    ],
)
def test_make_decoder_builds_the_named_format(format_name, decoder_type):
    """Test that each simple format name builds its decoder, named like the format."""
    decoder = make_decoder(format_name, DecoderOptions())

    assert isinstance(decoder, decoder_type)
    assert decoder.name == format_name
    assert FORMATS[format_name].endswith(f":{decoder_type.__name__}")


def test_make_decoder_refuses_an_unknown_format_listing_the_known_ones():
    """Test that a misspelled format is a ConfigError naming the choices."""
    with pytest.raises(ConfigError, match="unknown payload format 'jsn'") as caught:
        make_decoder("jsn", DecoderOptions())

    assert caught.value.key == "format"
    assert "auto, chirpstack_v4" in caught.value.reason


def test_auto_decoder_decodes_each_message_in_its_own_format():
    """Test that "auto" stores JSON, SenML, bare values and line protocol alike."""
    decoder = make_decoder("auto", DecoderOptions())
    payloads = [
        b'{"temperature": 21.5}',
        b'[{"n": "temperature", "v": 21.5}]',
        b"21.5",
        b"hall temperature=21.5",
    ]

    lines = [
        encode_line(p)
        for payload in payloads
        for p in decoder.decode(
            _message(payload), "hall", {"room": "hall"}, "temp"
        ).points
    ]

    assert isinstance(decoder, AutoDecoder)
    assert lines == [
        f"hall,room=hall temperature=21.5 {RX_NS}",
        f"hall,room=hall temperature=21.5 {RX_NS}",
        f"hall,room=hall temp=21.5 {RX_NS}",
        f"hall,room=hall temperature=21.5 {RX_NS}",
    ]
