"""The registry of agencies, sites, devices and cameras, and their credentials."""

from gateway.registry.errors import (
    AccessError,
    Conflict,
    InvalidInput,
    NotFound,
    RegistryError,
    RegistryUnavailable,
)
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
)
from gateway.registry.service import Registry

__all__ = [
    "AccessError",
    "AgencyIn",
    "AgencyOut",
    "AuditOut",
    "CameraIn",
    "CameraOut",
    "CameraUpdate",
    "Conflict",
    "DeviceIn",
    "DeviceOut",
    "DeviceUpdate",
    "InvalidInput",
    "NotFound",
    "Page",
    "Registry",
    "RegistryError",
    "RegistryUnavailable",
    "SiteIn",
    "SiteOut",
    "SiteUpdate",
]
