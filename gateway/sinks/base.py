"""The sink seam: something that stores a batch of line-protocol lines."""

from __future__ import annotations

import re
from typing import Protocol

import orjson

from gateway.errors import describe_connection_failure

__all__ = [
    "Sink",
    "answer_text",
    "body_bytes",
    "classify_rejection",
    "describe_failure",
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
_HTML_TITLE = re.compile(r"<title>(?P<title>.*?)</title>", re.IGNORECASE | re.DOTALL)
_HTML_TAG = re.compile(r"<[^>]*>")


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
    if "unable to parse" in body or "invalid field format" in body:
        quoted = _UNPARSABLE_LINE.findall(_error_message(body))
        return "unparsable_line", {"lines": "\n".join(quoted)} if quoted else {}
    if "too large" in body.lower():
        return "too_large", {}
    return "rejected", {}


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
