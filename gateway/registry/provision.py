"""Register and retire devices together with their broker accounts.

The registry and the broker are two stores with no shared transaction, so
each step is ordered to fail safe: a device whose account cannot be made is
removed again, and a device is marked decommissioned only once its account is
gone from the broker.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Sequence

from gateway.config import DynsecConfig, GatewayConfig
from gateway.decoding import TopicTemplate
from gateway.registry.dynsec import DeviceCredentials, DynamicSecurity
from gateway.registry.errors import AccessError, Conflict
from gateway.registry.schemas import DeviceIn, DeviceOut
from gateway.registry.service import Registry

__all__ = [
    "gateway_rights",
    "grant_devices",
    "grant_gateway",
    "register_device",
    "retire_device",
]

logger = logging.getLogger(__name__)

# Where the gateway asks Sparkplug edge nodes for a rebirth.
SPARKPLUG_COMMANDS = "spBv1.0/+/NCMD/+"
GATEWAY_PASSWORD_BYTES = 18


async def register_device(
    registry: Registry, access: DynsecConfig, data: DeviceIn, actor: str
) -> tuple[DeviceOut, DeviceCredentials | None]:
    """Register a device and, when dynamic security is on, make its broker account.

    Returns the device and its credentials (None when dynamic security is
    off). Raises AccessError, with the device left unregistered, when the
    broker refuses or does not answer.
    """
    device = await asyncio.to_thread(registry.add_device, data, actor)
    if not access.enabled:
        return device, None
    granted, failures = await grant_devices(registry, access, [device], actor)
    if failures:
        await asyncio.to_thread(
            registry.delete_device, device.device_id, actor, str(failures[0][1])
        )
        raise failures[0][1]
    return await asyncio.to_thread(registry.get_device, device.device_id), granted[0]


async def grant_devices(
    registry: Registry, access: DynsecConfig, devices: Sequence[DeviceOut], actor: str
) -> tuple[list[DeviceCredentials], list[tuple[str, AccessError]]]:
    """Make broker accounts for registered devices over one broker connection.

    Returns the credentials made and, for each device left without one, its
    id and the broker's reason. A broker that cannot be reached fails them all.
    """
    granted: list[DeviceCredentials] = []
    failures: list[tuple[str, AccessError]] = []
    try:
        async with DynamicSecurity(access) as broker:
            for device in devices:
                try:
                    credentials = await broker.grant_device(device)
                except AccessError as exc:
                    failures.append((device.device_id, exc))
                    continue
                await asyncio.to_thread(
                    registry.set_mqtt_username,
                    device.device_id,
                    credentials.username,
                    actor,
                )
                granted.append(credentials)
    except AccessError as exc:
        done = {credentials.username for credentials in granted}
        failures += [(d.device_id, exc) for d in devices if d.device_id not in done]
    return granted, failures


async def retire_device(
    registry: Registry, access: DynsecConfig, device_id: str, actor: str
) -> DeviceOut:
    """Revoke a device's broker account, then mark it decommissioned.

    Raises AccessError, leaving the device as it was, when the broker cannot
    delete the account: a device must never look retired while it can still
    connect.
    """
    device = await asyncio.to_thread(registry.get_device, device_id)
    if device.status == "decommissioned":
        raise Conflict("device", device_id, "is already decommissioned")
    if device.mqtt_username is not None:
        if not access.enabled:
            logger.warning(
                "Device %s has broker account %s, but dynamic security is off: "
                "delete that account by hand",
                device_id,
                device.mqtt_username,
            )
        else:
            async with DynamicSecurity(access) as broker:
                await broker.revoke_device(device.mqtt_username, device_id)
            await asyncio.to_thread(registry.set_mqtt_username, device_id, None, actor)
    return await asyncio.to_thread(registry.decommission_device, device_id, actor)


def gateway_rights(config: GatewayConfig) -> tuple[list[str], list[str]]:
    """Return the topic filters the gateway reads, and those it publishes to."""
    read: list[str] = []
    for sub in config.subscriptions:
        topic = sub.topic or TopicTemplate.parse(sub.topic_template).topic_filter
        if topic.startswith("$share/"):
            # The broker checks a shared subscription against its topic filter.
            topic = topic.split("/", 2)[2]
        if topic not in read:
            read.append(topic)
    write = []
    if config.dead_letters.topic_prefix:
        write.append(config.dead_letters.topic_prefix + "/#")
    if any(sub.format == "sparkplug_b" for sub in config.subscriptions):
        write.append(SPARKPLUG_COMMANDS)
    return read, write


async def grant_gateway(
    config: GatewayConfig, username: str
) -> tuple[str, list[str], list[str]]:
    """Create the gateway's own broker account with only what it needs.

    Returns its password (kept nowhere) and the filters it may read and
    publish to. Raises AccessError when the broker refuses or does not answer.
    """
    read, write = gateway_rights(config)
    password = secrets.token_urlsafe(GATEWAY_PASSWORD_BYTES)
    async with DynamicSecurity(config.registry.dynsec) as access:
        await access.grant_service(
            username, password, read_filters=read, write_filters=write
        )
    return password, read, write
