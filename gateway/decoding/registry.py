"""Find the decoder for a payload format, and pick one per message for "auto"."""

from __future__ import annotations

import importlib
import re

from gateway.decoding.base import Decoded, Decoder
from gateway.decoding.options import DecoderOptions
from gateway.errors import ConfigError
from gateway.sources.mqtt import MqttMessage, topic_matches

__all__ = ["FORMATS", "AutoDecoder", "detect_format", "make_decoder"]

# Format name -> "module:class". Imported on first use, so a format's
# dependencies (protobuf for Sparkplug) load only when it is configured.
FORMATS: dict[str, str] = {
    "json": "gateway.decoding.json_readings:JsonDecoder",
    "value": "gateway.decoding.bare_value:ValueDecoder",
    "influx": "gateway.decoding.line_protocol:LineProtocolDecoder",
    "senml": "gateway.decoding.senml:SenmlDecoder",
    "tasmota": "gateway.decoding.tasmota:TasmotaDecoder",
    "zigbee2mqtt": "gateway.decoding.zigbee2mqtt:Zigbee2MqttDecoder",
    "shelly": "gateway.decoding.shelly:ShellyStatusDecoder",
    "shelly_rpc": "gateway.decoding.shelly:ShellyRpcDecoder",
    "esphome": "gateway.decoding.esphome:EsphomeDecoder",
    "tts_v3": "gateway.decoding.lorawan:TtsV3Decoder",
    "chirpstack_v4": "gateway.decoding.lorawan:ChirpstackV4Decoder",
    "sparkplug_b": "gateway.decoding.sparkplug:SparkplugDecoder",
}

# Topic shapes that name their format beyond doubt, checked in order.
_TOPIC_FORMATS: tuple[tuple[str, str], ...] = (
    ("spBv1.0/#", "sparkplug_b"),
    ("tele/+/SENSOR", "tasmota"),
    ("tele/+/STATE", "tasmota"),
    ("v3/+/devices/+/up", "tts_v3"),
    ("application/+/device/+/event/up", "chirpstack_v4"),
    ("+/events/rpc", "shelly_rpc"),
    ("zigbee2mqtt/+", "zigbee2mqtt"),
)
_NUMBER = re.compile(rb"\s*[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?\s*")
_BARE_WORDS = frozenset(
    {b"true", b"false", b"on", b"off", b"nan", b"-nan", b"inf", b"-inf"}
)
# measurement[,tags] field=value[ time]: a first line shaped like line protocol.
_LINE_PROTOCOL = re.compile(rb"(?:[^\s,#\\]|\\.)(?:[^\s\\]|\\.)*\s+[^\s=]+=[^\s]")
UTF8_BOM = b"\xef\xbb\xbf"


def make_decoder(format_name: str, options: DecoderOptions) -> Decoder:
    """Return a decoder of the named format, configured with `options`."""
    if format_name == "auto":
        return AutoDecoder(options)
    target = FORMATS.get(format_name)
    if target is None:
        raise ConfigError(
            f"unknown payload format {format_name!r} (known: "
            f"{', '.join(['auto', *sorted(FORMATS)])})",
            key="format",
        )
    module_name, class_name = target.split(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        raise ConfigError(
            f"payload format {format_name!r} is not available here ({exc})",
            key="format",
        ) from None
    decoder: Decoder = getattr(module, class_name)(options)
    return decoder


def detect_format(message: MqttMessage) -> str:
    """Guess a message's format from its topic, then from its first bytes."""
    for topic_filter, format_name in _TOPIC_FORMATS:
        if topic_matches(topic_filter, message.topic):
            return format_name
    head = message.payload.removeprefix(UTF8_BOM).lstrip()[:1]
    if head == b"{":
        return "json"
    if head == b"[":
        return "senml"
    stripped = message.payload.removeprefix(UTF8_BOM).strip()
    if _NUMBER.fullmatch(stripped) or stripped.lower() in _BARE_WORDS:
        return "value"
    # Line protocol may start with blank or comment lines.
    lines = (line.strip() for line in stripped.split(b"\n"))
    first = next((line for line in lines if line and not line.startswith(b"#")), b"")
    if _LINE_PROTOCOL.match(first):
        return "influx"
    return "value"


class AutoDecoder:
    """Decode each message with the format its topic or payload shows."""

    name = "auto"

    def __init__(self, options: DecoderOptions) -> None:
        self._options = options
        self._decoders: dict[str, Decoder] = {}

    def decode(
        self,
        message: MqttMessage,
        measurement: str,
        tags: dict[str, str],
        field: str = "value",
    ) -> Decoded:
        """Decode with the detected format's decoder."""
        format_name = detect_format(message)
        decoder = self._decoders.get(format_name)
        if decoder is None:
            decoder = make_decoder(format_name, self._options)
            self._decoders[format_name] = decoder
        return decoder.decode(message, measurement, tags, field)
