"""Errors of the registry, each carrying its facts as attributes.

GatewayError
└── RegistryError        a registry request cannot be carried out
    ├── NotFound         no such agency, site, device, camera or token
    ├── Conflict         the id is taken, or the change contradicts the state
    ├── InvalidInput     a value is wrong: names the field and why
    ├── RegistryUnavailable   the database cannot be opened or reached
    └── AccessError      the broker refused or did not answer a dynsec command
"""

from __future__ import annotations

from gateway.errors import GatewayError

__all__ = [
    "AccessError",
    "Conflict",
    "InvalidInput",
    "NotFound",
    "RegistryError",
    "RegistryUnavailable",
]


class RegistryError(GatewayError):
    """A registry request cannot be carried out."""


class NotFound(RegistryError):
    """No entity of this kind has this id."""

    def __init__(self, entity: str, entity_id: str) -> None:
        self.entity = entity
        self.entity_id = entity_id
        super().__init__(f"no {entity} {entity_id!r} in the registry")


class Conflict(RegistryError):
    """The request contradicts the registry: a taken id, a retired record."""

    def __init__(self, entity: str, entity_id: str, reason: str) -> None:
        self.entity = entity
        self.entity_id = entity_id
        self.reason = reason
        super().__init__(f"{entity} {entity_id!r}: {reason}")


class InvalidInput(RegistryError):
    """A value is wrong; `field` names it (empty for the whole record)."""

    def __init__(self, field: str, reason: str) -> None:
        self.field = field
        self.reason = reason
        super().__init__(f"{field}: {reason}" if field else reason)


class RegistryUnavailable(RegistryError):
    """The registry database cannot be opened or reached."""


class AccessError(RegistryError):
    """The broker refused a dynamic-security command or did not answer it."""

    def __init__(self, command: str, reason: str) -> None:
        self.command = command
        self.reason = reason
        super().__init__(f"dynamic security {command}: {reason}")
