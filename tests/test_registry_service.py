"""The registry's operations, on SQLite and on PostgreSQL alike."""

from __future__ import annotations

import pytest

from gateway.registry import (
    CameraIn,
    CameraUpdate,
    Conflict,
    DeviceIn,
    DeviceUpdate,
    InvalidInput,
    NotFound,
    Registry,
    SiteUpdate,
)
from tests.registry_support import (  # noqa: F401 - fixtures
    ACTOR,
    city_registry,
    database_url,
    postgres_database,
    registry,
)


def _gauge(device_id: str = "rg-001", **values: object) -> DeviceIn:
    return DeviceIn.model_validate(
        {
            "device_id": device_id,
            "profile": "river_gauge",
            "agency": "pupr",
            "site": "panus",
            **values,
        }
    )


def test_registry_add_device_takes_cadence_from_profile(city_registry: Registry):
    """Test that a device without a cadence gets its profile's report interval."""
    city_registry.add_device(_gauge(), ACTOR)

    device = city_registry.get_device("rg-001")

    assert device.expected_cadence_s == 300.0
    assert (device.agency, device.site, device.status) == (
        "pupr",
        "panus",
        "provisioned",
    )


def test_registry_add_device_refuses_unknown_profile_agency_site(
    city_registry: Registry,
):
    """Test that a device naming an unknown profile, agency or site is refused."""
    with pytest.raises(InvalidInput, match="unknown profile 'kettle'") as profile:
        city_registry.add_device(_gauge(profile="kettle"), ACTOR)
    with pytest.raises(InvalidInput, match="no agency 'nasa'"):
        city_registry.add_device(_gauge(agency="nasa"), ACTOR)
    with pytest.raises(InvalidInput, match="no site 'moon'"):
        city_registry.add_device(_gauge(site="moon"), ACTOR)

    assert profile.value.field == "profile"
    assert city_registry.list_devices().total == 0


def test_registry_add_device_refuses_a_taken_id(city_registry: Registry):
    """Test that registering the same device id twice is a conflict."""
    city_registry.add_device(_gauge(), ACTOR)

    with pytest.raises(Conflict, match="'rg-001': is already registered"):
        city_registry.add_device(_gauge(), ACTOR)


def test_registry_list_devices_filters_and_pages(city_registry: Registry):
    """Test that listing filters by agency and status and pages in id order."""
    for number in range(7):
        city_registry.add_device(_gauge(f"rg-{number:03}"), ACTOR)
    city_registry.add_device(
        _gauge("aq-001", profile="air_quality", agency="dlh", status="active"), ACTOR
    )

    second_page = city_registry.list_devices(agency="pupr", limit=3, offset=3)
    active = city_registry.list_devices(status="active")

    assert second_page.total == 7
    assert [d.device_id for d in second_page.items] == ["rg-003", "rg-004", "rg-005"]
    assert [d.device_id for d in active.items] == ["aq-001"]


def test_registry_update_and_decommission_are_audited(city_registry: Registry):
    """Test that each change lands in the audit log with who, what, old and new."""
    city_registry.add_device(_gauge(), ACTOR)

    city_registry.update_device(
        "rg-001", DeviceUpdate(firmware="2.1.0", status="active"), "ani"
    )
    city_registry.decommission_device("rg-001", "budi")

    entries = city_registry.audit_log(entity_id="rg-001").items
    assert [(e.action, e.actor) for e in entries] == [
        ("decommission", "budi"),
        ("update", "ani"),
        ("create", ACTOR),
    ]
    assert entries[1].changes == {
        "firmware": ["", "2.1.0"],
        "status": ["provisioned", "active"],
    }
    assert entries[0].changes == {"status": ["active", "decommissioned"]}


def test_registry_decommissioned_device_cannot_change(city_registry: Registry):
    """Test that a retired device is refused further changes, naming why."""
    city_registry.add_device(_gauge(), ACTOR)
    city_registry.decommission_device("rg-001", ACTOR)

    with pytest.raises(Conflict, match="is decommissioned"):
        city_registry.update_device("rg-001", DeviceUpdate(notes="back"), ACTOR)
    with pytest.raises(NotFound, match="no device 'rg-404'"):
        city_registry.decommission_device("rg-404", ACTOR)


def test_registry_camera_credentials_stay_out_of_urls_repr_and_audit(
    city_registry: Registry,
):
    """Test that a password written into a camera URL is moved out and never shown."""
    data = CameraIn(
        camera_id="cam-panus",
        agency="pupr",
        site="panus",
        stream_url="rtsp://viewer:s3cret-pw@10.1.2.3:554/stream1",
    )

    camera = city_registry.add_camera(data, ACTOR)

    assert camera.stream_url == "rtsp://10.1.2.3:554/stream1"
    assert (camera.username, camera.has_password) == ("viewer", True)
    assert city_registry.camera_credentials("cam-panus") == ("viewer", "s3cret-pw")
    shown = repr(data) + camera.model_dump_json()
    shown += repr(city_registry.audit_log(entity="camera").items)
    assert "s3cret-pw" not in shown


def test_registry_stores_each_cameras_expected_cadence(city_registry: Registry):
    """Test that a camera's cadence defaults to its sampling interval, else is kept."""
    sampled = city_registry.add_camera(
        CameraIn(
            camera_id="cam-1",
            agency="pupr",
            stream_url="rtsp://10.1.2.3/a",
            sample_interval_s=30,
        ),
        ACTOR,
    )
    declared = city_registry.add_camera(
        CameraIn(
            camera_id="cam-2",
            agency="pupr",
            stream_url="rtsp://10.1.2.4/a",
            expected_cadence_s=900,
        ),
        ACTOR,
    )
    city_registry.update_camera("cam-1", CameraUpdate(expected_cadence_s=120), ACTOR)

    assert declared.expected_cadence_s == 900.0
    assert sampled.expected_cadence_s == 30.0
    assert city_registry.get_camera("cam-1").expected_cadence_s == 120.0
    assert city_registry.get_camera("cam-2").expected_cadence_s == 900.0


def test_registry_site_is_decommissioned_once_nothing_in_service_is_there(
    city_registry: Registry,
):
    """Test that a site with a device in service stays; retired, it takes nothing."""
    city_registry.add_device(_gauge(site="panus"), ACTOR)

    with pytest.raises(Conflict, match="still has in service: device rg-001"):
        city_registry.decommission_site("panus", ACTOR)
    city_registry.decommission_device("rg-001", ACTOR)
    site = city_registry.decommission_site("panus", ACTOR)

    assert site.status == "decommissioned"
    with pytest.raises(InvalidInput, match="site 'panus' is decommissioned"):
        city_registry.add_device(_gauge("rg-002", site="panus"), ACTOR)
    with pytest.raises(Conflict, match="is decommissioned"):
        city_registry.update_site("panus", SiteUpdate(name="Old bridge"), ACTOR)
    [entry] = city_registry.audit_log(entity="site", entity_id="panus", limit=1).items
    assert (entry.action, entry.changes["status"]) == (
        "decommission",
        ["active", "decommissioned"],
    )
    assert city_registry.get_site("balai-kota").status == "active"
