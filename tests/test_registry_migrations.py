"""The registry's schema: built by Alembic, upgraded without losing data."""

from __future__ import annotations

import datetime as dt

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import text

from devices.profiles import load_profiles
from gateway.registry import Registry
from gateway.registry.db import (
    current_revision,
    head_revision,
    open_engine,
    upgrade_schema,
)
from gateway.registry.models import Base
from tests.registry_support import database_url, postgres_database  # noqa: F401


def test_migrations_build_the_schema_the_models_describe(database_url: str):
    """Test that the newest migration leaves nothing for the models to add or change."""
    engine = open_engine(database_url)
    upgrade_schema(engine)

    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        differences = compare_metadata(context, Base.metadata)
    engine.dispose()

    assert differences == []


def test_migrations_upgrade_keeps_registry_data(database_url: str):
    """Test that rows stored under the first schema survive the upgrade to the head."""
    engine = open_engine(database_url)
    upgrade_schema(engine, "0001")
    now = dt.datetime(2025, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
    with engine.begin() as connection:
        connection.execute(
            text("INSERT INTO agencies VALUES ('pupr', 'Public works', :now)"),
            {"now": now},
        )
        connection.execute(
            text(
                "INSERT INTO sites (site_id, name, area, latitude, longitude,"
                " address, created_at, updated_at) VALUES ('panus', 'Panus',"
                " 'Pancoran Mas', -6.39, 106.83, '', :now, :now)"
            ),
            {"now": now},
        )
        connection.execute(
            text(
                "INSERT INTO devices (device_id, profile, agency_id, site_id, status,"
                " firmware, installed_on, notes, expected_cadence_s, created_at,"
                " updated_at) VALUES ('rg-001', 'river_gauge', 'pupr', 'panus',"
                " 'active', '1.4', :day, 'by the bridge', 300, :now, :now)"
            ),
            {"now": now, "day": dt.date(2024, 12, 1)},
        )

    upgrade_schema(engine)

    assert current_revision(engine) == head_revision() != "0001"
    engine.dispose()
    registry = Registry.open(database_url, profiles=load_profiles())
    device = registry.get_device("rg-001")
    site = registry.get_site("panus")
    registry.close()
    assert (site.name, site.area, site.latitude, site.status) == (
        "Panus",
        "Pancoran Mas",
        -6.39,
        "active",
    )
    assert device.site == "panus"
    assert (device.agency, device.status, device.firmware, device.notes) == (
        "pupr",
        "active",
        "1.4",
        "by the bridge",
    )
    assert device.installed_on == dt.date(2024, 12, 1)
    assert device.mqtt_username is None
