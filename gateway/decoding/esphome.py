"""Decode ESPHome MQTT state topics: one plain-text reading per message.

ESPHome publishes each entity's state on
``<node>/<component type>/<object id>/state`` as text: ``23.5`` from a
sensor, ``ON``/``OFF`` from a binary sensor or switch, any text from a text
sensor. The topic template names the measurement and tags (for example
``{node}/+/{sensor}/state``) and ``field`` names the field; the time is the
receive time.

Values are typed from the text, so one entity keeps one type: a decimal
number is a float, ``ON``/``OFF`` a boolean, other text a string. The state
of a text sensor, select, text, date or time entity is always a string, even
when it looks like a number. A declared type in ``fields`` wins over all
this. ``nan`` (a sensor with no reading) or ``inf`` stores nothing: the
message is refused with reason ``non_finite`` and a warning is logged, at
most once a minute per topic. A JSON object (a light's state) becomes one
point of its keys, as the ``json`` format does.

``<node>/status`` (``online``/``offline``: liveness), ``<node>/debug`` (log
lines) and ``.../command`` topics (commands to the device) are not
telemetry: no point, no error.

InfluxDB 1.x gives a field one type per measurement, not per series: a
sensor's float ``value`` and a binary sensor's boolean ``value`` in one
measurement conflict, and InfluxDB refuses whichever type comes second. Give
each component type its own measurement (template
``{node}/{component}/{sensor}/state``, measurement ``esphome_{component}``)
or each entity its own field (``field = "{sensor}"``).
"""

from __future__ import annotations

import logging
import math
import re
from typing import NoReturn

from gateway.decoding.base import Decoded, FieldReject
from gateway.decoding.options import DecoderOptions
from gateway.decoding.values import load_json
from gateway.errors import PayloadError
from gateway.points import FieldValue, Point
from gateway.sources.mqtt import MqttMessage

__all__ = ["EsphomeDecoder"]

logger = logging.getLogger(__name__)

# Last topic level -> what the topic carries instead of a reading.
NOT_STATE_LEVELS = {"status": "availability", "debug": "log line", "command": "command"}
STATE_LEVEL = "state"
TEXT_COMPONENTS = frozenset(
    {"text_sensor", "select", "text", "date", "time", "datetime"}
)
BOOLEAN_TEXT = {"ON": True, "OFF": False}
NON_FINITE_TEXT = frozenset(
    {"nan", "-nan", "+nan", "inf", "-inf", "+inf", "infinity", "-infinity"}
)
_DECIMAL = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?")


class EsphomeDecoder:
    """Turn one ESPHome state message into one point with one field."""

    name = "esphome"

    def __init__(self, options: DecoderOptions | None = None) -> None:
        self._options = options or DecoderOptions()

    def decode(
        self,
        message: MqttMessage,
        measurement: str,
        tags: dict[str, str],
        field: str = "value",
    ) -> Decoded:
        """Decode one state message into a point, or raise PayloadError."""
        levels = message.topic.split("/")
        not_state = NOT_STATE_LEVELS.get(levels[-1])
        if not_state:
            logger.debug("ESPHome %s on %r, nothing stored", not_state, message.topic)
            return Decoded()
        text = _payload_text(message)
        is_text_state = _is_text_entity(levels)
        if text.startswith("{") and not is_text_state:
            document = load_json(message.payload, message.topic)
            if isinstance(document, dict):
                return self._options.object_point(document, message, measurement, tags)

        include = self._options.include
        if include and field not in include:
            raise PayloadError(
                "no_fields", f"field {field!r} is not in include", topic=message.topic
            )
        value = self._value(field, text, is_text_state, message)
        return Decoded(
            points=[Point(measurement, dict(tags), {field: value}, message.received_ns)]
        )

    def _value(
        self, field: str, text: str, is_text_state: bool, message: MqttMessage
    ) -> FieldValue:
        """Return the field value of the text, or raise PayloadError."""
        typer = self._options.typer
        if typer.declared(field) is not None:
            converted = typer.convert(field, text)
            if isinstance(converted, FieldReject):
                self._refuse(converted, text, message)
            return converted
        if is_text_state:
            return text
        number = float(text) if _DECIMAL.fullmatch(text) else None
        if text.lower() in NON_FINITE_TEXT or (
            number is not None and not math.isfinite(number)
        ):
            self._refuse(
                FieldReject(field, "non_finite", f"{text[:64]!r} is not a reading"),
                text,
                message,
            )
        if number is not None:
            return number
        return BOOLEAN_TEXT.get(text, text)

    def _refuse(self, reject: FieldReject, text: str, message: MqttMessage) -> NoReturn:
        # The app logs a refused message at warning, rate-limited per topic.
        raise PayloadError(
            reject.reason, f"{reject.field}: {reject.detail}", topic=message.topic
        )


def _payload_text(message: MqttMessage) -> str:
    try:
        text = message.payload.decode("utf-8").strip()
    except UnicodeDecodeError:
        raise PayloadError(
            "not_text", "payload is not UTF-8 text", topic=message.topic
        ) from None
    if not text:
        raise PayloadError("empty_payload", "payload is empty", topic=message.topic)
    return text


def _is_text_entity(levels: list[str]) -> bool:
    """Tell whether the topic is the main state of a text-valued entity."""
    return (
        len(levels) >= 4 and levels[-1] == STATE_LEVEL and levels[-3] in TEXT_COMPONENTS
    )
