"""Read reading times: epoch numbers in any unit, epoch text, and ISO-8601."""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime, tzinfo
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any, Literal

from gateway.points import INT64_MAX, INT64_MIN

__all__ = ["NaiveTimestamp", "TimestampUnit", "format_ns", "parse_timestamp"]

TimestampUnit = Literal["auto", "s", "ms", "us", "ns"]
_UNIT_TO_NS = {"s": 1_000_000_000, "ms": 1_000_000, "us": 1_000, "ns": 1}
# Decimal digits of an epoch number sent as text, e.g. "1717200000.5".
_EPOCH_TEXT = re.compile(r"[0-9]+(\.[0-9]+)?")
# The fraction of the seconds; datetime keeps only µs, so we read it ourselves.
_ISO_FRACTION = re.compile(r"(?<=[0-9]{2})[.,]([0-9]+)")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class NaiveTimestamp(ValueError):
    """ISO-8601 text without a zone offset, and no zone configured to read it in."""


def parse_timestamp(
    raw: Any, unit: TimestampUnit = "auto", zone: tzinfo | None = UTC
) -> int:
    """Return a reading time in ns since the epoch from a number or text.

    Args:
        raw: epoch seconds/ms/µs/ns as a number or as decimal text ("1717200000"),
            or ISO-8601 text; fractions are kept to the nanosecond.
        unit: the unit of a number; "auto" tells it by magnitude.
        zone: the zone of ISO-8601 text without an offset; None raises
            NaiveTimestamp for such text rather than guess.
    """
    if isinstance(raw, bool) or raw is None:
        raise ValueError(f"timestamp must be a number or ISO-8601 text, got {raw!r}")
    if isinstance(raw, int):
        # Whole numbers scale exactly in integers: no Decimal needed, and
        # this is the common case (one per reading).
        if raw < 0:
            raise ValueError(f"timestamp must not be negative, got {_shown(raw)}")
        time_ns = raw * _UNIT_TO_NS[_guess_unit(raw) if unit == "auto" else unit]
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
        time_ns = _iso_to_ns(raw, zone)
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


def format_ns(time_ns: int) -> str:
    """Return a time in ns as ISO-8601 UTC text, for messages."""
    seconds, fraction = divmod(time_ns, 1_000_000_000)
    try:
        moment = datetime.fromtimestamp(seconds, UTC)
    except (OverflowError, OSError, ValueError):
        return f"{time_ns} ns"
    return moment.strftime("%Y-%m-%dT%H:%M:%S") + f".{fraction:09d}Z"


def _epoch_to_ns(number: Decimal, unit: TimestampUnit, raw: object) -> int:
    if number < 0:
        raise ValueError(f"timestamp must not be negative, got {_shown(raw)}")
    scale = _UNIT_TO_NS[_guess_unit(number) if unit == "auto" else unit]
    return int((number * scale).to_integral_value(ROUND_HALF_EVEN))


def _iso_to_ns(text: str, zone: tzinfo | None) -> int:
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
        if zone is None:
            raise NaiveTimestamp(f"timestamp {text[:64]!r} has no zone offset")
        # The zone database gives the offset in force on that date (DST).
        moment = moment.replace(tzinfo=zone)
    delta = moment - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000_000 + fraction_ns


def _shown(raw: object) -> str:
    return repr(raw)[:64]


def _guess_unit(value: Decimal | int) -> Literal["s", "ms", "us", "ns"]:
    # Epoch seconds stay below 1e11 until the year 5138; each unit after that
    # is a thousand times larger, so magnitude alone tells them apart.
    if value < 10**11:
        return "s"
    if value < 10**14:
        return "ms"
    if value < 10**17:
        return "us"
    return "ns"
