"""The commands each device type accepts, read from its profile's `[commands]`.

    [commands.set_interval]
    description = "Report every interval_s seconds"
    args = { interval_s = "float" }

    [commands.open]
    description = "Open the sluice gate"
    critical = true                               # a second person approves
    confirm = { field = "gate_open", equals = 1.0 }  # telemetry that shows it

Argument types: float, integer, string, boolean. An action marked critical
leaves only once someone other than its requester approves it. `confirm`
names the reading that shows the action took effect.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from gateway.registry.errors import InvalidInput

__all__ = [
    "ARG_TYPES",
    "CommandSpec",
    "Confirmation",
    "parse_args",
    "specs_by_device_type",
]

ARG_TYPES = ("float", "integer", "string", "boolean")
_TRUE = ("true", "1", "yes", "on")
_FALSE = ("false", "0", "no", "off")


@dataclass(frozen=True, slots=True)
class Confirmation:
    """The reading that shows a command took effect: `field` equal to `equals`."""

    field: str
    equals: float

    def shown_by(self, fields: Mapping[str, Any]) -> bool:
        """Tell whether a point's fields show the command's effect."""
        value = fields.get(self.field)
        if isinstance(value, bool) or not isinstance(value, int | float):
            return False
        return math.isclose(float(value), self.equals, abs_tol=1e-9)


@dataclass(frozen=True, slots=True)
class CommandSpec:
    """One action a device type accepts."""

    action: str
    description: str = ""
    args: tuple[tuple[str, str], ...] = ()
    critical: bool = False
    confirm: Confirmation | None = None


def specs_by_device_type(
    tables: Mapping[str, Mapping[str, Any]],
) -> dict[str, dict[str, CommandSpec]]:
    """Return each device type's commands by action; raise ValueError if bad."""
    specs: dict[str, dict[str, CommandSpec]] = {}
    for device_type, data in tables.items():
        commands = data.get("commands", {})
        if not isinstance(commands, dict):
            raise ValueError(f"profile {device_type!r}: commands must be a table")
        specs[device_type] = {
            action: _spec(device_type, action, raw) for action, raw in commands.items()
        }
    return specs


def parse_args(spec: CommandSpec, given: Mapping[str, Any]) -> dict[str, Any]:
    """Return a command's arguments typed by its spec; raise InvalidInput naming one.

    Text values (from `--arg k=v`) are converted; JSON values must already
    have the declared type (an integer is taken as a float).
    """
    declared = dict(spec.args)
    unknown = sorted(set(given) - set(declared))
    if unknown:
        takes = ", ".join(declared) or "no arguments"
        raise InvalidInput(
            f"args.{unknown[0]}", f"{spec.action} takes {takes}, not {unknown[0]!r}"
        )
    missing = [name for name in declared if name not in given]
    if missing:
        raise InvalidInput(
            f"args.{missing[0]}",
            f"{spec.action} needs {missing[0]} ({declared[missing[0]]})",
        )
    return {name: _typed(name, declared[name], given[name]) for name in declared}


def _spec(device_type: str, action: str, raw: Any) -> CommandSpec:
    where = f"profile {device_type!r}: commands.{action}"
    if not isinstance(raw, dict):
        raise ValueError(f"{where} must be a table")
    args = raw.get("args", {})
    if not isinstance(args, dict) or any(t not in ARG_TYPES for t in args.values()):
        raise ValueError(f"{where}.args must map names to one of {ARG_TYPES}")
    confirm = raw.get("confirm")
    confirmation = None
    if confirm is not None:
        if not isinstance(confirm, dict) or set(confirm) != {"field", "equals"}:
            raise ValueError(f"{where}.confirm must be {{ field = ..., equals = ... }}")
        confirmation = Confirmation(str(confirm["field"]), float(confirm["equals"]))
    return CommandSpec(
        action=action,
        description=str(raw.get("description", "")),
        args=tuple((str(k), str(v)) for k, v in args.items()),
        critical=bool(raw.get("critical", False)),
        confirm=confirmation,
    )


def _typed(name: str, kind: str, value: Any) -> Any:
    field = f"args.{name}"
    if isinstance(value, str) and kind != "string":
        value = _from_text(field, kind, value)
    if kind == "boolean" and isinstance(value, bool):
        return value
    if kind == "string" and isinstance(value, str):
        return value
    if kind == "integer" and isinstance(value, int) and not isinstance(value, bool):
        return value
    if (
        kind == "float"
        and isinstance(value, int | float)
        and not isinstance(value, bool)
    ):
        if math.isfinite(value):
            return float(value)
    raise InvalidInput(field, f"must be a finite {kind}, got {value!r}")


def _from_text(field: str, kind: str, text: str) -> Any:
    try:
        if kind == "integer":
            return int(text)
        if kind == "float":
            return float(text)
    except ValueError:
        raise InvalidInput(field, f"must be a {kind}, got {text!r}") from None
    lowered = text.strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise InvalidInput(field, f"must be true or false, got {text!r}")
