"""The gateway's snapshot of the registry: refuses, tags, stays fresh while running."""

from __future__ import annotations

import asyncio
import logging

import pytest

from gateway.points import Point
from gateway.registry import DeviceIn, DeviceUpdate, Registry
from gateway.registry.lookup import DeviceDirectory
from tests.conftest import wait_until
from tests.registry_support import (  # noqa: F401 - fixtures
    ACTOR,
    city_registry,
    database_url,
    postgres_database,
    registry,
)

REFRESH_S = 0.05


def _point(device_id: str, agency: str = "pupr") -> Point:
    return Point(
        "river_gauge",
        {"device_id": device_id, "agency": agency, "device_type": "river_gauge"},
        {"water_level_cm": 120.0},
        1_700_000_000_000_000_000,
    )


def _add(registry: Registry, device_id: str, agency: str = "pupr") -> None:
    registry.add_device(
        DeviceIn(device_id=device_id, profile="river_gauge", agency=agency), ACTOR
    )


def test_directory_tags_known_devices_with_their_agency(city_registry: Registry):
    """Test that an admitted point carries the registry's agency, not the topic's."""
    _add(city_registry, "rg-001", agency="dlh")
    directory = DeviceDirectory(city_registry, refresh_interval_s=REFRESH_S)
    directory.refresh()

    admitted = directory.admit(_point("rg-001", agency="pupr"))

    assert admitted.point is not None
    assert admitted.point.tags["agency"] == "dlh"
    assert admitted.point.fields == {"water_level_cm": 120.0}


def test_directory_refuses_unknown_and_decommissioned_devices(city_registry: Registry):
    """Test that unknown and retired devices are refused with a dead-letter reason."""
    _add(city_registry, "rg-001")
    city_registry.decommission_device("rg-001", ACTOR)
    directory = DeviceDirectory(city_registry, refresh_interval_s=REFRESH_S)
    directory.refresh()

    unknown = directory.admit(_point("rg-404"))
    retired = directory.admit(_point("rg-001"))
    untagged = directory.admit(Point("x", {}, {"v": 1.0}, 1))

    assert (unknown.point, unknown.reason) == (None, "unknown_device")
    assert "'rg-404' is not in the registry" in unknown.detail
    assert (retired.point, retired.reason) == (None, "decommissioned_device")
    assert "no 'device_id' tag" in untagged.detail


async def test_directory_sees_registry_changes_without_restart(city_registry: Registry):
    """Test that a running directory admits a new device and refuses a retired one."""
    directory = DeviceDirectory(city_registry, refresh_interval_s=REFRESH_S)
    stop = asyncio.Event()
    task = asyncio.create_task(directory.run(stop))
    try:
        await asyncio.wait_for(directory.loaded.wait(), timeout=5)
        assert directory.admit(_point("rg-001")).reason == "unknown_device"

        _add(city_registry, "rg-001")
        assert await wait_until(
            lambda: directory.admit(_point("rg-001")).point is not None
        )
        city_registry.decommission_device("rg-001", ACTOR)
        assert await wait_until(
            lambda: directory.admit(_point("rg-001")).reason == "decommissioned_device"
        )
    finally:
        stop.set()
        await asyncio.wait_for(task, timeout=5)


def test_directory_registers_unknown_devices_as_pending_when_configured(
    city_registry: Registry,
):
    """Test that with unknown_devices = pending a device waits for approval, refused."""
    directory = DeviceDirectory(
        city_registry, refresh_interval_s=REFRESH_S, unknown_devices="pending"
    )
    directory.refresh()

    first = directory.admit(_point("rg-new"))
    directory.admit(_point("rg-stray", agency="nasa"))
    directory.refresh()
    waiting = directory.admit(_point("rg-new"))
    city_registry.update_device("rg-new", DeviceUpdate(status="active"), "ani")
    directory.refresh()
    approved = directory.admit(_point("rg-new"))

    assert first.reason == "unknown_device"
    assert waiting.reason == "pending_device"
    assert approved.point is not None
    device = city_registry.get_device("rg-new")
    assert (device.agency, device.profile, device.expected_cadence_s) == (
        "pupr",
        "river_gauge",
        300.0,
    )
    # An agency the registry does not know cannot own a pending device.
    assert city_registry.list_devices(status="pending").total == 0
    assert city_registry.list_devices().total == 1


def test_directory_warns_once_of_a_device_naming_an_unknown_agency(
    city_registry: Registry, caplog: pytest.LogCaptureFixture
):
    """Test that a stray device seen at every refresh is reported once, not added."""
    directory = DeviceDirectory(
        city_registry, refresh_interval_s=REFRESH_S, unknown_devices="pending"
    )
    with caplog.at_level(logging.WARNING, logger="gateway.registry.lookup"):
        for _ in range(3):
            directory.admit(_point("rg-stray", agency="nasa"))
            directory.refresh()

    warnings = [r.getMessage() for r in caplog.records if "rg-stray" in r.getMessage()]
    assert warnings == [
        "Unknown device rg-stray names agency 'nasa', which is not registered: "
        "not added as pending"
    ]
    assert city_registry.list_devices().total == 0
