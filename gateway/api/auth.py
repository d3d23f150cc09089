"""Who may call the API: bearer tokens, each with a role.

operator reads; technician also registers, changes and retires devices,
cameras and sites; admin also manages agencies and tokens. A 401 says what is
missing, a 403 which role the request needs and which the token has.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

from fastapi import Depends, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from gateway.registry.schemas import TokenOut
from gateway.registry.service import Registry
from gateway.registry.tokens import token_role

__all__ = ["ADMIN", "READ", "WRITE", "require"]

READ = ("admin", "technician", "operator")
WRITE = ("admin", "technician")
ADMIN = ("admin",)
_CHALLENGE = {"WWW-Authenticate": "Bearer"}
# auto_error=False: we write the 401 ourselves, saying what is missing.
_bearer = HTTPBearer(
    auto_error=False, description="An API token from `decor tokens create`"
)


def require(roles: tuple[str, ...], what: str) -> Callable[..., TokenOut]:
    """Return a dependency admitting only tokens holding one of `roles`.

    Args:
        what: the action, in words, for the 403 message ("register a device").
    """

    def check(
        request: Request,
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    ) -> TokenOut:
        if credentials is None:
            raise HTTPException(
                status.HTTP_401_UNAUTHORIZED,
                "missing API token: send the header 'Authorization: Bearer <token>' "
                "(an admin creates tokens with `decor tokens create`)",
                headers=_CHALLENGE,
            )
        registry: Registry = request.app.state.registry
        token = token_role(registry, credentials.credentials)
        if token is None:
            raise HTTPException(
                status.HTTP_401_UNAUTHORIZED,
                "API token not recognised, or revoked: ask an admin for a new one",
                headers=_CHALLENGE,
            )
        if token.role not in roles:
            needed = " or ".join(roles)
            raise HTTPException(
                status.HTTP_403_FORBIDDEN,
                f"to {what} needs role {needed}; token {token.name!r} has role "
                f"{token.role}",
            )
        return token

    return check
