"""Decode a payload that is one bare reading: a number, a switch state or text.

ESPHome state topics, Tasmota's stat topics and many small firmwares publish a
single value per topic (``21.5``, ``ON``, ``partially open``); the topic names
the device and the quantity, the subscription's `field` names the field.
"""

from __future__ import annotations

import logging
import math
import re

import orjson

from gateway.decoding.base import Decoded, FieldReject
from gateway.decoding.options import DecoderOptions
from gateway.errors import PayloadError
from gateway.points import FieldValue, Point
from gateway.sources.mqtt import MqttMessage

__all__ = ["ValueDecoder", "read_bare_value"]

logger = logging.getLogger(__name__)

# A decimal number as firmware writes it: 21, -3.5, .5, 1e3, +7.
_NUMBER = re.compile(r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?")
# What firmware prints for a reading it does not have (C03): nan, -nan, inf.
_NON_FINITE = re.compile(r"[-+]?(?:nan|inf(?:inity)?)", re.IGNORECASE)
# Switch states, in any letter case: Tasmota and Zigbee2MQTT send ON / OFF.
_BOOLEAN_TEXT = {"true": True, "on": True, "false": False, "off": False}
_NUMERIC_TYPES = frozenset({"float", "integer", "unsigned"})
# The UTF-8 byte order mark some Windows tools put before text.
_BOM = "\ufeff"
MAX_SHOWN_CHARS = 64


class ValueDecoder:
    """Turn one bare value into one point whose field the topic names.

    An undeclared value is stored as a float if it reads as a decimal number,
    as a boolean if it is true/false/on/off (any letter case), and as text
    otherwise; surrounding whitespace is removed. A value in JSON string
    quotes (``"21.5"``) is text. A field declared in `fields` gets the declared
    type from the payload's text, so ``"01042"`` declared string keeps its
    leading zero and ``4.5`` declared integer is refused. The point takes the
    receive time: a bare value carries no time of its own.

    Refused, with no point: an empty payload, bytes that are not UTF-8, a
    JSON ``null``, NaN or infinity (reason ``non_finite``), a value that does
    not fit its declared type, and a JSON object or array: a status object
    sent to a topic configured as a bare value must never be read for a
    number found somewhere inside it. A field left out by `include` is
    skipped silently, so `include` can pick a few sensors out of a
    ``{sensor}`` field name.

    A topic whose firmware sometimes sends text ("unavailable") where it
    usually sends numbers should declare its field ``float``: the text is
    then refused here, instead of reaching InfluxDB as a string into a float
    field, which it refuses as a type conflict. Likewise a text field whose
    words include on/off should be declared ``string``.
    """

    name = "value"

    def __init__(self, options: DecoderOptions | None = None) -> None:
        self._options = options or DecoderOptions()

    def decode(
        self,
        message: MqttMessage,
        measurement: str,
        tags: dict[str, str],
        field: str = "value",
    ) -> Decoded:
        """Decode one message into a point, or raise PayloadError."""
        if not field:
            raise PayloadError(
                "empty_field",
                "the field name is empty for this topic",
                topic=message.topic,
            )
        if self._options.include and field not in self._options.include:
            return Decoded()
        value = read_bare_value(message, field, self._options)
        if isinstance(value, FieldReject):
            raise PayloadError(
                value.reason, f"{value.field}: {value.detail}", topic=message.topic
            )
        point = Point(measurement, dict(tags), {field: value}, message.received_ns)
        return Decoded(points=[point])


def read_bare_value(
    message: MqttMessage, field: str, options: DecoderOptions
) -> FieldValue | FieldReject:
    """Return the field value a bare payload holds, or a FieldReject saying why not.

    Raises PayloadError when the payload is not a bare value at all (empty,
    not UTF-8, a JSON object or array).
    """
    text = _payload_text(message)
    if text == "null":
        return FieldReject(field, "null_value", "value is null")
    quoted = _json_string(text)
    declared = options.typer.declared(field)
    if declared in _NUMERIC_TYPES and _NON_FINITE.fullmatch(text):
        return FieldReject(
            field, "non_finite", f"{_shown(text)} is not a number InfluxDB can store"
        )
    if declared is not None:
        # The declared type reads the text itself, so a 64-bit integer keeps
        # every digit and "01042.5170" declared string keeps its zeros.
        return options.typer.convert(field, text if quoted is None else quoted)
    if quoted is not None:
        return quoted
    if _NUMBER.fullmatch(text):
        number = float(text)
        if math.isfinite(number):
            return number
        return FieldReject(field, "non_finite", f"{_shown(text)} is out of float range")
    if _NON_FINITE.fullmatch(text):
        return FieldReject(
            field, "non_finite", f"{_shown(text)} is not a number InfluxDB can store"
        )
    return _BOOLEAN_TEXT.get(text.lower(), text)


def _payload_text(message: MqttMessage) -> str:
    """Return the payload as stripped text; refuse what is not one bare value."""
    try:
        text = message.payload.decode("utf-8")
    except UnicodeDecodeError as exc:
        bad_byte = exc.object[exc.start]
        raise PayloadError(
            "invalid_utf8",
            f"payload is not UTF-8 text (byte {exc.start} is {bad_byte:#04x})",
            topic=message.topic,
        ) from None
    text = text.removeprefix(_BOM).strip()
    if not text:
        raise PayloadError(
            "empty_payload",
            "payload is empty; expected one number, boolean or text",
            topic=message.topic,
        )
    # A Shelly status object on a topic configured as a bare value (C07 A1):
    # parsers that take "the last token" store a fragment such as 140.7.
    if text[0] in "{[":
        raise PayloadError("not_a_value", _describe_json(text), topic=message.topic)
    return text


def _describe_json(text: str) -> str:
    kind = "object" if text[0] == "{" else "array"
    try:
        orjson.loads(text)
    except orjson.JSONDecodeError:
        return (
            f"payload looks like a JSON {kind} (starts with {text[0]!r}), not a plain "
            "value; no value is read from it"
        )
    return (
        f"payload is a JSON {kind}, not a plain value; configure this topic with "
        'format = "json" (or the device\'s own format) to store its readings'
    )


def _json_string(text: str) -> str | None:
    """Return the content of a JSON string ("ok"), or None if `text` is not one."""
    if len(text) < 2 or text[0] != '"' or text[-1] != '"':
        return None
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError:
        return None
    return value if isinstance(value, str) else None


def _shown(text: str) -> str:
    return repr(text[:MAX_SHOWN_CHARS])
