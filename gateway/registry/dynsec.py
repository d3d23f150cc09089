"""Give each device its own broker account through Mosquitto's dynamic security.

Commands go to `$CONTROL/dynamic-security/v1` as JSON and the plugin answers on
`.../response`. A device gets a role allowing it to publish only to its own
telemetry topics and to subscribe only to its own command topic; the plugin's
default access (set by `mosquitto_ctrl dynsec init`) denies every other
publish and subscribe. Its password is made here, sent to the broker, shown
once to the technician, and kept nowhere else.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import gmqtt
import orjson
from gmqtt.mqtt.constants import MQTTv311
from gmqtt.mqtt.handler import MQTTConnectError

from gateway.config import DynsecConfig
from gateway.registry.errors import AccessError
from gateway.registry.schemas import DeviceOut

__all__ = ["DeviceCredentials", "DynamicSecurity", "device_topics"]

logger = logging.getLogger(__name__)

CONTROL_TOPIC = "$CONTROL/dynamic-security/v1"
RESPONSE_TOPIC = CONTROL_TOPIC + "/response"
PASSWORD_BYTES = 18
ROLE_PREFIX = "decor-device-"
# Answers that mean "already gone": revoking twice is not an error.
_GONE = ("not found",)
GMQTT_NEVER_RECONNECT = -2


@dataclass(frozen=True)
class DeviceCredentials:
    """A device's broker account; the password exists only in this object."""

    username: str
    password: str
    publish_topics: tuple[str, ...]
    command_topic: str

    def __repr__(self) -> str:
        return f"DeviceCredentials({self.username!r}, password=***)"


def device_topics(settings: DynsecConfig, device: DeviceOut) -> tuple[list[str], str]:
    """Return the topics a device may publish to, and the one it may subscribe to."""
    names = {
        "agency": device.agency,
        "device_type": device.profile,
        "device_id": device.device_id,
    }
    publish = [template.format_map(names) for template in settings.telemetry_topics]
    return publish, settings.command_topic.format_map(names)


class DynamicSecurity:
    """A connection to the broker's dynamic-security API, used as `async with`."""

    def __init__(self, settings: DynsecConfig) -> None:
        self.settings = settings
        self._client: Any = None
        self._waiting: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._subscribed = asyncio.Event()

    async def __aenter__(self) -> DynamicSecurity:
        client = gmqtt.Client(f"decor-registry-{uuid.uuid4().hex[:8]}")
        client.set_auth_credentials(self.settings.username, self.settings.password)
        # One short session: a failure is reported, not retried behind our back.
        client.set_config({"reconnect_retries": GMQTT_NEVER_RECONNECT})
        client.on_message = self._on_message
        client.on_subscribe = lambda *_: self._subscribed.set()
        address = f"{self.settings.host}:{self.settings.port}"
        try:
            async with asyncio.timeout(self.settings.timeout_s):
                await client.connect(
                    self.settings.host, self.settings.port, version=MQTTv311
                )
                client.subscribe(RESPONSE_TOPIC, qos=1)
                await self._subscribed.wait()
        except MQTTConnectError as exc:
            raise AccessError(
                "connect",
                f"broker {address} refused account {self.settings.username!r}: {exc}",
            ) from None
        except (OSError, TimeoutError) as exc:
            raise AccessError(
                "connect", f"cannot reach broker {address}: {exc or 'timed out'}"
            ) from None
        self._client = client
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self._client is not None:
            await self._client.disconnect()
            self._client = None

    async def grant_device(self, device: DeviceOut) -> DeviceCredentials:
        """Create the device's role and account; return its new password."""
        publish, command = device_topics(self.settings, device)
        role = ROLE_PREFIX + device.device_id
        acls = [_acl("publishClientSend", topic) for topic in publish]
        acls += [
            _acl("subscribeLiteral", command),
            _acl("publishClientReceive", command),
        ]
        await self.run({"command": "createRole", "rolename": role, "acls": acls})
        password = secrets.token_urlsafe(PASSWORD_BYTES)
        try:
            await self.run(
                {
                    "command": "createClient",
                    "username": device.device_id,
                    "password": password,
                    "roles": [{"rolename": role}],
                }
            )
        except AccessError:
            await self.run({"command": "deleteRole", "rolename": role}, gone_ok=True)
            raise
        logger.info("Created broker account %s with its own topics", device.device_id)
        return DeviceCredentials(device.device_id, password, tuple(publish), command)

    async def grant_service(
        self,
        username: str,
        password: str,
        *,
        read_filters: Sequence[str] = (),
        write_filters: Sequence[str] = (),
    ) -> None:
        """Create an account for a service (the gateway itself) with only these rights.

        Args:
            read_filters: topic filters it may subscribe to and receive from.
            write_filters: topic filters it may publish to.
        """
        role = f"decor-service-{username}"
        acls = [_acl("subscribePattern", topic) for topic in read_filters]
        acls += [_acl("publishClientReceive", topic) for topic in read_filters]
        acls += [_acl("publishClientSend", topic) for topic in write_filters]
        await self.run({"command": "createRole", "rolename": role, "acls": acls})
        await self.run(
            {
                "command": "createClient",
                "username": username,
                "password": password,
                "roles": [{"rolename": role}],
            }
        )
        logger.info("Created broker account %s for a service", username)

    async def revoke_device(self, username: str, device_id: str) -> None:
        """Delete a device's account (the broker disconnects it) and its role."""
        await self.run({"command": "deleteClient", "username": username}, gone_ok=True)
        await self.run(
            {"command": "deleteRole", "rolename": ROLE_PREFIX + device_id},
            gone_ok=True,
        )
        logger.info("Deleted broker account %s", username)

    async def run(
        self, command: dict[str, Any], *, gone_ok: bool = False
    ) -> dict[str, Any]:
        """Send one command and return the answer; raise AccessError on an error."""
        assert self._client is not None, "use DynamicSecurity as `async with`"
        correlation = uuid.uuid4().hex
        answer: asyncio.Future[dict[str, Any]] = (
            asyncio.get_running_loop().create_future()
        )
        self._waiting[correlation] = answer
        body = {"commands": [{**command, "correlationData": correlation}]}
        self._client.publish(CONTROL_TOPIC, orjson.dumps(body), qos=1)
        try:
            async with asyncio.timeout(self.settings.timeout_s):
                response = await answer
        except TimeoutError:
            raise AccessError(
                command["command"],
                f"no answer within {self.settings.timeout_s:g} s: does the broker "
                "load the dynamic security plugin, and does account "
                f"{self.settings.username!r} hold its admin role?",
            ) from None
        finally:
            self._waiting.pop(correlation, None)
        error = response.get("error")
        if error and not (gone_ok and any(word in error.lower() for word in _GONE)):
            raise AccessError(command["command"], str(error))
        return response

    def _on_message(
        self, client: Any, topic: str, payload: bytes, qos: int, props: Any
    ) -> int:
        try:
            responses = orjson.loads(payload).get("responses", [])
        except (orjson.JSONDecodeError, AttributeError):
            logger.warning("Unreadable dynamic-security answer %r", payload[:200])
            return 0
        for response in responses:
            waiting = self._waiting.get(str(response.get("correlationData")))
            if waiting is not None and not waiting.done():
                waiting.set_result(response)
        return 0


def _acl(kind: str, topic: str) -> dict[str, Any]:
    return {"acltype": kind, "topic": topic, "priority": 0, "allow": True}
