"""The `decor` command as an operator runs it: a real subprocess, real files."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

DECOR = Path(sys.executable).with_name("decor")
TIMEOUT_S = 60

VALID_CONFIG = """\
[mqtt]
port = 18830

[influx]
url = "http://127.0.0.1:18086"

[[subscriptions]]
topic_template = "city/{agency}/{device_type}/{device_id}/telemetry"
measurement = "{device_type}"
"""


@dataclass(frozen=True)
class Result:
    """What one run of `decor` printed and returned."""

    code: int
    stdout: str
    stderr: str


def decor(
    *args: str, env: dict[str, str] | None = None, cwd: Path | None = None
) -> Result:
    """Run the installed `decor` script with a clean DECOR_* environment."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith("DECOR_")}
    done = subprocess.run(
        [str(DECOR), *args],
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
        cwd=cwd,
        env=environ | (env or {}),
    )
    return Result(done.returncode, done.stdout, done.stderr)


def assert_one_error_line(result: Result, *expected: str) -> None:
    """Check exit code 2 and a single stderr line holding every expected text."""
    assert "Traceback" not in result.stderr, result.stderr
    assert result.code == 2, result
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("Configuration error: ")
    for text in expected:
        assert text in lines[0]


@pytest.fixture
def config_file(tmp_path: Path):
    """Give a writer of config files: the valid one, with an edit applied."""

    def write(old: str = "", new: str = "", name: str = "gateway.toml") -> Path:
        assert old in VALID_CONFIG
        path = tmp_path / name
        path.write_text(VALID_CONFIG.replace(old, new, 1) if old else VALID_CONFIG)
        return path

    return write


@pytest.mark.parametrize("command", ["run", "check"])
def test_cli_names_a_misspelled_key_and_the_file(config_file, command):
    """Test that an unknown key stops start-up with one line naming key and file."""
    path = config_file("port = 18830", "prot = 18830")

    result = decor(command, "--config", str(path))

    assert_one_error_line(
        result, str(path), "mqtt.prot", "unknown key", "did you mean 'port'?"
    )


@pytest.mark.parametrize("command", ["run", "check"])
def test_cli_names_a_missing_config_file(tmp_path, command):
    """Test that a config path that does not exist gives one line and exit 2."""
    path = tmp_path / "nowhere" / "gateway.toml"

    result = decor(command, "--config", str(path))

    assert_one_error_line(result, str(path), "file not found")


def test_cli_names_invalid_toml_with_its_position(config_file):
    """Test that a TOML syntax error is one line with the file, line and column."""
    path = config_file("[influx]", "[influx")

    result = decor("run", "--config", str(path))

    assert_one_error_line(result, str(path), "not valid TOML", "line 4")


def test_cli_names_a_value_of_the_wrong_type(config_file):
    """Test that a string where a port belongs names the key and the value."""
    path = config_file("port = 18830", 'port = "eighteen"')

    result = decor("run", "--config", str(path))

    assert_one_error_line(result, str(path), "mqtt.port", "integer", "'eighteen'")


def test_cli_names_the_environment_variable_of_a_bad_override(config_file):
    """Test that DECOR_MQTT__PORT=0 is blamed on the variable, with the range."""
    path = config_file()

    result = decor("run", "--config", str(path), env={"DECOR_MQTT__PORT": "0"})

    assert_one_error_line(
        result,
        str(path),
        "DECOR_MQTT__PORT",
        "mqtt.port",
        "greater than or equal to 1",
        "got 0",
    )


def test_cli_names_a_measurement_placeholder_the_topic_does_not_capture(config_file):
    """Test that measurement "{nope}" is refused, listing what the template captures."""
    path = config_file('measurement = "{device_type}"', 'measurement = "{nope}"')

    result = decor("run", "--config", str(path))

    assert_one_error_line(
        result,
        str(path),
        "subscriptions.0.measurement",
        "{nope}",
        "agency, device_id, device_type",
    )


@pytest.mark.parametrize(
    "template",
    ["city/{agency/{device_type}/{device_id}/telemetry", "city/#/{device_id}"],
)
def test_cli_names_a_bad_topic_template(config_file, template):
    """Test that an unparsable topic template is one line naming the bad level."""
    path = config_file("city/{agency}/{device_type}/{device_id}/telemetry", template)

    result = decor("run", "--config", str(path))

    assert_one_error_line(
        result, str(path), "subscriptions.0.topic_template", "must be literal text"
    )


def test_cli_prints_operator_input_that_looks_like_markup_verbatim(config_file):
    """Test that a value such as "[/]" is shown as typed, not read as rich markup."""
    path = config_file("[mqtt]", 'log_level = "[/]"\n[mqtt]')

    result = decor("run", "--config", str(path))

    assert_one_error_line(result, str(path), "log_level", "got '[/]'")


def test_cli_keeps_a_long_error_on_one_line(tmp_path):
    """Test that an error longer than a terminal is not wrapped onto more lines."""
    folder = tmp_path / ("deep-" * 30)
    folder.mkdir()
    path = folder / "gateway.toml"
    path.write_text(VALID_CONFIG.replace("port = 18830", "prot = 18830"))

    result = decor("run", "--config", str(path), env={"COLUMNS": "40"})

    assert_one_error_line(result, str(path), "mqtt.prot")


def test_cli_check_accepts_a_valid_config(config_file):
    """Test that `decor check` on a valid file says so and exits 0."""
    path = config_file()

    result = decor("check", "--config", str(path))

    assert result.code == 0, result
    assert f"{path}: configuration is valid" in result.stderr


def test_cli_check_accepts_the_shipped_reference_config():
    """Test that config/gateway.toml, which documents every key, loads unchanged."""
    repo = Path(__file__).resolve().parents[1]

    result = decor("check", "--config", "config/gateway.toml", cwd=repo)

    assert result.code == 0, result


@pytest.mark.parametrize(
    ("args", "described"),
    [
        ([], "DeCOR Gateway: city sensor telemetry from MQTT into InfluxDB."),
        (["run"], "Run the gateway in the foreground"),
        (["check"], "Validate a configuration file"),
        (["simulate"], "Publish readings from simulated river, rain"),
    ],
)
def test_cli_help_describes_each_command(args, described):
    """Test that `--help` of the app and of each subcommand exits 0 and explains it."""
    result = decor(*args, "--help", env={"COLUMNS": "200"})

    assert result.code == 0, result
    assert described in result.stdout
    assert "Usage: decor" in result.stdout
    if not args:
        for command in ("run", "check", "simulate"):
            assert command in result.stdout
    if args in (["run"], ["check"]):
        assert "--config" in result.stdout
