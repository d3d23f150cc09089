"""Alerts in the registry database: record changes, acknowledge, list, show.

Every change of an alert adds an `AlertEvent` row in the same transaction. A
new event is unpublished until the running gateway has put it on MQTT, in
InfluxDB and in the notification outbox, so an acknowledgement made by the
command line or the API is published by the gateway too, and nothing
recorded is lost when the gateway stops in between.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from gateway.alerts.engine import AlertChange
from gateway.registry.errors import Conflict, NotFound
from gateway.registry.models import AuditEntry
from gateway.registry.operations_models import Alert, AlertEvent
from gateway.registry.schemas import Page
from gateway.registry.service import Registry

__all__ = ["AlertDetail", "AlertEventOut", "AlertOut", "AlertStore", "StateFilter"]

logger = logging.getLogger(__name__)

StateFilter = Literal["open", "firing", "acknowledged", "resolved", "all"]
OPEN_STATES = ("firing", "acknowledged")
NS_PER_S = 1_000_000_000


class _Out(BaseModel):
    model_config = ConfigDict(from_attributes=True)


class AlertOut(_Out):
    """An alert as listed and published."""

    alert_id: int
    device_id: str
    rule: str
    kind: str
    level: str
    severity: int
    state: str
    value: float | None
    unit: str
    message: str
    fired_at: datetime
    acknowledged_at: datetime | None
    acknowledged_by: str | None
    resolved_at: datetime | None


class AlertEventOut(_Out):
    """One change of an alert."""

    event_id: int
    alert_id: int
    at: datetime
    event: str
    level: str
    value: float | None
    actor: str


class AlertDetail(BaseModel):
    """An alert and its whole history, oldest first."""

    alert: AlertOut
    events: list[AlertEventOut]


class AlertStore:
    """Alert operations over the registry's database."""

    def __init__(self, registry: Registry) -> None:
        self.sessions = registry.sessions

    def record(self, change: AlertChange) -> AlertEventOut | None:
        """Store a rule's change as a new, changed or resolved alert.

        Returns the event recorded, or None when the change needs none (a
        rule back to normal with no alert open).
        """
        at = datetime.fromtimestamp(change.at_ns / NS_PER_S, UTC)
        with self.sessions.begin() as session:
            alert = session.scalar(
                select(Alert).where(
                    Alert.device_id == change.device_id,
                    Alert.rule == change.rule,
                    Alert.state.in_(OPEN_STATES),
                )
            )
            if alert is None and change.severity == 0:
                return None
            if (
                alert is not None
                and change.severity == alert.severity
                and change.level == alert.level
            ):
                return None  # told again (a retained status after a reconnect)
            if alert is None:
                alert = Alert(
                    device_id=change.device_id,
                    rule=change.rule,
                    kind=change.kind,
                    state="firing",
                    fired_at=at,
                    severity=change.severity,
                    level=change.level,
                )
                session.add(alert)
                event = "fired"
            elif change.severity == 0:
                alert.state, alert.resolved_at = "resolved", at
                event = "resolved"
            elif change.severity > alert.severity:
                # A worse level needs someone's attention again.
                alert.state = "firing"
                event = "escalated"
            else:
                event = "deescalated"
            if change.severity:
                # A resolved alert keeps the last level it was in, for the record.
                alert.level, alert.severity = change.level, change.severity
            alert.value, alert.unit = change.value, change.unit
            if change.severity:
                # A resolved alert keeps the message of why it was raised.
                alert.message = change.message
            session.flush()
            row = AlertEvent(
                alert_id=alert.alert_id,
                at=at,
                event=event,
                level=change.level,
                value=change.value,
            )
            session.add(row)
            session.flush()
            return AlertEventOut.model_validate(row)

    def acknowledge(self, alert_id: int, actor: str) -> AlertOut:
        """Mark an open alert acknowledged by `actor`; audited.

        Raises NotFound for an unknown id, Conflict when it is resolved or
        acknowledged already.
        """
        with self.sessions.begin() as session:
            alert = session.get(Alert, alert_id)
            if alert is None:
                raise NotFound("alert", str(alert_id))
            if alert.state == "resolved":
                raise Conflict("alert", str(alert_id), "is resolved already")
            if alert.state == "acknowledged":
                raise Conflict(
                    "alert",
                    str(alert_id),
                    f"was acknowledged already by {alert.acknowledged_by} at "
                    f"{alert.acknowledged_at:%Y-%m-%d %H:%M:%S} UTC",
                )
            now = datetime.now(UTC)
            alert.state, alert.acknowledged_at, alert.acknowledged_by = (
                "acknowledged",
                now,
                actor,
            )
            session.add(
                AlertEvent(
                    alert_id=alert_id,
                    at=now,
                    event="acknowledged",
                    level=alert.level,
                    value=alert.value,
                    actor=actor,
                )
            )
            session.add(
                AuditEntry(
                    actor=actor,
                    action="acknowledge",
                    entity="alert",
                    entity_id=str(alert_id),
                    changes={"state": ["firing", "acknowledged"]},
                )
            )
            session.flush()
            logger.info("Alert %d acknowledged by %s", alert_id, actor)
            return AlertOut.model_validate(alert)

    def list_alerts(
        self,
        state: StateFilter = "open",
        device_id: str | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> Page[AlertOut]:
        """Return alerts, newest first; `open` means firing or acknowledged."""
        query = select(Alert)
        if state == "open":
            query = query.where(Alert.state.in_(OPEN_STATES))
        elif state != "all":
            query = query.where(Alert.state == state)
        if device_id is not None:
            query = query.where(Alert.device_id == device_id)
        with self.sessions() as session:
            total = session.scalar(select(func.count()).select_from(query.subquery()))
            rows = session.scalars(
                query.order_by(Alert.alert_id.desc()).limit(limit).offset(offset)
            )
            items = [AlertOut.model_validate(row) for row in rows]
        return Page[AlertOut](items=items, total=total or 0, limit=limit, offset=offset)

    def get(self, alert_id: int) -> AlertDetail:
        """Return one alert and its events; raise NotFound for an unknown id."""
        with self.sessions() as session:
            alert = session.get(Alert, alert_id)
            if alert is None:
                raise NotFound("alert", str(alert_id))
            return AlertDetail(
                alert=AlertOut.model_validate(alert),
                events=_events(session, [alert_id]),
            )

    def open_alerts(self) -> list[AlertOut]:
        """Return every alert still firing or acknowledged."""
        with self.sessions() as session:
            rows = session.scalars(
                select(Alert).where(Alert.state.in_(OPEN_STATES))
            ).all()
            return [AlertOut.model_validate(row) for row in rows]

    def unpublished(self, limit: int = 100) -> list[tuple[AlertEventOut, AlertOut]]:
        """Return the oldest events not yet published, each with its alert now."""
        with self.sessions() as session:
            rows = session.execute(
                select(AlertEvent, Alert)
                .join(Alert, Alert.alert_id == AlertEvent.alert_id)
                .where(AlertEvent.published.is_(False))
                .order_by(AlertEvent.event_id)
                .limit(limit)
            ).all()
            return [
                (AlertEventOut.model_validate(e), AlertOut.model_validate(a))
                for e, a in rows
            ]

    def mark_published(self, event_id: int) -> None:
        """Record that an event is on MQTT, in InfluxDB and in the outbox."""
        with self.sessions.begin() as session:
            row = session.get(AlertEvent, event_id)
            if row is not None:
                row.published = True


def _events(session: Session, alert_ids: list[int]) -> list[AlertEventOut]:
    rows = session.scalars(
        select(AlertEvent)
        .where(AlertEvent.alert_id.in_(alert_ids))
        .order_by(AlertEvent.event_id)
    )
    return [AlertEventOut.model_validate(row) for row in rows]
