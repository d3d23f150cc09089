"""Open the registry database and bring its schema up to date with Alembic."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from gateway.registry.errors import RegistryUnavailable

__all__ = [
    "current_revision",
    "head_revision",
    "open_engine",
    "open_sessions",
    "upgrade_schema",
]

logger = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).parent / "migrations"


def open_engine(database_url: str) -> Engine:
    """Create an engine for a SQLite or PostgreSQL URL (a SQLite folder is made).

    Raises RegistryUnavailable naming the URL (without its password) when the
    URL cannot be understood.
    """
    try:
        url = make_url(database_url)
    except ArgumentError as exc:
        raise RegistryUnavailable(
            f"registry.database_url is not an SQLAlchemy URL: {exc}"
        ) from None
    if url.drivername == "postgresql":
        # psycopg 3 is the driver installed with the gateway.
        url = url.set(drivername="postgresql+psycopg")
    if url.drivername.startswith("sqlite") and url.database not in (
        None,
        "",
        ":memory:",
    ):
        Path(url.database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url)
    if url.drivername.startswith("sqlite"):
        event.listen(engine, "connect", _sqlite_foreign_keys)
    return engine


def open_sessions(engine: Engine) -> sessionmaker[Session]:
    """Return a session factory whose objects stay readable after commit."""
    return sessionmaker(engine, expire_on_commit=False)


def upgrade_schema(engine: Engine, revision: str = "head") -> None:
    """Migrate the database to `revision`, keeping its data; no-op when there."""
    try:
        # Inside the try: reading the revision is the first connection made.
        before = current_revision(engine)
        with engine.begin() as connection:
            config = _alembic_config(engine)
            config.attributes["connection"] = connection
            command.upgrade(config, revision)
    except OperationalError as exc:
        raise RegistryUnavailable(
            f"cannot reach the registry database "
            f"{engine.url.render_as_string(hide_password=True)}: {exc.orig}"
        ) from None
    after = current_revision(engine)
    if after != before:
        logger.info("Registry schema upgraded from %s to %s", before or "empty", after)


def current_revision(engine: Engine) -> str | None:
    """Return the schema revision the database is at; None for an empty one."""
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def head_revision() -> str:
    """Return the newest schema revision this code ships."""
    head = ScriptDirectory.from_config(_alembic_config(None)).get_current_head()
    assert head is not None, "the registry ships at least one migration"
    return head


def _alembic_config(engine: Engine | None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    if engine is not None:
        # Alembic's config interpolates %; a password may hold one.
        url = engine.url.render_as_string(hide_password=False).replace("%", "%%")
        config.set_main_option("sqlalchemy.url", url)
    return config


def _sqlite_foreign_keys(dbapi_connection: Any, _record: Any) -> None:
    # SQLite ignores foreign keys unless each connection asks for them.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()
