"""`decor devices|cameras|sites|agencies|tokens|audit` as a technician runs them."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from devices.profiles import load_profiles
from gateway.cli import app
from gateway.registry import Registry
from tests.registry_support import database_url, postgres_database  # noqa: F401

DECOR = Path(sys.executable).with_name("decor")
TIMEOUT_S = 120
CONFIG = """\
[[subscriptions]]
topic_template = "city/{agency}/{device_type}/{device_id}/telemetry"
"""
# Five rows of the 500 are wrong, each in its own way.
BAD_ROWS = {
    41: ("rg 041", "river_gauge", "pupr", "panus", "", "device_id: must be 1-64"),
    120: ("rg-120", "kettle", "pupr", "panus", "", "unknown profile 'kettle'"),
    250: ("rg-250", "river_gauge", "nasa", "panus", "", "no agency 'nasa'"),
    333: ("rg-001", "river_gauge", "pupr", "panus", "", "'rg-001': is already"),
    499: ("rg-499", "river_gauge", "pupr", "panus", "-5", "expected_cadence_s:"),
}


@dataclass(frozen=True)
class Result:
    """What one `decor` command printed and returned."""

    returncode: int
    stdout: str
    stderr: str


@pytest.fixture
def decor(tmp_path: Path, database_url: str, monkeypatch: pytest.MonkeyPatch):
    """Give a runner of `decor` commands on this test's registry database.

    The commands run in this process (each `decor` process spends two seconds
    importing); one test below runs the installed script for real.
    """
    config = tmp_path / "gateway.toml"
    config.write_text(CONFIG)
    monkeypatch.chdir(tmp_path)
    runner = CliRunner()
    environ = {"DECOR_REGISTRY__DATABASE_URL": database_url, "COLUMNS": "200"}

    def run(*args: str) -> Result:
        # Commands that change something say who does it.
        actor = [] if "--actor" in args or not _changes(args) else ["--actor", "ani"]
        done = runner.invoke(app, [*args, *actor, "--config", str(config)], env=environ)
        if done.exception is not None and not isinstance(done.exception, SystemExit):
            raise done.exception
        return Result(done.exit_code, done.stdout, done.stderr)

    assert run("agencies", "add", "pupr", "--name", "Public works").returncode == 0
    assert run("sites", "add", "panus", "--name", "Jembatan Panus").returncode == 0
    return run


def _changes(args: tuple[str, ...]) -> bool:
    verbs = {"add", "update", "decommission", "import", "create", "revoke"}
    return len(args) > 1 and args[1] in verbs


def _write_devices(path: Path, count: int) -> None:
    with path.open("w", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(
            ["device_id", "profile", "agency", "site", "expected_cadence_s"]
        )
        for number in range(1, count + 1):
            row = BAD_ROWS.get(
                number, (f"rg-{number:03}", "river_gauge", "pupr", "panus", "")
            )
            writer.writerow(row[:5])


def test_devices_import_keeps_good_rows_and_reports_each_bad_line(
    decor, tmp_path: Path, database_url: str
):
    """Test that 500 rows with 5 bad ones store 495 and name each bad line and why."""
    source = tmp_path / "devices.csv"
    _write_devices(source, 500)

    result = decor("devices", "import", str(source))

    assert result.returncode == 1, result.stderr
    assert "Imported 495 of 500 devices" in result.stdout
    refused = [line for line in result.stderr.splitlines() if ": line " in line]
    assert len(refused) == 5, result.stderr
    for number, (*_, reason) in BAD_ROWS.items():
        # The header is line 1, so row N is on line N + 1.
        line = next(text for text in refused if f": line {number + 1} " in text)
        assert reason in line, line
    registry = Registry.open(database_url, load_profiles())
    try:
        stored = registry.list_devices(limit=1000)
        audited = registry.audit_log(entity="device", limit=1000).total
    finally:
        registry.close()
    assert stored.total == 495
    assert audited == 495
    assert "rg-250" not in {device.device_id for device in stored.items}


def test_devices_export_reads_back_through_import(decor, tmp_path: Path):
    """Test that an export, edited and imported again, gives back the same devices."""
    source = tmp_path / "devices.yaml"
    source.write_text(
        yaml.safe_dump(
            [
                {"device_id": "rg-a", "profile": "river_gauge", "agency": "pupr"},
                {
                    "device_id": "aq-b",
                    "profile": "air_quality",
                    "agency": "pupr",
                    "site": "panus",
                    "installed_on": "2025-02-03",
                    "firmware": "1.2",
                },
            ]
        )
    )
    assert decor("devices", "import", str(source)).returncode == 0

    exported = decor("devices", "export", "--format", "yaml")

    records = yaml.safe_load(exported.stdout)
    assert [r["device_id"] for r in records] == ["aq-b", "rg-a"]
    assert records[0]["installed_on"] == "2025-02-03"
    assert records[1]["expected_cadence_s"] == 300.0


def test_devices_add_refuses_bad_input_naming_the_option(decor):
    """Test that a bad id or an unknown profile stops with one line naming it."""
    bad_id = decor(
        "devices", "add", "rg/1", "--profile", "river_gauge", "--agency", "pupr"
    )
    bad_profile = decor(
        "devices", "add", "rg-1", "--profile", "kettle", "--agency", "pupr"
    )

    assert bad_id.returncode == 2
    assert "device_id: must be 1-64" in bad_id.stderr
    assert bad_profile.returncode == 1
    assert "unknown profile 'kettle' (known: air_quality" in bad_profile.stderr
    assert "Traceback" not in bad_id.stderr + bad_profile.stderr


def test_devices_update_and_decommission_show_in_the_audit_log(decor):
    """Test that `decor audit` lists who changed what, newest first."""
    decor("devices", "add", "rg-1", "--profile", "river_gauge", "--agency", "pupr")
    decor("devices", "update", "rg-1", "--firmware", "2.0", "--actor", "budi")
    decor("devices", "decommission", "rg-1")

    changed = decor("devices", "update", "rg-1", "--notes", "again")
    history = decor("audit", "--id", "rg-1")

    assert changed.returncode == 1
    assert "is decommissioned" in changed.stderr
    lines = [line.split() for line in history.stdout.splitlines() if "rg-1" in line]
    assert [(words[2], words[3]) for words in lines] == [
        ("ani", "decommission"),
        ("budi", "update"),
        ("ani", "create"),
    ]


def test_sites_decommission_waits_for_the_devices_there(decor):
    """Test that a site is retired only once its devices are, and says why not."""
    decor("devices", "add", "rg-1", "--profile", "river_gauge", "--agency", "pupr")
    decor("devices", "update", "rg-1", "--site", "panus")

    refused = decor("sites", "decommission", "panus")
    decor("devices", "decommission", "rg-1")
    retired = decor("sites", "decommission", "panus")
    listed = decor("sites", "list")

    assert refused.returncode == 1
    assert "still has in service: device rg-1" in refused.stderr
    assert retired.returncode == 0, retired.stderr
    assert "Site panus is decommissioned" in retired.stdout
    [row] = [line.split() for line in listed.stdout.splitlines() if "panus" in line]
    assert row[-1] == "decommissioned"


def test_cameras_add_keeps_the_password_out_of_every_output(decor):
    """Test that a password given in a stream URL is never printed back."""
    added = decor(
        "cameras",
        "add",
        "cam-1",
        "--agency",
        "pupr",
        "--stream-url",
        "rtsp://viewer:hunter2-pw@10.0.0.9/live",
    )

    shown = decor("cameras", "show", "cam-1")
    exported = decor("cameras", "export")

    assert added.returncode == 0, added.stderr
    assert "rtsp://10.0.0.9/live" in shown.stdout
    for result in (added, shown, exported, decor("audit")):
        assert "hunter2" not in result.stdout + result.stderr


def test_installed_decor_registers_a_device(tmp_path: Path, database_url: str):
    """Test that the installed `decor` script registers and lists a device."""
    config = tmp_path / "gateway.toml"
    config.write_text(CONFIG)
    environ = {k: v for k, v in os.environ.items() if not k.startswith("DECOR_")}
    environ |= {"DECOR_REGISTRY__DATABASE_URL": database_url, "COLUMNS": "200"}
    commands = [
        ["agencies", "add", "pupr", "--name", "Public works", "--actor", "ani"],
        ["devices", "add", "rg-9", "--profile", "river_gauge", "--agency", "pupr"],
        ["devices", "list", "--agency", "pupr"],
    ]

    results = [
        subprocess.run(
            [str(DECOR), *command, "--config", str(config)],
            capture_output=True,
            text=True,
            timeout=TIMEOUT_S,
            env=environ,
        )
        for command in commands
    ]

    assert [r.returncode for r in results] == [0, 0, 0], results[-1].stderr
    assert "rg-9" in results[-1].stdout
    assert "devices 1-1 of 1" in results[-1].stderr
