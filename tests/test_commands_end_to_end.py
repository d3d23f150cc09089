"""Commands end to end: the HTTP API served by `decor run`, the real broker, a
simulated sluice gate and river gauge that answer, and one that never does.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx
import pytest

from devices.actuators import CommandableDevice
from devices.profiles import load_profiles
from gateway.alerts.rules import load_profile_tables
from gateway.commands.specs import specs_by_device_type
from gateway.commands.store import CommandStore
from gateway.registry import Registry
from gateway.registry.tokens import issue_token
from tests.conftest import wait_until
from tests.operations_support import ACTOR, register, watching, with_operations
from tests.test_faults import free_port


class Api:
    """The gateway's HTTP API, called over a socket with one token."""

    def __init__(self, base_url: str, token: str) -> None:
        self.http = httpx.AsyncClient(
            base_url=base_url, headers={"Authorization": f"Bearer {token}"}
        )

    async def command(self, device_id: str, action: str, **body: Any) -> httpx.Response:
        """Ask for a command."""
        return await self.http.post(
            f"/devices/{device_id}/commands", json={"action": action, **body}
        )

    async def state(self, command_id: str) -> dict[str, Any]:
        """Return a command as the API shows it."""
        response = await self.http.get(f"/commands/{command_id}")
        response.raise_for_status()
        return dict(response.json())

    async def wait_for(self, command_id: str, state: str) -> dict[str, Any]:
        """Poll until the command reaches `state` (or its end), and return it."""
        current: dict[str, Any] = {}

        async def check() -> bool:
            nonlocal current
            current = await self.state(command_id)
            return current["state"] in (state, "failed", "confirmed")

        for _ in range(400):
            if await check():
                break
            await asyncio.sleep(0.05)
        return current


@pytest.fixture
def tokens(tmp_path: Path) -> tuple[str, dict[str, str]]:
    """Give a registry database with tokens of two technicians and an operator."""
    database_url = f"sqlite:///{tmp_path / 'registry.db'}"
    registry = Registry.open(database_url, load_profiles())
    register(registry, "gate-01", "sluice_gate")
    register(registry, "rg-talk", "river_gauge")
    register(registry, "rg-mute", "river_gauge")
    issued = {
        name: issue_token(registry, name, role, ACTOR).secret
        for name, role in (
            ("tech-budi", "technician"),
            ("tech-sari", "technician"),
            ("ops-wall", "operator"),
        )
    }
    registry.close()
    return database_url, issued


async def test_commands_reach_devices_and_complete_or_time_out(
    broker, gateway_config, running_gateway, topic_prefix, tmp_path: Path, tokens
):
    """Test that a gate command is approved, answered and confirmed by telemetry, a
    silent device's command fails by timeout, and an operator cannot command."""
    database_url, secrets = tokens
    port = free_port()
    config = with_operations(
        gateway_config(),
        database_url,
        topic_prefix,
        tmp_path,
        registry={"serve_api": True, "api_port": port},
        commands={"enabled": True, "confirm_timeout_s": 20.0},
    )
    common = {"port": broker.port, "topic_prefix": topic_prefix, "agency": "pupr"}
    gate = CommandableDevice("gate-01", "sluice_gate", interval_s=0.3, **common)
    # A 3.1.1 device: the correlation id travels inside the JSON only.
    gauge = CommandableDevice(
        "rg-talk", "river_gauge", interval_s=5.0, protocol="3.1.1", **common
    )
    mute = CommandableDevice(
        "rg-mute", "river_gauge", interval_s=5.0, answer_commands=False, **common
    )
    base = f"http://127.0.0.1:{port}"
    budi, sari, wall = (
        Api(base, secrets[n]) for n in ("tech-budi", "tech-sari", "ops-wall")
    )

    async with (
        watching(broker, f"{topic_prefix}/+/+/+/command") as commands_seen,
        running_gateway(config),
    ):
        devices = [asyncio.create_task(d.run()) for d in (gate, gauge, mute)]
        try:
            refused = await wall.command("gate-01", "open")

            interval = (
                await budi.command("rg-talk", "set_interval", args={"interval_s": "60"})
            ).json()
            acknowledged = await budi.wait_for(interval["command_id"], "acknowledged")

            opened = (await budi.command("gate-01", "open")).json()
            own_approval = await budi.http.post(
                f"/commands/{opened['command_id']}/approve"
            )
            await asyncio.sleep(0.5)  # held: nothing may leave before approval
            held = await budi.state(opened["command_id"])
            approval = await sari.http.post(f"/commands/{opened['command_id']}/approve")
            confirmed = await budi.wait_for(opened["command_id"], "confirmed")

            silent = (
                await budi.command(
                    "rg-mute", "set_interval", args={"interval_s": 30}, timeout_s=1.0
                )
            ).json()
            failed = await budi.wait_for(silent["command_id"], "failed")
            bad_arg = await budi.command("rg-talk", "set_interval", args={"every": 3})
            history = (
                await budi.http.get(
                    "/audit", params={"entity": "command", "limit": 100}
                )
            ).json()["items"]
        finally:
            for task in devices:
                task.cancel()
            await asyncio.gather(*devices, return_exceptions=True)
            for api in (budi, sari, wall):
                await api.http.aclose()

    assert refused.status_code == 403
    assert "technician" in refused.json()["detail"]

    assert acknowledged["state"] == "acknowledged"
    assert acknowledged["reply"]["detail"] == "reporting every 60 s"
    assert gauge.interval_s == 60.0

    assert opened["state"] == "awaiting_approval"
    assert own_approval.status_code == 403
    assert "second person" in own_approval.json()["detail"]
    assert held["state"] == "awaiting_approval"
    assert approval.status_code == 200
    assert approval.json()["approved_by"] == "token:tech-sari"
    assert confirmed["state"] == "confirmed"
    assert confirmed["detail"] == "telemetry shows gate_open = 1"
    assert gate.gate.position_pct == 100.0
    assert [c["action"] for c in gate.commands_received] == ["open"]

    assert failed["state"] == "failed"
    assert failed["detail"] == "no reply from the device within 1 s"
    assert [c["action"] for c in mute.commands_received] == ["set_interval"]
    assert bad_arg.status_code == 422

    sent_topics = {topic for topic, _, _ in commands_seen.messages}
    assert sent_topics == {
        f"{topic_prefix}/pupr/{kind}/{device}/command"
        for kind, device in (
            ("river_gauge", "rg-talk"),
            ("sluice_gate", "gate-01"),
            ("river_gauge", "rg-mute"),
        )
    }
    trail = [
        (entry["actor"], entry["action"])
        for entry in reversed(history)
        if entry["entity_id"] == opened["command_id"]
    ]
    assert trail == [
        ("token:tech-budi", "command"),
        ("token:tech-sari", "approve"),
        ("gateway", "sent"),
        ("gateway", "acknowledged"),
        ("gateway", "confirmed"),
    ]


async def test_gateway_restart_takes_up_a_command_left_waiting(
    gateway_config, running_gateway, topic_prefix, tmp_path: Path, tokens
):
    """Test that a command an earlier run sent and never saw answered still fails
    by its timeout after a restart, instead of staying sent for ever."""
    database_url, _ = tokens
    registry = Registry.open(database_url, load_profiles())
    specs = specs_by_device_type(load_profile_tables())
    store = CommandStore(registry, specs)
    command = store.request(
        "rg-mute", "set_interval", {"interval_s": "30"}, "budi", "technician", 0.5
    )
    # What the earlier run did before it stopped: handed it to the broker.
    [claimed] = store.claim_queued()
    config = with_operations(
        gateway_config(),
        database_url,
        topic_prefix,
        tmp_path,
        commands={"enabled": True},
    )

    async with running_gateway(config):
        assert await wait_until(lambda: store.get(command.command_id).finished)

    final = store.get(command.command_id)
    trail = [e.action for e in registry.audit_log(entity_id=command.command_id).items]
    registry.close()
    assert claimed.command.state == "sent"
    assert trail == ["failed", "sent", "command"]  # newest first; never sent again
    assert (final.state, final.detail) == (
        "failed",
        "no reply from the device within 0.5 s",
    )
