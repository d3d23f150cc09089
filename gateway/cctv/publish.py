"""Publish camera state changes on MQTT: a retained status and an event stream.

`<prefix>/<camera>/status` holds the camera's current status, retained, so a
dashboard that subscribes later sees it at once. `<prefix>/<camera>/event`
carries each change (online, offline, frozen, covered, ...) as it happens.
While the broker is away, the latest status per camera waits and is sent on
reconnect; events of that time are counted and dropped (their effect is in
the retained status).
"""

from __future__ import annotations

import asyncio
import logging
import random
from typing import Any

import gmqtt
import orjson
from gmqtt.mqtt.constants import MQTTv50, MQTTv311

from gateway.cctv.health import HealthEvent
from gateway.config import MqttConfig
from gateway.errors import describe_connection_failure

__all__ = ["StatusPublisher"]

logger = logging.getLogger(__name__)

CONNECT_TIMEOUT_S = 10.0
MAX_CLIENT_ID_CHARS = 64
CLIENT_ID_SUFFIX = "-cctv"


class StatusPublisher:
    """Hold one MQTT connection for camera statuses and events."""

    def __init__(self, config: MqttConfig, topic_prefix: str) -> None:
        self._config = config
        self._prefix = topic_prefix.rstrip("/")
        self._client: Any = None
        self._pending: dict[str, bytes] = {}
        self._lost = asyncio.Event()
        self.connected = asyncio.Event()
        self.events_dropped = 0
        self.published = 0

    def status(self, camera: str, status: dict[str, Any]) -> None:
        """Publish a camera's status (retained), now or on reconnect."""
        payload = orjson.dumps(status)
        topic = f"{self._prefix}/{camera}/status"
        if not self._send(topic, payload, retain=True):
            self._pending[topic] = payload

    def event(self, event: HealthEvent, status: dict[str, Any]) -> None:
        """Publish one change of a camera's state."""
        payload = orjson.dumps(
            {
                "camera": event.camera,
                "event": event.event,
                "reason": event.reason,
                "time": event.time_ns / 1e9,
                "status": status,
            }
        )
        if not self._send(
            f"{self._prefix}/{event.camera}/event", payload, retain=False
        ):
            self.events_dropped += 1

    async def run(self) -> None:
        """Connect, and reconnect with backoff whenever the broker goes away."""
        delay_s = self._config.reconnect_min_s
        while True:
            try:
                await self._connect()
            except (TimeoutError, OSError, gmqtt.mqtt.handler.MQTTConnectError) as exc:
                logger.debug(
                    "Camera status publisher cannot reach the broker at %s:%d: %s",
                    self._config.host,
                    self._config.port,
                    describe_connection_failure(exc),
                )
                await asyncio.sleep(random.uniform(delay_s / 2, delay_s))
                delay_s = min(delay_s * 2, self._config.reconnect_max_s)
                continue
            delay_s = self._config.reconnect_min_s
            await self._lost.wait()
            self.connected.clear()

    async def close(self) -> None:
        """Disconnect cleanly."""
        client, self._client = self._client, None
        if client is not None and client.is_connected:
            try:
                await asyncio.wait_for(client.disconnect(), timeout=5)
            except (TimeoutError, OSError):
                pass

    async def _connect(self) -> None:
        config = self._config
        client_id = (config.client_id + CLIENT_ID_SUFFIX)[-MAX_CLIENT_ID_CHARS:]
        client = gmqtt.Client(client_id, clean_session=True)
        # Reconnects are ours, with backoff, on a fresh client.
        client.set_config({"reconnect_retries": -2})
        if config.username:
            client.set_auth_credentials(config.username, config.password)
        client.on_disconnect = lambda *args: self._lost.set()
        self._lost.clear()
        await asyncio.wait_for(
            client.connect(
                config.host,
                config.port,
                keepalive=config.keepalive_s,
                version=MQTTv50 if config.protocol == "5" else MQTTv311,
            ),
            timeout=CONNECT_TIMEOUT_S,
        )
        self._client = client
        self.connected.set()
        pending, self._pending = self._pending, {}
        for topic, payload in pending.items():
            self._send(topic, payload, retain=True)

    def _send(self, topic: str, payload: bytes, *, retain: bool) -> bool:
        client = self._client
        if client is None or not client.is_connected or self._lost.is_set():
            return False
        client.publish(topic, payload, qos=1, retain=retain)
        self.published += 1
        return True
