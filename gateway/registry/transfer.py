"""Import devices, cameras and sites from CSV or YAML, and export them again.

An import keeps every good row and reports each bad one with its line number
and the reason, so a technician fixes only those lines and imports them again.
"""

from __future__ import annotations

import csv
import io
import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ValidationError

from gateway.registry.errors import InvalidInput, RegistryError
from gateway.registry.schemas import CameraIn, DeviceIn, SiteIn, first_problem
from gateway.registry.service import MAX_PAGE, Known, Registry

__all__ = [
    "ImportReport",
    "Kind",
    "RowProblem",
    "export_records",
    "import_records",
    "read_rows",
]

logger = logging.getLogger(__name__)

Kind = Literal["devices", "cameras", "sites"]
# Rows stored per transaction: big enough to be quick, small enough that the
# progress bar moves.
IMPORT_CHUNK_ROWS = 100
_INPUT: dict[str, type[BaseModel]] = {
    "devices": DeviceIn,
    "cameras": CameraIn,
    "sites": SiteIn,
}
_ID_COLUMN = {"devices": "device_id", "cameras": "camera_id", "sites": "site_id"}
# Never exported: a camera password stays in the registry.
_NOT_EXPORTED = {"password"}


@dataclass(frozen=True)
class RowProblem:
    """A row left out of an import: where it is and why."""

    line: int
    record_id: str
    reason: str

    def __str__(self) -> str:
        shown = f" ({self.record_id})" if self.record_id else ""
        return f"line {self.line}{shown}: {self.reason}"


@dataclass
class ImportReport:
    """What an import stored and what it left out."""

    rows: int = 0
    added: list[str] = field(default_factory=list)
    problems: list[RowProblem] = field(default_factory=list)


def read_rows(path: Path) -> list[tuple[int, dict[str, Any]]]:
    """Read a CSV (with a header line) or YAML list of records, each with its line.

    Raises InvalidInput naming the file when it cannot be read as either.
    """
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidInput("", f"cannot read {path}: {exc}") from None
    if path.suffix.lower() in (".yaml", ".yml"):
        return _yaml_rows(text, path)
    if path.suffix.lower() == ".csv":
        return list(_csv_rows(text))
    raise InvalidInput("", f"{path}: the file name must end in .csv, .yaml or .yml")


def import_records(
    registry: Registry,
    kind: Kind,
    rows: Sequence[tuple[int, dict[str, Any]]],
    actor: str,
    on_progress: Callable[[int], None] | None = None,
) -> ImportReport:
    """Store every good row; report each bad one with its line and reason.

    Args:
        on_progress: called with the number of rows handled since the last call.
    """
    report = ImportReport(rows=len(rows))
    known = registry.known()
    model = _INPUT[kind]
    good: list[Any] = []
    for line, row in rows:
        record_id = str(row.get(_ID_COLUMN[kind], "") or "")
        try:
            record = model.model_validate(_given(row))
            _check(registry, kind, record, known)
        except ValidationError as exc:
            report.problems.append(RowProblem(line, record_id, str(first_problem(exc))))
            continue
        except RegistryError as exc:
            report.problems.append(RowProblem(line, record_id, str(exc)))
            continue
        good.append(record)
    if on_progress is not None and report.problems:
        on_progress(len(report.problems))
    for start in range(0, len(good), IMPORT_CHUNK_ROWS):
        chunk = good[start : start + IMPORT_CHUNK_ROWS]
        report.added.extend(_store(registry, kind, chunk, actor))
        if on_progress is not None:
            on_progress(len(chunk))
    logger.info(
        "Imported %d of %d %s; %d rows refused",
        len(report.added),
        report.rows,
        kind,
        len(report.problems),
    )
    return report


def export_records(registry: Registry, kind: Kind, fmt: Literal["csv", "yaml"]) -> str:
    """Return every record of `kind` as CSV or YAML that `import` reads back."""
    columns = [name for name in _INPUT[kind].model_fields if name not in _NOT_EXPORTED]
    records = [
        {name: _exported(record.get(name)) for name in columns}
        for record in _all(registry, kind)
    ]
    if fmt == "yaml":
        return str(yaml.safe_dump(records, sort_keys=False, allow_unicode=True))
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for record in records:
        writer.writerow({k: "" if v is None else v for k, v in record.items()})
    return buffer.getvalue()


def _csv_rows(text: str) -> Iterator[tuple[int, dict[str, Any]]]:
    reader = csv.reader(io.StringIO(text, newline=""))
    header = next(reader, None)
    if header is None:
        return
    header = [name.strip() for name in header]
    line = reader.line_num
    for cells in reader:
        start, line = line + 1, reader.line_num
        if not any(cell.strip() for cell in cells):
            continue
        if len(cells) != len(header):
            yield (
                start,
                {"__cells__": f"has {len(cells)} cells, the header {len(header)}"},
            )
            continue
        yield start, dict(zip(header, cells, strict=True))


def _yaml_rows(text: str, path: Path) -> list[tuple[int, dict[str, Any]]]:
    try:
        document = yaml.compose(text, Loader=yaml.SafeLoader)
        records = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise InvalidInput("", f"{path} is not valid YAML: {exc}") from None
    if not isinstance(records, list) or not isinstance(document, yaml.SequenceNode):
        raise InvalidInput("", f"{path} must hold a YAML list of records")
    rows = []
    for node, record in zip(document.value, records, strict=True):
        line = node.start_mark.line + 1
        if not isinstance(record, dict):
            rows.append((line, {"__cells__": "is not a mapping of column: value"}))
        else:
            rows.append((line, {str(key): value for key, value in record.items()}))
    return rows


def _given(row: dict[str, Any]) -> dict[str, Any]:
    if "__cells__" in row:
        raise InvalidInput("", f"row {row['__cells__']}")
    # An empty cell means "not given": the column's default applies.
    return {key: value for key, value in row.items() if value not in ("", None)}


def _check(registry: Registry, kind: str, record: Any, known: Known) -> None:
    if kind == "devices":
        registry.check_new_device(record, known)
    elif kind == "cameras":
        registry.check_new_camera(record, known)
    else:
        registry.check_new_site(record, known)


def _store(registry: Registry, kind: str, chunk: list[Any], actor: str) -> list[str]:
    if kind == "devices":
        return [device.device_id for device in registry.add_devices(chunk, actor)]
    if kind == "cameras":
        return [camera.camera_id for camera in registry.add_cameras(chunk, actor)]
    return [site.site_id for site in registry.add_sites(chunk, actor)]


def _all(registry: Registry, kind: str) -> Iterator[dict[str, Any]]:
    listing = {
        "devices": registry.list_devices,
        "cameras": registry.list_cameras,
        "sites": registry.list_sites,
    }[kind]
    offset = 0
    while True:
        page = listing(limit=MAX_PAGE, offset=offset)
        yield from (item.model_dump() for item in page.items)
        offset += len(page.items)
        if not page.items or offset >= page.total:
            return


def _exported(value: Any) -> Any:
    return value.isoformat() if hasattr(value, "isoformat") else value
