"""Decode InfluxDB line protocol that devices publish, checking it line by line.

Some devices and bridges (Telegraf's MQTT output, ESP firmwares built for
InfluxDB) publish ready-made line protocol. Forwarding it as is would let one
device's malformed line make InfluxDB refuse the whole request, everybody's
points included (C18). So each line is parsed here, a bad line is refused at
ingest with its line number and reason, and the points of the good lines are
written again by our own encoder, with our escaping.

The rules are InfluxDB 1.x's, which are also the documented ones:

- ``measurement[,tag=value...] field=value[,field=value...] [timestamp]``;
  a space, then any spaces or tabs, between the sections; leading
  whitespace, blank lines and lines starting with ``#`` (comments) are
  skipped; a trailing CR (CRLF line ends) is removed.
- In the measurement a backslash escapes a comma or a space; in tag keys, tag
  values and field keys, a comma, an equals sign or a space. Any other
  backslash is kept as written, and a backslash always protects the
  character after it from being read as a separator.
- Field values: a float (``1``, ``-1.5``, ``.5``, ``1e3``), an integer
  (``1i``), an unsigned integer (``1u``), a boolean (``t``, ``T``, ``true``,
  ``True``, ``TRUE`` and the same for false) or a string in double quotes,
  inside which ``\\"`` and ``\\\\`` stand for a quote and a backslash.
- A line protocol value cannot hold a raw newline: a newline always ends
  the line.

Stricter than InfluxDB where servers and parsers disagree: a field key given
twice in one line is refused (InfluxDB 1.x keeps the last value, other
parsers the first, and two types make 1.x refuse the line), and so is a name
with two backslashes before a separator or one at its end.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Iterator
from dataclasses import dataclass

from gateway.decoding.base import Decoded, FieldReject
from gateway.decoding.options import DecoderOptions
from gateway.errors import PayloadError
from gateway.points import (
    INT64_MAX,
    INT64_MIN,
    UINT64_MAX,
    FieldValue,
    Point,
    Unsigned,
    encode_line,
)
from gateway.sources.mqtt import MqttMessage

__all__ = ["LineError", "LineProtocolDecoder", "ParsedLine", "parse_line"]

logger = logging.getLogger(__name__)

MAX_SHOWN_LINE_CHARS = 200
# Names run to a separator that no backslash escapes. As in InfluxDB, a
# separator right after a backslash is escaped, however many come before it.
_MEASUREMENT = re.compile(r"(?:[^, \\]|\\+[, ]?)+")
_KEY = re.compile(r"(?:[^,= \\]|\\+[,= ]?)+")
# Two backslashes before a separator, or one ending a name: parsers and
# servers read these differently (see gateway.points), so such lines are
# refused rather than guessed at.
_AMBIGUOUS_MEASUREMENT = re.compile(r"\\\\[, ]|\\$")
_AMBIGUOUS_KEY = re.compile(r"\\\\[,= ]|\\$")
_STRING = re.compile(r'"((?:[^"\\]|\\.)*)"', re.DOTALL)
_BARE_VALUE = re.compile(r"[^, ]*")
# Sections are separated by spaces; tabs after a space are skipped too, as
# InfluxDB skips them before a field key.
_SPACES = re.compile(r" [ \t]*")
_FLOAT = re.compile(r"-?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?")
_INTEGER = re.compile(r"-?\d+i")
_UNSIGNED = re.compile(r"\d+u")
_TIMESTAMP = re.compile(r"-?\d+")
_BOOLEANS = {
    **dict.fromkeys(("t", "T", "true", "True", "TRUE"), True),
    **dict.fromkeys(("f", "F", "false", "False", "FALSE"), False),
}
_MEASUREMENT_ESCAPE = re.compile(r"\\([, ])")
_KEY_ESCAPE = re.compile(r"\\([,= ])")
_STRING_ESCAPE = re.compile(r'\\(["\\])')


class LineError(ValueError):
    """A line that is not valid line protocol; the message says what is wrong."""


@dataclass(frozen=True, slots=True)
class ParsedLine:
    """One line read: names unescaped, values typed, time as written (or None)."""

    measurement: str
    tags: dict[str, str]
    fields: dict[str, FieldValue]
    time: int | None


class LineProtocolDecoder:
    """Turn a payload of line protocol into points, one per valid line.

    Each line names its own measurement: the subscription's `measurement` is
    not used. The subscription's tags (`tags` and those of its topic template)
    are added to every point, except where the line has a tag of the same
    key: the line knows best. A line without a timestamp takes the receive
    time. A timestamp is read in the subscription's `timestamp_unit`; with
    "auto" (the default) it is told by magnitude like every other epoch
    number, so nanoseconds (the line protocol default, and any date after
    1973) are read as nanoseconds and a device writing seconds still lands
    on the right date. Times outside the plausibility window refuse the line.

    Declared field types (`fields`) convert a line's values (``20i`` declared
    float is stored as 20.0, so a forwarding device cannot fix a field to
    integer by chance); undeclared values keep the type the line gives them.
    `include` keeps only the named fields; a line left with none is skipped.

    A line that cannot be stored is left out and reported as a FieldReject
    named ``line <n>`` (n counts every line of the payload, from 1) with the
    reason and the line; the others are stored. `payload_tags` and
    `timestamp_key` do not apply to line protocol.
    """

    name = "influx"

    def __init__(self, options: DecoderOptions | None = None) -> None:
        self._options = options or DecoderOptions()

    def decode(
        self,
        message: MqttMessage,
        measurement: str,
        tags: dict[str, str],
        field: str = "value",
    ) -> Decoded:
        """Decode every line of one message, or raise PayloadError if none is usable."""
        result = Decoded()
        line_rejects: list[FieldReject] = []
        seen_lines = 0
        for number, raw in _numbered_lines(message.payload):
            seen_lines += 1
            try:
                point = self._point(raw, message, tags, number, result.rejected_fields)
            except LineError as exc:
                line_rejects.append(_line_reject(number, "malformed_line", exc, raw))
                continue
            except PayloadError as exc:
                line_rejects.append(_line_reject(number, exc.reason, exc.detail, raw))
                continue
            if point is not None:
                result.points.append(point)
        result.rejected_fields.extend(line_rejects)
        if not result.points:
            _refuse_empty(message, seen_lines, result.rejected_fields)
        return result

    def _point(
        self,
        raw: bytes,
        message: MqttMessage,
        tags: dict[str, str],
        number: int,
        rejects: list[FieldReject],
    ) -> Point | None:
        """Return the point of one line, None if no field is kept; raise if bad."""
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise LineError(f"byte {exc.start} is not UTF-8") from None
        parsed = parse_line(text)
        fields = self._typed_fields(parsed.fields, number, rejects)
        if not fields:
            return None
        time_ns = self._options.read_time(parsed.time, message)
        point = Point(parsed.measurement, {**tags, **parsed.tags}, fields, time_ns)
        try:
            # Refuse here, with the line number, what InfluxDB would refuse
            # (a field named "time", a string over 64 KiB, a key too long).
            encode_line(point)
        except ValueError as exc:
            raise PayloadError("unencodable_line", str(exc)) from None
        return point

    def _typed_fields(
        self, fields: dict[str, FieldValue], number: int, rejects: list[FieldReject]
    ) -> dict[str, FieldValue]:
        """Apply `include` and the declared types; undeclared values keep theirs."""
        options = self._options
        kept: dict[str, FieldValue] = {}
        for name, value in fields.items():
            if options.include and name not in options.include:
                continue
            if options.typer.declared(name) is None:
                kept[name] = value
                continue
            converted = options.typer.convert(name, value)
            if isinstance(converted, FieldReject):
                rejects.append(
                    FieldReject(
                        name, converted.reason, f"{converted.detail} (line {number})"
                    )
                )
            else:
                kept[name] = converted
        return kept


def parse_line(line: str) -> ParsedLine:
    """Read one line of line protocol; raise LineError saying what is wrong."""
    line = line.lstrip(" \t").rstrip("\r")
    if line.startswith("#"):
        raise LineError("a line starting with '#' is a comment")
    found = _MEASUREMENT.match(line)
    if found is None:
        raise LineError("missing measurement")
    measurement = _name(found.group(), "measurement")
    position = found.end()

    tags: dict[str, str] = {}
    while position < len(line) and line[position] == ",":
        key, value, position = _tag(line, position + 1)
        if key in tags:
            raise LineError(f"tag key {key!r} appears twice")
        tags[key] = value

    position = _after_spaces(line, position, "missing fields")
    fields: dict[str, FieldValue] = {}
    while True:
        key, value, position = _field(line, position)
        if key in fields:
            raise LineError(f"field key {key!r} appears twice")
        fields[key] = value
        if position < len(line) and line[position] == ",":
            position += 1
            continue
        break

    time = None
    if position < len(line):
        position = _after_spaces(line, position, "")
        if position < len(line):
            time = _timestamp(line, position)
    return ParsedLine(measurement, tags, fields, time)


def _numbered_lines(payload: bytes) -> Iterator[tuple[int, bytes]]:
    """Yield (line number, line) for each line that is not blank or a comment."""
    for number, raw in enumerate(payload.split(b"\n"), start=1):
        content = raw.strip()
        if content and not content.startswith(b"#"):
            yield number, raw


def _tag(line: str, position: int) -> tuple[str, str, int]:
    key = _KEY.match(line, position)
    if key is None:
        raise LineError("missing tag key")
    name = _name(key.group(), "tag key")
    position = key.end()
    if position >= len(line) or line[position] != "=":
        raise LineError(f"missing tag value for {name!r}")
    value = _KEY.match(line, position + 1)
    if value is None:
        raise LineError(f"missing tag value for {name!r}")
    position = value.end()
    if position < len(line) and line[position] == "=":
        raise LineError(f"tag value for {name!r} has an unescaped '='")
    return name, _name(value.group(), "tag value"), position


def _field(line: str, position: int) -> tuple[str, FieldValue, int]:
    key = _KEY.match(line, position)
    if key is None:
        raise LineError("missing field key")
    name = _name(key.group(), "field key")
    position = key.end()
    if position >= len(line) or line[position] != "=":
        raise LineError(f"missing '=' after field key {name!r}")
    position += 1
    if position < len(line) and line[position] == '"':
        text = _STRING.match(line, position)
        if text is None:
            raise LineError(f"unterminated string value for {name!r}")
        value: FieldValue = _STRING_ESCAPE.sub(r"\1", text.group(1))
        position = text.end()
    else:
        token = _BARE_VALUE.match(line, position)
        assert token is not None  # matches the empty string at worst
        value = _field_value(name, token.group())
        position = token.end()
    if position < len(line) and line[position] not in ", ":
        raise LineError(f"unexpected {line[position]!r} after the value of {name!r}")
    return name, value, position


def _name(raw: str, element: str) -> str:
    """Return a name unescaped; raise for backslashes InfluxDB reads ambiguously."""
    measurement = element == "measurement"
    ambiguous = _AMBIGUOUS_MEASUREMENT if measurement else _AMBIGUOUS_KEY
    if ambiguous.search(raw):
        raise LineError(
            f"{element} {raw[:40]!r} has a backslash at its end or two before a "
            "separator, which servers read in different ways"
        )
    return (_MEASUREMENT_ESCAPE if measurement else _KEY_ESCAPE).sub(r"\1", raw)


def _field_value(name: str, token: str) -> FieldValue:
    if not token:
        raise LineError(f"missing field value for {name!r}")
    if _FLOAT.fullmatch(token):
        number = float(token)
        if not math.isfinite(number):
            raise LineError(f"float {token!r} of {name!r} is out of range")
        return number
    if _INTEGER.fullmatch(token):
        integer = int(token[:-1])
        if not INT64_MIN <= integer <= INT64_MAX:
            raise LineError(f"integer {token!r} of {name!r} is out of int64 range")
        return integer
    if _UNSIGNED.fullmatch(token):
        unsigned = int(token[:-1])
        if unsigned > UINT64_MAX:
            raise LineError(f"unsigned {token!r} of {name!r} is out of uint64 range")
        return Unsigned(unsigned)
    if token in _BOOLEANS:
        return _BOOLEANS[token]
    raise LineError(f"invalid field value {token[:40]!r} for {name!r}")


def _timestamp(line: str, position: int) -> int:
    text, _, rest = line[position:].partition(" ")
    if not _TIMESTAMP.fullmatch(text):
        raise LineError(f"invalid timestamp {text[:40]!r}")
    if rest.strip(" "):
        raise LineError("unexpected text after the timestamp")
    return int(text)


def _after_spaces(line: str, position: int, missing: str) -> int:
    """Return the position after the spaces at `position`; raise if there are none."""
    if position >= len(line):
        if missing:
            raise LineError(missing)
        return position
    spaces = _SPACES.match(line, position)
    if spaces is None:
        raise LineError(f"unexpected {line[position]!r} after the measurement or tags")
    if missing and spaces.end() >= len(line):
        raise LineError(missing)
    return spaces.end()


def _line_reject(number: int, reason: str, problem: object, raw: bytes) -> FieldReject:
    shown = raw.decode("utf-8", "replace").strip()[:MAX_SHOWN_LINE_CHARS]
    return FieldReject(f"line {number}", reason, f"{problem}: {shown!r}")


def _refuse_empty(
    message: MqttMessage, seen_lines: int, rejects: list[FieldReject]
) -> None:
    """Raise PayloadError for a message that gave no point, unless `include` chose."""
    if not seen_lines:
        raise PayloadError(
            "empty_payload",
            "payload has no line of line protocol (only blank or comment lines)",
            topic=message.topic,
        )
    if not rejects:
        return  # every field was left out by `include`: nothing wanted here
    first = rejects[0]
    more = f" (and {len(rejects) - 1} more)" if len(rejects) > 1 else ""
    raise PayloadError(
        first.reason,
        f"no line could be stored: {first.field}: {first.detail}{more}",
        topic=message.topic,
    )
