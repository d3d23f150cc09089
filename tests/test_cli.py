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


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        (
            "topic_template",
            'topic = "city/#/telemetry"\ntopic_template',
            ["subscriptions.0.topic", "# may only be the whole last level"],
        ),
        (
            "topic_template",
            'topic = "$share//city/#"\ntopic_template',
            ["subscriptions.0.topic", "needs a group name", "'$share//city/#'"],
        ),
        (
            "topic_template",
            'topic = "sensors/#"\ntopic_template',
            [
                "subscriptions.0.topic",
                "topic 'sensors/#'",
                "'city/{agency}/{device_type}/{device_id}/telemetry'",
                "describe different topics",
            ],
        ),
        (
            "topic_template",
            'exclude_topics = ["city/+x/#"]\ntopic_template',
            ["subscriptions.0.exclude_topics.0", "+ may only be a whole level"],
        ),
        (
            '"http://127.0.0.1:18086"',
            '"127.0.0.1:28086"',
            ["influx.url", "(write 'http://127.0.0.1:28086')", "got '127.0.0.1:28086'"],
        ),
        (
            "[influx]",
            "[influx]\nretry_min_s = 60.0",
            ["influx.retry_min_s", "must not exceed retry_max_s (30.0), got 60.0"],
        ),
        (
            "port = 18830",
            "port = 18830\nreconnect_max_s = inf",
            ["mqtt.reconnect_max_s", "finite number", "got inf"],
        ),
        (
            "[influx]",
            "[influx]\nflush_interval_s = 7200.0",
            ["influx.flush_interval_s", "less than or equal to 3600", "got 7200.0"],
        ),
        (
            "port = 18830",
            "port = 18830\nprotocol = 3.1",
            [
                "mqtt.protocol",
                'must be "5" or "3.1.1", got 3.1',
                'did you mean "3.1.1"?',
            ],
        ),
        (
            "[influx]",
            '[influx]\ndatabase = ""',
            ["influx.database", "must name a database when api is 'auto'"],
        ),
        (
            "[influx]",
            '[influx]\napi = "v2"\nbucket = ""',
            ["influx.bucket", "must name a bucket when api is 'v2'"],
        ),
        (
            'measurement = "{device_type}"',
            'measurement = "{device_type}"\ntags = { time = "now" }',
            ["subscriptions.0.tags", "tag key 'time' is reserved"],
        ),
        (
            "{device_id}",
            "{time}",
            ["subscriptions.0.topic_template", "{time}", "InfluxDB refuses"],
        ),
        (
            'measurement = "{device_type}"',
            'measurement = "{device_type"',
            ["subscriptions.0.measurement", "'{device_type'", "unbalanced { or }"],
        ),
        (
            'measurement = "{device_type}"',
            'measurement = "temp}"',
            ["subscriptions.0.measurement", "'temp}'", "unbalanced { or }"],
        ),
        (
            'measurement = "{device_type}"',
            'measurement = "#{device_type}"',
            ["subscriptions.0.measurement", "starts with #"],
        ),
        (
            'measurement = "{device_type}"',
            'measurement = "{device_type}"\nfield = "{device_id"',
            ["subscriptions.0.field", "unbalanced { or }"],
        ),
    ],
)
def test_cli_check_refuses_a_mistake_that_would_fail_at_run_time(
    config_file, old, new, expected
):
    """Test that `decor check` names a config that would misbehave once running."""
    path = config_file(old, new)

    result = decor("check", "--config", str(path))

    assert_one_error_line(result, str(path), *expected)


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        (
            {"DECOR_MQTT__PORT__X": "1"},
            [
                "environment variable DECOR_MQTT__PORT__X",
                "mqtt.port.x",
                "(set DECOR_MQTT__PORT instead)",
            ],
        ),
        (
            {"DECOR_INFLUX__TIMEOUT_S": "inf"},
            ["(overridden by DECOR_INFLUX__TIMEOUT_S)", "influx.timeout_s", "finite"],
        ),
        (
            {"DECOR_INFLUX__URL": "influx.local:8086"},
            ["(overridden by DECOR_INFLUX__URL)", "write 'http://influx.local:8086'"],
        ),
    ],
)
def test_cli_check_names_the_variable_of_a_mistaken_override(
    config_file, env, expected
):
    """Test that `decor check` blames a bad DECOR_* override on its variable."""
    result = decor("check", "--config", str(config_file()), env=env)

    assert_one_error_line(result, *expected)


def test_cli_check_accepts_protocol_5_and_text_tag_from_environment(config_file):
    """Test that protocol = 5 unquoted and DECOR_..._TAGS__SITE=1 pass the check."""
    path = config_file("port = 18830", "port = 18830\nprotocol = 5")

    result = decor(
        "check", "--config", str(path), env={"DECOR_SUBSCRIPTIONS__0__TAGS__SITE": "1"}
    )

    assert result.code == 0, result
    assert f"{path}: configuration is valid" in result.stderr
