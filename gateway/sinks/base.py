"""The sink seam: something that stores a batch of line-protocol lines."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

import orjson

from gateway.errors import describe_connection_failure

__all__ = [
    "LineFacts",
    "Sink",
    "answer_text",
    "body_bytes",
    "classify_rejection",
    "describe_failure",
    "dropped_count",
    "read_line",
    "refuses_points",
    "summarize_answer",
]

# The status a server or proxy gives a request body over its size limit.
TOO_LARGE_STATUS = 413
SUMMARY_CHARS = 200

# Answers that refuse the points themselves (a bad line, a type conflict, a body
# too large): resending the same lines cannot help, splitting them can. Other
# 4xx answers (401, 403, 404 database or bucket not found, 429) are about the
# server or our credentials, and every point would meet them: retry those.
POINT_REFUSAL_STATUSES = frozenset({400, 413, 422})

_FIELD_CONFLICT = re.compile(
    r'field type conflict: input field \\?"(?P<field>[^"\\]+)\\?" on measurement '
    r'\\?"(?P<measurement>[^"\\]+)\\?" is type (?P<attempted>\w+), already exists as '
    r"type (?P<existing>\w+)"
)
# InfluxDB quotes each line it could not parse, one per line of its message.
_UNPARSABLE_LINE = re.compile(r"unable to parse '(?P<line>.*)': ")
# A partial write ends its message with how many points the server dropped.
_DROPPED = re.compile(r"dropped=(?P<count>\d+)")
_HTML_TITLE = re.compile(r"<title>(?P<title>.*?)</title>", re.IGNORECASE | re.DOTALL)
_HTML_TAG = re.compile(r"<[^>]*>")

# Field values as InfluxDB's line-protocol parser tells their types apart.
_INTEGER = re.compile(r"[+-]?\d+i")
_UNSIGNED = re.compile(r"\d+u")
_FLOAT = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")
_BOOLEANS = frozenset(
    {"t", "T", "true", "True", "TRUE", "f", "F", "false", "False", "FALSE"}
)
_TIMESTAMP = re.compile(r"-?\d+")
_MEASUREMENT_UNESCAPES = {"\\,": ",", "\\ ": " "}
_KEY_UNESCAPES = {"\\,": ",", "\\ ": " ", "\\=": "="}


@dataclass(frozen=True)
class LineFacts:
    """What one line of line protocol says that a refusal can be about.

    `field_types` maps each field key, unescaped, to its InfluxDB type name
    (float, integer, unsigned, string, boolean); `time_ns` is None when the
    line leaves the time to the server.
    """

    measurement: str
    field_types: Mapping[str, str]
    time_ns: int | None


class Sink(Protocol):
    """Store lines of line protocol; one request per call.

    `write` raises SinkError when the server is unreachable or failing (worth
    retrying) and PointsRejected when it refused the request for good.
    """

    description: str  # e.g. "InfluxDB v1 at http://127.0.0.1:8086 (database decor)"

    async def open(self) -> None:
        """Check the server and prepare what writing needs; may raise SinkError."""
        ...

    async def write(self, lines: list[str]) -> None:
        """Write the lines in one request."""
        ...

    async def close(self) -> None:
        """Release connections."""
        ...


def classify_rejection(
    body: str, status: int | None = None
) -> tuple[str, dict[str, str]]:
    """Name the reason in a 4xx answer from InfluxDB, with its facts.

    Returns a reason code ("field_type_conflict", "unparsable_line",
    "too_large", "rejected") and what the message said: the measurement, field
    and both types of a type conflict; the refused lines, joined by newlines,
    of an unparsable line. InfluxDB 1.x says it in `{"error": ...}`, 2.x in
    `{"code": ..., "message": ...}`, a proxy in HTML; the words are the same.
    A 413 is "too_large" whatever its body says: load balancers often send none.
    """
    if status == TOO_LARGE_STATUS:
        return "too_large", {}
    conflict = _FIELD_CONFLICT.search(body)
    if conflict:
        return "field_type_conflict", conflict.groupdict()
    if "field type conflict" in body:
        # InfluxDB 1.x says only this when a batch gives a field new to the
        # shard two types: it stored nothing and named nothing.
        return "field_type_conflict", {}
    if "unable to parse" in body or "invalid field format" in body:
        quoted = _UNPARSABLE_LINE.findall(_error_message(body))
        return "unparsable_line", {"lines": "\n".join(quoted)} if quoted else {}
    if "too large" in body.lower():
        return "too_large", {}
    return "rejected", {}


def dropped_count(body: str) -> int | None:
    """Return the `dropped=N` of a partial-write answer, or None when it has none."""
    counts = _DROPPED.findall(body)
    return int(counts[-1]) if counts else None


def read_line(line: str) -> LineFacts | None:
    """Read a line's measurement, field types and time; None if it is malformed.

    Backslash escapes in names and quoted string values (which may hold
    commas, spaces and equals signs) are honoured as InfluxDB reads them.
    "Malformed" follows InfluxDB's parser closely, not exactly: a number out
    of range still reads as well formed.
    """
    series_end = _scan_to(line, 0, " ")
    name_end = _scan_to(line, 0, ",", stop=series_end)
    measurement = _unescape(line[:name_end], _MEASUREMENT_UNESCAPES)
    if not measurement or not _tags_well_formed(line[name_end:series_end]):
        return None
    fields, fields_end = _read_fields(line, series_end + 1)
    if not fields:
        return None
    stamp = line[fields_end + 1 :]
    if fields_end < len(line) and not _TIMESTAMP.fullmatch(stamp):
        return None
    time_ns = int(stamp) if fields_end < len(line) else None
    return LineFacts(measurement, fields, time_ns)


def refuses_points(status: int, body: str) -> bool:
    """Tell whether an error answer refuses the lines sent, not the request as such.

    Early InfluxDB 2.0 releases wrapped a partial write in a 500, so the body
    counts as much as the status code.
    """
    return status in POINT_REFUSAL_STATUSES or "partial write" in body


def body_bytes(lines: list[str]) -> int:
    """Return the size of the write body for `lines`: UTF-8, one newline each."""
    # isascii() is O(1) in CPython, so the common case costs no encoding.
    return sum(
        (len(line) if line.isascii() else len(line.encode("utf-8"))) + 1
        for line in lines
    )


def answer_text(body: object) -> str:
    """Return an HTTP answer's body as text, decoding bytes as UTF-8.

    influxdb-client's async ApiException keeps the body as bytes; str() of
    those would give "b'...'" with every newline and quote escaped.
    """
    if isinstance(body, bytes | bytearray):
        return bytes(body).decode("utf-8", errors="replace")
    return "" if body is None else str(body)


def summarize_answer(body: str) -> str:
    """Return the gist of an error answer on one line: JSON message, HTML title."""
    title = _HTML_TITLE.search(body)
    if title:
        text = title.group("title")
    elif "<html" in body.lower():
        text = _HTML_TAG.sub(" ", body)
    else:
        text = _error_message(body)
    return " ".join(text.split())[:SUMMARY_CHARS]


def describe_failure(exc: BaseException) -> str:
    """Name why a request to the sink failed (see describe_connection_failure)."""
    return describe_connection_failure(exc)


def _error_message(body: str) -> str:
    """Return the message of a JSON error answer, unescaped; else the body as is."""
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError:
        return body
    if isinstance(document, dict):
        message = document.get("error") or document.get("message")
        if isinstance(message, str):
            return message
    return body


def _scan_to(text: str, start: int, stops: str, stop: int | None = None) -> int:
    """Return the index of the first unescaped character of `stops`, or the end."""
    end = len(text) if stop is None else stop
    index = start
    while index < end:
        char = text[index]
        if char == "\\":
            index += 2
            continue
        if char in stops:
            return index
        index += 1
    return end


def _unescape(text: str, escapes: dict[str, str]) -> str:
    if "\\" not in text:
        return text
    for escaped, plain in escapes.items():
        text = text.replace(escaped, plain)
    return text


def _tags_well_formed(tags: str) -> bool:
    """Tell whether ",k=v,k=v" (or nothing) has a key and a value in each pair."""
    index = 0
    while index < len(tags):
        end = _scan_to(tags, index + 1, ",")
        equals = _scan_to(tags, index + 1, "=", stop=end)
        if equals in (index + 1, end, end - 1):
            return False
        index = end
    return True


def _read_fields(line: str, start: int) -> tuple[dict[str, str], int]:
    """Read a field set from `start`; return key -> type and where it ended.

    The types come back empty when the field set is malformed.
    """
    fields: dict[str, str] = {}
    index = start
    while True:
        equals = _scan_to(line, index, "=, ")
        if equals in (index, len(line)) or line[equals] != "=":
            return {}, index
        key = _unescape(line[index:equals], _KEY_UNESCAPES)
        value_end = _value_end(line, equals + 1)
        kind = None if value_end < 0 else _value_type(line[equals + 1 : value_end])
        if kind is None:
            return {}, index
        fields[key] = kind
        if value_end == len(line) or line[value_end] == " ":
            return fields, value_end
        index = value_end + 1


def _value_end(line: str, start: int) -> int:
    """Return where a field value starting at `start` ends; -1 if a quote is open."""
    if not line.startswith('"', start):
        return _scan_to(line, start, ", ")
    # Inside a string a backslash escapes the next character, and commas
    # and spaces are part of the value.
    index = start + 1
    while index < len(line):
        if line[index] == "\\":
            index += 2
        elif line[index] == '"':
            return index + 1
        else:
            index += 1
    return -1


def _value_type(value: str) -> str | None:
    """Return the InfluxDB type of a field value as written, or None if invalid."""
    if len(value) >= 2 and value[0] == '"' == value[-1]:
        return "string"
    if _INTEGER.fullmatch(value):
        return "integer"
    if _UNSIGNED.fullmatch(value):
        return "unsigned"
    if value in _BOOLEANS:
        return "boolean"
    if _FLOAT.fullmatch(value):
        return "float"
    return None
