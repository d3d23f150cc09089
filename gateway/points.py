"""Points: the records the gateway writes to InfluxDB, and their line protocol.

A point becomes one line: ``measurement[,tag=value...] field=value[,...] time``.
The line is built so that InfluxDB 1.x stores every name and value exactly as
given, except for the few sanitisations listed below, which exist because no
line could make InfluxDB store the original text.

Escaping:

- Measurement names: a comma or a space gets a backslash before it.
- Tag keys, tag values and field keys: a comma, an equals sign or a space gets
  a backslash before it.
- String field values are written in double quotes; a double quote or a
  backslash inside gets a backslash before it. Nothing else is escaped there:
  a space or comma inside quotes is written as is.
- Every other character is written as is: other backslashes, quotes in names,
  tabs, non-ASCII letters and emoji.
- Floats are written with ``repr()`` (``21.5``, ``55.0``, ``1e+16``), integers
  with an ``i`` suffix (``42i``), unsigned ones (``Unsigned``) with ``u``,
  booleans as ``true`` / ``false``. Tags are sorted by key, as InfluxDB
  recommends for write speed.

Sanitisations (the stored text differs from the given text):

1. A newline or carriage return, in a name or a string value, is written as the
   two characters ``\\n`` / ``\\r``: a raw one would end the line. InfluxDB then
   stores a backslash and the letter, so a real newline and a typed "\\n" look
   the same once stored.
2. Backslashes at the end of a name (measurement, tag key, tag value or field
   key), or right before a comma, equals sign, space or double quote in a name,
   are removed, with any backslashes right before them. No line makes InfluxDB
   1.x store a name ending in a backslash: the backslash escapes the separator
   after it, doubled or not, and the line is refused. A backslash before an
   escaped character is read three ways: measurement names are unescaped twice
   (and such a measurement is then missing from SELECT results), no field key
   can hold one before a space, comma or equals sign, and in tags, where
   InfluxDB 1.x would keep it, VictoriaMetrics drops the line, answering 204.
   So ``C:\\`` is stored as ``C:`` and ``a\\,b`` as ``a,b``.
3. Tabs and NUL characters at the start of a measurement name or a field key
   are removed: InfluxDB skips them there, so they could not be stored anyway.
4. A tag whose key or value is empty (after the above) is left out of the
   point, as InfluxDB refuses empty tags.

A point is refused with ValueError, naming what is wrong, so that no point can
make InfluxDB refuse a request: when its measurement name is empty or starts
with ``#`` (InfluxDB reads such a line as a comment and drops it silently);
when a field key is empty; when a tag key or field key is stored as ``time``
(InfluxDB refuses the point, or drops the field silently); when two of its tag
keys, or two field keys, are stored as the same text (a repeated field with two
types makes InfluxDB refuse the whole request); when it has no field; when a
float is NaN or infinite, an integer does not fit 64 bits, a string is longer
than 64 KiB in UTF-8, or a value is of another type; when its series key is
longer than InfluxDB's 65,535 bytes; when its time is outside what InfluxDB can
store; or when a name or value holds a lone surrogate, which UTF-8 cannot
carry. Keys starting with ``_`` are written as given: InfluxDB 1.x stores them.
Whitespace-only tag values are written escaped and stored as given.

Known limitation: sanitising can give two different names the same stored text
(``C:\\`` and ``C:``; a newline and a typed ``\\n``), so their series merge in
InfluxDB. Within one point such a clash is refused; across points it is not
noticed. VictoriaMetrics reads ``\\\\`` in a name as one backslash, so a name
with two backslashes in a row is stored there with one.

Escaped names are cached: a gateway sees the same few names over and over, so
most points need no escaping work at all.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass

__all__ = [
    "FieldValue",
    "INT64_MAX",
    "INT64_MIN",
    "UINT64_MAX",
    "Unsigned",
    "MAX_KEY_BYTES",
    "MAX_STRING_FIELD_BYTES",
    "MAX_TIME_NS",
    "MIN_TIME_NS",
    "Point",
    "encode_line",
    "escape_field_key",
    "escape_measurement",
    "escape_tag",
]

logger = logging.getLogger(__name__)

INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1
# InfluxDB 1.x refuses the two extreme int64 times (verified on 1.6).
MIN_TIME_NS = INT64_MIN + 2
MAX_TIME_NS = INT64_MAX - 1
# InfluxDB's documented limit for one string field value, in UTF-8 bytes.
MAX_STRING_FIELD_BYTES = 64 * 1024
# InfluxDB 1.x refuses a point when, for any of its fields, the series key
# (measurement and tags, escaped) plus 4 plus the field key exceeds this.
MAX_KEY_BYTES = 65_535
# How many distinct names each cache keeps before it starts over.
MAX_CACHED_NAMES = 8192

# A Python int is written as an InfluxDB integer field ("42i"); a float as a float.
# Decoders decide which one a reading becomes, so that a field keeps one type.
UINT64_MAX = 2**64 - 1


class Unsigned(int):
    """An integer stored as an InfluxDB unsigned field ("42u").

    InfluxDB 2.x, 3.x and VictoriaMetrics accept unsigned fields; InfluxDB 1.x
    refuses them unless built with support, so declare a field unsigned only
    for those.
    """

    __slots__ = ()


FieldValue = float | int | bool | str

# Line protocol cannot carry a raw newline anywhere: it ends the line. We write
# newlines and carriage returns as the two characters "\n" / "\r" (documented in
# the README), so the point is stored instead of breaking the whole request. In
# names InfluxDB 1.x stores that text as is: a backslash and the letter.
_NEWLINES = {"\n": "\\n", "\r": "\\r"}
_MEASUREMENT_ESCAPES = str.maketrans({",": "\\,", " ": "\\ "})
_TAG_ESCAPES = str.maketrans({",": "\\,", " ": "\\ ", "=": "\\="})
_NEWLINE_TEXT = str.maketrans(_NEWLINES)
# In a string value InfluxDB reads "\\" as one backslash, so a newline written
# as "\\n" is stored as backslash-n, the same text as in names.
_STRING_ESCAPES = str.maketrans(
    {'"': '\\"', "\\": "\\\\", "\n": "\\\\n", "\r": "\\\\r"}
)
# Any character that makes a name need more than a cache entry.
_NAME_WORK = re.compile(r'[\\,= "\n\r\t\x00#]')
# Backslashes InfluxDB would swallow: before a separator-like character, or at
# the end (\Z, not $, which would also match before a final newline).
_SWALLOWED_BACKSLASHES = re.compile(r'\\+(?=[,= "]|\Z)')
# InfluxDB skips these at the start of a line and of the field set.
_SKIPPED_LEADING = "\t\x00"
_INFINITY = float("inf")
# Below this many characters a key cannot exceed MAX_KEY_BYTES, even with every
# character taking 4 bytes in UTF-8.
_SAFE_LINE_CHARS = (MAX_KEY_BYTES - 4) // 4
_SAFE_STRING_CHARS = MAX_STRING_FIELD_BYTES // 4

# Caches of escaped names, and of the names whose stored text differs from
# the given text (sanitised): only those can collide with another name.
_measurements: dict[str, str] = {}
_tag_keys: dict[str, str] = {}
_tag_values: dict[str, str] = {}
_field_keys: dict[str, str] = {}
_sanitised_tag_keys: set[str] = set()
_sanitised_field_keys: set[str] = set()


@dataclass(frozen=True, slots=True)
class Point:
    """One record for InfluxDB: measurement, tags, fields and a time in ns."""

    measurement: str
    tags: dict[str, str]
    fields: dict[str, FieldValue]
    time_ns: int


def escape_measurement(name: str) -> str:
    """Return a measurement name as written in line protocol, or raise ValueError."""
    return _clean_measurement(name).translate(_MEASUREMENT_ESCAPES)


def escape_tag(text: str) -> str:
    """Return a tag key or value as written in line protocol ('' means leave out)."""
    if type(text) is str and _NAME_WORK.search(text) is None:
        return text
    return _clean_tag(text).translate(_TAG_ESCAPES)


def escape_field_key(key: str) -> str:
    """Return a field key as written in line protocol, or raise ValueError."""
    return _clean_field_key(key).translate(_TAG_ESCAPES)


def encode_line(point: Point) -> str:
    """Encode one point as a line of line protocol, without the newline.

    Empty tags are left out (InfluxDB refuses them); tags are sorted, as
    InfluxDB recommends for write speed. Raises ValueError, naming the element,
    if the point cannot be stored: see the module docstring for the rules.
    """
    try:
        head = _measurements[point.measurement]
    except KeyError:
        head = _remember_measurement(point.measurement)
    tags = point.tags
    if tags:
        parts = [head]
        for key, value in sorted(tags.items()):
            try:
                escaped_key = _tag_keys[key]
            except KeyError:
                escaped_key = _remember_tag_key(key)
            try:
                escaped_value = _tag_values[value]
            except KeyError:
                escaped_value = _remember_tag_value(value)
            if escaped_key and escaped_value:
                parts.append(f",{escaped_key}={escaped_value}")
        head = "".join(parts)
        # Two keys sanitised to the same text would repeat a tag: InfluxDB
        # refuses such a point.
        if _sanitised_tag_keys and not _sanitised_tag_keys.isdisjoint(tags):
            _require_distinct_tag_keys(point)

    fields = []
    for key, value in point.fields.items():
        try:
            escaped_key = _field_keys[key]
        except KeyError:
            escaped_key = _remember_field_key(key)
        kind = type(value)
        if kind is float:
            # One chained comparison rejects NaN and both infinities.
            if not -_INFINITY < value < _INFINITY:
                raise ValueError(
                    f"field {key!r} is {value}, which InfluxDB cannot store"
                )
            fields.append(f"{escaped_key}{value!r}")
        elif kind is str:
            # Most strings need no escaping; four substring scans beat translate().
            if (
                '"' in value
                or "\\" in value
                or "\n" in value
                or "\r" in value
                or len(value) > _SAFE_STRING_CHARS
            ):
                value = _escape_string(key, value)
            fields.append(f'{escaped_key}"{value}"')
        elif kind is bool:
            fields.append(f"{escaped_key}{'true' if value else 'false'}")
        elif kind is int:
            if not INT64_MIN <= value <= INT64_MAX:
                raise ValueError(
                    f"field {key!r} = {value} does not fit a 64-bit integer"
                )
            fields.append(f"{escaped_key}{value}i")
        else:
            fields.append(escaped_key + _encode_other_value(key, value))
    if not fields:
        raise ValueError(
            f"point of measurement {point.measurement!r} has no field; "
            "InfluxDB needs at least one"
        )
    # A field key repeated with two types makes InfluxDB refuse the whole
    # request, not only this point.
    if _sanitised_field_keys and not _sanitised_field_keys.isdisjoint(point.fields):
        _require_distinct_field_keys(point)

    time_ns = point.time_ns
    if type(time_ns) is not int or not MIN_TIME_NS <= time_ns <= MAX_TIME_NS:
        raise ValueError(
            f"time {time_ns!r} ns is outside what InfluxDB can store "
            f"({MIN_TIME_NS} to {MAX_TIME_NS})"
        )
    line = f"{head} {','.join(fields)} {time_ns}"
    if len(line) > _SAFE_LINE_CHARS or not line.isascii():
        _check_bytes(line, head, point)
    return line


def _clean_measurement(name: str) -> str:
    """Return the text InfluxDB will store for a measurement, or raise ValueError."""
    _require_text(name, "measurement name")
    if _NAME_WORK.search(name) is None:
        if not name:
            raise ValueError("measurement name is empty")
        return name
    clean = _SWALLOWED_BACKSLASHES.sub("", name.lstrip(_SKIPPED_LEADING))
    if not clean:
        raise ValueError(f"measurement name {name!r} is empty once sanitised")
    if clean.startswith("#"):
        raise ValueError(
            f"measurement name {name!r} starts with '#', which InfluxDB reads "
            "as a comment line and drops"
        )
    return _as_text(clean)


def _clean_tag(text: str) -> str:
    _require_text(text, "tag key or value")
    if _NAME_WORK.search(text) is None:
        return text
    return _as_text(_SWALLOWED_BACKSLASHES.sub("", text))


def _clean_field_key(key: str) -> str:
    _require_text(key, "field key")
    if _NAME_WORK.search(key) is None:
        clean = key
    else:
        clean = _as_text(_SWALLOWED_BACKSLASHES.sub("", key.lstrip(_SKIPPED_LEADING)))
    if not clean:
        raise ValueError(f"field key {key!r} is empty once sanitised")
    if clean == "time":
        raise ValueError(
            f"field key {_stored_as(key, clean)} is reserved by InfluxDB, which "
            "would drop the field or refuse the point; rename the field"
        )
    return clean


def _as_text(clean: str) -> str:
    if "\n" in clean or "\r" in clean:
        return clean.translate(_NEWLINE_TEXT)
    return clean


def _stored_as(text: str, clean: str) -> str:
    return repr(text) if text == clean else f"{text!r} (stored as {clean!r})"


def _require_text(text: object, element: str) -> None:
    if not isinstance(text, str):
        raise ValueError(f"{element} must be text, got {type(text).__name__}")


def _remember_measurement(name: str) -> str:
    escaped = escape_measurement(name)
    _make_room(_measurements)
    _measurements[name] = escaped
    return escaped


def _remember_tag_key(key: str) -> str:
    clean = _clean_tag(key)
    if clean == "time":
        raise ValueError(
            f"tag key {_stored_as(key, clean)} is reserved by InfluxDB, which "
            "would refuse the point; rename the tag"
        )
    if _make_room(_tag_keys):
        _sanitised_tag_keys.clear()
    if clean != key:
        _sanitised_tag_keys.add(key)
    escaped = _tag_keys[key] = clean.translate(_TAG_ESCAPES)
    return escaped


def _remember_tag_value(value: str) -> str:
    escaped = escape_tag(value)
    _make_room(_tag_values)
    _tag_values[value] = escaped
    return escaped


def _remember_field_key(key: str) -> str:
    clean = _clean_field_key(key)
    if _make_room(_field_keys):
        _sanitised_field_keys.clear()
    if clean != key:
        _sanitised_field_keys.add(key)
    escaped = _field_keys[key] = clean.translate(_TAG_ESCAPES) + "="
    return escaped


def _make_room(cache: dict[str, str]) -> bool:
    """Empty a full cache; return whether it was emptied.

    Starting over keeps memory bounded when names keep changing (a tag holding a
    counter, say); the names in use are back in the cache within a batch.
    """
    if len(cache) < MAX_CACHED_NAMES:
        return False
    cache.clear()
    return True


def _require_distinct_tag_keys(point: Point) -> None:
    seen: dict[str, str] = {}
    for key, value in sorted(point.tags.items()):
        clean = _clean_tag(key)
        if not clean or not _clean_tag(value):
            continue
        if clean in seen:
            raise ValueError(
                f"tag keys {seen[clean]!r} and {key!r} are both stored as "
                f"{clean!r}; InfluxDB refuses a point with a repeated tag"
            )
        seen[clean] = key


def _require_distinct_field_keys(point: Point) -> None:
    seen: dict[str, str] = {}
    for key in point.fields:
        clean = _clean_field_key(key)
        if clean in seen:
            raise ValueError(
                f"field keys {seen[clean]!r} and {key!r} are both stored as "
                f"{clean!r}; InfluxDB would keep one value, or refuse the whole "
                "request if their types differ"
            )
        seen[clean] = key


def _escape_string(key: str, value: str) -> str:
    if len(value) > _SAFE_STRING_CHARS:
        size = len(value.encode("utf-8", "surrogatepass"))
        if size > MAX_STRING_FIELD_BYTES:
            raise ValueError(
                f"field {key!r} is a string of {size} bytes; InfluxDB stores at "
                f"most {MAX_STRING_FIELD_BYTES}"
            )
    return value.translate(_STRING_ESCAPES)


def _encode_other_value(key: str, value: object) -> str:
    # Subclasses (numpy floats, IntEnum, str enums) print themselves differently
    # through repr() or str(), so write them with their base type's text.
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        if not -_INFINITY < value < _INFINITY:
            raise ValueError(f"field {key!r} is {value}, which InfluxDB cannot store")
        return float.__repr__(value)
    if isinstance(value, Unsigned):
        if not 0 <= value <= UINT64_MAX:
            raise ValueError(f"field {key!r} = {value} does not fit an unsigned field")
        return int.__repr__(value) + "u"
    if isinstance(value, int):
        if not INT64_MIN <= value <= INT64_MAX:
            raise ValueError(f"field {key!r} = {value} does not fit a 64-bit integer")
        return int.__repr__(value) + "i"
    if isinstance(value, str):
        return '"' + _escape_string(key, str.__str__(value)) + '"'
    raise ValueError(
        f"field {key!r} has a value of type {type(value).__name__}; "
        "expected float, int, bool or str"
    )


def _check_bytes(line: str, head: str, point: Point) -> None:
    """Raise ValueError if the line cannot be sent as UTF-8 or a key is too long."""
    try:
        line.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError(
            f"point of measurement {point.measurement!r} holds a lone surrogate "
            f"in {_surrogate_holder(point)}, which UTF-8 cannot carry"
        ) from None
    head_bytes = len(head.encode("utf-8"))
    for key in point.fields:
        size = head_bytes + 4 + len(escape_field_key(key).encode("utf-8"))
        if size > MAX_KEY_BYTES:
            raise ValueError(
                f"series key of measurement {point.measurement[:40]!r} with field "
                f"{key[:40]!r} is {size} bytes; InfluxDB refuses more than "
                f"{MAX_KEY_BYTES}"
            )


def _surrogate_holder(point: Point) -> str:
    def unencodable(text: object) -> bool:
        return isinstance(text, str) and any(
            "\ud800" <= char <= "\udfff" for char in text
        )

    if unencodable(point.measurement):
        return "its name"
    for key, value in point.tags.items():
        if unencodable(key) or unencodable(value):
            return f"tag {key!r}"
    for key, value in point.fields.items():
        if unencodable(key) or unencodable(value):
            return f"field {key!r}"
    return "its line"
