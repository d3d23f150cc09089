"""`decor alerts list|show|ack`, `decor devices command|approve|commands`, and
the alert routes of the HTTP API, on SQLite and PostgreSQL.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from devices.profiles import load_profiles
from gateway.alerts.engine import AlertChange
from gateway.alerts.rules import load_profile_tables
from gateway.alerts.store import AlertStore
from gateway.api import create_app
from gateway.api.operations import add_operations_routes
from gateway.cli import app
from gateway.commands.specs import specs_by_device_type
from gateway.registry import Registry
from gateway.registry.tokens import issue_token
from tests.operations_support import ACTOR, register
from tests.registry_support import database_url, postgres_database  # noqa: F401

CONFIG = """\
[[subscriptions]]
topic_template = "city/{agency}/{device_type}/{device_id}/telemetry"
"""


def _siaga(device_id: str = "rg-1") -> AlertChange:
    return AlertChange(
        device_id=device_id,
        rule="level:water_level_cm",
        kind="level",
        level="siaga",
        severity=2,
        value=281.0,
        unit="cm",
        at_ns=time.time_ns(),
        message="water_level_cm 281 cm: siaga (from 270 cm)",
    )


@pytest.fixture
def registry(database_url: str) -> Registry:  # noqa: F811
    """Give a registry with a river gauge and a sluice gate, and one open alert."""
    opened = Registry.open(database_url, load_profiles())
    register(opened, "rg-1", "river_gauge")
    register(opened, "gate-01", "sluice_gate")
    AlertStore(opened).record(_siaga())
    yield opened
    opened.close()


@pytest.fixture
def decor(tmp_path: Path, database_url: str, registry: Registry):  # noqa: F811
    """Give a runner of `decor` commands on this test's registry."""
    config = tmp_path / "gateway.toml"
    config.write_text(CONFIG)
    environ = {"DECOR_REGISTRY__DATABASE_URL": database_url, "COLUMNS": "200"}
    runner = CliRunner()

    def run(*args: str):
        done = runner.invoke(app, [*args, "--config", str(config)], env=environ)
        if done.exception is not None and not isinstance(done.exception, SystemExit):
            raise done.exception
        return done

    return run


def test_cli_alerts_list_ack_and_show(decor):
    """Test that an officer lists, acknowledges and inspects an alert by id."""
    listed = decor("alerts", "list")
    acked = decor("alerts", "ack", "1", "--actor", "ani")
    again = decor("alerts", "ack", "1", "--actor", "budi")
    shown = decor("alerts", "show", "1")
    unknown = decor("alerts", "ack", "99", "--actor", "ani")

    assert listed.exit_code == 0
    assert "rg-1" in listed.stdout and "siaga" in listed.stdout
    assert acked.exit_code == 0
    assert "acknowledged by ani" in acked.stderr
    assert again.exit_code == 1
    assert "was acknowledged already by ani" in again.stderr
    assert shown.exit_code == 0
    assert "fired" in shown.stdout and "acknowledged" in shown.stdout
    assert unknown.exit_code == 1
    assert "no alert '99'" in unknown.stderr


def test_cli_critical_command_needs_a_second_person(decor, registry):
    """Test that a gate command waits for approval by someone else than its
    requester, and that bad arguments are refused naming the argument."""
    asked = decor("devices", "command", "gate-01", "open", "--actor", "budi")
    command_id = asked.stderr.split()[1].rstrip(":")
    self_approved = decor("devices", "approve", command_id, "--actor", "budi")
    approved = decor("devices", "approve", command_id, "--actor", "sari")
    bad = decor(
        "devices", "command", "rg-1", "set_interval", "--arg", "interval_s=often"
    )
    unknown = decor("devices", "command", "rg-1", "open", "--no-wait")
    queued = decor(
        "devices",
        "command",
        "rg-1",
        "set_interval",
        "--arg",
        "interval_s=60",
        "--no-wait",
        "--actor",
        "budi",
    )
    listing = decor("devices", "commands", "--device", "rg-1")
    trail = decor("devices", "commands", "--id", command_id)

    assert asked.exit_code == 3
    assert f"decor devices approve {command_id}" in asked.stderr
    assert self_approved.exit_code == 1
    assert "second person" in self_approved.stderr
    assert approved.exit_code == 0
    assert "approved by sari: queued" in approved.stderr
    assert bad.exit_code == 1
    assert "args.interval_s: must be a float, got 'often'" in bad.stderr
    assert unknown.exit_code == 1
    assert "river_gauge devices take no 'open' command" in unknown.stderr
    assert queued.exit_code == 0
    assert "queued" in listing.stdout and "set_interval" in listing.stdout
    assert "approve" in trail.stdout and "sari" in trail.stdout


@pytest.fixture
async def api(registry: Registry) -> AsyncIterator[tuple[httpx.AsyncClient, dict]]:
    """Give an API client with the operations routes, and tokens by role."""
    application = create_app(registry)
    add_operations_routes(
        application, specs_by_device_type(load_profile_tables()), 30.0
    )
    tokens = {
        role: issue_token(registry, f"{role}-1", role, ACTOR).secret
        for role in ("operator", "technician")
    }
    transport = httpx.ASGITransport(app=application)
    async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
        yield client, tokens


def _as(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_api_operator_acknowledges_but_cannot_command(api):
    """Test that an operator token lists and acknowledges alerts, and is refused
    commands and approvals with a 403 naming the roles needed."""
    client, tokens = api
    operator = _as(tokens["operator"])

    listed = await client.get("/alerts", headers=operator)
    acked = await client.post("/alerts/1/ack", headers=operator)
    again = await client.post("/alerts/1/ack", headers=operator)
    missing = await client.post("/alerts/42/ack", headers=operator)
    shown = await client.get("/alerts/1", headers=operator)
    command = await client.post(
        "/devices/rg-1/commands",
        json={"action": "set_interval", "args": {"interval_s": 60}},
        headers=operator,
    )
    anonymous = await client.get("/alerts")

    assert listed.status_code == 200
    assert [a["level"] for a in listed.json()["items"]] == ["siaga"]
    assert acked.status_code == 200
    assert acked.json()["acknowledged_by"] == "token:operator-1"
    assert again.status_code == 409
    assert missing.status_code == 404
    assert [e["event"] for e in shown.json()["events"]] == ["fired", "acknowledged"]
    assert command.status_code == 403
    assert "technician" in command.json()["detail"]
    assert anonymous.status_code == 401


async def test_api_technician_command_is_queued_with_typed_arguments(api):
    """Test that a technician's command is queued with its arguments typed."""
    client, tokens = api
    technician = _as(tokens["technician"])

    made = await client.post(
        "/devices/rg-1/commands",
        json={"action": "set_interval", "args": {"interval_s": 60}},
        headers=technician,
    )
    wrong = await client.post(
        "/devices/rg-1/commands",
        json={"action": "set_interval", "args": {"interval_s": "soon"}},
        headers=technician,
    )
    listed = await client.get(
        "/commands", params={"device": "rg-1"}, headers=technician
    )

    assert made.status_code == 201
    assert (made.json()["state"], made.json()["args"]) == (
        "queued",
        {"interval_s": 60.0},
    )
    assert wrong.status_code == 422
    assert wrong.json()["field"] == "args.interval_s"
    assert listed.json()["total"] == 1
