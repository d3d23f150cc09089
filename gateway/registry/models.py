"""Tables of the registry: agencies, sites, devices, cameras, API tokens, audit log.

The schema itself is built by the Alembic migrations in `migrations/`; these
classes must match the newest one (a test compares them).
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    CheckConstraint,
    Date,
    DateTime,
    Float,
    ForeignKey,
    Integer,
    MetaData,
    String,
    Text,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

__all__ = [
    "DEVICE_STATUSES",
    "ROLES",
    "Agency",
    "ApiToken",
    "AuditEntry",
    "Base",
    "Camera",
    "Device",
    "Site",
]

DEVICE_STATUSES = ("pending", "provisioned", "active", "decommissioned")
ROLES = ("admin", "technician", "operator")
ID_LENGTH = 64
URL_LENGTH = 1000

# Named constraints, so that migrations can alter them on every database.
NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utc_now() -> datetime:
    """Return the current time in UTC, for created/updated columns."""
    return datetime.now(UTC)


class UtcDateTime(TypeDecorator[datetime]):
    """A time stored with its zone, read back in UTC on every database.

    SQLite keeps no zone: its times come back naive, and are UTC by construction.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(
        self, value: datetime | None, dialect: Dialect
    ) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError(f"registry times must carry a zone, got {value!r}")
        return value

    def process_result_value(
        self, value: datetime | None, dialect: Dialect
    ) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


class Base(DeclarativeBase):
    """Base of the registry's tables."""

    metadata = MetaData(naming_convention=NAMING)


class Agency(Base):
    """A city agency that owns devices and cameras; its id tags every point."""

    __tablename__ = "agencies"

    agency_id: Mapped[str] = mapped_column(String(ID_LENGTH), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utc_now)

    def __repr__(self) -> str:
        return f"Agency({self.agency_id!r})"


class Site(Base):
    """A place where devices and cameras are installed."""

    __tablename__ = "sites"
    __table_args__ = (
        CheckConstraint("status IN ('active', 'decommissioned')", name="status"),
    )

    site_id: Mapped[str] = mapped_column(String(ID_LENGTH), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    area: Mapped[str] = mapped_column(String(200), default="")
    latitude: Mapped[float | None] = mapped_column(Float)
    longitude: Mapped[float | None] = mapped_column(Float)
    address: Mapped[str] = mapped_column(Text, default="")
    # A decommissioned site keeps its history; nothing new may be placed there.
    status: Mapped[str] = mapped_column(
        String(20), default="active", server_default="active"
    )
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utc_now)
    updated_at: Mapped[datetime] = mapped_column(
        UtcDateTime(), default=utc_now, onupdate=utc_now
    )

    def __repr__(self) -> str:
        return f"Site({self.site_id!r})"


class Device(Base):
    """A sensor that publishes over MQTT, with the profile that decodes it."""

    __tablename__ = "devices"
    __table_args__ = (
        CheckConstraint(
            "status IN ('pending', 'provisioned', 'active', 'decommissioned')",
            name="status",
        ),
        CheckConstraint("expected_cadence_s > 0", name="cadence_positive"),
    )

    device_id: Mapped[str] = mapped_column(String(ID_LENGTH), primary_key=True)
    profile: Mapped[str] = mapped_column(String(ID_LENGTH), index=True)
    agency_id: Mapped[str] = mapped_column(ForeignKey("agencies.agency_id"), index=True)
    site_id: Mapped[str | None] = mapped_column(ForeignKey("sites.site_id"))
    status: Mapped[str] = mapped_column(String(20), default="provisioned")
    firmware: Mapped[str] = mapped_column(String(100), default="")
    installed_on: Mapped[date | None] = mapped_column(Date)
    notes: Mapped[str] = mapped_column(Text, default="")
    expected_cadence_s: Mapped[float] = mapped_column(Float)
    # The broker account made for it; None until dynamic security made one.
    mqtt_username: Mapped[str | None] = mapped_column(String(ID_LENGTH * 2))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utc_now)
    updated_at: Mapped[datetime] = mapped_column(
        UtcDateTime(), default=utc_now, onupdate=utc_now
    )

    def __repr__(self) -> str:
        return f"Device({self.device_id!r}, {self.status})"


class Camera(Base):
    """A CCTV camera; its credentials stay out of URLs, reprs, logs and the API."""

    __tablename__ = "cameras"
    __table_args__ = (
        CheckConstraint(
            "status IN ('provisioned', 'active', 'decommissioned')", name="status"
        ),
        CheckConstraint("sample_interval_s > 0", name="interval_positive"),
        CheckConstraint("expected_cadence_s > 0", name="cadence_positive"),
    )

    camera_id: Mapped[str] = mapped_column(String(ID_LENGTH), primary_key=True)
    agency_id: Mapped[str] = mapped_column(ForeignKey("agencies.agency_id"), index=True)
    site_id: Mapped[str | None] = mapped_column(ForeignKey("sites.site_id"))
    status: Mapped[str] = mapped_column(String(20), default="provisioned")
    stream_url: Mapped[str] = mapped_column(String(URL_LENGTH))
    snapshot_url: Mapped[str] = mapped_column(String(URL_LENGTH), default="")
    username: Mapped[str] = mapped_column(String(200), default="")
    password: Mapped[str] = mapped_column(String(200), default="")
    # Sampling policy: one frame kept every sample_interval_s.
    sample_interval_s: Mapped[float] = mapped_column(Float, default=60.0)
    expected_cadence_s: Mapped[float] = mapped_column(Float)
    notes: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utc_now)
    updated_at: Mapped[datetime] = mapped_column(
        UtcDateTime(), default=utc_now, onupdate=utc_now
    )

    def __repr__(self) -> str:
        # Never the password; URLs are stored without credentials.
        return f"Camera({self.camera_id!r}, {self.status})"


class ApiToken(Base):
    """An API token: only its SHA-256 is kept, the token itself is shown once."""

    __tablename__ = "api_tokens"
    __table_args__ = (
        CheckConstraint("role IN ('admin', 'technician', 'operator')", name="role"),
    )

    token_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    role: Mapped[str] = mapped_column(String(20))
    token_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utc_now)
    revoked_at: Mapped[datetime | None] = mapped_column(UtcDateTime())

    def __repr__(self) -> str:
        return f"ApiToken({self.name!r}, {self.role})"


class AuditEntry(Base):
    """One change to the registry: who, when, what, and each field's old and new."""

    __tablename__ = "audit_log"

    entry_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utc_now, index=True)
    actor: Mapped[str] = mapped_column(String(200))
    action: Mapped[str] = mapped_column(String(40))
    entity: Mapped[str] = mapped_column(String(40))
    entity_id: Mapped[str] = mapped_column(String(ID_LENGTH * 2), index=True)
    # {field: [old, new]}; secrets appear as "***".
    changes: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)

    def __repr__(self) -> str:
        return f"AuditEntry({self.action} {self.entity} {self.entity_id!r})"


# The operations tables share this metadata; imported last, as they build on
# the classes above.
from gateway.registry import operations_models  # noqa: E402, F401
