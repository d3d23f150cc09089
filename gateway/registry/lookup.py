"""What a running gateway knows of the registry: a snapshot of devices, kept fresh.

The gateway checks every point against an in-memory snapshot (no database
query per reading) and re-reads the registry every `refresh_interval_s`, so a
device registered, moved to another agency or decommissioned takes effect
without a restart. A point of an unknown or decommissioned device is refused
with a reason for the dead-letter store; an admitted point gets the tag of
the agency that owns the device.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import re
from dataclasses import dataclass
from typing import Literal

from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError

from gateway.points import Point
from gateway.registry.errors import RegistryError
from gateway.registry.models import Agency, Device
from gateway.registry.service import Registry, _audit

__all__ = ["Admission", "DeviceDirectory", "DeviceEntry"]

logger = logging.getLogger(__name__)

UNKNOWN_DEVICE = "unknown_device"
DECOMMISSIONED_DEVICE = "decommissioned_device"
PENDING_DEVICE = "pending_device"
PROFILE_MISMATCH = "profile_mismatch"
PENDING_ACTOR = "gateway"
# Devices waiting to be written as pending at once; more wait for the next refresh.
MAX_PENDING_PER_REFRESH = 1000
# Cadence given to a pending device whose profile is unknown: a technician
# sets the real one when approving it.
PENDING_CADENCE_S = 300.0
# The registry's id rule (gateway.registry.schemas.Identifier).
_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}\Z")


@dataclass(frozen=True, slots=True)
class DeviceEntry:
    """What the gateway needs to know of one device."""

    device_id: str
    agency: str
    profile: str
    status: str


@dataclass(frozen=True, slots=True)
class Admission:
    """A point admitted (with its agency tag), or the reason it is refused."""

    point: Point | None
    reason: str = ""
    detail: str = ""


class DeviceDirectory:
    """A snapshot of the registry's devices, refreshed while the gateway runs."""

    def __init__(
        self,
        registry: Registry,
        *,
        refresh_interval_s: float,
        unknown_devices: Literal["refuse", "pending"] = "refuse",
        device_tag: str = "device_id",
        agency_tag: str = "agency",
        profile_tag: str = "device_type",
    ) -> None:
        self.registry = registry
        self.refresh_interval_s = refresh_interval_s
        self.unknown_devices = unknown_devices
        self.device_tag = device_tag
        self.agency_tag = agency_tag
        self.profile_tag = profile_tag
        self.devices: dict[str, DeviceEntry] = {}
        self.loaded = asyncio.Event()
        # Unknown devices seen since the last refresh: id -> (agency, profile).
        self._unknown_seen: dict[str, tuple[str, str]] = {}
        self._failing = False
        # Unknown devices already reported as naming an unregistered agency.
        self._warned: set[str] = set()

    def admit(self, point: Point) -> Admission:
        """Return the point tagged with its agency, or why it is refused."""
        device_id = point.tags.get(self.device_tag, "")
        entry = self.devices.get(device_id)
        if entry is None:
            self._remember_unknown(device_id, point)
            detail = (
                f"device {device_id!r} is not in the registry"
                if device_id
                else f"the point has no {self.device_tag!r} tag to look up"
            )
            return Admission(None, UNKNOWN_DEVICE, detail)
        if entry.status == "decommissioned":
            return Admission(
                None, DECOMMISSIONED_DEVICE, f"device {device_id!r} is decommissioned"
            )
        if entry.status == "pending":
            return Admission(
                None,
                PENDING_DEVICE,
                f"device {device_id!r} awaits a technician's approval",
            )
        named = point.tags.get(self.profile_tag)
        if named is not None and named != entry.profile:
            # Its readings would be checked against the wrong ranges and stored
            # under another device type: the firmware or the registry is wrong.
            return Admission(
                None,
                PROFILE_MISMATCH,
                f"device {device_id!r} is registered as {entry.profile!r}, "
                f"its {self.profile_tag!r} tag says {named!r}",
            )
        # The registry, not the topic, says who owns a device and what it is.
        tags = {
            **point.tags,
            self.agency_tag: entry.agency,
            self.profile_tag: entry.profile,
        }
        return Admission(dataclasses.replace(point, tags=tags))

    def refresh(self) -> int:
        """Re-read every device from the registry; return how many it holds.

        Raises RegistryError when the database cannot be read; the snapshot
        held so far stays in use.
        """
        try:
            if self.unknown_devices == "pending":
                self._register_pending()
            with self.registry.sessions() as session:
                rows = session.execute(
                    select(
                        Device.device_id,
                        Device.agency_id,
                        Device.profile,
                        Device.status,
                    )
                ).all()
        except SQLAlchemyError as exc:
            raise RegistryError(f"cannot read the registry's devices: {exc}") from None
        fresh = {row[0]: DeviceEntry(*row) for row in rows}
        if fresh != self.devices:
            logger.info(
                "Registry snapshot: %d devices (%d added, %d changed or removed)",
                len(fresh),
                len(fresh.keys() - self.devices.keys()),
                sum(1 for k, v in self.devices.items() if fresh.get(k) != v),
            )
        self.devices = fresh
        return len(fresh)

    async def run(self, stop: asyncio.Event) -> None:
        """Refresh the snapshot every refresh_interval_s until `stop` is set."""
        while not stop.is_set():
            try:
                await asyncio.to_thread(self.refresh)
            except RegistryError as exc:
                if not self._failing:
                    logger.warning("%s; keeping the previous snapshot", exc)
                self._failing = True
            else:
                if self._failing:
                    logger.info("Registry readable again")
                self._failing = False
                self.loaded.set()
            try:
                await asyncio.wait_for(stop.wait(), timeout=self.refresh_interval_s)
            except TimeoutError:
                pass

    def _remember_unknown(self, device_id: str, point: Point) -> None:
        if self.unknown_devices != "pending" or not device_id:
            return
        if len(self._unknown_seen) < MAX_PENDING_PER_REFRESH:
            agency = point.tags.get(self.agency_tag, "")
            profile = point.tags.get(self.profile_tag, point.measurement)
            self._unknown_seen.setdefault(device_id, (agency, profile))

    def _register_pending(self) -> None:
        seen, self._unknown_seen = self._unknown_seen, {}
        if not seen:
            return
        profiles = self.registry.profiles or {}
        with self.registry.sessions.begin() as session:
            agencies = set(session.scalars(select(Agency.agency_id)))
            taken = set(
                session.scalars(
                    select(Device.device_id).where(Device.device_id.in_(seen))
                )
            )
            for device_id, (agency, profile) in seen.items():
                if device_id in taken or not (
                    _ID.match(device_id) and _ID.match(profile)
                ):
                    continue
                if agency not in agencies:
                    # Once per device: it is seen again at every refresh.
                    if device_id in self._warned or len(self._warned) >= (
                        MAX_PENDING_PER_REFRESH
                    ):
                        continue
                    self._warned.add(device_id)
                    logger.warning(
                        "Unknown device %s names agency %r, which is not registered: "
                        "not added as pending",
                        device_id,
                        agency,
                    )
                    continue
                known = profiles.get(profile)
                cadence = known.report_interval_s if known else PENDING_CADENCE_S
                values = {
                    "device_id": device_id,
                    "profile": profile,
                    "agency_id": agency,
                    "status": "pending",
                    "expected_cadence_s": cadence,
                }
                session.add(Device(**values))
                _audit(session, PENDING_ACTOR, "create", "device", device_id, values)
