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
    # Second copies of a message matching two overlapping subscriptions.
    messages_duplicate: int = 0
    # Messages a format knows are not telemetry (availability, LWT, events).
    messages_not_telemetry: int = 0
    # Points of retained messages without their own time (a replay of the
    # device's last reading at each subscribe).
    retained_skipped: int = 0
    points_decoded: int = 0
    points_written: int = 0
    write_requests: int = 0
    write_failures: int = 0
    points_buffered: int = 0
    # The on-disk spool: what waits in it now, and what went through it.
    spool_points: int = 0
    spool_bytes: int = 0
    spool_batches: int = 0
    spool_oldest_age_s: float = 0.0
    points_spooled: int = 0
    points_replayed: int = 0
    # reason code -> count; messages refused at decoding, and single values
    # left out of otherwise good messages, are kept apart.
    messages_rejected: Counter[str] = field(default_factory=Counter)
    fields_rejected: Counter[str] = field(default_factory=Counter)
    points_rejected: Counter[str] = field(default_factory=Counter)
    # flag kind (range, spike, rate, flatline, clock) -> readings flagged
    readings_flagged: Counter[str] = field(default_factory=Counter)

    def snapshot(self) -> dict[str, object]:
        """Return a copy of every counter, for display or export."""
        return {
            "messages_received": self.messages_received,
            "messages_excluded": self.messages_excluded,
            "messages_duplicate": self.messages_duplicate,
            "messages_not_telemetry": self.messages_not_telemetry,
            "retained_skipped": self.retained_skipped,
            "points_decoded": self.points_decoded,
            "points_written": self.points_written,
            "write_requests": self.write_requests,
            "write_failures": self.write_failures,
            "points_buffered": self.points_buffered,
            "spool_points": self.spool_points,
            "spool_bytes": self.spool_bytes,
            "spool_batches": self.spool_batches,
            "spool_oldest_age_s": self.spool_oldest_age_s,
            "points_spooled": self.points_spooled,
            "points_replayed": self.points_replayed,
            "messages_rejected": dict(self.messages_rejected),
            "fields_rejected": dict(self.fields_rejected),
            "points_rejected": dict(self.points_rejected),
            "readings_flagged": dict(self.readings_flagged),
        }
