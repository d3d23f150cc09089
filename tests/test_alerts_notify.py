"""The notification outbox: nothing is lost while a receiver is down, refuses, or
the gateway restarts in between; a real HTTP receiver on loopback.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from gateway.alerts.notify import Destination, Notifier, Outbox
from tests.conftest import wait_until
from tests.operations_support import WebhookReceiver
from tests.test_faults import free_port


def _notifier(outbox: Outbox, url: str) -> Notifier:
    return Notifier(
        outbox, [Destination("webhook-1", url)], retry_min_s=0.1, retry_max_s=0.3
    )


async def test_notifications_survive_a_restart_while_the_receiver_is_down(
    tmp_path: Path,
):
    """Test that notifications queued while the receiver is down are delivered,
    in order and once each, by a new notifier after a restart."""
    receiver = WebhookReceiver(free_port())
    first = _notifier(Outbox(tmp_path / "outbox"), receiver.url)
    running = asyncio.create_task(first.run())
    for number in range(5):
        first.enqueue("webhook-1", {"n": number})
    assert await wait_until(lambda: first.failed_attempts >= 2)
    running.cancel()
    await asyncio.gather(running, return_exceptions=True)
    kept = sorted(p.name for p in (tmp_path / "outbox").glob("*.json"))

    receiver.start()
    second = _notifier(Outbox(tmp_path / "outbox"), receiver.url)
    running = asyncio.create_task(second.run())
    try:
        assert await wait_until(lambda: len(receiver.received) == 5)
    finally:
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)
        receiver.stop()

    assert len(kept) == 5
    assert [r.body["n"] for r in receiver.received] == [0, 1, 2, 3, 4]
    assert [r.headers["X-Decor-Notification-Id"] for r in receiver.received] == [
        name.removesuffix(".json") for name in kept
    ]
    assert not list((tmp_path / "outbox").glob("*.json"))


async def test_notification_refused_by_the_receiver_is_retried(tmp_path: Path):
    """Test that a 503 answer keeps the notification until a later try succeeds."""
    receiver = WebhookReceiver(free_port(), refuse_first=2)
    receiver.start()
    notifier = _notifier(Outbox(tmp_path / "outbox"), receiver.url)
    running = asyncio.create_task(notifier.run())
    try:
        notifier.enqueue("webhook-1", {"alert": "siaga"})
        assert await wait_until(lambda: len(receiver.received) == 1)
    finally:
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)
        receiver.stop()

    assert receiver.attempts_while_up == 3
    assert notifier.failed_attempts == 2
    assert notifier.delivered == 1
