"""Alerts, liveness and commands inside `decor run`, wired to the gateway.

`gateway/app.py` holds one `GatewayOperations` when `[alerts]`, `[liveness]`
or `[commands]` is enabled, and calls it at four places only: `start` before
the MQTT session opens, `tasks` for what runs beside the receive loop,
`observe` with the points of each message as they are stored, and `stop` at
shutdown. It keeps its own MQTT connection (client id `<client_id>-ops`) for
what it publishes and for command replies, so the telemetry session and its
acknowledgements are never held up by it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from gateway.alerts.cameras import camera_changes
from gateway.alerts.rules import load_profile_tables, rules_by_device_type
from gateway.alerts.service import AlertService
from gateway.alerts.store import AlertStore
from gateway.commands.dispatcher import CommandDispatcher, reply_filter
from gateway.commands.specs import specs_by_device_type
from gateway.commands.store import CommandStore
from gateway.config import GatewayConfig
from gateway.errors import ConfigError
from gateway.liveness import LivenessTracker
from gateway.points import Point
from gateway.registry.schemas import DeviceOut
from gateway.registry.service import MAX_PAGE, Registry
from gateway.sinks import BatchWriter
from gateway.sources import MqttMessage, MqttSubscriber
from gateway.sources.mqtt import topic_matches

__all__ = ["GatewayOperations"]

logger = logging.getLogger(__name__)

OPS_CLIENT_SUFFIX = "-ops"
PUBLISH_QOS = 1


class GatewayOperations:
    """Alerts, liveness and commands of one running gateway."""

    def __init__(
        self, config: GatewayConfig, writer: BatchWriter, source: str = ""
    ) -> None:
        self.config = config
        self.writer = writer
        tables = load_profile_tables(config.quality.profiles_dir, source)
        self.rules = rules_by_device_type(tables, source)
        try:
            self.command_specs = specs_by_device_type(tables)
        except ValueError as exc:
            raise ConfigError(str(exc), key="quality.profiles_dir", source=source)
        mqtt = config.mqtt
        client_id = mqtt.client_id[: 64 - len(OPS_CLIENT_SUFFIX)] + OPS_CLIENT_SUFFIX
        filters: list[tuple[str, int]] = []
        if config.commands.enabled:
            filters.append((reply_filter(config.commands.reply_topic), 1))
        if config.alerts.enabled and config.alerts.camera_status_topic:
            filters.append((config.alerts.camera_status_topic, 1))
        self.link = MqttSubscriber(
            mqtt.model_copy(
                update={
                    "client_id": client_id,
                    "clean_start": True,
                    "session_expiry_s": 0,
                }
            ),
            filters,
            self._on_message,
        )
        self.registry: Registry | None = None
        self.alerts: AlertService | None = None
        self.liveness: LivenessTracker | None = None
        self.commands: CommandDispatcher | None = None

    @classmethod
    def from_config(
        cls, config: GatewayConfig, writer: BatchWriter, source: str = ""
    ) -> GatewayOperations | None:
        """Return the operations the configuration enables, or None if none."""
        if not (
            config.alerts.enabled or config.liveness.enabled or config.commands.enabled
        ):
            return None
        return cls(config, writer, source)

    async def start(self) -> None:
        """Open the registry database and build what is enabled.

        Raises RegistryError when the database cannot be opened: alerts and
        commands live there, and must not be silently missing.
        """
        config = self.config
        self.registry = await asyncio.to_thread(
            Registry.open, config.registry.database_url
        )
        tags = {
            "device_tag": config.quality.device_tag,
            "profile_tag": config.quality.profile_tag,
        }
        if config.alerts.enabled:
            self.alerts = AlertService(
                config.alerts,
                self.rules,
                AlertStore(self.registry),
                self._publish_retained,
                self._write_lines,
                **tags,
            )
            restored = await asyncio.to_thread(self.alerts.restore)
            logger.info(
                "Judging readings by the profiles' alert rules; %d alerts still "
                "open; notifying %d destinations",
                restored,
                len(self.alerts.notifier.destinations),
            )
        if config.liveness.enabled:
            self.liveness = LivenessTracker(
                config.liveness,
                self.rules,
                self._publish_retained,
                self._write_lines,
                self.alerts.report if self.alerts is not None else None,
                **tags,
            )
            await self._refresh_expected()
        if config.commands.enabled:
            self.commands = CommandDispatcher(
                config.commands,
                CommandStore(self.registry, self.command_specs),
                self.command_specs,
                self._publish_command,
                device_tag=config.quality.device_tag,
                ready=self.link.connected.is_set,
            )
            resumed = await self.commands.resume()
            if resumed:
                logger.info(
                    "Following %d commands an earlier run sent and did not see end",
                    resumed,
                )

    def tasks(self) -> list[tuple[str, Callable[[], Awaitable[None]]]]:
        """Return the long-running work to supervise, by task name."""
        tasks: list[tuple[str, Callable[[], Awaitable[None]]]] = [
            (f"mqtt[{self.link.address}].operations", self.link.run)
        ]
        if self.alerts is not None:
            tasks.append(("alerts.publish", self.alerts.run))
            tasks.append(("alerts.notify", self.alerts.notifier.run))
        if self.liveness is not None:
            tasks.append(("liveness.check", self.liveness.run))
            tasks.append(("liveness.registry", self._keep_expected))
        if self.commands is not None:
            tasks.append(("commands.dispatch", self.commands.run))
        return tasks

    def observe(self, points: Iterable[Point]) -> None:
        """Show the points of one message to alerts, liveness and commands."""
        points = list(points)
        if not points:
            return
        if self.liveness is not None:
            self.liveness.observe(points)
        if self.alerts is not None:
            self.alerts.observe(points)
        if self.commands is not None:
            self.commands.observe(points)

    async def stop(self) -> None:
        """Disconnect and close the database (the tasks are cancelled by the caller)."""
        await self.link.stop()
        if self.registry is not None:
            self.registry.close()

    async def _on_message(self, message: MqttMessage) -> None:
        camera_filter = self.config.alerts.camera_status_topic
        if camera_filter and topic_matches(camera_filter, message.topic):
            if self.alerts is not None:
                self.alerts.report(camera_changes(message))
            return
        if self.commands is not None:
            self.commands.handle_reply(message)

    def _publish_retained(self, topic: str, payload: bytes, retain: bool) -> bool:
        if not self.link.connected.is_set():
            return False
        return self.link.publish(topic, payload, PUBLISH_QOS, retain=retain)

    def _publish_command(
        self, topic: str, payload: bytes, properties: dict[str, Any]
    ) -> bool:
        if not self.link.connected.is_set():
            return False
        return self.link.publish(topic, payload, PUBLISH_QOS, properties=properties)

    async def _write_lines(self, lines: list[str]) -> None:
        # Not waiting for the lines to be stored: the writer spools them.
        await self.writer.add(lines)

    async def _keep_expected(self) -> None:
        while True:
            await asyncio.sleep(self.config.registry.refresh_interval_s)
            await self._refresh_expected()

    async def _refresh_expected(self) -> None:
        """Track the registry's active devices at their expected intervals."""
        assert self.liveness is not None
        for device in await self._devices("active"):
            self.liveness.expect(
                device.device_id, device.expected_cadence_s, device.profile
            )
        for device in await self._devices("decommissioned"):
            self.liveness.forget(device.device_id)

    async def _devices(self, status: str) -> list[DeviceOut]:
        assert self.registry is not None
        devices: list[DeviceOut] = []
        while True:
            page = await asyncio.to_thread(
                self.registry.list_devices,
                status=status,
                limit=MAX_PAGE,
                offset=len(devices),
            )
            devices.extend(page.items)
            if not page.items or len(devices) >= page.total:
                return devices
