"""Points: the records the gateway writes to InfluxDB, and their line protocol."""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = [
    "FieldValue",
    "INT64_MAX",
    "INT64_MIN",
    "Point",
    "encode_line",
    "escape_field_key",
    "escape_measurement",
    "escape_tag",
]

INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1

# A Python int is written as an InfluxDB integer field ("42i"); a float as a float.
# Decoders decide which one a reading becomes, so that a field keeps one type.
FieldValue = float | int | bool | str

# Line protocol cannot carry a raw newline anywhere: it ends the line. We write
# newlines and carriage returns as the two characters "\n" / "\r" (documented in
# the README), so the point is stored instead of breaking the whole request.
_NEWLINES = {ord("\n"): "\\n", ord("\r"): "\\r"}
_MEASUREMENT_ESCAPES = str.maketrans({",": "\\,", " ": "\\ ", **_NEWLINES})
_TAG_ESCAPES = str.maketrans({",": "\\,", " ": "\\ ", "=": "\\=", **_NEWLINES})
_STRING_ESCAPES = str.maketrans(
    {'"': '\\"', "\\": "\\\\", "\n": "\\\\n", "\r": "\\\\r"}
)
_NEEDS_TAG_ESCAPE = frozenset(", =\n\r\\")


@dataclass(frozen=True, slots=True)
class Point:
    """One record for InfluxDB: measurement, tags, fields and a time in ns."""

    measurement: str
    tags: dict[str, str]
    fields: dict[str, FieldValue]
    time_ns: int


def escape_measurement(name: str) -> str:
    """Escape a measurement name for line protocol."""
    return _escape_name(name, _MEASUREMENT_ESCAPES)


def escape_tag(text: str) -> str:
    """Escape a tag key, tag value or field key for line protocol."""
    return _escape_name(text, _TAG_ESCAPES)


escape_field_key = escape_tag


def encode_line(point: Point) -> str:
    """Encode one point as a line of line protocol, without the newline.

    Empty tag values are left out (InfluxDB refuses them); tags are sorted, as
    InfluxDB recommends for write speed. Raises ValueError if no field remains
    or a value cannot be written (NaN, infinity, integers beyond 64 bits).
    """
    parts = [escape_measurement(point.measurement)]
    for key in sorted(point.tags):
        value = point.tags[key]
        if value and key:
            parts.append(f",{escape_tag(key)}={escape_tag(value)}")
    if not point.fields:
        raise ValueError("a point needs at least one field")
    parts.append(" ")
    first = True
    for key, value in point.fields.items():
        if not key:
            raise ValueError("empty field key")
        if not first:
            parts.append(",")
        first = False
        parts.append(f"{escape_tag(key)}={_encode_field_value(key, value)}")
    parts.append(f" {point.time_ns}")
    return "".join(parts)


def _escape_name(text: str, table: dict[int, str]) -> str:
    if not _NEEDS_TAG_ESCAPE.intersection(text):
        return text
    escaped = text.translate(table)
    # A backslash right before a delimiter would escape it, and one at the end
    # would escape the separator we append: double such backslashes.
    if escaped.endswith("\\") and not escaped.endswith("\\\\"):
        escaped += "\\"
    return escaped


def _encode_field_value(key: str, value: FieldValue) -> str:
    # bool before int: bool is a subclass of int in Python.
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"field {key!r} is {value}, which InfluxDB cannot store")
        return repr(value)
    if isinstance(value, int):
        if not INT64_MIN <= value <= INT64_MAX:
            raise ValueError(f"field {key!r} = {value} does not fit a 64-bit integer")
        return f"{value}i"
    return '"' + value.translate(_STRING_ESCAPES) + '"'
