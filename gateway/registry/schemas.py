"""What a technician may send for each registry record, and what the registry shows.

The same models check the CLI's options, each imported row and the API's
request bodies, so every interface refuses the same things for the same reasons.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Any, Generic, Literal, TypeVar
from urllib.parse import SplitResult, unquote, urlsplit, urlunsplit

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    field_validator,
    model_validator,
)

from gateway.registry.errors import InvalidInput

__all__ = [
    "AgencyIn",
    "AgencyOut",
    "AuditOut",
    "CameraIn",
    "CameraOut",
    "CameraUpdate",
    "DeviceIn",
    "DeviceOut",
    "DeviceUpdate",
    "Page",
    "SiteIn",
    "SiteOut",
    "SiteUpdate",
    "TokenOut",
    "first_problem",
    "split_credentials",
]

# An id becomes one MQTT topic level and an InfluxDB tag value: no / + # or
# spaces, and short enough to read on a dashboard.
Identifier = Annotated[
    str,
    StringConstraints(
        strip_whitespace=True, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
    ),
]
ID_RULE = "1-64 letters, digits, '_', '.' or '-', starting with a letter or digit"
Cadence = Annotated[float, Field(gt=0, le=86_400 * 31)]
Text = Annotated[str, StringConstraints(strip_whitespace=True, max_length=2000)]
CAMERA_SCHEMES = ("rtsp", "rtsps", "http", "https")
# Fields whose values may hold a secret: never echoed back in a message.
SECRET_FIELDS = ("password", "stream_url", "snapshot_url")
T = TypeVar("T")


class _In(BaseModel):
    # Unknown keys are refused: a misspelled column must not be dropped quietly.
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class AgencyIn(_In):
    """A new agency."""

    agency_id: Identifier
    name: Annotated[str, StringConstraints(min_length=1, max_length=200)]


class SiteIn(_In):
    """A new site."""

    site_id: Identifier
    name: Annotated[str, StringConstraints(min_length=1, max_length=200)]
    area: Text = ""
    latitude: Annotated[float, Field(ge=-90, le=90)] | None = None
    longitude: Annotated[float, Field(ge=-180, le=180)] | None = None
    address: Text = ""


class SiteUpdate(_In):
    """Changes to a site; fields left out stay as they are."""

    name: Annotated[str, StringConstraints(min_length=1, max_length=200)] | None = None
    area: Text | None = None
    latitude: Annotated[float, Field(ge=-90, le=90)] | None = None
    longitude: Annotated[float, Field(ge=-180, le=180)] | None = None
    address: Text | None = None


class DeviceIn(_In):
    """A new device; its cadence defaults to its profile's report interval."""

    device_id: Identifier
    profile: Identifier
    agency: Identifier
    site: Identifier | None = None
    status: Literal["provisioned", "active"] = "provisioned"
    firmware: Text = ""
    installed_on: date | None = None
    notes: Text = ""
    expected_cadence_s: Cadence | None = None

    @field_validator("site", "installed_on", "expected_cadence_s", mode="before")
    @classmethod
    def _empty_is_none(cls, value: Any) -> Any:
        # A CSV cell left empty means "not given".
        return None if value == "" else value


class DeviceUpdate(_In):
    """Changes to a device; fields left out stay as they are."""

    profile: Identifier | None = None
    agency: Identifier | None = None
    site: Identifier | None = None
    status: Literal["provisioned", "active"] | None = None
    firmware: Text | None = None
    installed_on: date | None = None
    notes: Text | None = None
    expected_cadence_s: Cadence | None = None


class CameraIn(_In):
    """A new camera; credentials written into a URL are moved out of it."""

    camera_id: Identifier
    agency: Identifier
    site: Identifier | None = None
    status: Literal["provisioned", "active"] = "provisioned"
    stream_url: Annotated[str, StringConstraints(min_length=1, max_length=1000)]
    snapshot_url: Annotated[str, StringConstraints(max_length=1000)] = ""
    username: Annotated[str, StringConstraints(max_length=200)] = ""
    password: Annotated[str, StringConstraints(max_length=200)] = Field("", repr=False)
    sample_interval_s: Cadence = 60.0
    expected_cadence_s: Cadence | None = None
    notes: Text = ""

    @field_validator("site", "expected_cadence_s", mode="before")
    @classmethod
    def _empty_is_none(cls, value: Any) -> Any:
        return None if value == "" else value

    @field_validator("stream_url", "snapshot_url")
    @classmethod
    def _camera_url(cls, value: str) -> str:
        return _check_camera_url(value)

    @model_validator(mode="after")
    def _credentials_apart(self) -> Any:
        # Credentials written into a URL would leak wherever the URL is shown.
        for key in ("stream_url", "snapshot_url"):
            url = getattr(self, key)
            if url:
                clean, user, password = split_credentials(url)
                setattr(self, key, clean)
                if user and not self.username:
                    self.username = user
                if password and not self.password:
                    self.password = password
        return self


class CameraUpdate(_In):
    """Changes to a camera; fields left out stay as they are."""

    agency: Identifier | None = None
    site: Identifier | None = None
    status: Literal["provisioned", "active"] | None = None
    stream_url: (
        Annotated[str, StringConstraints(min_length=1, max_length=1000)] | None
    ) = None
    snapshot_url: Annotated[str, StringConstraints(max_length=1000)] | None = None
    username: Annotated[str, StringConstraints(max_length=200)] | None = None
    password: Annotated[str, StringConstraints(max_length=200)] | None = Field(
        None, repr=False
    )
    sample_interval_s: Cadence | None = None
    expected_cadence_s: Cadence | None = None
    notes: Text | None = None

    @field_validator("stream_url", "snapshot_url")
    @classmethod
    def _camera_url(cls, value: str | None) -> str | None:
        return None if value is None else _check_camera_url(value)

    @model_validator(mode="after")
    def _credentials_apart(self) -> Any:
        # Credentials written into a URL would leak wherever the URL is shown.
        for key in ("stream_url", "snapshot_url"):
            url = getattr(self, key)
            if url:
                clean, user, password = split_credentials(url)
                setattr(self, key, clean)
                if user and not self.username:
                    self.username = user
                if password and not self.password:
                    self.password = password
        return self


class _Out(BaseModel):
    model_config = ConfigDict(from_attributes=True)


class AgencyOut(_Out):
    """An agency as the registry holds it."""

    agency_id: str
    name: str
    created_at: datetime


class SiteOut(_Out):
    """A site as the registry holds it."""

    site_id: str
    name: str
    area: str
    latitude: float | None
    longitude: float | None
    address: str
    status: str
    created_at: datetime
    updated_at: datetime


class DeviceOut(_Out):
    """A device as the registry holds it (never its MQTT password)."""

    device_id: str
    profile: str
    agency: str = Field(validation_alias="agency_id")
    site: str | None = Field(validation_alias="site_id")
    status: str
    firmware: str
    installed_on: date | None
    notes: str
    expected_cadence_s: float
    mqtt_username: str | None
    created_at: datetime
    updated_at: datetime


class CameraOut(_Out):
    """A camera as the registry holds it: whether it has a password, never which."""

    camera_id: str
    agency: str = Field(validation_alias="agency_id")
    site: str | None = Field(validation_alias="site_id")
    status: str
    stream_url: str
    snapshot_url: str
    username: str
    has_password: bool
    sample_interval_s: float
    expected_cadence_s: float
    notes: str
    created_at: datetime
    updated_at: datetime


class TokenOut(_Out):
    """An API token's name and role (the token itself is shown only once)."""

    token_id: int
    name: str
    role: str
    created_at: datetime
    revoked_at: datetime | None


class AuditOut(_Out):
    """One audit entry."""

    entry_id: int
    at: datetime
    actor: str
    action: str
    entity: str
    entity_id: str
    changes: dict[str, Any]


class Page(BaseModel, Generic[T]):
    """One page of a listing and how many records match in all."""

    items: list[T]
    total: int
    limit: int
    offset: int


def split_credentials(url: str) -> tuple[str, str, str]:
    """Return a URL without user:password@, and the user name and password it held."""
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url, "", ""
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = host + (f":{parts.port}" if parts.port is not None else "")
    clean = urlunsplit(SplitResult(parts.scheme, netloc, *parts[2:]))
    return clean, unquote(parts.username or ""), unquote(parts.password or "")


def first_problem(exc: ValidationError) -> InvalidInput:
    """Turn pydantic's first complaint into an InvalidInput naming the field."""
    error = exc.errors()[0]
    field = ".".join(str(part) for part in error["loc"])
    message = error["msg"]
    if error["type"] == "string_pattern_mismatch":
        message = f"must be {ID_RULE}"
    elif error["type"] == "extra_forbidden":
        message = "is not a known column"
    given = error.get("input")
    secret = any(name in field for name in SECRET_FIELDS)
    if (
        error["type"] != "missing"
        and not secret
        and isinstance(given, str | int | float)
    ):
        message += f", got {given!r}"
    return InvalidInput(field, message)


def _check_camera_url(value: str) -> str:
    if not value:
        return value
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - raises ValueError for a bad port
    except ValueError as exc:
        raise ValueError(f"is not a URL ({exc})") from None
    if parts.scheme not in CAMERA_SCHEMES or not parts.hostname:
        raise ValueError(
            "must be an rtsp://, rtsps://, http:// or https:// URL with a host"
        )
    return value
