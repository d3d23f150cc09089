"""Commands to devices: requested, approved, sent, answered, confirmed or failed."""

from gateway.commands.dispatcher import CommandDispatcher, reply_filter
from gateway.commands.specs import CommandSpec, Confirmation, specs_by_device_type
from gateway.commands.store import (
    COMMAND_ROLES,
    CommandOut,
    CommandStore,
    Forbidden,
)

__all__ = [
    "COMMAND_ROLES",
    "CommandDispatcher",
    "CommandOut",
    "CommandSpec",
    "CommandStore",
    "Confirmation",
    "Forbidden",
    "reply_filter",
    "specs_by_device_type",
]
