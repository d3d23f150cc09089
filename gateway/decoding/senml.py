"""Decode SenML JSON packs (RFC 8428): named readings with base values and times.

A pack is a JSON array of records. Base fields (``bn`` name, ``bt`` time,
``bu`` unit, ``bv`` value, ``bs`` sum) apply to their own record and every
record after it until replaced; a record's name is ``bn`` + ``n``, its time
``bt`` + ``t`` in seconds, its value ``bv`` + ``v``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

from gateway.decoding.base import Decoded, FieldReject
from gateway.decoding.options import DecoderOptions
from gateway.decoding.timestamps import format_ns
from gateway.decoding.values import load_json
from gateway.errors import PayloadError
from gateway.points import FieldValue, Point
from gateway.sources.mqtt import MqttMessage

__all__ = ["SUM_SUFFIX", "UNIT_TAG", "SenmlDecoder"]

logger = logging.getLogger(__name__)

# RFC 8428 4.5.3: a time below 2**28 s is relative to "now" (the receive time).
RELATIVE_TIME_LIMIT_S = 2**28
NS_PER_S = 1_000_000_000
UNIT_TAG = "unit"
SUM_SUFFIX = "_sum"
# The labels of RFC 8428 section 4; others are extensions and are ignored,
# except "must understand" ones (ending in "_"), which forbid using the pack.
_BASE_LABELS = frozenset({"bn", "bt", "bu", "bv", "bs", "bver"})
_VALUE_LABELS = ("v", "vs", "vb", "vd")


@dataclass(frozen=True, slots=True)
class _Base:
    """The base fields in force at one record of a pack."""

    name: str = ""
    time: Decimal = Decimal(0)
    unit: str = ""
    value: int | float = 0
    sum: int | float = 0


class _RecordError(ValueError):
    """One record cannot be used; carries a reason code."""

    def __init__(self, reason: str, detail: str) -> None:
        self.reason = reason
        super().__init__(detail)


class SenmlDecoder:
    """Turn a SenML pack into points: one per time and unit, a field per name.

    A record's full name (``bn`` + ``n``) is the field name; ``v`` (plus
    ``bv``) is stored as a float unless declared otherwise in `fields`,
    ``vs`` and ``vd`` as text (``vd`` keeps its base64 text), ``vb`` as a
    boolean. A sum (``s`` plus ``bs``) is stored in the field ``<name>_sum``,
    so a field never changes meaning between packs.

    The unit (``u``, else ``bu``) becomes the tag ``unit``: records sharing a
    time and a unit share a point, and a record without a unit goes to a
    point without that tag. As a tag, the unit stays next to every value in
    queries and legends, and the field name stays the sensor's own name even
    if a device changes its unit (the series then differ by their tag). A
    unit given by the payload replaces a ``unit`` tag of the subscription.

    Times are seconds: from 2**28 on they are absolute epoch seconds, below
    that they count from the receive time (0 is "now", -60 a minute ago);
    fractions are kept to the nanosecond. Records of different times give
    different points.

    A record that cannot be used (no name, no value, a value of the wrong
    JSON type, two values, a time outside the plausibility window) is left
    out and reported as a FieldReject; the others are stored. A record of
    base fields alone sets them and stores nothing. A pack that holds a
    "must understand" label (ending in ``_``) is refused whole, as RFC 8428
    requires, and so is a pack whose base fields have the wrong type, since
    every later record depends on them. `timestamp_key` does not apply;
    `payload_tags` reach into the array (``0.bn``).
    """

    name = "senml"

    def __init__(self, options: DecoderOptions | None = None) -> None:
        self._options = options or DecoderOptions()

    def decode(
        self,
        message: MqttMessage,
        measurement: str,
        tags: dict[str, str],
        field: str = "value",
    ) -> Decoded:
        """Decode one pack into points, or raise PayloadError."""
        pack = _load_pack(message)
        result = Decoded()
        groups, with_values = self._group_readings(
            pack, message, result.rejected_fields
        )

        extra_tags = self._options.tags_from(pack)
        for (time_ns, unit), fields in groups.items():
            if not fields:
                continue
            point_tags = {**tags, **extra_tags}
            if unit:
                point_tags[UNIT_TAG] = unit
            result.points.append(Point(measurement, point_tags, fields, time_ns))
        if not result.points:
            _refuse_empty(message, with_values, result.rejected_fields)
        return result

    def _group_readings(
        self, pack: list[Any], message: MqttMessage, rejects: list[FieldReject]
    ) -> tuple[dict[tuple[int, str], dict[str, FieldValue]], int]:
        """Return the fields of each (time, unit), and how many records hold values."""
        groups: dict[tuple[int, str], dict[str, FieldValue]] = {}
        base = _Base()
        with_values = 0
        for index, record in enumerate(pack):
            if isinstance(record, dict):
                base = _updated_base(base, record, index, message)
                if _BASE_LABELS.issuperset(record):
                    continue  # base fields alone: nothing to store
            with_values += 1
            try:
                time_ns, unit, readings = self._resolve(record, base, message)
            except _RecordError as exc:
                name = _record_name(record, base) or f"record {index}"
                rejects.append(FieldReject(name, exc.reason, f"record {index} {exc}"))
                continue
            fields = groups.setdefault((time_ns, unit), {})
            self._add_readings(fields, readings, rejects)
        return groups, with_values

    def _resolve(
        self, record: Any, base: _Base, message: MqttMessage
    ) -> tuple[int, str, list[tuple[str, Any]]]:
        """Return a record's time, unit and (field name, raw value) readings."""
        if not isinstance(record, dict):
            raise _RecordError(
                "invalid_record", f"is {type(record).__name__}, not an object"
            )
        name = base.name + _text(record, "n")
        if not name:
            raise _RecordError("missing_name", "has no name (n) and no base name (bn)")
        unit = _text(record, "u") or base.unit
        time_ns = self._record_time(record, base, message)
        readings: list[tuple[str, Any]] = []
        value = _record_value(record, base)
        if value is not None:
            readings.append((name, value))
        if "s" in record:
            readings.append((name + SUM_SUFFIX, _number(record, "s") + base.sum))
        return time_ns, unit, readings

    def _record_time(
        self, record: dict[str, Any], base: _Base, message: MqttMessage
    ) -> int:
        offset = _number(record, "t") if "t" in record else 0
        seconds = base.time + _exact(offset)
        if seconds >= RELATIVE_TIME_LIMIT_S:
            try:
                return self._options.read_time(format(seconds, "f"), message, "s")
            except PayloadError as exc:
                raise _RecordError(exc.reason, exc.detail) from None
        relative_ns = int((seconds * NS_PER_S).to_integral_value(ROUND_HALF_EVEN))
        if not -self._options.max_past_ns <= relative_ns <= self._options.max_future_ns:
            raise _RecordError(
                "implausible_timestamp",
                f"has a relative time of {seconds} s, which puts it at "
                f"{format_ns(message.received_ns + relative_ns)}, too far from the "
                f"receive time {format_ns(message.received_ns)}",
            )
        return message.received_ns + relative_ns

    def _add_readings(
        self,
        fields: dict[str, FieldValue],
        readings: list[tuple[str, Any]],
        rejects: list[FieldReject],
    ) -> None:
        options = self._options
        for name, raw in readings:
            if options.include and name not in options.include:
                continue
            value = options.typer.convert(name, raw)
            if isinstance(value, FieldReject):
                rejects.append(value)
                continue
            if name in fields:
                rejects.append(
                    FieldReject(
                        name,
                        "duplicate_record",
                        f"given twice for the same time and unit; kept {value!r}, "
                        f"left out {fields[name]!r}",
                    )
                )
            fields[name] = value


def _load_pack(message: MqttMessage) -> list[Any]:
    """Return the records of a pack; refuse what is not a usable SenML pack."""
    pack = load_json(message.payload, message.topic)
    if not isinstance(pack, list):
        raise PayloadError(
            "not_senml",
            f"expected a JSON array of SenML records, got {type(pack).__name__}",
            topic=message.topic,
        )
    for index, record in enumerate(pack):
        if not isinstance(record, dict):
            continue
        for label in record:
            if label.endswith("_"):
                raise PayloadError(
                    "unsupported_senml",
                    f"record {index} has the must-understand label {label!r}, "
                    "which this gateway does not know; RFC 8428 forbids using "
                    "such a pack",
                    topic=message.topic,
                )
    return pack


def _updated_base(
    base: _Base, record: dict[str, Any], index: int, message: MqttMessage
) -> _Base:
    """Return the base fields in force from `record` on."""
    if _BASE_LABELS.isdisjoint(record):
        return base
    try:
        changes: dict[str, Any] = {}
        if "bn" in record:
            changes["name"] = _text(record, "bn")
        if "bt" in record:
            changes["time"] = _exact(_number(record, "bt"))
        if "bu" in record:
            changes["unit"] = _text(record, "bu")
        if "bv" in record:
            changes["value"] = _number(record, "bv")
        if "bs" in record:
            changes["sum"] = _number(record, "bs")
    except _RecordError as exc:
        # Every later record depends on its base fields: guessing past a bad
        # one would file readings under wrong names, times or values.
        raise PayloadError(
            "invalid_senml", f"record {index} {exc}", topic=message.topic
        ) from None
    return replace(base, **changes)


def _record_name(record: Any, base: _Base) -> str:
    if not isinstance(record, dict):
        return ""
    name = record.get("n", "")
    return base.name + name if isinstance(name, str) else ""


def _record_value(record: dict[str, Any], base: _Base) -> Any:
    """Return a record's value (None if it has only a sum); raise if invalid."""
    present = [label for label in _VALUE_LABELS if label in record]
    if len(present) > 1:
        raise _RecordError(
            "invalid_record", f"has more than one value ({', '.join(present)})"
        )
    if not present:
        if "s" not in record:
            raise _RecordError(
                "missing_value", "has no value (v, vs, vb, vd) or sum (s)"
            )
        return None
    label = present[0]
    if label == "v":
        return _number(record, "v") + base.value
    if label == "vb":
        if not isinstance(record["vb"], bool):
            raise _RecordError("invalid_record", _wrong_type("vb", record, "a boolean"))
        return record["vb"]
    return _text(record, label)


def _number(record: dict[str, Any], label: str) -> int | float:
    value = record[label]
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _RecordError("invalid_record", _wrong_type(label, record, "a number"))
    return value


def _text(record: dict[str, Any], label: str) -> str:
    value = record.get(label, "")
    if not isinstance(value, str):
        raise _RecordError("invalid_record", _wrong_type(label, record, "text"))
    return value


def _wrong_type(label: str, record: dict[str, Any], expected: str) -> str:
    return f"has {label} {record[label]!r:.64}, which must be {expected}"


def _exact(number: int | float) -> Decimal:
    """Return the decimal the sender wrote: repr() is a float's shortest text."""
    if isinstance(number, float):
        if number != number or number in (float("inf"), float("-inf")):
            raise _RecordError("bad_timestamp", f"has a time of {number!r}")
        return Decimal(repr(number))
    return Decimal(number)


def _refuse_empty(
    message: MqttMessage, records_with_values: int, rejects: list[FieldReject]
) -> None:
    """Raise PayloadError for a pack that gave no point, unless `include` chose."""
    if not records_with_values:
        raise PayloadError(
            "no_records",
            "the SenML pack holds no record with a value",
            topic=message.topic,
        )
    if not rejects:
        return  # every reading was left out by `include`: nothing wanted here
    first = rejects[0]
    more = f" (and {len(rejects) - 1} more)" if len(rejects) > 1 else ""
    raise PayloadError(
        first.reason,
        f"no record could be stored: {first.field}: {first.detail}{more}",
        topic=message.topic,
    )
