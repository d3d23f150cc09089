"""Device liveness end to end: a simulated gauge stops and returns; its state is
published retained on MQTT, written to InfluxDB, and raises a 'silent' alert.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from devices.actuators import CommandableDevice
from devices.profiles import load_profiles
from gateway.alerts.store import AlertStore
from gateway.registry import Registry
from tests.conftest import wait_until
from tests.operations_support import register, watching, with_operations

# Late after 1.5 intervals (0.6 s), offline after 3 (1.2 s): the river gauge
# profile's [alerts.silence].
CADENCE_S = 0.4


def _states(watcher, topic: str) -> list[str]:
    states = []
    for body in watcher.on(topic):
        if not states or states[-1] != body["state"]:
            states.append(body["state"])
    return states


def _changes(rows: list[dict]) -> list[str]:
    changes: list[str] = []
    for row in rows:
        if row["device_id"] == "rg-live" and (
            not changes or changes[-1] != row["state"]
        ):
            changes.append(row["state"])
    return changes


async def test_silent_device_goes_late_then_offline_then_online_again(
    broker, gateway_config, running_gateway, topic_prefix, influx_v1, tmp_path: Path
):
    """Test that a gauge that stops is late, then offline, then online on return."""
    database_url = f"sqlite:///{tmp_path / 'registry.db'}"
    registry = Registry.open(database_url, load_profiles())
    register(registry, "rg-live", "river_gauge", cadence_s=CADENCE_S)
    register(registry, "rg-never", "river_gauge", cadence_s=CADENCE_S)
    config = with_operations(
        gateway_config(influx={"database": influx_v1.database}),
        database_url,
        topic_prefix,
        tmp_path,
        alerts={"enabled": True},
        liveness={"enabled": True},
    )
    topic = f"{topic_prefix}/liveness/rg-live"

    def gauge() -> CommandableDevice:
        return CommandableDevice(
            "rg-live",
            "river_gauge",
            port=broker.port,
            topic_prefix=topic_prefix,
            agency="pupr",
            interval_s=0.1,
        )

    async with (
        watching(broker, f"{topic_prefix}/liveness/#") as watcher,
        running_gateway(config) as gateway,
    ):
        device = asyncio.create_task(gauge().run())
        assert await wait_until(lambda: gateway.stats.messages_received >= 5)
        device.cancel()
        await asyncio.gather(device, return_exceptions=True)
        assert await wait_until(lambda: "offline" in _states(watcher, topic))
        liveness = gateway.operations.liveness
        assert liveness.tracked["rg-live"].state == "offline"
        store = AlertStore(registry)
        assert await wait_until(
            lambda: store.list_alerts(device_id="rg-live").total == 1
        )

        device = asyncio.create_task(gauge().run())
        assert await wait_until(lambda: _states(watcher, topic)[-1:] == ["online"])
        device.cancel()
        await asyncio.gather(device, return_exceptions=True)
        assert await wait_until(
            lambda: store.list_alerts(state="resolved", device_id="rg-live").total == 1
        )
        counts = liveness.counts()
        assert await wait_until(
            lambda: (
                _changes(influx_v1.rows("device_liveness"))[:4]
                == ["online", "late", "offline", "online"]
            )
        )
        rows = influx_v1.rows("device_liveness")

    assert _states(watcher, topic)[:4] == ["online", "late", "offline", "online"]
    assert all(retained is False for _, _, retained in watcher.messages)
    silent = store.list_alerts(state="all", device_id="rg-live").items[0]
    assert (silent.rule, silent.kind, silent.level) == ("silent", "silent", "offline")
    # Registered, never heard from: silent since the gateway started.
    assert "offline" in _states(watcher, f"{topic_prefix}/liveness/rg-never")
    assert counts["offline"] >= 1
    live_rows = [r for r in rows if r["device_id"] == "rg-live"]
    assert {(r["state"], r["state_code"]) for r in live_rows} == {
        ("online", 0),
        ("late", 1),
        ("offline", 2),
    }
    registry.close()


async def test_liveness_state_is_retained_for_a_late_subscriber(
    broker, gateway_config, running_gateway, topic_prefix, publisher, tmp_path: Path
):
    """Test that a dashboard subscribing later still gets each device's state."""
    database_url = f"sqlite:///{tmp_path / 'registry.db'}"
    config = with_operations(
        gateway_config(),
        database_url,
        topic_prefix,
        tmp_path,
        liveness={"enabled": True},
    )
    async with running_gateway(config) as gateway:
        publisher.publish(
            f"{topic_prefix}/pupr/river_gauge/rg-seen/telemetry",
            b'{"water_level_cm": 120.0}',
        )
        liveness = gateway.operations.liveness
        assert await wait_until(
            lambda: (
                "rg-seen" in liveness.tracked and liveness.tracked["rg-seen"].published
            )
        )
    async with watching(broker, f"{topic_prefix}/liveness/#") as watcher:
        assert await wait_until(lambda: bool(watcher.messages))

    topic, body, retained = watcher.messages[0]
    assert retained
    assert (topic, body["state"]) == (f"{topic_prefix}/liveness/rg-seen", "online")
    assert body["expected_interval_s"] == 300.0
