"""API tokens: made at random, shown once, kept only as their SHA-256.

A token holds 256 random bits, so one round of SHA-256 is enough to keep it
safe at rest: there is nothing to guess, unlike a password a person chose.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass

from sqlalchemy import select

from gateway.registry.errors import Conflict, InvalidInput, NotFound
from gateway.registry.models import ROLES, ApiToken, utc_now
from gateway.registry.schemas import TokenOut
from gateway.registry.service import Registry, _audit

__all__ = ["IssuedToken", "issue_token", "list_tokens", "revoke_token", "token_role"]

TOKEN_PREFIX = "decor_"
TOKEN_BYTES = 32


@dataclass(frozen=True)
class IssuedToken:
    """A new token: `secret` is shown to its owner once and never stored."""

    token: TokenOut
    secret: str

    def __repr__(self) -> str:
        return f"IssuedToken({self.token.name!r}, {self.token.role})"


def issue_token(registry: Registry, name: str, role: str, actor: str) -> IssuedToken:
    """Create a token named `name` with `role`; only its hash is stored."""
    if role not in ROLES:
        raise InvalidInput("role", f"must be one of {', '.join(ROLES)}, got {role!r}")
    if not name.strip():
        raise InvalidInput("name", "must not be empty")
    secret = TOKEN_PREFIX + secrets.token_urlsafe(TOKEN_BYTES)
    with registry.sessions.begin() as session:
        if session.scalar(select(ApiToken).where(ApiToken.name == name)) is not None:
            raise Conflict("token", name, "is already taken; revoke it or pick a name")
        token = ApiToken(name=name, role=role, token_sha256=_digest(secret))
        session.add(token)
        session.flush()
        _audit(session, actor, "create", "token", name, {"role": role})
        return IssuedToken(TokenOut.model_validate(token), secret)


def revoke_token(registry: Registry, name: str, actor: str) -> TokenOut:
    """Revoke a token by name; it stops working at once."""
    with registry.sessions.begin() as session:
        token = session.scalar(select(ApiToken).where(ApiToken.name == name))
        if token is None:
            raise NotFound("token", name)
        if token.revoked_at is None:
            token.revoked_at = utc_now()
            _audit(session, actor, "revoke", "token", name, {"role": token.role})
        return TokenOut.model_validate(token)


def list_tokens(registry: Registry) -> list[TokenOut]:
    """Return every token's name and role, revoked ones included."""
    with registry.sessions() as session:
        tokens = session.scalars(select(ApiToken).order_by(ApiToken.name))
        return [TokenOut.model_validate(token) for token in tokens]


def token_role(registry: Registry, secret: str) -> TokenOut | None:
    """Return the live token whose secret this is; None if unknown or revoked."""
    digest = _digest(secret)
    with registry.sessions() as session:
        token = session.scalar(select(ApiToken).where(ApiToken.token_sha256 == digest))
        # The lookup is by an index; compare again in constant time anyway.
        if token is None or not hmac.compare_digest(token.token_sha256, digest):
            return None
        if token.revoked_at is not None:
            return None
        return TokenOut.model_validate(token)


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()
