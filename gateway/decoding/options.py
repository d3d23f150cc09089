"""What every decoder is told by its subscription: times, types, tags, filters."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import tzinfo
from typing import Any
from zoneinfo import ZoneInfo

from gateway.config import DecodingConfig, SubscriptionConfig
from gateway.decoding.base import Decoded, FieldReject
from gateway.decoding.timestamps import (
    NaiveTimestamp,
    TimestampUnit,
    format_ns,
    parse_timestamp,
)
from gateway.decoding.values import FieldTyper, flatten, get_path
from gateway.errors import PayloadError
from gateway.logutil import RateLimitedLogger
from gateway.points import FieldValue, Point
from gateway.sources.mqtt import MqttMessage

__all__ = ["DecoderOptions"]

logger = logging.getLogger(__name__)
RESERVED_FIELD_KEY = "time"
warn_once_a_minute = RateLimitedLogger(logger, interval_s=60.0)


@dataclass(frozen=True)
class DecoderOptions:
    """A subscription's decoding rules, ready to use on every message."""

    timestamp_key: str = "ts"
    timestamp_unit: TimestampUnit = "auto"
    zone: tzinfo | None = None
    typer: FieldTyper = field(default_factory=FieldTyper)
    include: frozenset[str] = frozenset()
    payload_tags: dict[str, str] = field(default_factory=dict)
    value_field: str = "value"
    max_past_ns: int = int(10 * 365.25 * 86_400) * 1_000_000_000
    max_future_ns: int = 86_400 * 1_000_000_000

    @classmethod
    def from_config(
        cls, sub: SubscriptionConfig, decoding: DecodingConfig
    ) -> DecoderOptions:
        """Build the options of one configured subscription."""
        zone_name = sub.timezone or decoding.default_timezone
        return cls(
            timestamp_key=sub.timestamp_key,
            timestamp_unit=sub.timestamp_unit,
            zone=ZoneInfo(zone_name) if zone_name else None,
            typer=FieldTyper(sub.fields),
            include=frozenset(sub.include),
            payload_tags=dict(sub.payload_tags),
            value_field=sub.field,
            max_past_ns=int(decoding.max_past_s * 1e9),
            max_future_ns=int(decoding.max_future_s * 1e9),
        )

    def read_time(self, raw: Any, message: MqttMessage, unit: str | None = None) -> int:
        """Return the reading time of `raw`, or the receive time if `raw` is None.

        Raises PayloadError when the time cannot be read or is implausible.
        ISO text without an offset, with no zone configured, is stored at
        receive time with a warning rather than guessed to be UTC.
        """
        if raw is None:
            return message.received_ns
        chosen_unit: Any = unit or self.timestamp_unit
        try:
            time_ns = parse_timestamp(raw, chosen_unit, self.zone)
        except NaiveTimestamp as exc:
            warn_once_a_minute.warning(
                ("naive", message.topic),
                "%s on %r and no timezone is configured; using receive time",
                exc,
                message.topic,
            )
            return message.received_ns
        except ValueError as exc:
            raise PayloadError("bad_timestamp", str(exc), topic=message.topic) from None
        if not (
            message.received_ns - self.max_past_ns
            <= time_ns
            <= message.received_ns + self.max_future_ns
        ):
            raise PayloadError(
                "implausible_timestamp",
                f"timestamp {raw!r} read as {format_ns(time_ns)} (unit "
                f"{chosen_unit}) is too far from the receive time "
                f"{format_ns(message.received_ns)}",
                topic=message.topic,
            )
        return time_ns

    def payload_time(self, document: Any, message: MqttMessage) -> int:
        """Return the time at the configured timestamp key of a JSON document."""
        if not self.timestamp_key or not isinstance(document, dict):
            return message.received_ns
        return self.read_time(get_path(document, self.timestamp_key), message)

    def typed_fields(
        self, items: Iterable[tuple[str, Any]], rejects: list[FieldReject]
    ) -> dict[str, FieldValue]:
        """Type each (name, raw value) pair, keeping included fields only."""
        fields: dict[str, FieldValue] = {}
        for name, raw in items:
            if self.include and name not in self.include:
                continue
            value = self.typer.convert(name, raw)
            if isinstance(value, FieldReject):
                rejects.append(value)
            else:
                fields[name] = value
        return fields

    def tags_from(self, document: Any) -> dict[str, str]:
        """Return the configured payload tags, with the exact text of each value."""
        tags = {}
        for tag, path in self.payload_tags.items():
            value = get_path(document, path)
            if value is not None and not isinstance(value, dict | list):
                tags[tag] = value if isinstance(value, str) else _json_text(value)
        return tags

    def object_point(
        self,
        document: dict[str, Any],
        message: MqttMessage,
        measurement: str,
        tags: dict[str, str],
        *,
        skip: Iterable[str] = (),
    ) -> Decoded:
        """Decode a JSON object into one point: its leaves become fields.

        `skip` names top-level keys that are not readings (the timestamp, and
        keys a format knows to be metadata).
        """
        time_ns = self.payload_time(document, message)
        skipped = set(skip)
        if self.timestamp_key and "." not in self.timestamp_key:
            skipped.add(self.timestamp_key)
        skipped.update(path for path in self.payload_tags.values() if "." not in path)
        readings = {k: v for k, v in document.items() if k not in skipped}
        result = Decoded()
        rejects = result.rejected_fields
        fields = self.typed_fields(flatten(readings, rejects), rejects)
        if RESERVED_FIELD_KEY in fields:
            # InfluxDB keeps "time" for the timestamp and drops or refuses such
            # a field; leave it out alone rather than lose the whole point.
            del fields[RESERVED_FIELD_KEY]
            rejects.append(
                FieldReject(
                    RESERVED_FIELD_KEY,
                    "reserved_key",
                    "InfluxDB reserves 'time' for the timestamp; set timestamp_key "
                    '= "time" if it is the reading time',
                )
            )
        if not fields:
            raise PayloadError(
                "no_fields",
                "no storable value in the message"
                + "".join(
                    f"; {r.field}: {r.detail} ({r.reason})"
                    for r in result.rejected_fields
                ),
                topic=message.topic,
            )
        all_tags = {**tags, **self.tags_from(document)}
        result.points.append(Point(measurement, all_tags, fields, time_ns))
        return result


def _json_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    # int keeps every digit (orjson reads 64-bit integers exactly); floats
    # take their shortest exact spelling.
    return repr(value) if isinstance(value, float) else str(value)
