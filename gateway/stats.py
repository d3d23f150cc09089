"""Counters of what the gateway did: readings received, points written, rejects."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

__all__ = ["GatewayStats"]


@dataclass
class GatewayStats:
    """Plain counters, cheap on the hot path; read by the console and the API."""

    messages_received: int = 0
    messages_excluded: int = 0
    points_decoded: int = 0
    points_written: int = 0
    write_requests: int = 0
    write_failures: int = 0
    points_buffered: int = 0
    # reason code -> count; messages refused at decoding, and single values
    # left out of otherwise good messages, are kept apart.
    messages_rejected: Counter[str] = field(default_factory=Counter)
    fields_rejected: Counter[str] = field(default_factory=Counter)
    points_rejected: Counter[str] = field(default_factory=Counter)

    def snapshot(self) -> dict[str, object]:
        """Return a copy of every counter, for display or export."""
        return {
            "messages_received": self.messages_received,
            "messages_excluded": self.messages_excluded,
            "points_decoded": self.points_decoded,
            "points_written": self.points_written,
            "write_requests": self.write_requests,
            "write_failures": self.write_failures,
            "points_buffered": self.points_buffered,
            "messages_rejected": dict(self.messages_rejected),
            "fields_rejected": dict(self.fields_rejected),
            "points_rejected": dict(self.points_rejected),
        }
