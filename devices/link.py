"""The simulated fleet's MQTT connection, made again whenever the broker comes back."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from contextlib import suppress
from typing import Any

import gmqtt
from gmqtt.mqtt.constants import MQTTv311
from gmqtt.mqtt.handler import MQTTConnectError

__all__ = ["FleetLink"]

logger = logging.getLogger(__name__)

CONNECT_TIMEOUT_S = 10.0
DISCONNECT_TIMEOUT_S = 5.0
KEEPALIVE_S = 15
RECONNECT_MIN_S = 0.5
RECONNECT_MAX_S = 15.0


class FleetLink:
    """One MQTT connection for the whole fleet; `keep_connected` runs it."""

    def __init__(
        self,
        host: str,
        port: int,
        qos: int = 1,
        username: str | None = None,
        password: str | None = None,
    ) -> None:
        self._host, self._port, self._qos = host, port, qos
        self._username, self._password = username, password
        self._client: gmqtt.Client | None = None
        self._lost = asyncio.Event()
        self.connected = asyncio.Event()
        self.address = f"{host}:{port}"

    async def keep_connected(self) -> None:
        """Connect, and after any loss reconnect with backoff, until cancelled."""
        delay_s = RECONNECT_MIN_S
        down_since: float | None = None
        while True:
            try:
                await self._connect()
            except (OSError, asyncio.TimeoutError, MQTTConnectError) as exc:
                if down_since is None:  # one warning per outage, however long
                    logger.warning(
                        "Cannot reach MQTT broker %s (%s); retrying",
                        self.address,
                        str(exc) or "no answer",
                    )
                    down_since = time.monotonic()
                await asyncio.sleep(delay_s)
                delay_s = min(delay_s * 2, RECONNECT_MAX_S)
                continue
            if down_since is not None:
                logger.info(
                    "Connected to MQTT broker %s again after %.1f s",
                    self.address,
                    time.monotonic() - down_since,
                )
            else:
                logger.info("Connected to MQTT broker %s", self.address)
            delay_s = RECONNECT_MIN_S
            await self._lost.wait()
            self.connected.clear()
            logger.warning(
                "Lost MQTT broker %s; skipping readings until it is back", self.address
            )
            down_since = time.monotonic()

    def publish(self, topic: str, payload: bytes) -> bool:
        """Publish one message if connected; tell whether it was sent."""
        client = self._client
        if client is None or not self.connected.is_set() or not client.is_connected:
            return False
        client.publish(topic, payload, qos=self._qos)
        return True

    async def close(self) -> None:
        """Disconnect politely, if connected."""
        client, self._client = self._client, None
        self.connected.clear()
        if client is None:
            return
        _stop_library_reconnect(client)
        if client.is_connected:
            with suppress(OSError, asyncio.TimeoutError):
                await asyncio.wait_for(client.disconnect(), DISCONNECT_TIMEOUT_S)

    async def _connect(self) -> None:
        await self.close()
        self._lost.clear()
        # Unique: two simulators sharing an id would keep kicking each other off.
        client = gmqtt.Client(
            f"decor-sim-{uuid.uuid4().hex[:12]}",
            logger=logging.getLogger(f"{__name__}.gmqtt"),
        )
        if self._username:
            client.set_auth_credentials(self._username, self._password)
        client.on_disconnect = self._on_disconnect
        self._client = client
        try:
            await asyncio.wait_for(
                client.connect(
                    self._host, self._port, keepalive=KEEPALIVE_S, version=MQTTv311
                ),
                CONNECT_TIMEOUT_S,
            )
        except BaseException:
            await self.close()
            raise
        self.connected.set()

    def _on_disconnect(
        self, client: gmqtt.Client, packet: Any, exc: Any = None
    ) -> None:
        _stop_library_reconnect(client)
        if client is self._client:
            self._lost.set()


def _stop_library_reconnect(client: gmqtt.Client) -> None:
    # gmqtt reconnects by itself, with a fixed delay and a warning per attempt;
    # we reconnect on a fresh client instead. gmqtt has no public switch for
    # this: its reconnect is skipped while it believes one is in progress.
    client._connection_state.reconnecting_now = True  # noqa: SLF001
