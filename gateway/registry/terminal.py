"""What the registry commands share: opening the registry, parsing, printing.

Consoles, tables and the import progress bar of `decor devices|cameras|sites`
live here so that gateway/registry_cli.py holds only the commands.
"""

from __future__ import annotations

import getpass
import os
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import typer
from pydantic import BaseModel, ValidationError
from rich import box
from rich.console import Console
from rich.markup import escape
from rich.progress import Progress
from rich.table import Table

from devices.profiles import DeviceProfile
from gateway.config import GatewayConfig, load_config
from gateway.errors import ConfigError
from gateway.registry.dynsec import DeviceCredentials
from gateway.registry.errors import RegistryError
from gateway.registry.schemas import first_problem
from gateway.registry.service import Registry
from gateway.registry.transfer import ImportReport, Kind, import_records, read_rows
from gateway.validation.profiles import load_quality_profiles

__all__ = [
    "actor_name",
    "console",
    "fail",
    "import_file",
    "open_registry",
    "output",
    "parse_options",
    "print_credentials",
    "print_history",
    "print_page",
    "print_rows",
    "record_table",
]

console = Console(stderr=True, highlight=False)
# What the technician asked to see (tables, exports) goes to stdout.
output = Console(highlight=False)
_Model = TypeVar("_Model", bound=BaseModel)


@contextmanager
def open_registry(config_path: Path) -> Iterator[tuple[Registry, GatewayConfig]]:
    """Open the registry a configuration names; exit with one line if it cannot."""
    try:
        settings = load_config(config_path)
        profiles = _profiles(settings, str(config_path))
    except ConfigError as exc:
        fail(f"Configuration error: {exc}", 2)
    try:
        registry = Registry.open(settings.registry.database_url, profiles)
    except RegistryError as exc:
        fail(str(exc), 1)
    try:
        yield registry, settings
    except RegistryError as exc:
        fail(str(exc), 1)
    finally:
        registry.close()


def _profiles(settings: GatewayConfig, source: str) -> dict[str, DeviceProfile]:
    return load_quality_profiles(settings.quality.profiles_dir, source)


def parse_options(model: type[_Model], **values: Any) -> _Model:
    """Build `model` from the options given; exit naming the first bad one."""
    given = {key: value for key, value in values.items() if value is not None}
    try:
        return model.model_validate(given)
    except ValidationError as exc:
        fail(str(first_problem(exc)).replace("expected_cadence_s", "cadence"), 2)


def actor_name(actor: str | None) -> str:
    """Return the name the audit log records: --actor, else the login name."""
    return actor or getpass.getuser()


def import_file(
    registry: Registry, kind: Kind, path: Path, actor: str
) -> ImportReport:
    """Import a CSV or YAML file with a progress bar; print each bad row."""
    rows = read_rows(path)
    with Progress(console=console, transient=True) as progress:
        task = progress.add_task(f"Importing {kind}", total=len(rows))
        report = import_records(
            registry, kind, rows, actor, lambda n: progress.advance(task, n)
        )
    for problem in report.problems:
        console.print(f"{escape(str(path))}: {escape(str(problem))}", soft_wrap=True)
    output.print(
        f"Imported {len(report.added)} of {report.rows} {kind} from "
        f"{escape(str(path))}; {len(report.problems)} rows refused"
    )
    return report


def print_credentials(
    granted: list[DeviceCredentials], path: Path | None = None
) -> None:
    """Show new MQTT passwords once, or write them to a 0600 file."""
    if path is not None:
        # Written readable by its owner only: it holds live passwords.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write("device_id,mqtt_username,mqtt_password\n")
            for item in granted:
                out.write(f"{item.username},{item.username},{item.password}\n")
        console.print(f"MQTT passwords of {len(granted)} devices written to {path}")
        return
    console.print("MQTT credentials, shown once; the registry does not keep them:")
    table = Table("username", "password", "publish to", "subscribe to", box=box.SIMPLE)
    for item in granted:
        table.add_row(
            item.username,
            item.password,
            "\n".join(item.publish_topics),
            item.command_topic,
        )
    output.print(table)


def record_table(record: dict[str, Any], title: str) -> Table:
    """Return one record as a two-column table."""
    table = Table(title=title, show_header=False, box=box.SIMPLE)
    for key, value in record.items():
        table.add_row(key, escape(_text(value)))
    return table


def print_page(kind: str, page: Any, columns: list[str]) -> None:
    """Print one page of a listing and which rows of the total it shows."""
    print_rows(kind, [item.model_dump() for item in page.items], columns)
    shown_to = page.offset + len(page.items)
    console.print(
        f"{kind} {page.offset + 1 if page.items else 0}-{shown_to} of {page.total}"
    )


def print_rows(kind: str, rows: list[dict[str, Any]], columns: list[str]) -> None:
    """Print rows as a table, or say there are none."""
    if not rows:
        output.print(f"No {kind}")
        return
    table = Table(*columns, box=box.SIMPLE)
    for row in rows:
        table.add_row(*(escape(_text(row[column])) for column in columns))
    output.print(table)


def print_history(entries: list[Any]) -> None:
    """Print audit entries: when, who, what and each change."""
    rows = [
        {
            "at": entry.at.strftime("%Y-%m-%d %H:%M:%S"),
            "actor": entry.actor,
            "action": entry.action,
            "what": f"{entry.entity} {entry.entity_id}",
            "changes": ", ".join(
                f"{k}: {v[0]!r} -> {v[1]!r}" for k, v in entry.changes.items()
            ),
        }
        for entry in entries
    ]
    print_rows("changes", rows, ["at", "actor", "action", "what", "changes"])


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, date):
        return value.isoformat()
    return str(value)


def fail(message: str, code: int) -> NoReturn:
    """Print `message` to stderr and exit with `code`."""
    console.print(escape(message), soft_wrap=True)
    raise typer.Exit(code=code)
