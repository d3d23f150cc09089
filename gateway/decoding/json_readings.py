"""Decode JSON objects of readings, flat or nested, with an optional timestamp."""

from __future__ import annotations

import logging
import math
from datetime import UTC, datetime
from typing import Any, Literal

import orjson

from gateway.decoding.base import Decoded, FieldReject
from gateway.errors import PayloadError
from gateway.points import FieldValue, Point
from gateway.sources.mqtt import MqttMessage

__all__ = ["JsonDecoder", "parse_timestamp"]

logger = logging.getLogger(__name__)

KEY_SEPARATOR = "_"
MAX_NESTING_DEPTH = 16
TimestampUnit = Literal["auto", "s", "ms", "us", "ns"]
_UNIT_TO_NS = {"s": 1_000_000_000, "ms": 1_000_000, "us": 1_000, "ns": 1}


class JsonDecoder:
    """Turn a JSON object into one point; nested keys are joined with ``_``.

    Numbers become float fields, so a field never changes type between
    messages; booleans and strings keep their type. Array elements become
    ``<key>_<index>``. A null is left out, and so is any value InfluxDB cannot
    hold; each such value is reported as a FieldReject.
    """

    def __init__(self, timestamp_key: str = "ts", timestamp_unit: TimestampUnit = "auto"):
        self._timestamp_key = timestamp_key
        self._timestamp_unit = timestamp_unit

    def decode(
        self, message: MqttMessage, measurement: str, tags: dict[str, str]
    ) -> Decoded:
        """Decode one message into a point, or raise PayloadError."""
        try:
            document = orjson.loads(message.payload)
        except orjson.JSONDecodeError as exc:
            raise PayloadError("invalid_json", str(exc), topic=message.topic) from None
        if not isinstance(document, dict):
            raise PayloadError(
                "not_an_object",
                f"expected a JSON object of readings, got {type(document).__name__}",
                topic=message.topic,
            )

        time_ns = message.received_ns
        if self._timestamp_key and self._timestamp_key in document:
            raw_time = document.pop(self._timestamp_key)
            try:
                time_ns = parse_timestamp(raw_time, self._timestamp_unit)
            except ValueError as exc:
                raise PayloadError("bad_timestamp", str(exc), topic=message.topic) from None

        result = Decoded()
        fields: dict[str, FieldValue] = {}
        _flatten(document, "", fields, result.rejected_fields, depth=0)
        if not fields:
            reasons = sorted({r.reason for r in result.rejected_fields}) or ["empty"]
            raise PayloadError(
                "no_fields",
                "no storable value in the message"
                + (f" ({', '.join(reasons)})" if result.rejected_fields else ""),
                topic=message.topic,
            )
        result.points.append(Point(measurement, tags, fields, time_ns))
        return result


def parse_timestamp(raw: Any, unit: TimestampUnit = "auto") -> int:
    """Return a reading time in ns since the epoch from a number or ISO-8601 text.

    Args:
        raw: epoch seconds/ms/µs/ns as a number, or ISO-8601 text (no zone: UTC).
        unit: the unit of a number; "auto" tells it by magnitude.
    """
    if isinstance(raw, bool) or raw is None:
        raise ValueError(f"timestamp must be a number or ISO-8601 text, got {raw!r}")
    if isinstance(raw, int | float):
        if isinstance(raw, float) and not math.isfinite(raw):
            raise ValueError(f"timestamp must be finite, got {raw!r}")
        if raw < 0:
            raise ValueError(f"timestamp must not be negative, got {raw!r}")
        scale = _UNIT_TO_NS[_guess_unit(raw) if unit == "auto" else unit]
        return int(raw) * scale if isinstance(raw, int) else round(raw * scale)
    if isinstance(raw, str):
        try:
            moment = datetime.fromisoformat(raw)
        except ValueError:
            raise ValueError(f"timestamp {raw[:64]!r} is not ISO-8601") from None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        delta = moment - datetime(1970, 1, 1, tzinfo=UTC)
        return (delta.days * 86_400 + delta.seconds) * 1_000_000_000 + (
            delta.microseconds * 1_000
        )
    raise ValueError(f"timestamp must be a number or ISO-8601 text, got {raw!r}")


def _guess_unit(value: float) -> Literal["s", "ms", "us", "ns"]:
    # Epoch seconds stay below 1e11 until the year 5138; each unit after that
    # is a thousand times larger, so magnitude alone tells them apart.
    if value < 1e11:
        return "s"
    if value < 1e14:
        return "ms"
    if value < 1e17:
        return "us"
    return "ns"


def _flatten(
    value: Any,
    key: str,
    fields: dict[str, FieldValue],
    rejects: list[FieldReject],
    depth: int,
) -> None:
    if isinstance(value, dict):
        if depth >= MAX_NESTING_DEPTH:
            rejects.append(FieldReject(key, "too_deep", "nested too deeply"))
            return
        for child_key, child in value.items():
            if not child_key:
                rejects.append(FieldReject(key, "empty_key", "a key is empty"))
                continue
            name = f"{key}{KEY_SEPARATOR}{child_key}" if key else child_key
            _flatten(child, name, fields, rejects, depth + 1)
    elif isinstance(value, list):
        if depth >= MAX_NESTING_DEPTH:
            rejects.append(FieldReject(key, "too_deep", "nested too deeply"))
            return
        for index, child in enumerate(value):
            _flatten(child, f"{key}{KEY_SEPARATOR}{index}", fields, rejects, depth + 1)
    elif isinstance(value, bool | str):
        fields[key] = value
    elif isinstance(value, int):
        fields[key] = float(value)
    elif isinstance(value, float):
        fields[key] = value
    elif value is None:
        rejects.append(FieldReject(key, "null_value", "value is null"))
    else:
        rejects.append(
            FieldReject(key, "unsupported_value", f"unsupported {type(value).__name__}")
        )
