"""Decode JSON objects of readings, flat or nested, with an optional timestamp."""

from __future__ import annotations

import json
import logging
import math
import re
from datetime import UTC, datetime
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any, Literal

import orjson

from gateway.decoding.base import Decoded, FieldReject
from gateway.errors import PayloadError
from gateway.points import INT64_MAX, INT64_MIN, FieldValue, Point
from gateway.sources.mqtt import MqttMessage

__all__ = ["JsonDecoder", "parse_timestamp"]

logger = logging.getLogger(__name__)

KEY_SEPARATOR = "_"
RESERVED_FIELD_KEY = "time"
MAX_NESTING_DEPTH = 16
TimestampUnit = Literal["auto", "s", "ms", "us", "ns"]
_UNIT_TO_NS = {"s": 1_000_000_000, "ms": 1_000_000, "us": 1_000, "ns": 1}
# Decimal digits of an epoch number sent as text, e.g. "1717200000.5".
_EPOCH_TEXT = re.compile(r"[0-9]+(\.[0-9]+)?")
# The fraction of the seconds; datetime keeps only µs, so we read it ourselves.
_ISO_FRACTION = re.compile(r"(?<=[0-9]{2})[.,]([0-9]+)")
# A JSON string (skipped whole, even if unterminated, so the scan stays linear),
# or a bare NaN / nan / -nan / inf / Infinity token outside strings.
_NON_FINITE_TOKEN = re.compile(
    r'"(?:[^"\\]|\\.)*"?|(?<![\w.])(-?)(nan|inf(?:inity)?)(?![\w.])',
    re.IGNORECASE | re.DOTALL,
)


class JsonDecoder:
    """Turn a JSON object into one point; nested keys are joined with ``_``.

    Numbers become float fields, so a field never changes type between
    messages; booleans and strings keep their type. Array elements become
    ``<key>_<index>``. A null is left out, and so is any value InfluxDB cannot
    hold (NaN and infinity, which firmware writes as bare tokens that JSON does
    not have); each such value is reported as a FieldReject.
    """

    def __init__(
        self, timestamp_key: str = "ts", timestamp_unit: TimestampUnit = "auto"
    ):
        self._timestamp_key = timestamp_key
        self._timestamp_unit = timestamp_unit

    def decode(
        self, message: MqttMessage, measurement: str, tags: dict[str, str]
    ) -> Decoded:
        """Decode one message into a point, or raise PayloadError."""
        document = _load_json(message)
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
                raise PayloadError(
                    "bad_timestamp", str(exc), topic=message.topic
                ) from None

        result = Decoded()
        fields: dict[str, FieldValue] = {}
        _flatten(document, "", fields, result.rejected_fields, depth=0)
        if RESERVED_FIELD_KEY in fields:
            # InfluxDB keeps "time" for the timestamp and drops or refuses such
            # a field; leave it out alone rather than lose the whole point.
            del fields[RESERVED_FIELD_KEY]
            result.rejected_fields.append(
                FieldReject(
                    RESERVED_FIELD_KEY,
                    "reserved_key",
                    "InfluxDB reserves 'time' for the timestamp; set timestamp_key "
                    '= "time" if it is the reading time',
                )
            )
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
        raw: epoch seconds/ms/µs/ns as a number or as decimal text ("1717200000"),
            or ISO-8601 text (no zone: UTC; fractions kept to the nanosecond).
        unit: the unit of a number; "auto" tells it by magnitude.
    """
    if isinstance(raw, bool) or raw is None:
        raise ValueError(f"timestamp must be a number or ISO-8601 text, got {raw!r}")
    if isinstance(raw, int):
        time_ns = _epoch_to_ns(Decimal(raw), unit, raw)
    elif isinstance(raw, float):
        if not math.isfinite(raw):
            raise ValueError(f"timestamp must be finite, got {raw!r}")
        # repr() gives the shortest text that reads back as this float: the digits
        # the device sent. Scaling the float itself would round 1717200000.123 s
        # to ...122999808 ns.
        time_ns = _epoch_to_ns(Decimal(repr(raw)), unit, raw)
    elif isinstance(raw, str) and _EPOCH_TEXT.fullmatch(raw):
        time_ns = _epoch_to_ns(Decimal(raw), unit, raw)
    elif isinstance(raw, str):
        time_ns = _iso_to_ns(raw)
    else:
        raise ValueError(
            f"timestamp must be a number or ISO-8601 text, got {_shown(raw)}"
        )
    if not INT64_MIN <= time_ns <= INT64_MAX:
        raise ValueError(
            f"timestamp {_shown(raw)} is outside the years 1677-2262 "
            "that InfluxDB can store"
        )
    return time_ns


def _epoch_to_ns(number: Decimal, unit: TimestampUnit, raw: object) -> int:
    if number < 0:
        raise ValueError(f"timestamp must not be negative, got {_shown(raw)}")
    scale = _UNIT_TO_NS[_guess_unit(number) if unit == "auto" else unit]
    return int((number * scale).to_integral_value(ROUND_HALF_EVEN))


def _iso_to_ns(text: str) -> int:
    fraction_ns = 0
    whole_seconds = text
    fraction = _ISO_FRACTION.search(text)
    if fraction:
        # Digits past the ninth are below a nanosecond: cut, as datetime does.
        fraction_ns = int(fraction.group(1)[:9].ljust(9, "0"))
        whole_seconds = text[: fraction.start()] + text[fraction.end() :]
    try:
        moment = datetime.fromisoformat(whole_seconds)
    except ValueError:
        raise ValueError(f"timestamp {text[:64]!r} is not ISO-8601") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    delta = moment - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000_000 + fraction_ns


def _shown(raw: object) -> str:
    return repr(raw)[:64]


def _guess_unit(value: Decimal) -> Literal["s", "ms", "us", "ns"]:
    # Epoch seconds stay below 1e11 until the year 5138; each unit after that
    # is a thousand times larger, so magnitude alone tells them apart.
    if value < 10**11:
        return "s"
    if value < 10**14:
        return "ms"
    if value < 10**17:
        return "us"
    return "ns"


def _load_json(message: MqttMessage) -> Any:
    try:
        return orjson.loads(message.payload)
    except orjson.JSONDecodeError as exc:
        error = PayloadError("invalid_json", str(exc), topic=message.topic)

    # Firmware sends an unavailable reading as NaN, nan, -nan or inf, which JSON
    # has no token for, so orjson refuses the whole document. Read those tokens
    # as non-finite floats instead; _flatten then leaves out only those fields.
    try:
        text = message.payload.decode("utf-8")
    except UnicodeDecodeError:
        raise error from None
    found = 0

    def standard_token(match: re.Match[str]) -> str:
        nonlocal found
        if match.group(2) is None:
            return match.group(0)
        found += 1
        if match.group(2).lower() == "nan":
            return "NaN"
        return "-Infinity" if match.group(1) else "Infinity"

    text = _NON_FINITE_TOKEN.sub(standard_token, text)
    if not found:
        raise error from None
    try:
        document = json.loads(text)
        # The stdlib parser is laxer than orjson (lone surrogates, integers past
        # 64 bits); refuse here whatever orjson would have refused.
        orjson.dumps(document)
    except (ValueError, TypeError, RecursionError):
        raise error from None
    return document


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
    elif isinstance(value, float) and not math.isfinite(value):
        detail = f"value is {value}, which InfluxDB cannot store"
        rejects.append(FieldReject(key, "non_finite", detail))
    elif isinstance(value, float):
        fields[key] = value
    elif value is None:
        rejects.append(FieldReject(key, "null_value", "value is null"))
    else:
        rejects.append(
            FieldReject(key, "unsupported_value", f"unsupported {type(value).__name__}")
        )
