"""Device credentials on a real Mosquitto with the dynamic security plugin.

Each test starts its own broker on a free port, with a generated configuration
loading the plugin and a dynamic-security file made by `mosquitto_ctrl dynsec
init`, so the shared broker is never touched.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import glob
import os
import secrets
import subprocess
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gmqtt
import orjson
import pytest
from gmqtt.mqtt.constants import MQTTv311
from gmqtt.mqtt.handler import MQTTConnectError
from typer.testing import CliRunner

from devices.profiles import load_profiles
from gateway.cli import app
from gateway.config import DynsecConfig
from gateway.registry import AgencyIn, DeviceIn, Registry
from gateway.registry.dynsec import DeviceCredentials, DynamicSecurity
from gateway.registry.errors import AccessError
from gateway.registry.provision import register_device, retire_device
from tests.conftest import WAIT_S, wait_until
from tests.test_faults import PrivateService, free_port

ADMIN = "decor-admin"
ACTOR = "test-technician"
# How long a message that should not arrive is waited for.
SILENCE_S = 1.0


def dynsec_plugin() -> str:
    """Return the path of Mosquitto's dynamic security plugin, as Debian installs it."""
    listed = subprocess.run(
        ["dpkg", "-L", "mosquitto"], capture_output=True, text=True, check=False
    ).stdout.splitlines()
    found = [path for path in listed if path.endswith("mosquitto_dynamic_security.so")]
    found += glob.glob("/usr/lib/*/mosquitto_dynamic_security.so")
    if not found:
        pytest.fail("mosquitto_dynamic_security.so not found: is mosquitto installed?")
    return found[0]


@dataclass
class DynsecBroker:
    """A private Mosquitto with dynamic security, and its admin settings."""

    port: int
    settings: DynsecConfig
    topic_prefix: str


@pytest.fixture
async def dynsec_broker(tmp_path: Path) -> AsyncIterator[DynsecBroker]:
    """Give a running Mosquitto on a free port loading the dynamic security plugin."""
    port = free_port()
    password = secrets.token_urlsafe(12)
    security_file = tmp_path / "dynamic-security.json"
    subprocess.run(
        ["mosquitto_ctrl", "dynsec", "init", str(security_file), ADMIN, password],
        check=True,
        capture_output=True,
    )
    lines = [
        f"listener {port} 127.0.0.1",
        "allow_anonymous false",
        "persistence false",
        f"plugin {dynsec_plugin()}",
        f"plugin_opt_config_file {security_file}",
    ]
    if os.geteuid() == 0:
        lines.append("user root")
    conf = tmp_path / "mosquitto.conf"
    conf.write_text("\n".join(lines) + "\n")
    service = PrivateService(
        "Mosquitto (dynsec)", ["mosquitto", "-c", str(conf)], port, tmp_path / "m.log"
    )
    await service.start()
    prefix = f"city-{uuid.uuid4().hex[:8]}"
    settings = DynsecConfig(
        enabled=True,
        port=port,
        username=ADMIN,
        password=password,
        telemetry_topics=[prefix + "/{agency}/{device_type}/{device_id}/telemetry"],
        command_topic=prefix + "/{agency}/{device_type}/{device_id}/command",
    )
    try:
        yield DynsecBroker(port, settings, prefix)
    finally:
        await service.stop()


@pytest.fixture
def registry(tmp_path: Path) -> Registry:
    """Give a registry with the agency pupr."""
    opened = Registry.open(f"sqlite:///{tmp_path / 'registry.db'}", load_profiles())
    opened.add_agency(AgencyIn(agency_id="pupr", name="Public works"), ACTOR)
    return opened


@dataclass
class Client:
    """A real MQTT client and what it received."""

    mqtt: Any
    received: list[tuple[str, bytes]] = field(default_factory=list)
    granted: list[int] = field(default_factory=list)
    disconnected: asyncio.Event = field(default_factory=asyncio.Event)

    def topics(self) -> list[str]:
        """Return the topics of the messages received, in order."""
        return [topic for topic, _ in self.received]


@contextlib.asynccontextmanager
async def connected(port: int, username: str, password: str) -> AsyncIterator[Client]:
    """Connect as `username` (MQTT 3.1.1), never reconnecting by itself."""
    mqtt = gmqtt.Client(f"test-{uuid.uuid4().hex[:8]}")
    mqtt.set_auth_credentials(username, password)
    mqtt.set_config({"reconnect_retries": -2})
    client = Client(mqtt)

    def on_message(_c: Any, topic: str, payload: bytes, _q: int, _p: Any) -> int:
        client.received.append((topic, payload))
        return 0

    mqtt.on_message = on_message
    mqtt.on_subscribe = lambda _c, _mid, qos, _p: client.granted.extend(qos)
    mqtt.on_disconnect = lambda *_: client.disconnected.set()
    async with asyncio.timeout(WAIT_S):
        await mqtt.connect("127.0.0.1", port, version=MQTTv311)
    try:
        yield client
    finally:
        if not client.disconnected.is_set():
            await mqtt.disconnect()


async def _subscribe(client: Client, topic: str) -> int:
    before = len(client.granted)
    client.mqtt.subscribe(topic, qos=1)
    assert await wait_until(lambda: len(client.granted) > before)
    return client.granted[-1]


async def _register(
    registry: Registry, broker: DynsecBroker, device_id: str
) -> DeviceCredentials:
    data = DeviceIn(device_id=device_id, profile="river_gauge", agency="pupr")
    device, credentials = await register_device(registry, broker.settings, data, ACTOR)
    assert credentials is not None
    assert device.mqtt_username == device_id
    return credentials


async def _service_account(broker: DynsecBroker, name: str, **rights: Any) -> str:
    password = secrets.token_urlsafe(12)
    async with DynamicSecurity(broker.settings) as access:
        await access.grant_service(name, password, **rights)
    return password


async def test_registered_device_publishes_and_its_reading_is_stored(
    dynsec_broker: DynsecBroker,
    registry: Registry,
    gateway_config: Callable[..., Any],
    running_gateway: Any,
    influx_v1: Any,
):
    """Test that a device with new credentials publishes and the gateway stores it."""
    prefix = dynsec_broker.topic_prefix
    gateway_password = await _service_account(
        dynsec_broker,
        "decor-gateway",
        read_filters=[f"{prefix}/+/+/+/telemetry"],
        write_filters=["decor/deadletter/#"],
    )
    credentials = await _register(registry, dynsec_broker, "rg-001")
    config = gateway_config(
        mqtt={
            "port": dynsec_broker.port,
            "username": "decor-gateway",
            "password": gateway_password,
        },
        influx={"database": influx_v1.database},
        subscriptions=[
            {
                "topic_template": f"{prefix}/{{agency}}/{{device_type}}/"
                "{device_id}/telemetry",
                "measurement": "{device_type}",
            }
        ],
    )

    async with (
        running_gateway(config),
        connected(
            dynsec_broker.port, credentials.username, credentials.password
        ) as device,
    ):
        device.mqtt.publish(
            credentials.publish_topics[0],
            orjson.dumps({"water_level_cm": 182.5}),
            qos=1,
        )
        rows = await influx_v1.wait_for_rows("river_gauge", 1)

    assert len(rows) == 1
    assert rows[0]["water_level_cm"] == 182.5
    assert (rows[0]["agency"], rows[0]["device_id"]) == ("pupr", "rg-001")


async def test_device_cannot_publish_to_another_devices_topic(
    dynsec_broker: DynsecBroker, registry: Registry
):
    """Test that a reading forged onto another device's topic never arrives."""
    prefix = dynsec_broker.topic_prefix
    watcher_password = await _service_account(
        dynsec_broker, "watcher", read_filters=[f"{prefix}/#"]
    )
    mine = await _register(registry, dynsec_broker, "rg-001")
    other = await _register(registry, dynsec_broker, "rg-002")

    async with connected(dynsec_broker.port, "watcher", watcher_password) as watcher:
        assert await _subscribe(watcher, f"{prefix}/#") == 1
        async with connected(
            dynsec_broker.port, mine.username, mine.password
        ) as device:
            device.mqtt.publish(
                other.publish_topics[0], b'{"water_level_cm": 999}', qos=1
            )
            device.mqtt.publish(mine.command_topic, b"reboot", qos=1)
            device.mqtt.publish(mine.publish_topics[0], b'{"water_level_cm": 1}', qos=1)
            assert await wait_until(lambda: len(watcher.received) >= 1)
            await asyncio.sleep(SILENCE_S)

    # Only its own telemetry got through: not the forged reading, not a command.
    assert watcher.topics() == [mine.publish_topics[0]]


async def test_device_cannot_read_other_devices_commands(
    dynsec_broker: DynsecBroker, registry: Registry
):
    """Test that a device may subscribe to its own command topic and no other."""
    prefix = dynsec_broker.topic_prefix
    console_password = await _service_account(
        dynsec_broker, "ops-console", write_filters=[f"{prefix}/+/+/+/command"]
    )
    mine = await _register(registry, dynsec_broker, "rg-001")
    other = await _register(registry, dynsec_broker, "rg-002")

    async with connected(dynsec_broker.port, mine.username, mine.password) as device:
        own = await _subscribe(device, mine.command_topic)
        foreign = await _subscribe(device, other.command_topic)
        everything = await _subscribe(device, f"{prefix}/#")
        async with connected(
            dynsec_broker.port, "ops-console", console_password
        ) as ops:
            ops.mqtt.publish(other.command_topic, b"open-gate", qos=1)
            ops.mqtt.publish(mine.command_topic, b"report-now", qos=1)
            assert await wait_until(lambda: len(device.received) >= 1)
            await asyncio.sleep(SILENCE_S)

    assert own == 1
    assert foreign == everything == 0x80
    assert device.received == [(mine.command_topic, b"report-now")]


async def test_decommissioned_device_is_disconnected_and_cannot_connect(
    dynsec_broker: DynsecBroker, registry: Registry
):
    """Test that decommissioning drops a connected device and refuses it afterwards."""
    credentials = await _register(registry, dynsec_broker, "rg-001")

    async with connected(
        dynsec_broker.port, credentials.username, credentials.password
    ) as device:
        retired = await retire_device(registry, dynsec_broker.settings, "rg-001", ACTOR)
        assert await wait_until(device.disconnected.is_set)

    assert retired.status == "decommissioned"
    assert retired.mqtt_username is None
    with pytest.raises(MQTTConnectError, match="not authori"):
        async with connected(
            dynsec_broker.port, credentials.username, credentials.password
        ):
            pass
    actions = [e.action for e in registry.audit_log(entity_id="rg-001").items]
    assert actions == ["decommission", "revoke_access", "grant_access", "create"]


async def test_registration_is_undone_when_the_broker_refuses_the_account(
    dynsec_broker: DynsecBroker, registry: Registry
):
    """Test that a device whose account cannot be made is not left registered."""
    await _service_account(dynsec_broker, "rg-001")

    with pytest.raises(AccessError, match="createClient"):
        await _register(registry, dynsec_broker, "rg-001")

    assert registry.list_devices().total == 0
    assert registry.audit_log(entity_id="rg-001").items[0].action == "delete"


async def test_wrong_admin_password_is_reported_before_anything_is_registered(
    dynsec_broker: DynsecBroker, registry: Registry
):
    """Test that a broker refusing the admin account leaves no device behind."""
    settings = dynsec_broker.settings.model_copy(update={"password": "wrong"})
    data = DeviceIn(device_id="rg-001", profile="river_gauge", agency="pupr")

    with pytest.raises(AccessError, match="refused account 'decor-admin'"):
        await register_device(registry, settings, data, ACTOR)

    assert registry.list_devices().total == 0


async def test_devices_import_makes_accounts_written_to_a_private_file(
    dynsec_broker: DynsecBroker, tmp_path: Path
):
    """Test that imported devices get working accounts, passwords in a 0600 file."""
    settings = dynsec_broker.settings
    config = tmp_path / "gateway.toml"
    config.write_text(
        f"""\
[registry]
database_url = "sqlite:///{tmp_path / "registry.db"}"

[registry.dynsec]
enabled = true
port = {dynsec_broker.port}
telemetry_topics = {orjson.dumps(settings.telemetry_topics).decode()}
command_topic = "{settings.command_topic}"

[[subscriptions]]
topic = "x/#"
"""
    )
    source = tmp_path / "devices.csv"
    source.write_text(
        "device_id,profile,agency\n"
        "rg-001,river_gauge,pupr\n"
        "rg 002,river_gauge,pupr\n"
        "aq-003,air_quality,pupr\n"
    )
    secrets_file = tmp_path / "credentials.csv"
    runner = CliRunner()
    environ = {"DECOR_REGISTRY__DYNSEC__PASSWORD": settings.password or ""}
    common = ["--config", str(config), "--actor", "ani"]
    added = runner.invoke(app, ["agencies", "add", "pupr", "--name", "PU", *common])

    # The CLI runs its own event loop, so it gets a thread of its own here.
    imported = await asyncio.to_thread(
        runner.invoke,
        app,
        ["devices", "import", str(source), "--credentials-file", str(secrets_file)]
        + common,
        env=environ,
    )

    assert added.exit_code == 0, added.output
    assert imported.exit_code == 1, imported.output
    assert "Imported 2 of 3 devices" in imported.stdout
    assert "line 3 (rg 002)" in imported.stderr
    assert secrets_file.stat().st_mode & 0o777 == 0o600
    with secrets_file.open() as lines:
        accounts = {
            row["device_id"]: row["mqtt_password"] for row in csv.DictReader(lines)
        }
    assert sorted(accounts) == ["aq-003", "rg-001"]
    assert accounts["rg-001"] not in imported.output
    async with connected(dynsec_broker.port, "aq-003", accounts["aq-003"]) as device:
        assert not device.disconnected.is_set()


async def test_gateway_account_reads_its_subscriptions_and_nothing_else(
    dynsec_broker: DynsecBroker, tmp_path: Path
):
    """Test that `decor gateway-account` makes an account that reads telemetry only."""
    prefix = dynsec_broker.topic_prefix
    config = tmp_path / "gateway.toml"
    config.write_text(
        f"""
[registry.dynsec]
enabled = true
port = {dynsec_broker.port}

[dead_letters]
topic_prefix = "decor/deadletter"

[[subscriptions]]
topic = "$share/gateways/{prefix}/+/+/+/telemetry"
"""
    )
    environ = {"DECOR_REGISTRY__DYNSEC__PASSWORD": dynsec_broker.settings.password}

    made = await asyncio.to_thread(
        CliRunner().invoke,
        app,
        ["gateway-account", "decor-gw", "--config", str(config)],
        env=environ,
    )
    assert made.exit_code == 0, made.output
    password = made.stdout.strip().splitlines()[-1]
    async with connected(dynsec_broker.port, "decor-gw", password) as gateway:
        telemetry = await _subscribe(gateway, f"{prefix}/+/+/+/telemetry")
        commands = await _subscribe(gateway, f"{prefix}/+/+/+/command")
        everything = await _subscribe(gateway, "#")

    assert f"may read {prefix}/+/+/+/telemetry" in made.stderr
    assert "may publish to decor/deadletter/#" in made.stderr
    assert password not in made.stderr
    assert telemetry == 1
    assert commands == everything == 0x80
