"""Commands in the registry database: request, approve, follow, list; all audited.

The database is the queue between whoever asks (the command line, the API)
and the running gateway that sends: a command is `queued` (or
`awaiting_approval` for a critical actuator), `sent` once handed to the
broker, `acknowledged` when the device answers, `confirmed` when its
telemetry shows the effect, or `failed` with the reason. Every step is a row
of the audit log, in the same transaction as the change.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import BaseModel, ConfigDict
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from gateway.commands.specs import CommandSpec, parse_args
from gateway.registry.errors import Conflict, InvalidInput, NotFound, RegistryError
from gateway.registry.models import AuditEntry, Device
from gateway.registry.operations_models import COMMAND_STATES, Command
from gateway.registry.schemas import Page
from gateway.registry.service import Registry

__all__ = [
    "COMMAND_ROLES",
    "CommandOut",
    "CommandStore",
    "Forbidden",
    "Outgoing",
]

logger = logging.getLogger(__name__)

# Operators watch and acknowledge; only these roles act on devices.
COMMAND_ROLES = ("admin", "technician")
GATEWAY_ACTOR = "gateway"
SERVICE_STATES = ("provisioned", "active")


class Forbidden(RegistryError):
    """The caller's role may not do this, or the same person may not approve."""


class CommandOut(BaseModel):
    """A command as listed and shown."""

    model_config = ConfigDict(from_attributes=True)

    command_id: str
    device_id: str
    action: str
    args: dict[str, Any]
    state: str
    critical: bool
    requested_by: str
    approved_by: str | None
    timeout_s: float
    detail: str
    reply: dict[str, Any] | None
    created_at: datetime
    sent_at: datetime | None
    acknowledged_at: datetime | None
    finished_at: datetime | None

    @property
    def finished(self) -> bool:
        """Tell whether the command reached an end: confirmed or failed."""
        return self.state in ("confirmed", "failed")


class Outgoing(BaseModel):
    """A command claimed for sending, with what its topic needs."""

    command: CommandOut
    agency: str
    profile: str


class CommandStore:
    """Command operations over the registry's database."""

    def __init__(
        self, registry: Registry, specs: Mapping[str, Mapping[str, CommandSpec]]
    ) -> None:
        self.sessions = registry.sessions
        self.specs = specs

    def spec(self, device_id: str, action: str) -> CommandSpec:
        """Return the spec of a device's action; raise NotFound or InvalidInput."""
        with self.sessions() as session:
            device = session.get(Device, device_id)
            if device is None:
                raise NotFound("device", device_id)
            return self._spec(device, action)

    def request(
        self,
        device_id: str,
        action: str,
        args: Mapping[str, Any],
        actor: str,
        role: str,
        timeout_s: float,
    ) -> CommandOut:
        """Queue a command (or hold it for approval if critical); audited.

        Raises Forbidden for a role that may not command, NotFound for an
        unknown device, Conflict for one out of service, InvalidInput for an
        action or argument its profile does not accept.
        """
        _check_role(role, "send commands to devices")
        with self.sessions.begin() as session:
            device = session.get(Device, device_id)
            if device is None:
                raise NotFound("device", device_id)
            if device.status not in SERVICE_STATES:
                raise Conflict("device", device_id, f"is {device.status}")
            spec = self._spec(device, action)
            typed = parse_args(spec, args)
            command = Command(
                command_id=uuid.uuid4().hex,
                device_id=device_id,
                action=action,
                args=typed,
                state="awaiting_approval" if spec.critical else "queued",
                critical=spec.critical,
                requested_by=actor,
                timeout_s=timeout_s,
                detail="needs a second person's approval" if spec.critical else "",
            )
            session.add(command)
            session.flush()
            _audit(
                session,
                actor,
                "command",
                command,
                {"device": device_id, "action": action, "args": typed},
            )
            return CommandOut.model_validate(command)

    def approve(self, command_id: str, actor: str, role: str) -> CommandOut:
        """Release a critical command held for approval; the approver must differ."""
        _check_role(role, "approve commands")
        with self.sessions.begin() as session:
            command = _get(session, command_id)
            if command.state != "awaiting_approval":
                raise Conflict(
                    "command", command_id, f"is {command.state}, not awaiting approval"
                )
            if command.requested_by == actor:
                raise Forbidden(
                    f"command {command_id} was requested by {actor}; a critical "
                    "command needs a second person's approval"
                )
            command.state, command.approved_by, command.detail = "queued", actor, ""
            _audit(session, actor, "approve", command, {})
            return CommandOut.model_validate(command)

    def get(self, command_id: str) -> CommandOut:
        """Return one command; raise NotFound for an unknown id."""
        with self.sessions() as session:
            return CommandOut.model_validate(_get(session, command_id))

    def list_commands(
        self,
        device_id: str | None = None,
        state: str | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> Page[CommandOut]:
        """Return commands, newest first, matching the filters given."""
        if state is not None and state not in COMMAND_STATES:
            raise InvalidInput("state", f"must be one of {', '.join(COMMAND_STATES)}")
        query = select(Command)
        if device_id is not None:
            query = query.where(Command.device_id == device_id)
        if state is not None:
            query = query.where(Command.state == state)
        with self.sessions() as session:
            total = session.scalar(select(func.count()).select_from(query.subquery()))
            rows = session.scalars(
                query.order_by(Command.created_at.desc()).limit(limit).offset(offset)
            )
            items = [CommandOut.model_validate(row) for row in rows]
        return Page[CommandOut](
            items=items, total=total or 0, limit=limit, offset=offset
        )

    def claim_queued(self, limit: int = 50) -> list[Outgoing]:
        """Mark queued commands sent and return them with their device's topic facts.

        The state changes only where it is still `queued`, so two gateways
        never both send one command.
        """
        claimed = []
        with self.sessions.begin() as session:
            rows = session.execute(
                select(Command, Device)
                .join(Device, Device.device_id == Command.device_id)
                .where(Command.state == "queued")
                .order_by(Command.created_at)
                .limit(limit)
            ).all()
            now = datetime.now(UTC)
            for command, device in rows:
                taken = session.execute(
                    update(Command)
                    .where(Command.command_id == command.command_id)
                    .where(Command.state == "queued")
                    .values(state="sent", sent_at=now)
                    .execution_options(synchronize_session=False)
                )
                if taken.rowcount != 1:  # type: ignore[attr-defined]
                    continue  # another gateway took it
                session.refresh(command)
                _audit(session, GATEWAY_ACTOR, "sent", command, {})
                claimed.append(
                    Outgoing(
                        command=CommandOut.model_validate(command),
                        agency=device.agency_id,
                        profile=device.profile,
                    )
                )
        return claimed

    def unfinished(self) -> list[Outgoing]:
        """Return the commands sent or acknowledged but not yet ended."""
        with self.sessions() as session:
            rows = session.execute(
                select(Command, Device)
                .join(Device, Device.device_id == Command.device_id)
                .where(Command.state.in_(("sent", "acknowledged")))
                .order_by(Command.created_at)
            ).all()
            return [
                Outgoing(
                    command=CommandOut.model_validate(command),
                    agency=device.agency_id,
                    profile=device.profile,
                )
                for command, device in rows
            ]

    def unclaim(self, command_id: str) -> None:
        """Put a command that could not be handed to the broker back in the queue."""
        with self.sessions.begin() as session:
            command = _get(session, command_id)
            if command.state == "sent":
                command.state, command.sent_at = "queued", None

    def advance(
        self,
        command_id: str,
        state: str,
        detail: str = "",
        reply: dict[str, Any] | None = None,
    ) -> CommandOut:
        """Move a command on to acknowledged, confirmed or failed; audited."""
        with self.sessions.begin() as session:
            command = _get(session, command_id)
            if command.state in ("confirmed", "failed"):
                return CommandOut.model_validate(command)
            now = datetime.now(UTC)
            before = command.state
            command.state, command.detail = state, detail
            if reply is not None:
                command.reply = reply
            if state == "acknowledged":
                command.acknowledged_at = now
            if state in ("confirmed", "failed"):
                command.finished_at = now
            _audit(
                session,
                GATEWAY_ACTOR,
                state,
                command,
                {"state": [before, state], "detail": detail},
            )
            log = logger.warning if state == "failed" else logger.info
            log(
                "Command %s (%s to %s) %s%s",
                command_id,
                command.action,
                command.device_id,
                state,
                f": {detail}" if detail else "",
            )
            return CommandOut.model_validate(command)

    def expire_queued(self, older_than_s: float) -> list[CommandOut]:
        """Fail the commands queued longer than `older_than_s` that no gateway sent."""
        cutoff = datetime.now(UTC) - timedelta(seconds=older_than_s)
        with self.sessions() as session:
            ids = session.scalars(
                select(Command.command_id).where(
                    Command.state.in_(("queued", "awaiting_approval")),
                    Command.created_at < cutoff,
                )
            ).all()
        return [
            self.advance(
                command_id,
                "failed",
                f"not sent within {older_than_s:g} s (no approval, or no gateway "
                "sending commands)",
            )
            for command_id in ids
        ]

    def _spec(self, device: Device, action: str) -> CommandSpec:
        actions = self.specs.get(device.profile, {})
        if action not in actions:
            known = ", ".join(sorted(actions)) or "none"
            raise InvalidInput(
                "action",
                f"{device.profile} devices take no {action!r} command (they take: "
                f"{known})",
            )
        return actions[action]


def _check_role(role: str, what: str) -> None:
    if role not in COMMAND_ROLES:
        raise Forbidden(
            f"to {what} needs role {' or '.join(COMMAND_ROLES)}; this caller has "
            f"role {role}"
        )


def _get(session: Session, command_id: str) -> Command:
    command = session.get(Command, command_id)
    if command is None:
        raise NotFound("command", command_id)
    return command


def _audit(
    session: Session, actor: str, action: str, command: Command, extra: dict[str, Any]
) -> None:
    changes: dict[str, Any] = {
        "device": [None, command.device_id],
        "action": [None, command.action],
        "state": [None, command.state],
    }
    for name, value in extra.items():
        changes[name] = value if isinstance(value, list) else [None, value]
    session.add(
        AuditEntry(
            actor=actor,
            action=action,
            entity="command",
            entity_id=command.command_id,
            changes=changes,
        )
    )
