"""The sink seam: something that stores a batch of line-protocol lines."""

from __future__ import annotations

import re
from typing import Protocol

__all__ = ["Sink", "classify_rejection"]

_FIELD_CONFLICT = re.compile(
    r'field type conflict: input field \\?"(?P<field>[^"\\]+)\\?" on measurement '
    r'\\?"(?P<measurement>[^"\\]+)\\?" is type (?P<attempted>\w+), already exists as '
    r"type (?P<existing>\w+)"
)


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


def classify_rejection(body: str) -> tuple[str, dict[str, str]]:
    """Name the reason in a 4xx answer from InfluxDB, with its facts.

    Returns a reason code ("field_type_conflict", "unparsable_line",
    "too_large", "rejected") and what the message said, e.g. the measurement
    and field of a type conflict.
    """
    conflict = _FIELD_CONFLICT.search(body)
    if conflict:
        return "field_type_conflict", conflict.groupdict()
    if "unable to parse" in body or "invalid field format" in body:
        return "unparsable_line", {}
    if "too large" in body.lower():
        return "too_large", {}
    return "rejected", {}
