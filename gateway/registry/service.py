"""Register, change and retire agencies, sites, devices and cameras, auditing each.

Every method runs in its own transaction and records who changed what in the
audit log within that same transaction, so a change is never stored unaudited.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any, TypeVar

from sqlalchemy import Select, func, select
from sqlalchemy.orm import Session, sessionmaker

from devices.profiles import DeviceProfile
from gateway.registry.db import open_engine, open_sessions, upgrade_schema
from gateway.registry.errors import Conflict, InvalidInput, NotFound
from gateway.registry.models import Agency, AuditEntry, Camera, Device, Site
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

__all__ = ["MAX_PAGE", "Known", "Registry"]

logger = logging.getLogger(__name__)

MAX_PAGE = 1000
DEFAULT_PAGE = 100
SECRET_MARK = "***"
# Records named when a site cannot be retired, of each kind.
MAX_NAMED_IN_SERVICE = 10
_Row = TypeVar("_Row")


@dataclass
class Known:
    """Ids the registry holds, to check many new rows without a query each."""

    agencies: set[str] = field(default_factory=set)
    sites: set[str] = field(default_factory=set)
    retired_sites: set[str] = field(default_factory=set)
    devices: set[str] = field(default_factory=set)
    cameras: set[str] = field(default_factory=set)


class Registry:
    """The registry's operations, over one database."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        profiles: Mapping[str, DeviceProfile] | None = None,
    ) -> None:
        self.sessions = sessions
        # None: any profile name is accepted (no profile list to check against).
        self.profiles = profiles

    @classmethod
    def open(
        cls, database_url: str, profiles: Mapping[str, DeviceProfile] | None = None
    ) -> Registry:
        """Open the database at `database_url`, upgrading its schema first."""
        engine = open_engine(database_url)
        upgrade_schema(engine)
        return cls(open_sessions(engine), profiles)

    def close(self) -> None:
        """Close the database connections."""
        bind = self.sessions.kw.get("bind")
        if bind is not None:
            bind.dispose()

    # Agencies

    def add_agency(self, data: AgencyIn, actor: str) -> AgencyOut:
        """Register an agency."""
        with self.sessions.begin() as session:
            if session.get(Agency, data.agency_id) is not None:
                raise Conflict("agency", data.agency_id, "is already registered")
            agency = Agency(agency_id=data.agency_id, name=data.name)
            session.add(agency)
            session.flush()
            _audit(
                session, actor, "create", "agency", agency.agency_id, data.model_dump()
            )
            return AgencyOut.model_validate(agency)

    def list_agencies(self) -> list[AgencyOut]:
        """Return every agency, by id."""
        with self.sessions() as session:
            agencies = session.scalars(select(Agency).order_by(Agency.agency_id))
            return [AgencyOut.model_validate(agency) for agency in agencies]

    # Sites

    def add_site(self, data: SiteIn, actor: str) -> SiteOut:
        """Register a site."""
        return self.add_sites([data], actor)[0]

    def add_sites(self, rows: Sequence[SiteIn], actor: str) -> list[SiteOut]:
        """Register several sites in one transaction; checks them all first."""
        with self.sessions.begin() as session:
            known = self.known(session)
            for data in rows:
                self.check_new_site(data, known)
            added = []
            for data in rows:
                site = Site(**data.model_dump())
                session.add(site)
                added.append(site)
            session.flush()
            for data in rows:
                _audit(
                    session, actor, "create", "site", data.site_id, data.model_dump()
                )
            return [SiteOut.model_validate(site) for site in added]

    def check_new_site(self, data: SiteIn, known: Known) -> None:
        """Raise Conflict if the site id is taken; record it as taken otherwise."""
        if data.site_id in known.sites:
            raise Conflict("site", data.site_id, "is already registered")
        known.sites.add(data.site_id)

    def get_site(self, site_id: str) -> SiteOut:
        """Return one site."""
        with self.sessions() as session:
            return SiteOut.model_validate(_get(session, Site, "site", site_id))

    def list_sites(
        self, *, area: str | None = None, limit: int = DEFAULT_PAGE, offset: int = 0
    ) -> Page[SiteOut]:
        """Return a page of sites, by id, optionally in one area."""
        query = select(Site).order_by(Site.site_id)
        if area is not None:
            query = query.where(Site.area == area)
        with self.sessions() as session:
            return _page(session, query, SiteOut, limit, offset)

    def update_site(self, site_id: str, changes: SiteUpdate, actor: str) -> SiteOut:
        """Change a site's fields given in `changes` (not a retired one)."""
        with self.sessions.begin() as session:
            site = _get(session, Site, "site", site_id)
            _refuse_retired("site", site_id, site.status)
            _apply(session, actor, "site", site_id, site, _given(changes))
            return SiteOut.model_validate(site)

    def decommission_site(self, site_id: str, actor: str) -> SiteOut:
        """Retire a site once no device or camera in service is left there."""
        with self.sessions.begin() as session:
            site = _get(session, Site, "site", site_id)
            _refuse_retired("site", site_id, site.status)
            in_service = [
                f"{kind} {record_id}"
                for kind, model, id_column in (
                    ("device", Device, Device.device_id),
                    ("camera", Camera, Camera.camera_id),
                )
                for record_id in session.scalars(
                    select(id_column)
                    .where(model.site_id == site_id)
                    .where(model.status != "decommissioned")
                    .order_by(id_column)
                    .limit(MAX_NAMED_IN_SERVICE)
                )
            ]
            if in_service:
                raise Conflict(
                    "site",
                    site_id,
                    "still has in service: " + ", ".join(in_service)
                    + "; move or decommission them first",
                )
            _apply(
                session,
                actor,
                "site",
                site_id,
                site,
                {"status": "decommissioned"},
                action="decommission",
            )
            return SiteOut.model_validate(site)

    # Devices

    def add_device(self, data: DeviceIn, actor: str) -> DeviceOut:
        """Register a device; its cadence defaults to its profile's."""
        return self.add_devices([data], actor)[0]

    def add_devices(self, rows: Sequence[DeviceIn], actor: str) -> list[DeviceOut]:
        """Register several devices in one transaction; checks them all first."""
        with self.sessions.begin() as session:
            known = self.known(session)
            values = [self.check_new_device(data, known) for data in rows]
            devices = [Device(**value) for value in values]
            session.add_all(devices)
            session.flush()
            for value in values:
                _audit(session, actor, "create", "device", value["device_id"], value)
            return [_device_out(device) for device in devices]

    def check_new_device(self, data: DeviceIn, known: Known) -> dict[str, Any]:
        """Return the columns of a new device, or raise naming what is wrong.

        The device id is then counted as taken in `known`, so that a second
        row with the same id is refused.
        """
        if data.device_id in known.devices:
            raise Conflict("device", data.device_id, "is already registered")
        self._check_owner(data.agency, data.site, known)
        cadence = data.expected_cadence_s or self._profile_cadence(data.profile)
        known.devices.add(data.device_id)
        values = data.model_dump(exclude={"agency", "site"})
        values.update(
            agency_id=data.agency, site_id=data.site, expected_cadence_s=cadence
        )
        return values

    def get_device(self, device_id: str) -> DeviceOut:
        """Return one device."""
        with self.sessions() as session:
            return _device_out(_get(session, Device, "device", device_id))

    def list_devices(
        self,
        *,
        agency: str | None = None,
        site: str | None = None,
        status: str | None = None,
        profile: str | None = None,
        limit: int = DEFAULT_PAGE,
        offset: int = 0,
    ) -> Page[DeviceOut]:
        """Return a page of devices, by id, matching every filter given."""
        query = select(Device).order_by(Device.device_id)
        for column, wanted in (
            (Device.agency_id, agency),
            (Device.site_id, site),
            (Device.status, status),
            (Device.profile, profile),
        ):
            if wanted is not None:
                query = query.where(column == wanted)
        with self.sessions() as session:
            return _page(session, query, DeviceOut, limit, offset)

    def update_device(
        self, device_id: str, changes: DeviceUpdate, actor: str
    ) -> DeviceOut:
        """Change a device's fields given in `changes` (not a retired one)."""
        with self.sessions.begin() as session:
            device = _get(session, Device, "device", device_id)
            _refuse_retired("device", device_id, device.status)
            values = _given(changes)
            self._check_owner(
                values.get("agency", device.agency_id),
                values.get("site", device.site_id),
                self.known(session),
            )
            if "profile" in values:
                self._profile_cadence(values["profile"])
            _rename(values, agency="agency_id", site="site_id")
            _apply(session, actor, "device", device_id, device, values)
            return _device_out(device)

    def decommission_device(self, device_id: str, actor: str) -> DeviceOut:
        """Retire a device: it keeps its history, but no longer its access."""
        with self.sessions.begin() as session:
            device = _get(session, Device, "device", device_id)
            _refuse_retired("device", device_id, device.status)
            _apply(
                session,
                actor,
                "device",
                device_id,
                device,
                {"status": "decommissioned"},
                action="decommission",
            )
            return _device_out(device)

    def set_mqtt_username(
        self, device_id: str, username: str | None, actor: str
    ) -> None:
        """Record the broker account made for (or taken from) a device."""
        with self.sessions.begin() as session:
            device = _get(session, Device, "device", device_id)
            action = "grant_access" if username else "revoke_access"
            _apply(
                session,
                actor,
                "device",
                device_id,
                device,
                {"mqtt_username": username},
                action=action,
            )

    def delete_device(self, device_id: str, actor: str, reason: str) -> None:
        """Remove a device registered a moment ago whose credentials failed."""
        with self.sessions.begin() as session:
            device = _get(session, Device, "device", device_id)
            session.delete(device)
            _audit(session, actor, "delete", "device", device_id, {"reason": reason})

    # Cameras

    def add_camera(self, data: CameraIn, actor: str) -> CameraOut:
        """Register a camera; credentials in its URLs are kept apart from them."""
        return self.add_cameras([data], actor)[0]

    def add_cameras(self, rows: Sequence[CameraIn], actor: str) -> list[CameraOut]:
        """Register several cameras in one transaction; checks them all first."""
        with self.sessions.begin() as session:
            known = self.known(session)
            values = [self.check_new_camera(data, known) for data in rows]
            cameras = [Camera(**value) for value in values]
            session.add_all(cameras)
            session.flush()
            for value in values:
                _audit(session, actor, "create", "camera", value["camera_id"], value)
            return [_camera_out(camera) for camera in cameras]

    def check_new_camera(self, data: CameraIn, known: Known) -> dict[str, Any]:
        """Return the columns of a new camera, or raise naming what is wrong."""
        if data.camera_id in known.cameras:
            raise Conflict("camera", data.camera_id, "is already registered")
        self._check_owner(data.agency, data.site, known)
        known.cameras.add(data.camera_id)
        values = data.model_dump(exclude={"agency", "site"})
        values.update(agency_id=data.agency, site_id=data.site)
        values["expected_cadence_s"] = data.expected_cadence_s or data.sample_interval_s
        return values

    def get_camera(self, camera_id: str) -> CameraOut:
        """Return one camera, without its password."""
        with self.sessions() as session:
            return _camera_out(_get(session, Camera, "camera", camera_id))

    def camera_credentials(self, camera_id: str) -> tuple[str, str]:
        """Return a camera's user name and password, for the frame sampler."""
        with self.sessions() as session:
            camera = _get(session, Camera, "camera", camera_id)
            return camera.username, camera.password

    def list_cameras(
        self,
        *,
        agency: str | None = None,
        site: str | None = None,
        status: str | None = None,
        limit: int = DEFAULT_PAGE,
        offset: int = 0,
    ) -> Page[CameraOut]:
        """Return a page of cameras, by id, matching every filter given."""
        query = select(Camera).order_by(Camera.camera_id)
        for column, wanted in (
            (Camera.agency_id, agency),
            (Camera.site_id, site),
            (Camera.status, status),
        ):
            if wanted is not None:
                query = query.where(column == wanted)
        with self.sessions() as session:
            return _page(session, query, CameraOut, limit, offset, _camera_out)

    def update_camera(
        self, camera_id: str, changes: CameraUpdate, actor: str
    ) -> CameraOut:
        """Change a camera's fields given in `changes` (not a retired one)."""
        with self.sessions.begin() as session:
            camera = _get(session, Camera, "camera", camera_id)
            _refuse_retired("camera", camera_id, camera.status)
            values = _given(changes)
            self._check_owner(
                values.get("agency", camera.agency_id),
                values.get("site", camera.site_id),
                self.known(session),
            )
            _rename(values, agency="agency_id", site="site_id")
            _apply(session, actor, "camera", camera_id, camera, values)
            return _camera_out(camera)

    def decommission_camera(self, camera_id: str, actor: str) -> CameraOut:
        """Retire a camera: the sampler stops reading it."""
        with self.sessions.begin() as session:
            camera = _get(session, Camera, "camera", camera_id)
            _refuse_retired("camera", camera_id, camera.status)
            _apply(
                session,
                actor,
                "camera",
                camera_id,
                camera,
                {"status": "decommissioned"},
                action="decommission",
            )
            return _camera_out(camera)

    # Audit log and shared checks

    def audit_log(
        self,
        *,
        entity: str | None = None,
        entity_id: str | None = None,
        limit: int = DEFAULT_PAGE,
        offset: int = 0,
    ) -> Page[AuditOut]:
        """Return a page of audit entries, newest first."""
        query = select(AuditEntry).order_by(AuditEntry.entry_id.desc())
        if entity is not None:
            query = query.where(AuditEntry.entity == entity)
        if entity_id is not None:
            query = query.where(AuditEntry.entity_id == entity_id)
        with self.sessions() as session:
            return _page(session, query, AuditOut, limit, offset)

    def known(self, session: Session | None = None) -> Known:
        """Return the ids of every agency, site, device and camera."""
        if session is None:
            with self.sessions() as own_session:
                return self.known(own_session)
        return Known(
            agencies=set(session.scalars(select(Agency.agency_id))),
            sites=set(session.scalars(select(Site.site_id))),
            retired_sites=set(
                session.scalars(
                    select(Site.site_id).where(Site.status == "decommissioned")
                )
            ),
            devices=set(session.scalars(select(Device.device_id))),
            cameras=set(session.scalars(select(Camera.camera_id))),
        )

    def _check_owner(self, agency: str, site: str | None, known: Known) -> None:
        if agency not in known.agencies:
            raise InvalidInput(
                "agency", f"no agency {agency!r} in the registry (see decor agencies)"
            )
        if site is not None and site not in known.sites:
            raise InvalidInput(
                "site",
                f"no site {site!r} in the registry (add it with decor sites add)",
            )
        if site is not None and site in known.retired_sites:
            raise InvalidInput("site", f"site {site!r} is decommissioned")

    def _profile_cadence(self, profile: str) -> float:
        if self.profiles is None:
            raise InvalidInput(
                "expected_cadence_s", "is needed: no profiles to take it from"
            )
        if profile not in self.profiles:
            names = ", ".join(sorted(self.profiles)) or "none"
            raise InvalidInput(
                "profile", f"unknown profile {profile!r} (known: {names})"
            )
        return self.profiles[profile].report_interval_s


def _get(session: Session, model: type[_Row], entity: str, entity_id: str) -> _Row:
    found = session.get(model, entity_id)
    if found is None:
        raise NotFound(entity, entity_id)
    return found


def _page(
    session: Session,
    query: Select[Any],
    out: Any,
    limit: int,
    offset: int,
    convert: Any = None,
) -> Any:
    if not 1 <= limit <= MAX_PAGE:
        raise InvalidInput("limit", f"must be 1-{MAX_PAGE}, got {limit}")
    if offset < 0:
        raise InvalidInput("offset", f"must be 0 or more, got {offset}")
    total = session.scalar(select(func.count()).select_from(query.subquery())) or 0
    rows = session.scalars(query.limit(limit).offset(offset))
    items = [convert(row) if convert else out.model_validate(row) for row in rows]
    return Page[out](items=items, total=total, limit=limit, offset=offset)


def _device_out(device: Device) -> DeviceOut:
    return DeviceOut.model_validate(device)


def _camera_out(camera: Camera) -> CameraOut:
    values = {
        name: getattr(camera, name)
        for name in CameraOut.model_fields
        if name not in ("agency", "site", "has_password")
    }
    return CameraOut.model_validate(
        {
            **values,
            "agency_id": camera.agency_id,
            "site_id": camera.site_id,
            "has_password": bool(camera.password),
        }
    )


def _given(changes: Any) -> dict[str, Any]:
    return dict(changes.model_dump(exclude_unset=True))


def _rename(values: dict[str, Any], **names: str) -> None:
    for old, new in names.items():
        if old in values:
            values[new] = values.pop(old)


def _refuse_retired(entity: str, entity_id: str, status: str) -> None:
    if status == "decommissioned":
        raise Conflict(
            entity, entity_id, "is decommissioned; register a new one instead"
        )


def _apply(
    session: Session,
    actor: str,
    entity: str,
    entity_id: str,
    row: Any,
    values: Mapping[str, Any],
    *,
    action: str = "update",
) -> None:
    changes = {}
    for name, new in values.items():
        old = getattr(row, name)
        if old != new:
            changes[name] = [old, new]
            setattr(row, name, new)
    if changes:
        session.flush()
        _audit(session, actor, action, entity, entity_id, changes, diff=True)


def _audit(
    session: Session,
    actor: str,
    action: str,
    entity: str,
    entity_id: str,
    values: Mapping[str, Any],
    *,
    diff: bool = False,
) -> None:
    # A new record lists the values it was given; a change, old and new.
    changes = {
        name: _plain(name, value if diff else [None, value])
        for name, value in values.items()
        if diff or value not in (None, "")
    }
    session.add(
        AuditEntry(
            actor=actor,
            action=action,
            entity=entity,
            entity_id=entity_id,
            changes=changes,
        )
    )
    logger.info("%s %s %s by %s", action.capitalize(), entity, entity_id, actor)


def _plain(name: str, pair: Iterable[Any]) -> list[Any]:
    # JSON columns take text and numbers; secrets are never stored here.
    if name == "password":
        return [SECRET_MARK if value else value for value in pair]
    return [
        value.isoformat() if isinstance(value, date | datetime) else value
        for value in pair
    ]
