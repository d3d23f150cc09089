"""Alerts inside the running gateway: judged on the message path, kept, published.

`observe` runs on the MQTT message path and only judges readings in memory
(no database, no network); the changes it finds wait in a list for `run`,
which records each in the registry database and then publishes every
unpublished alert event: retained on MQTT `<topic_prefix>/<device_id>`, as a
point in InfluxDB, and into the notification outbox (webhooks, Grafana).
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Mapping
from datetime import datetime
from typing import Any

import orjson
from sqlalchemy.exc import SQLAlchemyError

from gateway.alerts.engine import AlertChange, AlertEngine
from gateway.alerts.notify import Destination, Notifier, Outbox
from gateway.alerts.rules import DeviceTypeRules
from gateway.alerts.store import AlertEventOut, AlertOut, AlertStore
from gateway.config import AlertsConfig
from gateway.points import Point, encode_line
from gateway.registry.errors import RegistryError

__all__ = ["AlertService", "alert_message", "webhook_body"]

logger = logging.getLogger(__name__)

WEBHOOK_BODY_VERSION = 1
RETRY_MIN_S = 0.5
RETRY_MAX_S = 30.0
EVENTS_PER_ROUND = 200
GRAFANA = "grafana"

Publish = Callable[[str, bytes, bool], bool]
WriteLines = Callable[[list[str]], Awaitable[None]]


class AlertService:
    """Judge readings, record alert changes, publish alert events."""

    def __init__(
        self,
        settings: AlertsConfig,
        rules: Mapping[str, DeviceTypeRules],
        store: AlertStore,
        publish: Publish,
        write_lines: WriteLines,
        *,
        device_tag: str = "device_id",
        profile_tag: str = "device_type",
    ) -> None:
        self.settings = settings
        self.engine = AlertEngine(rules, device_tag=device_tag, profile_tag=profile_tag)
        self.store = store
        self.publish = publish
        self.write_lines = write_lines
        self.notifier = Notifier(
            Outbox(settings.outbox_path),
            _destinations(settings),
            timeout_s=settings.request_timeout_s,
            retry_min_s=settings.retry_min_s,
            retry_max_s=settings.retry_max_s,
        )
        # Unbounded on purpose: a change happens only when a rule's state does
        # (a handful per device and storm), and an alert must not be dropped
        # while the database is away; a warning says when they pile up.
        self._changes: deque[AlertChange] = deque()
        self._wake = asyncio.Event()
        self.events_published = 0

    def restore(self) -> int:
        """Start each rule where the alerts still open left it; return how many."""
        open_alerts = self.store.open_alerts()
        for alert in open_alerts:
            self.engine.restore(alert.device_id, alert.rule, alert.severity)
        return len(open_alerts)

    def observe(self, points: Iterable[Point]) -> None:
        """Judge the points of one message (in memory; never waits)."""
        changes = self.engine.observe(points)
        if changes:
            self.report(changes)

    def report(self, changes: Iterable[AlertChange]) -> None:
        """Take changes judged elsewhere (liveness, cameras) to record and publish."""
        self._changes.extend(changes)
        self._wake.set()

    async def run(self) -> None:
        """Record changes and publish events until cancelled."""
        delay_s = RETRY_MIN_S
        while True:
            try:
                await self._record_changes()
                await self._publish_events()
                delay_s = RETRY_MIN_S
            except (RegistryError, SQLAlchemyError) as exc:
                # Kept in memory and tried again: the database is the record.
                logger.warning(
                    "Cannot record or publish alerts (%s); %d changes waiting, "
                    "retrying in about %.0f s",
                    exc,
                    len(self._changes),
                    delay_s,
                )
                await asyncio.sleep(random.uniform(delay_s / 2, delay_s))
                delay_s = min(delay_s * 2, RETRY_MAX_S)
                continue
            try:
                await asyncio.wait_for(
                    self._wake.wait(), self.settings.publish_interval_s
                )
            except TimeoutError:
                pass
            self._wake.clear()

    async def _record_changes(self) -> None:
        while self._changes:
            change = self._changes[0]
            event = await asyncio.to_thread(self.store.record, change)
            self._changes.popleft()
            if event is not None:
                logger.info(
                    "Alert %d %s: %s %s (%s)",
                    event.alert_id,
                    event.event,
                    change.device_id,
                    change.rule,
                    change.message,
                )

    async def _publish_events(self) -> None:
        pending = await asyncio.to_thread(self.store.unpublished, EVENTS_PER_ROUND)
        for event, alert in pending:
            open_alerts = await asyncio.to_thread(
                self.store.list_alerts, "open", alert.device_id, 1000, 0
            )
            payload = orjson.dumps(
                {
                    "device_id": alert.device_id,
                    "event": event.model_dump(mode="json"),
                    "alert": alert.model_dump(mode="json"),
                    "open": [a.model_dump(mode="json") for a in open_alerts.items],
                }
            )
            topic = f"{self.settings.topic_prefix}/{alert.device_id}"
            if not self.publish(topic, payload, True):
                return  # the broker is away: the event stays unpublished
            await self.write_lines(
                [encode_line(_event_point(self.settings, event, alert))]
            )
            body = webhook_body(event, alert)
            for destination in self.notifier.destinations:
                if destination == GRAFANA:
                    self.notifier.enqueue(GRAFANA, _annotation(event, alert))
                else:
                    self.notifier.enqueue(destination, body)
            await asyncio.to_thread(self.store.mark_published, event.event_id)
            self.events_published += 1


def webhook_body(event: AlertEventOut, alert: AlertOut) -> dict[str, Any]:
    """Return the JSON body POSTed to webhooks for one alert event."""
    return {
        "version": WEBHOOK_BODY_VERSION,
        "type": "alert_event",
        "event": event.model_dump(mode="json"),
        "alert": alert.model_dump(mode="json"),
        "text": alert_message(event, alert),
    }


def alert_message(event: AlertEventOut, alert: AlertOut) -> str:
    """Return one line an operator can read: device, what, level, state."""
    who = f" by {event.actor}" if event.actor else ""
    return (
        f"[{alert.level.upper()}] {alert.device_id}: {alert.message} "
        f"(alert {alert.alert_id} {event.event}{who})"
    )


def _destinations(settings: AlertsConfig) -> list[Destination]:
    destinations = [
        Destination(f"webhook-{index + 1}", url, secret=settings.webhook_secret)
        for index, url in enumerate(settings.webhook_urls)
    ]
    if settings.grafana_url:
        headers = (
            (("Authorization", f"Bearer {settings.grafana_token}"),)
            if settings.grafana_token
            else ()
        )
        destinations.append(
            Destination(
                GRAFANA, settings.grafana_url.rstrip("/") + "/api/annotations", headers
            )
        )
    return destinations


def _annotation(event: AlertEventOut, alert: AlertOut) -> dict[str, Any]:
    # An organisation-wide annotation: any dashboard can show it by tag.
    return {
        "time": _ms(event.at),
        "tags": [
            "decor",
            "alert",
            alert.device_id,
            alert.rule,
            alert.level,
            event.event,
        ],
        "text": alert_message(event, alert),
    }


def _event_point(
    settings: AlertsConfig, event: AlertEventOut, alert: AlertOut
) -> Point:
    fields: dict[str, float | int | bool | str] = {
        "alert_id": alert.alert_id,
        "event_id": event.event_id,
        "severity": alert.severity,
        "state": alert.state,
        "message": alert.message,
    }
    if event.value is not None:
        fields["value"] = float(event.value)
    if event.actor:
        fields["actor"] = event.actor
    return Point(
        measurement=settings.measurement,
        tags={
            "device_id": alert.device_id,
            "rule": alert.rule,
            "kind": alert.kind,
            "level": event.level,
            "event": event.event,
        },
        fields=fields,
        time_ns=int(event.at.timestamp() * 1_000_000) * 1000,
    )


def _ms(at: datetime) -> int:
    return int(at.timestamp() * 1000)
