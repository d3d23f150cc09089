"""Send queued commands to devices and follow each to confirmed or failed.

Runs inside the gateway. Each command goes out on the device's command
topic as JSON with its correlation id and the reply topic; over MQTT 5 the
same travel as the Response Topic and Correlation Data properties, so a
device may answer either way. A reply completes the `sent` step; where the
profile names the reading that shows the effect, the device's telemetry then
confirms it. No reply within the command's timeout, or no confirming reading
within `confirm_timeout_s`, fails it.

Commands under way are followed in memory; at start the gateway takes up
those an earlier run left `sent` or `acknowledged` (`resume`), with their
deadlines counted from when they were sent.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson
from sqlalchemy.exc import SQLAlchemyError

from gateway.commands.specs import CommandSpec, Confirmation
from gateway.commands.store import CommandOut, CommandStore, Outgoing
from gateway.config import CommandsConfig
from gateway.points import Point
from gateway.registry.errors import RegistryError
from gateway.sources import MqttMessage

__all__ = ["CommandDispatcher", "reply_filter"]

logger = logging.getLogger(__name__)

OK_STATUSES = ("ok", "done", "accepted")
COMMAND_QOS = 1

PublishCommand = Callable[[str, bytes, dict[str, Any]], bool]


@dataclass
class _InFlight:
    command: CommandOut
    confirm: Confirmation | None
    deadline_s: float  # monotonic
    acknowledged: bool = False
    seen_effect: bool = False


def reply_filter(template: str) -> str:
    """Return the topic filter covering every device's reply topic."""
    return (
        template.replace("{device_id}", "+")
        .replace("{agency}", "+")
        .replace("{device_type}", "+")
    )


class CommandDispatcher:
    """Commands between the database and the broker."""

    def __init__(
        self,
        settings: CommandsConfig,
        store: CommandStore,
        specs: Mapping[str, Mapping[str, CommandSpec]],
        publish: PublishCommand,
        *,
        device_tag: str = "device_id",
        ready: Callable[[], bool] = lambda: True,
    ) -> None:
        self.settings = settings
        self.store = store
        self.specs = specs
        self.publish = publish
        self.device_tag = device_tag
        # False while the broker is away: commands then stay queued rather
        # than being claimed and put back at every round.
        self.ready = ready
        self.in_flight: dict[str, _InFlight] = {}
        self._device_commands: dict[str, set[str]] = {}
        self._settled: list[tuple[str, str, str, dict[str, Any] | None]] = []
        self._wake = asyncio.Event()

    async def resume(self) -> int:
        """Follow again the commands an earlier run sent and did not see end.

        Their deadlines run from when they were sent (or acknowledged), so a
        reply arriving after a restart still completes a command, and one
        whose time ran out while no gateway ran fails at once.
        """
        now_s, now = time.monotonic(), datetime.now(UTC)
        outgoing = await asyncio.to_thread(self.store.unfinished)
        for item in outgoing:
            command = item.command
            spec = self.specs.get(item.profile, {}).get(command.action)
            acknowledged = command.state == "acknowledged"
            since = (
                command.acknowledged_at if acknowledged else command.sent_at
            ) or now
            allowed_s = (
                self.settings.confirm_timeout_s if acknowledged else command.timeout_s
            )
            left_s = allowed_s - (now - since).total_seconds()
            self._track(
                command,
                spec.confirm if spec is not None else None,
                now_s + max(0.0, left_s),
                acknowledged=acknowledged,
            )
        return len(outgoing)

    async def run(self) -> None:
        """Send, time out and settle commands until cancelled."""
        while True:
            try:
                await self._round()
            except (RegistryError, SQLAlchemyError) as exc:
                logger.warning("Cannot read or update commands (%s); retrying", exc)
            try:
                await asyncio.wait_for(self._wake.wait(), self.settings.poll_interval_s)
            except TimeoutError:
                pass
            self._wake.clear()

    def handle_reply(self, message: MqttMessage) -> None:
        """Take a device's answer (cheap; the database is updated in `run`)."""
        try:
            body = orjson.loads(message.payload)
        except orjson.JSONDecodeError:
            body = None
        if not isinstance(body, dict):
            logger.warning(
                "Ignored a command reply on %r that is not a JSON object: %r",
                message.topic,
                message.payload[:200],
            )
            return
        correlation = (
            message.correlation_data.decode("utf-8", "replace")
            if message.correlation_data
            else str(body.get("correlation_id") or body.get("command_id") or "")
        )
        flight = self.in_flight.get(correlation)
        if flight is None:
            logger.info(
                "Reply on %r for command %r, which this gateway is not waiting "
                "for (finished, timed out, or sent by another gateway)",
                message.topic,
                correlation,
            )
            return
        status = str(body.get("status", "")).lower()
        detail = str(body.get("detail", ""))
        if status not in OK_STATUSES:
            self._settle(
                correlation,
                "failed",
                f"device answered {status or 'no status'}: {detail}",
                body,
            )
            return
        flight.acknowledged = True
        if flight.confirm is None or flight.seen_effect:
            state = "confirmed" if flight.confirm is not None else "acknowledged"
            self._settle(correlation, state, detail, body)
            return
        flight.deadline_s = time.monotonic() + self.settings.confirm_timeout_s
        self._settled.append((correlation, "acknowledged", detail, body))
        self._wake.set()

    def observe(self, points: Iterable[Point]) -> None:
        """Look in a message's points for the effect commands wait for."""
        if not self._device_commands:
            return
        for point in points:
            device_id = point.tags.get(self.device_tag)
            for command_id in list(self._device_commands.get(device_id or "", ())):
                flight = self.in_flight[command_id]
                if flight.confirm is None or not flight.confirm.shown_by(point.fields):
                    continue
                if flight.acknowledged:
                    confirm = flight.confirm
                    self._settle(
                        command_id,
                        "confirmed",
                        f"telemetry shows {confirm.field} = {confirm.equals:g}",
                        None,
                    )
                else:
                    # The device reported the effect before its answer arrived.
                    flight.seen_effect = True

    async def _round(self) -> None:
        await self._write_settled()
        expired = await asyncio.to_thread(
            self.store.expire_queued, self.settings.queue_timeout_s
        )
        del expired  # logged by the store
        if self.ready():
            for outgoing in await asyncio.to_thread(self.store.claim_queued):
                await self._send(outgoing)
        now_s = time.monotonic()
        for command_id, flight in list(self.in_flight.items()):
            if now_s < flight.deadline_s:
                continue
            if flight.acknowledged:
                confirm = flight.confirm
                assert confirm is not None
                detail = (
                    f"acknowledged, but no reading showed {confirm.field} = "
                    f"{confirm.equals:g} within {self.settings.confirm_timeout_s:g} s"
                )
            else:
                detail = (
                    f"no reply from the device within {flight.command.timeout_s:g} s"
                )
            self._settle(command_id, "failed", detail, None)
        await self._write_settled()

    async def _send(self, outgoing: Outgoing) -> None:
        command = outgoing.command
        names = {
            "device_id": command.device_id,
            "agency": outgoing.agency,
            "device_type": outgoing.profile,
        }
        topic = self.settings.topic.format_map(names)
        reply_to = self.settings.reply_topic.format_map(names)
        payload = orjson.dumps(
            {
                "command_id": command.command_id,
                "correlation_id": command.command_id,
                "action": command.action,
                "args": command.args,
                "reply_to": reply_to,
                "sent_at": datetime.now(UTC).isoformat(),
            }
        )
        properties = {
            "response_topic": reply_to,
            "correlation_data": command.command_id.encode(),
        }
        if not self.publish(topic, payload, properties):
            await asyncio.to_thread(self.store.unclaim, command.command_id)
            return
        spec = self.specs.get(outgoing.profile, {}).get(command.action)
        self._track(
            command,
            spec.confirm if spec is not None else None,
            time.monotonic() + command.timeout_s,
        )
        logger.info(
            "Sent command %s (%s %s) to %s on %r",
            command.command_id,
            command.action,
            command.args,
            command.device_id,
            topic,
        )

    def _track(
        self,
        command: CommandOut,
        confirm: Confirmation | None,
        deadline_s: float,
        *,
        acknowledged: bool = False,
    ) -> None:
        self.in_flight[command.command_id] = _InFlight(
            command=command,
            confirm=confirm,
            deadline_s=deadline_s,
            acknowledged=acknowledged,
        )
        self._device_commands.setdefault(command.device_id, set()).add(
            command.command_id
        )

    def _settle(
        self, command_id: str, state: str, detail: str, reply: dict[str, Any] | None
    ) -> None:
        flight = self.in_flight.pop(command_id, None)
        if flight is not None:
            waiting = self._device_commands.get(flight.command.device_id, set())
            waiting.discard(command_id)
            if not waiting:
                self._device_commands.pop(flight.command.device_id, None)
        self._settled.append((command_id, state, detail, reply))
        self._wake.set()

    async def _write_settled(self) -> None:
        while self._settled:
            command_id, state, detail, reply = self._settled[0]
            await asyncio.to_thread(
                self.store.advance, command_id, state, detail, reply
            )
            self._settled.pop(0)
