"""Fixtures of the registry tests: the same tests on SQLite and on PostgreSQL.

PostgreSQL is the machine's server on 127.0.0.1:5432 (trust authentication,
user postgres). Each test session makes its own throwaway database there and
drops it at the end; each test starts from an empty schema.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from sqlalchemy import text

from devices.profiles import load_profiles
from gateway.registry import AgencyIn, Registry, SiteIn
from gateway.registry.db import open_engine

POSTGRES_ADMIN_URL = os.environ.get(
    "REGISTRY_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres"
)
ACTOR = "test-technician"


@pytest.fixture(scope="session")
def postgres_database() -> Iterator[str]:
    """Give the URL of a new PostgreSQL database, dropped after the session."""
    name = f"decor_registry_test_{uuid.uuid4().hex[:10]}"
    try:
        admin = psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as exc:
        pytest.fail(f"PostgreSQL is not answering at {POSTGRES_ADMIN_URL}: {exc}")
    with admin:
        admin.execute(f'CREATE DATABASE "{name}"')
        base = POSTGRES_ADMIN_URL.rsplit("/", 1)[0]
        yield f"{base.replace('postgresql://', 'postgresql+psycopg://')}/{name}"
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Give an empty registry database: a SQLite file, then PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'registry.db'}"
    url: str = request.getfixturevalue("postgres_database")
    engine = open_engine(url)
    with engine.begin() as connection:
        connection.execute(text("DROP SCHEMA public CASCADE"))
        connection.execute(text("CREATE SCHEMA public"))
    engine.dispose()
    return url


@pytest.fixture
def registry(database_url: str) -> Iterator[Registry]:
    """Give a registry on an empty database, with the shipped profiles."""
    opened = Registry.open(database_url, profiles=load_profiles())
    yield opened
    opened.close()


@pytest.fixture
def city_registry(registry: Registry) -> Registry:
    """Give a registry holding two agencies and two sites."""
    registry.add_agency(AgencyIn(agency_id="pupr", name="Public works"), ACTOR)
    registry.add_agency(AgencyIn(agency_id="dlh", name="Environment"), ACTOR)
    registry.add_site(
        SiteIn(
            site_id="panus",
            name="Jembatan Panus",
            area="Pancoran Mas",
            latitude=-6.3921,
            longitude=106.8315,
        ),
        ACTOR,
    )
    registry.add_site(SiteIn(site_id="balai-kota", name="Balai Kota"), ACTOR)
    return registry
