"""The registry's HTTP API: agencies, sites, devices, cameras, tokens and the audit log.

OpenAPI documentation is served at /docs. Every route but /health needs a
bearer token (see gateway.api.auth); every change is audited under the
token's name.
"""

from __future__ import annotations

import logging
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Query, Request, status
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from gateway.alerts.rules import load_profile_tables
from gateway.api.auth import ADMIN, READ, WRITE, require
from gateway.api.operations import add_operations_routes
from gateway.commands.specs import specs_by_device_type
from gateway.config import DynsecConfig, GatewayConfig
from gateway.registry.errors import (
    AccessError,
    Conflict,
    InvalidInput,
    NotFound,
    RegistryError,
)
from gateway.registry.provision import register_device, retire_device
from gateway.registry.schemas import (
    AgencyIn,
    AgencyOut,
    AuditOut,
    CameraIn,
    CameraOut,
    CameraUpdate,
    DeviceIn,
    DeviceOut,
    DeviceUpdate,
    Page,
    SiteIn,
    SiteOut,
    SiteUpdate,
    TokenOut,
)
from gateway.registry.service import DEFAULT_PAGE, MAX_PAGE, Registry
from gateway.registry.tokens import issue_token, list_tokens, revoke_token
from gateway.validation.profiles import load_quality_profiles

__all__ = ["create_app", "create_app_from_config"]

logger = logging.getLogger(__name__)

Limit = Annotated[int, Query(ge=1, le=MAX_PAGE, description="Records per page")]
Offset = Annotated[int, Query(ge=0, description="Records to skip")]
Reader = Annotated[TokenOut, Depends(require(READ, "read the registry"))]
_STATUS_OF = {NotFound: 404, Conflict: 409, InvalidInput: 422, AccessError: 502}


class MqttCredentials(BaseModel):
    """A device's broker account; the password is shown in this answer only."""

    username: str
    password: str
    publish_topics: list[str]
    command_topic: str


class RegisteredDevice(BaseModel):
    """A device just registered, and its broker account if one was made."""

    device: DeviceOut
    mqtt: MqttCredentials | None


class NewToken(BaseModel):
    """A token just created: `token` is shown in this answer only."""

    name: str
    role: str


class IssuedTokenOut(BaseModel):
    """The token and its name and role."""

    token: str
    name: str
    role: str


def create_app(registry: Registry, access: DynsecConfig | None = None) -> FastAPI:
    """Build the API on a registry; `access` makes broker accounts for devices."""
    app = FastAPI(
        title="DeCOR Gateway registry",
        description="Agencies, sites, devices and cameras of the city's sensors.",
        version="1",
    )
    app.state.registry = registry
    app.state.access = access or DynsecConfig()
    app.add_exception_handler(RegistryError, _registry_error)
    for router in (_general, _sites, _devices, _cameras):
        app.include_router(router)
    return app


def create_app_from_config(settings: GatewayConfig, source: str = "") -> FastAPI:
    """Open the configured registry (upgrading its schema) and build the API on it."""
    profiles = load_quality_profiles(settings.quality.profiles_dir, source)
    registry = Registry.open(settings.registry.database_url, profiles)
    app = create_app(registry, settings.registry.dynsec)
    # Alerts and commands (gateway/api/operations.py).
    tables = load_profile_tables(settings.quality.profiles_dir, source)
    add_operations_routes(
        app, specs_by_device_type(tables), settings.commands.timeout_s
    )
    return app


def _registry_of(request: Request) -> Registry:
    registry: Registry = request.app.state.registry
    return registry


Reg = Annotated[Registry, Depends(_registry_of)]


async def _registry_error(request: Request, exc: Exception) -> JSONResponse:
    code = next((c for kind, c in _STATUS_OF.items() if isinstance(exc, kind)), 500)
    body: dict[str, Any] = {"detail": str(exc)}
    if isinstance(exc, InvalidInput):
        body["field"] = exc.field
    if code >= 500:
        logger.warning(
            "Registry request %s %s failed: %s", request.method, request.url.path, exc
        )
    return JSONResponse(body, status_code=code)


def _actor(token: TokenOut) -> str:
    return f"token:{token.name}"


# Health, agencies, tokens, audit

_general = APIRouter()


@_general.get("/health", tags=["general"])
def health() -> dict[str, str]:
    """Say that the API is up (no token needed)."""
    return {"status": "ok"}


@_general.get("/agencies", tags=["agencies"])
def agencies(registry: Reg, _: Reader) -> list[AgencyOut]:
    """List the agencies."""
    return registry.list_agencies()


@_general.post("/agencies", status_code=status.HTTP_201_CREATED, tags=["agencies"])
def add_agency(
    data: AgencyIn,
    registry: Reg,
    token: Annotated[TokenOut, Depends(require(ADMIN, "register an agency"))],
) -> AgencyOut:
    """Register an agency (admin)."""
    return registry.add_agency(data, _actor(token))


@_general.get("/tokens", tags=["tokens"])
def tokens(
    registry: Reg, _: Annotated[TokenOut, Depends(require(ADMIN, "list tokens"))]
) -> list[TokenOut]:
    """List the API tokens' names and roles (admin)."""
    return list_tokens(registry)


@_general.post("/tokens", status_code=status.HTTP_201_CREATED, tags=["tokens"])
def add_token(
    data: NewToken,
    registry: Reg,
    token: Annotated[TokenOut, Depends(require(ADMIN, "create tokens"))],
) -> IssuedTokenOut:
    """Create a token (admin); it is in this answer only."""
    issued = issue_token(registry, data.name, data.role, _actor(token))
    return IssuedTokenOut(token=issued.secret, name=data.name, role=data.role)


@_general.delete("/tokens/{name}", tags=["tokens"])
def remove_token(
    name: str,
    registry: Reg,
    token: Annotated[TokenOut, Depends(require(ADMIN, "revoke tokens"))],
) -> TokenOut:
    """Revoke a token (admin); it stops working at once."""
    return revoke_token(registry, name, _actor(token))


@_general.get("/audit", tags=["audit"])
def audit(
    registry: Reg,
    _: Reader,
    entity: str | None = None,
    entity_id: str | None = None,
    limit: Limit = DEFAULT_PAGE,
    offset: Offset = 0,
) -> Page[AuditOut]:
    """List registry changes, newest first."""
    return registry.audit_log(
        entity=entity, entity_id=entity_id, limit=limit, offset=offset
    )


# Sites

_sites = APIRouter(prefix="/sites", tags=["sites"])
SiteWriter = Annotated[TokenOut, Depends(require(WRITE, "change sites"))]


@_sites.get("")
def sites(
    registry: Reg,
    _: Reader,
    area: str | None = None,
    limit: Limit = DEFAULT_PAGE,
    offset: Offset = 0,
) -> Page[SiteOut]:
    """List sites by id, optionally in one area."""
    return registry.list_sites(area=area, limit=limit, offset=offset)


@_sites.post("", status_code=status.HTTP_201_CREATED)
def add_site(data: SiteIn, registry: Reg, token: SiteWriter) -> SiteOut:
    """Register a site."""
    return registry.add_site(data, _actor(token))


@_sites.get("/{site_id}")
def site(site_id: str, registry: Reg, _: Reader) -> SiteOut:
    """Show one site."""
    return registry.get_site(site_id)


@_sites.patch("/{site_id}")
def update_site(
    site_id: str, changes: SiteUpdate, registry: Reg, token: SiteWriter
) -> SiteOut:
    """Change the fields given of a site."""
    return registry.update_site(site_id, changes, _actor(token))


@_sites.post("/{site_id}/decommission")
def decommission_site(site_id: str, registry: Reg, token: SiteWriter) -> SiteOut:
    """Retire a site; refused while a device or camera in service is there."""
    return registry.decommission_site(site_id, _actor(token))


# Devices

_devices = APIRouter(prefix="/devices", tags=["devices"])
DeviceWriter = Annotated[TokenOut, Depends(require(WRITE, "change devices"))]


@_devices.get("")
def devices(
    registry: Reg,
    _: Reader,
    agency: str | None = None,
    site: str | None = None,
    status: str | None = None,
    profile: str | None = None,
    limit: Limit = DEFAULT_PAGE,
    offset: Offset = 0,
) -> Page[DeviceOut]:
    """List devices by id, matching every filter given."""
    return registry.list_devices(
        agency=agency,
        site=site,
        status=status,
        profile=profile,
        limit=limit,
        offset=offset,
    )


@_devices.post("", status_code=201)
async def add_device(
    data: DeviceIn, request: Request, registry: Reg, token: DeviceWriter
) -> RegisteredDevice:
    """Register a device; its MQTT password, if one is made, is in this answer only."""
    device, credentials = await register_device(
        registry, request.app.state.access, data, _actor(token)
    )
    mqtt = None
    if credentials is not None:
        mqtt = MqttCredentials(
            username=credentials.username,
            password=credentials.password,
            publish_topics=list(credentials.publish_topics),
            command_topic=credentials.command_topic,
        )
    return RegisteredDevice(device=device, mqtt=mqtt)


@_devices.get("/{device_id}")
def device(device_id: str, registry: Reg, _: Reader) -> DeviceOut:
    """Show one device."""
    return registry.get_device(device_id)


@_devices.patch("/{device_id}")
def update_device(
    device_id: str, changes: DeviceUpdate, registry: Reg, token: DeviceWriter
) -> DeviceOut:
    """Change the fields given of a device."""
    return registry.update_device(device_id, changes, _actor(token))


@_devices.post("/{device_id}/decommission")
async def decommission_device(
    device_id: str, request: Request, registry: Reg, token: DeviceWriter
) -> DeviceOut:
    """Retire a device; its broker account is deleted first."""
    return await retire_device(
        registry, request.app.state.access, device_id, _actor(token)
    )


# Cameras

_cameras = APIRouter(prefix="/cameras", tags=["cameras"])
CameraWriter = Annotated[TokenOut, Depends(require(WRITE, "change cameras"))]


@_cameras.get("")
def cameras(
    registry: Reg,
    _: Reader,
    agency: str | None = None,
    site: str | None = None,
    status: str | None = None,
    limit: Limit = DEFAULT_PAGE,
    offset: Offset = 0,
) -> Page[CameraOut]:
    """List cameras by id, matching every filter given (never their passwords)."""
    return registry.list_cameras(
        agency=agency, site=site, status=status, limit=limit, offset=offset
    )


@_cameras.post("", status_code=201)
def add_camera(data: CameraIn, registry: Reg, token: CameraWriter) -> CameraOut:
    """Register a camera; credentials in its URLs are moved out of them."""
    return registry.add_camera(data, _actor(token))


@_cameras.get("/{camera_id}")
def camera(camera_id: str, registry: Reg, _: Reader) -> CameraOut:
    """Show one camera."""
    return registry.get_camera(camera_id)


@_cameras.patch("/{camera_id}")
def update_camera(
    camera_id: str, changes: CameraUpdate, registry: Reg, token: CameraWriter
) -> CameraOut:
    """Change the fields given of a camera."""
    return registry.update_camera(camera_id, changes, _actor(token))


@_cameras.post("/{camera_id}/decommission")
def decommission_camera(
    camera_id: str, registry: Reg, token: CameraWriter
) -> CameraOut:
    """Retire a camera."""
    return registry.decommission_camera(camera_id, _actor(token))
