"""The running gateway and the registry, end to end through the broker and InfluxDB.

A real MQTT client publishes to the local Mosquitto; the gateway checks each
point against the registry (SQLite, then PostgreSQL) and stores what it admits
in the local InfluxDB 1.x; what it refuses is read back from its dead-letter
file.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
from typer.testing import CliRunner

from devices.profiles import load_profiles
from gateway.app import Gateway
from gateway.cli import app
from gateway.config import GatewayConfig, RegistryConfig, load_config
from gateway.registry import AgencyIn, DeviceIn, DeviceUpdate, Registry
from gateway.registry.tokens import issue_token
from tests.conftest import INFLUX_V1_URL, MQTT_PORT, wait_until
from tests.registry_support import (  # noqa: F401 - fixtures
    ACTOR,
    city_registry,
    database_url,
    postgres_database,
    registry,
)
from tests.test_faults import free_port

DECOR = Path(sys.executable).with_name("decor")
REFRESH_S = 0.2


def _with_registry(config: GatewayConfig, url: str, **settings: Any) -> GatewayConfig:
    registry = RegistryConfig(
        database_url=url, check_devices=True, refresh_interval_s=REFRESH_S, **settings
    )
    return config.model_copy(update={"registry": registry})


def _register(
    registry: Registry, device_id: str, agency: str = "pupr", profile: str = ""
) -> None:
    registry.add_device(
        DeviceIn(
            device_id=device_id, profile=profile or "river_gauge", agency=agency
        ),
        ACTOR,
    )


def _dead_letters(config: GatewayConfig) -> list[dict[str, Any]]:
    path = config.dead_letters.path
    if not path.exists():
        return []
    return [orjson.loads(line) for line in path.read_bytes().splitlines()]


def _reading(level_cm: float) -> bytes:
    return orjson.dumps({"water_level_cm": level_cm})


async def _rejected(gateway: Gateway, reason: str, count: int = 1) -> bool:
    return await wait_until(lambda: gateway.stats.messages_rejected[reason] >= count)


async def test_gateway_stores_registered_devices_and_refuses_the_others(
    city_registry,
    database_url,
    gateway_config,
    running_gateway,
    publisher,
    topic_prefix,
    influx_v1,
):
    """Test that only registered devices are stored, tagged with their agency."""
    _register(city_registry, "rg-001", agency="dlh")
    _register(city_registry, "rg-old")
    city_registry.decommission_device("rg-old", ACTOR)
    config = _with_registry(
        gateway_config(influx={"database": influx_v1.database}), database_url
    )
    rivers = f"{topic_prefix}/pupr/river_gauge"

    async with running_gateway(config) as gateway:
        # The topic says pupr; the registry says dlh owns rg-001.
        publisher.publish(f"{rivers}/rg-001/telemetry", _reading(120.0))
        publisher.publish(f"{rivers}/rg-404/telemetry", _reading(121.0))
        publisher.publish(f"{rivers}/rg-old/telemetry", _reading(122.0))
        publisher.publish(
            f"{topic_prefix}/pupr/rain_gauge/rg-001/telemetry",
            orjson.dumps({"rain_mm": 1.0}),
        )
        stored = await influx_v1.wait_for_rows("river_gauge", 1)
        assert await _rejected(gateway, "profile_mismatch")
        stats = gateway.stats

    assert [(row["device_id"], row["agency"]) for row in stored] == [
        ("rg-001", "dlh")
    ]
    assert influx_v1.rows("river_gauge") == stored
    assert influx_v1.rows("rain_gauge") == []
    assert stats.messages_rejected == {
        "unknown_device": 1,
        "decommissioned_device": 1,
        "profile_mismatch": 1,
    }
    details = {entry["reason"]: entry for entry in _dead_letters(config)}
    assert details["unknown_device"]["detail"] == (
        "device 'rg-404' is not in the registry"
    )
    assert details["unknown_device"]["topic"] == f"{rivers}/rg-404/telemetry"
    assert details["decommissioned_device"]["detail"] == (
        "device 'rg-old' is decommissioned"
    )
    assert details["profile_mismatch"]["detail"] == (
        "device 'rg-001' is registered as 'river_gauge', "
        "its 'device_type' tag says 'rain_gauge'"
    )


async def test_gateway_takes_registry_changes_without_restart(
    city_registry,
    database_url,
    gateway_config,
    running_gateway,
    publisher,
    topic_prefix,
    influx_v1,
):
    """Test that a device registered, moved or retired while running takes effect."""
    config = _with_registry(
        gateway_config(influx={"database": influx_v1.database}), database_url
    )
    topic = f"{topic_prefix}/pupr/river_gauge/rg-new/telemetry"

    async with running_gateway(config) as gateway:
        assert gateway.registry is not None and gateway.registry.directory
        directory = gateway.registry.directory
        publisher.publish(topic, _reading(100.0))
        assert await _rejected(gateway, "unknown_device")

        _register(city_registry, "rg-new")
        assert await wait_until(lambda: "rg-new" in directory.devices)
        publisher.publish(topic, _reading(101.0))
        await influx_v1.wait_for_rows("river_gauge", 1)

        city_registry.update_device("rg-new", DeviceUpdate(agency="dlh"), ACTOR)
        assert await wait_until(lambda: directory.devices["rg-new"].agency == "dlh")
        publisher.publish(topic, _reading(102.0))
        await influx_v1.wait_for_rows("river_gauge", 2)

        city_registry.decommission_device("rg-new", ACTOR)
        assert await wait_until(
            lambda: directory.devices["rg-new"].status == "decommissioned"
        )
        publisher.publish(topic, _reading(103.0))
        assert await _rejected(gateway, "decommissioned_device")

    rows = influx_v1.rows("river_gauge")
    assert [(row["water_level_cm"], row["agency"]) for row in rows] == [
        (101.0, "pupr"),
        (102.0, "dlh"),
    ]
    assert gateway.stats.messages_rejected == {
        "unknown_device": 1,
        "decommissioned_device": 1,
    }


async def test_gateway_checks_values_against_the_registered_profile(
    city_registry,
    database_url,
    gateway_config,
    running_gateway,
    publisher,
    topic_prefix,
    influx_v1,
):
    """Test that an impossible value is refused by the device's registered profile."""
    _register(city_registry, "rg-001")
    # The topic names no device type: only the registry says what rg-001 is.
    config = _with_registry(
        gateway_config(
            influx={"database": influx_v1.database},
            quality={"enabled": True},
            subscriptions=[
                {
                    "topic_template": f"{topic_prefix}/{{agency}}/{{device_id}}/up",
                    "measurement": "readings",
                }
            ],
        ),
        database_url,
    )

    async with running_gateway(config) as gateway:
        publisher.publish(
            f"{topic_prefix}/pupr/rg-001/up",
            orjson.dumps({"water_level_cm": -5000.0, "battery_v": 3.9}),
        )
        [row] = await influx_v1.wait_for_rows("readings", 1)
        stats = gateway.stats

    assert row["device_type"] == "river_gauge"
    assert row["battery_v"] == 3.9
    assert row.get("water_level_cm") is None
    assert stats.fields_rejected == {"impossible_value": 1}
    [entry] = _dead_letters(config)
    assert entry["reason"] == "impossible_value"
    assert entry["detail"] == (
        "water_level_cm: -5000.0 cm is outside the possible range 0 to 1000 cm"
    )


async def test_gateway_registers_unknown_devices_as_pending_when_configured(
    city_registry,
    database_url,
    gateway_config,
    running_gateway,
    publisher,
    topic_prefix,
    influx_v1,
):
    """Test that an unknown device waits as pending, refused, until approved."""
    config = _with_registry(
        gateway_config(influx={"database": influx_v1.database}),
        database_url,
        unknown_devices="pending",
    )
    topic = f"{topic_prefix}/dlh/river_gauge/rg-field-7/telemetry"

    async with running_gateway(config) as gateway:
        publisher.publish(topic, _reading(50.0))
        assert await _rejected(gateway, "unknown_device")
        assert await wait_until(
            lambda: city_registry.list_devices(status="pending").total == 1
        )
        directory = gateway.registry.directory  # type: ignore[union-attr]
        assert await wait_until(lambda: "rg-field-7" in directory.devices)
        publisher.publish(topic, _reading(51.0))
        assert await _rejected(gateway, "pending_device")

        city_registry.update_device("rg-field-7", DeviceUpdate(status="active"), "ani")
        assert await wait_until(
            lambda: directory.devices["rg-field-7"].status == "active"
        )
        publisher.publish(topic, _reading(52.0))
        [row] = await influx_v1.wait_for_rows("river_gauge", 1)

    assert (row["water_level_cm"], row["agency"]) == (52.0, "dlh")
    pending = city_registry.get_device("rg-field-7")
    assert (pending.agency, pending.profile) == ("dlh", "river_gauge")
    created = city_registry.audit_log(entity_id="rg-field-7").items[-1]
    assert (created.actor, created.action) == ("gateway", "create")


async def test_deadletter_replay_stores_a_device_once_it_is_registered(
    city_registry,
    database_url,
    running_gateway,
    publisher,
    topic_prefix,
    influx_v1,
    tmp_path: Path,
):
    """Test that replay keeps an unknown device's entry, then stores it registered."""
    path = _write_config(
        tmp_path,
        topic_prefix,
        influx_v1.database,
        database_url,
        free_port(),
        serve_api=False,
    )
    async with running_gateway(load_config(path)) as gateway:
        publisher.publish(
            f"{topic_prefix}/pupr/river_gauge/rg-late/telemetry", _reading(77.0)
        )
        assert await _rejected(gateway, "unknown_device")

    early = await _replay(path)
    _register(city_registry, "rg-late", agency="dlh")
    replayed = await _replay(path)

    assert early.exit_code == 1, early.output
    assert "unknown_device" in early.output
    assert replayed.exit_code == 0, replayed.output
    assert "stored 1 point" in replayed.output
    [row] = influx_v1.rows("river_gauge")
    assert (row["device_id"], row["agency"], row["water_level_cm"]) == (
        "rg-late",
        "dlh",
        77.0,
    )


async def test_decor_run_serves_the_api_and_checks_devices(
    tmp_path: Path, topic_prefix, publisher, influx_v1
):
    """Test that `decor run` serves the API and stores only registered devices."""
    url = f"sqlite:///{tmp_path / 'registry.db'}"
    registry = Registry.open(url, load_profiles())
    registry.add_agency(AgencyIn(agency_id="pupr", name="Public works"), ACTOR)
    _register(registry, "rg-001")
    secret = issue_token(registry, "wall", "operator", ACTOR).secret
    registry.close()
    api_port = free_port()
    config = _write_config(tmp_path, topic_prefix, influx_v1.database, url, api_port)
    log = tmp_path / "decor.log"
    topic = f"{topic_prefix}/bpbd/river_gauge/{{}}/telemetry"

    with _decor_run(config, log) as gateway:
        async with httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{api_port}", timeout=5
        ) as client:
            assert await _answers(client, gateway), log.read_text()
            missing = await client.get("/devices")
            listed = await client.get(
                "/devices", headers={"Authorization": f"Bearer {secret}"}
            )
            refused = await client.patch(
                "/devices/rg-001",
                json={"firmware": "9.9"},
                headers={"Authorization": f"Bearer {secret}"},
            )
        publisher.publish(topic.format("rg-404"), _reading(90.0))
        publisher.publish(topic.format("rg-001"), _reading(91.0))
        [row] = await influx_v1.wait_for_rows("river_gauge", 1)

    assert missing.status_code == 401
    assert [item["device_id"] for item in listed.json()["items"]] == ["rg-001"]
    assert refused.status_code == 403
    # The topic says bpbd; the registry says pupr owns rg-001.
    assert (row["device_id"], row["agency"]) == ("rg-001", "pupr")
    dead = (tmp_path / "dead.jsonl").read_bytes().splitlines()
    assert [orjson.loads(line)["reason"] for line in dead] == ["unknown_device"]
    assert "Serving the registry's HTTP API on http://127.0.0.1" in log.read_text()


def test_decor_run_stops_when_the_api_port_is_taken(tmp_path: Path, topic_prefix):
    """Test that a taken API port stops `decor run` with one line naming it."""
    url = f"sqlite:///{tmp_path / 'registry.db'}"
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        config = _write_config(tmp_path, topic_prefix, "unused", url, port)
        result = subprocess.run(
            [str(DECOR), "run", "--config", str(config)],
            env=_environment(),
            capture_output=True,
            text=True,
            timeout=60,
        )

    assert result.returncode == 2, result.stdout + result.stderr
    assert f"registry.api_port: cannot listen on 127.0.0.1:{port}" in result.stderr


def test_decor_run_stops_when_the_registry_cannot_be_read(
    tmp_path: Path, topic_prefix
):
    """Test that an unreachable registry database stops `decor run`, saying so."""
    # Nothing listens on this port: the database cannot be reached.
    url = f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/decor"
    config = _write_config(tmp_path, topic_prefix, "unused", url, free_port())
    result = subprocess.run(
        [str(DECOR), "run", "--config", str(config)],
        env=_environment(),
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert result.returncode == 1, result.stdout + result.stderr
    assert "Registry error:" in result.stderr


def _write_config(
    folder: Path,
    prefix: str,
    database: str,
    url: str,
    api_port: int,
    serve_api: bool = True,
) -> Path:
    path = folder / "gateway.toml"
    path.write_text(
        f"""
log_level = "info"
[mqtt]
port = {MQTT_PORT}
client_id = "decor-{prefix}"
[influx]
url = "{INFLUX_V1_URL}"
api = "v1"
database = "{database}"
flush_interval_s = 0.2
[dead_letters]
path = "{folder / "dead.jsonl"}"
[registry]
database_url = "{url}"
check_devices = true
serve_api = {str(serve_api).lower()}
api_port = {api_port}
refresh_interval_s = {REFRESH_S}
[[subscriptions]]
topic_template = "{prefix}/{{agency}}/{{device_type}}/{{device_id}}/telemetry"
measurement = "{{device_type}}"
"""
    )
    return path


async def _replay(config: Path) -> Any:
    # In a thread: the command runs its own event loop.
    return await asyncio.to_thread(
        CliRunner().invoke,
        app,
        ["deadletter", "replay", "--config", str(config), "--all"],
    )


def _environment() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("DECOR_")}


@contextlib.contextmanager
def _decor_run(config: Path, log: Path) -> Iterator[subprocess.Popen[bytes]]:
    with log.open("wb") as log_file:
        process = subprocess.Popen(
            [str(DECOR), "run", "--config", str(config), "--no-summary"],
            env=_environment(),
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
    try:
        yield process
    finally:
        # SIGTERM: the gateway flushes its buffer and dead letters, then exits.
        process.terminate()
        process.wait(timeout=30)


async def _answers(client: httpx.AsyncClient, process: subprocess.Popen[bytes]) -> bool:
    for _ in range(300):
        if process.poll() is not None:
            return False
        try:
            if (await client.get("/health")).status_code == 200:
                return True
        except httpx.TransportError:
            pass
        await asyncio.sleep(0.1)
    return False
