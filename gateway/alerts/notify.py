"""Deliver alert notifications (webhooks, Grafana annotations) from a disk outbox.

A notification is written to its own file in the outbox before anyone tries
to deliver it, and the file is removed only once the receiver answered 2xx.
Until then it is retried, oldest first per destination, with a doubling delay
capped at `retry_max_s`, across restarts: none is ever dropped.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import os
import random
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import orjson

__all__ = ["Destination", "Notification", "Notifier", "Outbox"]

logger = logging.getLogger(__name__)

SUFFIX = ".json"
SIGNATURE_HEADER = "X-Decor-Signature"
ID_HEADER = "X-Decor-Notification-Id"
MAX_LOGGED_BODY_CHARS = 200


@dataclass(frozen=True, slots=True)
class Destination:
    """Where notifications go: a name for logs, a URL, and fixed headers."""

    name: str
    url: str
    headers: tuple[tuple[str, str], ...] = ()
    secret: str | None = None


@dataclass(frozen=True, slots=True)
class Notification:
    """One body to deliver to one destination; `notification_id` sorts by age."""

    notification_id: str
    destination: str
    body: dict[str, Any]


class Outbox:
    """Notifications on disk, one file each, until delivered."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)

    def put(self, destination: str, body: dict[str, Any]) -> Notification:
        """Write a notification durably and return it."""
        # Time first, so names sort oldest first; the random part keeps two
        # notifications of one nanosecond apart.
        notification_id = f"{time.time_ns():020d}-{uuid.uuid4().hex[:8]}"
        notification = Notification(notification_id, destination, body)
        data = orjson.dumps({"destination": destination, "body": body})
        path = self._path(notification_id)
        partial = path.with_suffix(".part")
        with partial.open("wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        partial.replace(path)
        return notification

    def pending(self) -> list[Notification]:
        """Return every undelivered notification, oldest first."""
        notifications = []
        for path in sorted(self.directory.glob("*" + SUFFIX)):
            try:
                data = orjson.loads(path.read_bytes())
            except (OSError, orjson.JSONDecodeError) as exc:
                # Kept, not deleted: an operator can read what it held.
                logger.error(
                    "Notification file %s cannot be read (%s); it stays there",
                    path,
                    exc,
                )
                continue
            notifications.append(
                Notification(path.stem, str(data["destination"]), data["body"])
            )
        return notifications

    def remove(self, notification_id: str) -> None:
        """Forget a delivered notification."""
        self._path(notification_id).unlink(missing_ok=True)

    def _path(self, notification_id: str) -> Path:
        return self.directory / (notification_id + SUFFIX)


class Notifier:
    """Deliver the outbox's notifications; `run` does it until cancelled."""

    def __init__(
        self,
        outbox: Outbox,
        destinations: list[Destination],
        *,
        timeout_s: float = 10.0,
        retry_min_s: float = 1.0,
        retry_max_s: float = 300.0,
    ) -> None:
        self.outbox = outbox
        self.destinations = {d.name: d for d in destinations}
        self.timeout_s = timeout_s
        self.retry_min_s = retry_min_s
        self.retry_max_s = retry_max_s
        self.delivered = 0
        self.failed_attempts = 0
        self._wake = asyncio.Event()
        self._unknown_warned: set[str] = set()

    def enqueue(self, destination: str, body: dict[str, Any]) -> None:
        """Put one body for one destination in the outbox, and wake delivery."""
        self.outbox.put(destination, body)
        self._wake.set()

    async def run(self) -> None:
        """Deliver until cancelled; each destination waits out its own failures."""
        retry_at: dict[str, float] = {}
        delays: dict[str, float] = {}
        down_since: dict[str, float] = {}
        async with httpx.AsyncClient(timeout=self.timeout_s) as client:
            while True:
                self._wake.clear()
                now = time.monotonic()
                for notification in self.outbox.pending():
                    name = notification.destination
                    destination = self.destinations.get(name)
                    if destination is None:
                        self._warn_unknown(name)
                        continue
                    if retry_at.get(name, 0.0) > now:
                        continue
                    problem = await self._deliver(client, destination, notification)
                    if problem is None:
                        self.outbox.remove(notification.notification_id)
                        self.delivered += 1
                        if name in down_since:
                            logger.info(
                                "Notifications to %s delivered again after %.1f s",
                                name,
                                time.monotonic() - down_since.pop(name),
                            )
                        delays.pop(name, None)
                        retry_at.pop(name, None)
                        continue
                    self.failed_attempts += 1
                    delay_s = delays.get(name, self.retry_min_s)
                    if name not in down_since:
                        down_since[name] = time.monotonic()
                        logger.warning(
                            "Cannot deliver notification %s to %s (%s); kept in %s "
                            "and retried",
                            notification.notification_id,
                            name,
                            problem,
                            self.outbox.directory,
                        )
                    else:
                        logger.debug("Still cannot deliver to %s: %s", name, problem)
                    retry_at[name] = time.monotonic() + random.uniform(
                        delay_s / 2, delay_s
                    )
                    delays[name] = min(delay_s * 2, self.retry_max_s)
                await self._sleep_until_due(retry_at)

    def _warn_unknown(self, name: str) -> None:
        if name in self._unknown_warned:
            return
        self._unknown_warned.add(name)
        logger.warning(
            "Notifications for %s wait in %s, but no such destination is configured "
            "now (webhooks are named webhook-<n> by their place in "
            "alerts.webhook_urls); they are kept, not sent",
            name,
            self.outbox.directory,
        )

    async def _sleep_until_due(self, retry_at: dict[str, float]) -> None:
        # Only destinations that failed have an entry; a due one is tried at once.
        timeout = (
            max(0.0, min(retry_at.values()) - time.monotonic()) if retry_at else None
        )
        try:
            await asyncio.wait_for(self._wake.wait(), timeout)
        except TimeoutError:
            pass

    async def _deliver(
        self, client: httpx.AsyncClient, destination: Destination, note: Notification
    ) -> str | None:
        """POST one notification; return None once delivered, else why not."""
        content = orjson.dumps(note.body)
        headers = {
            "Content-Type": "application/json",
            ID_HEADER: note.notification_id,
            **dict(destination.headers),
        }
        if destination.secret:
            digest = hmac.new(destination.secret.encode(), content, hashlib.sha256)
            headers[SIGNATURE_HEADER] = "sha256=" + digest.hexdigest()
        try:
            response = await client.post(
                destination.url, content=content, headers=headers
            )
        except httpx.HTTPError as exc:
            return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        if response.is_success:
            return None
        return f"HTTP {response.status_code}: {response.text[:MAX_LOGGED_BODY_CHARS]!r}"
