"""Read what Grafana shows from the registry: agencies, sites, devices, cameras."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import TypeVar

from devices.profiles import DeviceProfile
from gateway.registry.schemas import Page
from gateway.registry.service import MAX_PAGE, Registry

__all__ = ["City", "CityCamera", "CityDevice", "CitySite", "read_city"]

# Statuses shown on dashboards and watched by alert rules: pending devices are
# not approved yet, decommissioned ones are history.
SHOWN_STATUSES = ("provisioned", "active")
_Row = TypeVar("_Row")


@dataclass(frozen=True)
class CitySite:
    """A site with its position, where the registry has one."""

    site_id: str
    name: str
    latitude: float | None
    longitude: float | None


@dataclass(frozen=True)
class CityDevice:
    """A device that dashboards show and alert rules watch."""

    device_id: str
    profile: str
    agency: str
    site: str | None
    expected_cadence_s: float


@dataclass(frozen=True)
class CityCamera:
    """A camera on the CCTV wall and the map."""

    camera_id: str
    agency: str
    site: str | None


@dataclass(frozen=True)
class City:
    """Everything the generated Grafana objects depend on, sorted by id.

    Two reads of an unchanged registry give equal values, so generation is
    repeatable and provisioning twice changes nothing.
    """

    agencies: tuple[tuple[str, str], ...]
    sites: tuple[CitySite, ...]
    devices: tuple[CityDevice, ...]
    cameras: tuple[CityCamera, ...]
    profiles: Mapping[str, DeviceProfile]

    def agency_name(self, agency_id: str) -> str:
        """Return an agency's name, or its id when it has none."""
        return dict(self.agencies).get(agency_id, agency_id)

    def site(self, site_id: str | None) -> CitySite | None:
        """Return a site by id, or None."""
        return next((s for s in self.sites if s.site_id == site_id), None)

    def devices_of(
        self, *, agency: str | None = None, profile: str | None = None
    ) -> list[CityDevice]:
        """Return the shown devices of one agency and/or profile."""
        return [
            device
            for device in self.devices
            if (agency is None or device.agency == agency)
            and (profile is None or device.profile == profile)
        ]

    def profiles_in_use(self) -> list[str]:
        """Return the profiles of shown devices that have a profile file, sorted."""
        return sorted({d.profile for d in self.devices if d.profile in self.profiles})


def read_city(registry: Registry, profiles: Mapping[str, DeviceProfile]) -> City:
    """Read agencies, sites, shown devices and cameras from the registry."""
    agencies = tuple((a.agency_id, a.name) for a in registry.list_agencies())
    sites = tuple(
        CitySite(s.site_id, s.name, s.latitude, s.longitude)
        for s in _all_pages(registry.list_sites)
    )
    devices = tuple(
        CityDevice(d.device_id, d.profile, d.agency, d.site, d.expected_cadence_s)
        for d in _all_pages(registry.list_devices)
        if d.status in SHOWN_STATUSES
    )
    cameras = tuple(
        CityCamera(c.camera_id, c.agency, c.site)
        for c in _all_pages(registry.list_cameras)
        if c.status in SHOWN_STATUSES
    )
    return City(agencies, sites, devices, cameras, dict(profiles))


def _all_pages(list_page: Callable[..., Page[_Row]]) -> Iterator[_Row]:
    # The registry answers in pages of at most MAX_PAGE rows.
    offset = 0
    while True:
        page = list_page(limit=MAX_PAGE, offset=offset)
        yield from page.items
        offset += len(page.items)
        if not page.items or offset >= page.total:
            return
