"""HTTP routes of the operations room: alerts (list, show, acknowledge) and commands.

Any role reads alerts and may acknowledge one (operators watch the room);
only technicians and admins send commands or approve a critical one, and the
approver of a critical command must be another token than its requester.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Query, Request, status
from pydantic import BaseModel, Field

from gateway.alerts.store import AlertDetail, AlertOut, AlertStore, StateFilter
from gateway.api.auth import READ, require
from gateway.commands.specs import CommandSpec
from gateway.commands.store import COMMAND_ROLES, CommandOut, CommandStore, Forbidden
from gateway.registry.schemas import Page, TokenOut
from gateway.registry.service import DEFAULT_PAGE, MAX_PAGE, Registry

__all__ = ["CommandRequest", "add_operations_routes"]

Limit = Annotated[int, Query(ge=1, le=MAX_PAGE, description="Records per page")]
Offset = Annotated[int, Query(ge=0, description="Records to skip")]
Reader = Annotated[TokenOut, Depends(require(READ, "read alerts and commands"))]
Acknowledger = Annotated[TokenOut, Depends(require(READ, "acknowledge alerts"))]
Commander = Annotated[
    TokenOut, Depends(require(COMMAND_ROLES, "send commands to devices"))
]
Approver = Annotated[TokenOut, Depends(require(COMMAND_ROLES, "approve commands"))]


class CommandRequest(BaseModel):
    """A command for a device: an action its profile lists, and its arguments."""

    action: str = Field(min_length=1, max_length=64)
    args: dict[str, Any] = Field(default_factory=dict)
    timeout_s: float | None = Field(
        None, gt=0, le=3600, description="Longest wait for the device's answer, s"
    )


def add_operations_routes(
    app: FastAPI,
    specs: Mapping[str, Mapping[str, CommandSpec]],
    command_timeout_s: float = 30.0,
) -> None:
    """Serve the alert and command routes on `app`, whose state holds the registry."""
    app.state.command_specs = specs
    app.state.command_timeout_s = command_timeout_s
    app.include_router(_alerts)
    app.include_router(_commands)


def _alert_store(request: Request) -> AlertStore:
    registry: Registry = request.app.state.registry
    return AlertStore(registry)


def _command_store(request: Request) -> CommandStore:
    registry: Registry = request.app.state.registry
    return CommandStore(registry, request.app.state.command_specs)


Alerts = Annotated[AlertStore, Depends(_alert_store)]
Commands = Annotated[CommandStore, Depends(_command_store)]


def _actor(token: TokenOut) -> str:
    return f"token:{token.name}"


_alerts = APIRouter(prefix="/alerts", tags=["alerts"])


@_alerts.get("")
def alerts(
    store: Alerts,
    _: Reader,
    state: StateFilter = "open",
    device: str | None = None,
    limit: Limit = DEFAULT_PAGE,
    offset: Offset = 0,
) -> Page[AlertOut]:
    """List alerts, newest first; `open` (default) is firing or acknowledged."""
    return store.list_alerts(state, device, limit, offset)


@_alerts.get("/{alert_id}")
def alert(alert_id: int, store: Alerts, _: Reader) -> AlertDetail:
    """Show one alert and its history."""
    return store.get(alert_id)


@_alerts.post("/{alert_id}/ack")
def acknowledge(alert_id: int, store: Alerts, token: Acknowledger) -> AlertOut:
    """Acknowledge an open alert (any role); 409 if resolved or acknowledged."""
    return store.acknowledge(alert_id, _actor(token))


_commands = APIRouter(tags=["commands"])


@_commands.post("/devices/{device_id}/commands", status_code=status.HTTP_201_CREATED)
def send_command(
    device_id: str,
    data: CommandRequest,
    request: Request,
    store: Commands,
    token: Commander,
) -> CommandOut:
    """Queue a command for a device (technician or admin); follow it by its id."""
    timeout_s = data.timeout_s or request.app.state.command_timeout_s
    try:
        return store.request(
            device_id, data.action, data.args, _actor(token), token.role, timeout_s
        )
    except Forbidden as exc:
        raise HTTPException(status.HTTP_403_FORBIDDEN, str(exc)) from None


@_commands.get("/commands")
def commands(
    store: Commands,
    _: Reader,
    device: str | None = None,
    state: str | None = None,
    limit: Limit = DEFAULT_PAGE,
    offset: Offset = 0,
) -> Page[CommandOut]:
    """List commands, newest first."""
    return store.list_commands(device, state, limit, offset)


@_commands.get("/commands/{command_id}")
def command(command_id: str, store: Commands, _: Reader) -> CommandOut:
    """Show one command and where it stands."""
    return store.get(command_id)


@_commands.post("/commands/{command_id}/approve")
def approve(command_id: str, store: Commands, token: Approver) -> CommandOut:
    """Approve a critical command; the approver must not be its requester."""
    try:
        return store.approve(command_id, _actor(token), token.role)
    except Forbidden as exc:
        raise HTTPException(status.HTTP_403_FORBIDDEN, str(exc)) from None
