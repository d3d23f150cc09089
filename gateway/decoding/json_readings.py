"""Decode JSON objects of readings, flat or nested, with an optional timestamp."""

from __future__ import annotations

from gateway.decoding.base import Decoded
from gateway.decoding.options import DecoderOptions
from gateway.decoding.values import MAX_NESTING_DEPTH, load_json_object
from gateway.sources.mqtt import MqttMessage

__all__ = ["MAX_NESTING_DEPTH", "JsonDecoder"]


class JsonDecoder:
    """Turn a JSON object into one point; nested keys are joined with ``_``.

    Numbers become float fields unless the subscription declares another type,
    so a field never changes type between messages; booleans and strings keep
    their type. Array elements become ``<key>_<index>``. A null, NaN or
    infinity is left out, and so is any value that does not fit its declared
    type; each is reported as a FieldReject while the rest is stored.
    """

    name = "json"

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
        document = load_json_object(
            message.payload, message.topic, "a JSON object of readings"
        )
        return self._options.object_point(document, message, measurement, tags)
