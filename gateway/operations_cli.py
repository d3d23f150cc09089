"""The duty officer's commands: `decor alerts list|show|ack` and device commands.

`decor devices command|commands|approve` queue and follow commands in the
registry database; a running `decor run` with `[commands] enabled` sends
them. The command line acts with the database's own access, as a
technician: whoever can open the registry database can command.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer

from gateway.alerts.rules import load_profile_tables
from gateway.alerts.store import AlertStore, StateFilter
from gateway.commands.specs import specs_by_device_type
from gateway.commands.store import CommandOut, CommandStore, Forbidden
from gateway.errors import ConfigError
from gateway.registry.terminal import (
    actor_name,
    console,
    fail,
    open_registry,
    output,
    print_history,
    print_page,
    print_rows,
    record_table,
)
from gateway.registry_cli import devices_app

__all__ = ["register_operations_commands"]

CLI_ROLE = "technician"
POLL_S = 0.2
# Beyond the command's own timeouts: time for the gateway to pick it up.
PICK_UP_S = 10.0
EXIT_FAILED = 1
EXIT_AWAITING_APPROVAL = 3
EXIT_STILL_WAITING = 4

ConfigOption = Annotated[
    Path, typer.Option("--config", "-c", help="Gateway configuration file (TOML).")
]
ActorOption = Annotated[
    str | None,
    typer.Option(help="Who does it, for the audit log (default: your login name)."),
]
DEFAULT_CONFIG = Path("config/gateway.toml")
ALERT_COLUMNS = [
    "alert_id",
    "device_id",
    "rule",
    "level",
    "state",
    "value",
    "fired_at",
    "acknowledged_by",
]
COMMAND_COLUMNS = [
    "command_id",
    "device_id",
    "action",
    "state",
    "requested_by",
    "approved_by",
    "detail",
]

alerts_app = typer.Typer(
    help="Alerts from the devices' rules: list, show, acknowledge.",
    no_args_is_help=True,
)


def register_operations_commands(app: typer.Typer) -> None:
    """Add `decor alerts` and `decor simulate-gate` (the device commands join
    `decor devices` on import)."""
    app.add_typer(alerts_app, name="alerts")
    app.command("simulate-gate")(simulate_gate)


def simulate_gate(
    device_id: Annotated[str, typer.Argument(help="The gate's device id.")] = "gate-01",
    host: Annotated[str, typer.Option(help="MQTT broker host.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="MQTT broker port.")] = 18830,
    agency: Annotated[
        str, typer.Option(help="Agency level of its topics.")
    ] = "dinas-pupr",
    topic_prefix: Annotated[str, typer.Option(help="First topic level.")] = "city",
    interval: Annotated[
        float, typer.Option(min=0.1, help="Seconds between two reports.")
    ] = 5.0,
    protocol: Annotated[str, typer.Option(help='MQTT "5" or "3.1.1".')] = "5",
) -> None:
    """Run a simulated sluice gate that reports its position and obeys open, close
    and set_interval commands (register it with profile sluice_gate first)."""
    import asyncio
    import logging

    from devices.actuators import CommandableDevice

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    for noisy in ("gmqtt", "devices.actuators.gmqtt"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    gate = CommandableDevice(
        device_id,
        "sluice_gate",
        host=host,
        port=port,
        topic_prefix=topic_prefix,
        agency=agency,
        interval_s=interval,
        protocol=protocol,
    )
    console.print(
        f"Sluice gate {device_id}: telemetry on {gate.telemetry_topic}, commands on "
        f"{gate.command_topic} (Ctrl-C stops)"
    )
    try:
        asyncio.run(gate.run())
    except KeyboardInterrupt:
        pass
    except OSError as exc:
        fail(f"Cannot reach the MQTT broker {host}:{port}: {exc}", 1)


@alerts_app.command("list")
def alerts_list(
    state: Annotated[
        str,
        typer.Option(
            help="open (firing or acknowledged), firing, acknowledged, resolved or all."
        ),
    ] = "open",
    device: Annotated[str | None, typer.Option(help="Only this device.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=1000, help="Rows.")] = 50,
    offset: Annotated[int, typer.Option(min=0, help="Rows to skip.")] = 0,
    config: ConfigOption = DEFAULT_CONFIG,
) -> None:
    """List alerts, newest first."""
    if state not in ("open", "firing", "acknowledged", "resolved", "all"):
        fail(
            f"--state must be open, firing, acknowledged, resolved or all, "
            f"got {state!r}",
            2,
        )
    chosen: StateFilter = state  # type: ignore[assignment]  # checked just above
    with open_registry(config) as (registry, _):
        page = AlertStore(registry).list_alerts(chosen, device, limit, offset)
    print_page("alerts", page, ALERT_COLUMNS)


@alerts_app.command("show")
def alerts_show(
    alert_id: Annotated[int, typer.Argument(help="Alert id.")],
    config: ConfigOption = DEFAULT_CONFIG,
) -> None:
    """Show one alert and its history."""
    with open_registry(config) as (registry, _):
        detail = AlertStore(registry).get(alert_id)
    output.print(record_table(detail.alert.model_dump(), f"Alert {alert_id}"))
    print_rows(
        "events",
        [event.model_dump() for event in detail.events],
        ["event_id", "at", "event", "level", "value", "actor"],
    )


@alerts_app.command("ack")
def alerts_ack(
    alert_id: Annotated[int, typer.Argument(help="Alert id.")],
    actor: ActorOption = None,
    config: ConfigOption = DEFAULT_CONFIG,
) -> None:
    """Acknowledge an alert: someone is on it. The gateway publishes the change."""
    with open_registry(config) as (registry, _):
        alert = AlertStore(registry).acknowledge(alert_id, actor_name(actor))
    console.print(
        f"Alert {alert_id} ({alert.device_id} {alert.level}) acknowledged by "
        f"{alert.acknowledged_by}"
    )


@devices_app.command("command")
def devices_command(
    device_id: Annotated[str, typer.Argument(help="Device id.")],
    action: Annotated[
        str, typer.Argument(help="An action the device's profile lists.")
    ],
    arg: Annotated[
        list[str] | None,
        typer.Option("--arg", help="An argument as name=value; repeat for more."),
    ] = None,
    timeout: Annotated[
        float | None,
        typer.Option(
            min=0.1,
            max=3600,
            help="Seconds to wait for the device's "
            "answer (default: commands.timeout_s of the configuration).",
        ),
    ] = None,
    wait: Annotated[
        bool, typer.Option(help="Follow the command until it ends.")
    ] = True,
    actor: ActorOption = None,
    config: ConfigOption = DEFAULT_CONFIG,
) -> None:
    """Queue a command for a device and follow it: sent, acknowledged, confirmed.

    Exit 0 once done, 1 if it failed, 3 while it awaits a second person's
    approval (decor devices approve ID), 4 if still under way when done waiting.
    """
    args = _parse_args(arg or [])
    with open_registry(config) as (registry, settings):
        store = _command_store(registry, settings.quality.profiles_dir, str(config))
        timeout_s = timeout or settings.commands.timeout_s
        try:
            command = store.request(
                device_id, action, args, actor_name(actor), CLI_ROLE, timeout_s
            )
        except Forbidden as exc:
            fail(str(exc), 1)
        console.print(f"Command {command.command_id}: {command.state}")
        if command.state == "awaiting_approval":
            console.print(
                "A critical action: another person approves it with "
                f"`decor devices approve {command.command_id}`"
            )
            raise typer.Exit(EXIT_AWAITING_APPROVAL)
        if not wait:
            return
        spec = store.spec(device_id, action)
        limit_s = (
            timeout_s
            + PICK_UP_S
            + (settings.commands.confirm_timeout_s if spec.confirm else 0.0)
        )
        final = _follow(store, command, limit_s, confirm=spec.confirm is not None)
    _exit_for(final, confirm=spec.confirm is not None)


@devices_app.command("approve")
def devices_approve(
    command_id: Annotated[str, typer.Argument(help="Command id.")],
    actor: ActorOption = None,
    config: ConfigOption = DEFAULT_CONFIG,
) -> None:
    """Approve a critical command someone else requested; it is then sent."""
    with open_registry(config) as (registry, settings):
        store = _command_store(registry, settings.quality.profiles_dir, str(config))
        try:
            command = store.approve(command_id, actor_name(actor), CLI_ROLE)
        except Forbidden as exc:
            fail(str(exc), 1)
    console.print(f"Command {command_id} approved by {command.approved_by}: queued")


@devices_app.command("commands")
def devices_commands(
    device: Annotated[str | None, typer.Option(help="Only this device.")] = None,
    state: Annotated[str | None, typer.Option(help="Only in this state.")] = None,
    command_id: Annotated[
        str | None, typer.Option("--id", help="Show one command and its audit trail.")
    ] = None,
    limit: Annotated[int, typer.Option(min=1, max=1000, help="Rows.")] = 50,
    config: ConfigOption = DEFAULT_CONFIG,
) -> None:
    """List commands, newest first, or show one with --id."""
    with open_registry(config) as (registry, settings):
        store = _command_store(registry, settings.quality.profiles_dir, str(config))
        if command_id is not None:
            command = store.get(command_id)
            history = registry.audit_log(entity_id=command_id, limit=50).items
            output.print(record_table(command.model_dump(), f"Command {command_id}"))
            print_history(history)
            return
        page = store.list_commands(device, state, limit, 0)
    print_page("commands", page, COMMAND_COLUMNS)


def _command_store(
    registry: object, profiles_dir: Path | None, source: str
) -> CommandStore:
    try:
        specs = specs_by_device_type(load_profile_tables(profiles_dir, source))
    except (ConfigError, ValueError) as exc:
        fail(f"Configuration error: {exc}", 2)
    return CommandStore(registry, specs)  # type: ignore[arg-type]


def _parse_args(pairs: list[str]) -> dict[str, str]:
    args = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name:
            fail(f"--arg must be name=value, got {pair!r}", 2)
        args[name.strip()] = value.strip()
    return args


def _follow(
    store: CommandStore, command: CommandOut, limit_s: float, *, confirm: bool
) -> CommandOut:
    """Print each state the command reaches until it ends or `limit_s` passes."""
    deadline = time.monotonic() + limit_s
    seen = command.state
    while time.monotonic() < deadline:
        time.sleep(POLL_S)
        command = store.get(command.command_id)
        if command.state != seen:
            seen = command.state
            detail = f" ({command.detail})" if command.detail else ""
            console.print(f"Command {command.command_id}: {seen}{detail}")
        if command.finished or (command.state == "acknowledged" and not confirm):
            break
    return command


def _exit_for(command: CommandOut, *, confirm: bool) -> None:
    if command.state == "failed":
        raise typer.Exit(EXIT_FAILED)
    if command.state == "confirmed" or (
        command.state == "acknowledged" and not confirm
    ):
        return
    console.print(
        f"Command {command.command_id} is still {command.state}; follow it with "
        f"`decor devices commands --id {command.command_id}`"
    )
    raise typer.Exit(EXIT_STILL_WAITING)
