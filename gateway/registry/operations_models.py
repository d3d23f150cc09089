"""Tables of what the operations room does: alerts, their history, device commands.

Kept apart from the registry's own tables (`models.py`) but in the same
metadata, so the same migrations build them and the same test compares them.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    CheckConstraint,
    Float,
    ForeignKey,
    Integer,
    String,
    Text,
)
from sqlalchemy.orm import Mapped, mapped_column

from gateway.registry.models import ID_LENGTH, Base, UtcDateTime, utc_now

__all__ = [
    "ALERT_STATES",
    "COMMAND_STATES",
    "FINISHED_COMMAND_STATES",
    "Alert",
    "AlertEvent",
    "Command",
]

ALERT_STATES = ("firing", "acknowledged", "resolved")
# awaiting_approval: a critical actuator's command waits for a second person.
# acknowledged: the device answered; confirmed: its telemetry shows the result.
COMMAND_STATES = (
    "awaiting_approval",
    "queued",
    "sent",
    "acknowledged",
    "confirmed",
    "failed",
)
FINISHED_COMMAND_STATES = ("confirmed", "failed")


def _in(values: tuple[str, ...]) -> str:
    return ", ".join(f"'{value}'" for value in values)


class Alert(Base):
    """One alert of one device and rule, from firing until resolved."""

    __tablename__ = "alerts"
    __table_args__ = (CheckConstraint(f"state IN ({_in(ALERT_STATES)})", name="state"),)

    alert_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    # Not a foreign key: cameras and devices not (yet) registered raise alerts too.
    device_id: Mapped[str] = mapped_column(String(ID_LENGTH), index=True)
    rule: Mapped[str] = mapped_column(String(ID_LENGTH * 2))
    kind: Mapped[str] = mapped_column(String(40))
    level: Mapped[str] = mapped_column(String(ID_LENGTH))
    severity: Mapped[int] = mapped_column(Integer)
    state: Mapped[str] = mapped_column(String(20), index=True)
    value: Mapped[float | None] = mapped_column(Float)
    unit: Mapped[str] = mapped_column(String(40), default="")
    message: Mapped[str] = mapped_column(Text, default="")
    fired_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utc_now)
    acknowledged_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    acknowledged_by: Mapped[str | None] = mapped_column(String(200))
    resolved_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    updated_at: Mapped[datetime] = mapped_column(
        UtcDateTime(), default=utc_now, onupdate=utc_now
    )

    def __repr__(self) -> str:
        return f"Alert({self.alert_id}, {self.device_id!r}, {self.rule}, {self.state})"


class AlertEvent(Base):
    """One change of an alert; also the outbox the gateway publishes from."""

    __tablename__ = "alert_events"

    event_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    alert_id: Mapped[int] = mapped_column(ForeignKey("alerts.alert_id"), index=True)
    at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utc_now)
    # fired, escalated, deescalated, acknowledged, resolved
    event: Mapped[str] = mapped_column(String(20))
    level: Mapped[str] = mapped_column(String(ID_LENGTH))
    value: Mapped[float | None] = mapped_column(Float)
    actor: Mapped[str] = mapped_column(String(200), default="")
    # False until MQTT, InfluxDB and the notification outbox have it.
    published: Mapped[bool] = mapped_column(Boolean, default=False, index=True)

    def __repr__(self) -> str:
        return f"AlertEvent({self.event_id}, alert {self.alert_id}, {self.event})"


class Command(Base):
    """One command to a device, from request to confirmed or failed."""

    __tablename__ = "commands"
    __table_args__ = (
        CheckConstraint(f"state IN ({_in(COMMAND_STATES)})", name="state"),
        CheckConstraint("timeout_s > 0", name="timeout_positive"),
    )

    command_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    device_id: Mapped[str] = mapped_column(ForeignKey("devices.device_id"), index=True)
    action: Mapped[str] = mapped_column(String(ID_LENGTH))
    args: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    state: Mapped[str] = mapped_column(String(20), index=True)
    critical: Mapped[bool] = mapped_column(Boolean, default=False)
    requested_by: Mapped[str] = mapped_column(String(200))
    approved_by: Mapped[str | None] = mapped_column(String(200))
    timeout_s: Mapped[float] = mapped_column(Float)
    detail: Mapped[str] = mapped_column(Text, default="")
    reply: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utc_now)
    sent_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    acknowledged_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    finished_at: Mapped[datetime | None] = mapped_column(UtcDateTime())

    def __repr__(self) -> str:
        return f"Command({self.command_id!r}, {self.device_id!r}, {self.state})"
