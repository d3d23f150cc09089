"""Configuration: the TOML file, DECOR_* overrides, and one-line errors."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from pydantic import BaseModel

from gateway.app import build_routes
from gateway.config import GatewayConfig, load_config
from gateway.errors import ConfigError

CONFIG_DIR = Path(__file__).resolve().parent.parent / "config"
MINIMAL = """
[[subscriptions]]
topic_template = "city/{agency}/{device_id}/telemetry"
"""
# A key line, commented out or not ("# username = ..."), or a table header.
_KEY_LINE = re.compile(r"^#?\s*([a-z_][a-z0-9_]*)\s*=\s*\S")
_HEADER = re.compile(r"^\[\[?([a-z_.]+)\]\]?\s*$")


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "gateway.toml"
    path.write_text(text, encoding="utf-8")
    return path


def _refusal(path: Path, environ: dict[str, str] | None = None) -> ConfigError:
    with pytest.raises(ConfigError) as caught:
        load_config(path, environ or {})
    assert "\n" not in str(caught.value)
    return caught.value


def _documented_keys(text: str) -> set[str]:
    """Return the key paths a file sets or shows commented out: mqtt.tls.ca_file."""
    keys: set[str] = set()
    table = ""
    for line in text.splitlines():
        header = _HEADER.match(line)
        if header:
            table = header.group(1)
            keys.add(table)
            continue
        key = _KEY_LINE.match(line)
        if key:
            keys.add(f"{table}.{key.group(1)}" if table else key.group(1))
    return keys


def _model_keys(model: type[BaseModel], prefix: str = "") -> set[str]:
    keys: set[str] = set()
    for name, field in model.model_fields.items():
        path = f"{prefix}{name}"
        keys.add(path)
        annotation = field.annotation
        for inner in (annotation, *getattr(annotation, "__args__", ())):
            if isinstance(inner, type) and issubclass(inner, BaseModel):
                keys |= _model_keys(inner, f"{path}.")
    return keys


@pytest.mark.parametrize("name", ["gateway.toml", "demo.toml"])
def test_load_config_accepts_example_file_unchanged(name):
    """Test that the example config files load, validate and compile into routes."""
    config = load_config(CONFIG_DIR / name, environ={})

    routes = build_routes(config, str(CONFIG_DIR / name))
    assert routes[0].topic_filter == "city/+/+/+/telemetry"
    assert routes[0].template is not None
    assert routes[0].template.tag_names == ("agency", "device_type", "device_id")


def test_reference_config_lists_every_key():
    """Test that config/gateway.toml shows every key the models accept."""
    documented = _documented_keys((CONFIG_DIR / "gateway.toml").read_text("utf-8"))

    missing = _model_keys(GatewayConfig) - documented

    assert not missing, f"config/gateway.toml does not show: {sorted(missing)}"


def test_reference_config_sets_the_defaults():
    """Test that the values in config/gateway.toml are the models' defaults."""
    config = load_config(CONFIG_DIR / "gateway.toml", environ={})

    defaults = GatewayConfig.model_validate({"subscriptions": [{"topic": "x"}]})
    assert config.mqtt == defaults.mqtt
    assert config.influx == defaults.influx
    assert config.dead_letters == defaults.dead_letters
    assert config.log_level == defaults.log_level


@pytest.mark.parametrize(
    ("text", "key", "hint"),
    [
        ("log_levle = 'debug'\n" + MINIMAL, "log_levle", "log_level"),
        ("[mqtt]\nhots = 'broker'\n" + MINIMAL, "mqtt.hots", "host"),
        ("[mqtt.tls]\nenabeld = true\n" + MINIMAL, "mqtt.tls.enabeld", "enabled"),
        ("[mqtt.tsl]\nenabled = true\n" + MINIMAL, "mqtt.tsl", "tls"),
        ("[influx]\nbuckett = 'x'\n" + MINIMAL, "influx.buckett", "bucket"),
        (MINIMAL + "topik = 'a/#'\n", "subscriptions.0.topik", "topic"),
        (
            MINIMAL + "[[subscriptions]]\ntopic = 'b/#'\ntimestamp_kye = 't'\n",
            "subscriptions.1.timestamp_kye",
            "timestamp_key",
        ),
    ],
)
def test_load_config_names_misspelled_key_with_hint(tmp_path, text, key, hint):
    """Test that an unknown key is named, with the closest known key as a hint."""
    path = _write(tmp_path, text)

    error = _refusal(path)

    assert error.key == key
    assert error.source == str(path)
    assert f"did you mean {hint!r}?" in str(error)
    assert str(error).startswith(f"{path}: {key}: unknown key")


def test_load_config_gives_no_hint_for_unlike_key(tmp_path):
    """Test that an unknown key with no close match gets no hint."""
    error = _refusal(_write(tmp_path, "[mqtt]\nzzzzqqq = 1\n" + MINIMAL))

    assert error.key == "mqtt.zzzzqqq"
    assert "did you mean" not in str(error)


def test_load_config_names_bad_value_and_key(tmp_path):
    """Test that an invalid value names the key, the value and what was expected."""
    error = _refusal(_write(tmp_path, "[mqtt]\nport = 0\n" + MINIMAL))

    assert error.key == "mqtt.port"
    assert "got 0" in str(error)
    assert "greater than or equal to 1" in str(error)


def test_load_config_hides_invalid_secret(tmp_path):
    """Test that an invalid password is refused without showing its value."""
    error = _refusal(_write(tmp_path, "[mqtt]\npassword = 31415926\n" + MINIMAL))

    assert error.key == "mqtt.password"
    assert "31415926" not in str(error)


def test_load_config_overrides_host_and_port_from_environment(tmp_path):
    """Test that DECOR_MQTT__HOST and DECOR_MQTT__PORT set [mqtt] host and port."""
    environ = {"DECOR_MQTT__HOST": "broker.local", "DECOR_MQTT__PORT": "1884"}

    config = load_config(_write(tmp_path, MINIMAL), environ)

    assert config.mqtt.host == "broker.local"
    assert config.mqtt.port == 1884
    assert type(config.mqtt.port) is int


def test_load_config_overrides_subscription_by_index(tmp_path):
    """Test that DECOR_SUBSCRIPTIONS__0__QOS=0 sets the first subscription's qos."""
    text = MINIMAL + "[[subscriptions]]\ntopic = 'b/#'\nqos = 2\n"

    config = load_config(_write(tmp_path, text), {"DECOR_SUBSCRIPTIONS__0__QOS": "0"})

    assert [sub.qos for sub in config.subscriptions] == [0, 2]


def test_load_config_overrides_whole_list_from_environment(tmp_path):
    """Test that a TOML array in a variable replaces the list it names."""
    environ = {"DECOR_SUBSCRIPTIONS": '[{topic = "a/#"}, {topic = "b/#", qos = 2}]'}

    config = load_config(_write(tmp_path, MINIMAL), environ)

    subscriptions = [(sub.topic, sub.qos) for sub in config.subscriptions]
    assert subscriptions == [("a/#", 1), ("b/#", 2)]


def test_load_config_overrides_table_from_environment(tmp_path):
    """Test that a TOML inline table in a variable sets a table of tags."""
    environ = {"DECOR_SUBSCRIPTIONS__0__TAGS": '{site = "depok", zone = "WIB"}'}

    config = load_config(_write(tmp_path, MINIMAL), environ)

    assert config.subscriptions[0].tags == {"site": "depok", "zone": "WIB"}


@pytest.mark.parametrize(
    ("name", "text", "expected"),
    [
        ("DECOR_MQTT__HOST", "broker.city-depok.go.id", "broker.city-depok.go.id"),
        ("DECOR_MQTT__HOST", "10.0.0.5", "10.0.0.5"),
        ("DECOR_MQTT__HOST", '"quoted.example"', "quoted.example"),
        ("DECOR_MQTT__PASSWORD", "12345678", "12345678"),
        ("DECOR_MQTT__PASSWORD", "s3cret with spaces", "s3cret with spaces"),
        ("DECOR_MQTT__CLIENT_ID", "2024", "2024"),
        ("DECOR_MQTT__PROTOCOL", "5", "5"),
        ("DECOR_MQTT__PROTOCOL", "3.1.1", "3.1.1"),
        ("DECOR_INFLUX__TOKEN", "1e3", "1e3"),
        ("DECOR_INFLUX__TOKEN", "[1, 2]", "[1, 2]"),
        ("DECOR_INFLUX__DATABASE", "2024-06-01", "2024-06-01"),
    ],
)
def test_load_config_keeps_text_values_from_environment(tmp_path, name, text, expected):
    """Test that a value for a text key is kept as written, even if it looks numeric."""
    config = load_config(_write(tmp_path, MINIMAL), {name: text})

    section, key = name.removeprefix("DECOR_").lower().split("__")
    assert getattr(getattr(config, section), key) == expected


def test_load_config_reads_booleans_and_floats_from_environment(tmp_path):
    """Test that true and 2.5 become a bool and a float for keys of those types."""
    environ = {"DECOR_MQTT__TLS__ENABLED": "true", "DECOR_INFLUX__TIMEOUT_S": "2.5"}

    config = load_config(_write(tmp_path, MINIMAL), environ)

    assert config.mqtt.tls.enabled is True
    assert config.influx.timeout_s == 2.5


def test_load_config_ignores_variables_without_prefix(tmp_path):
    """Test that variables not starting with DECOR_ change nothing."""
    environ = {"MQTT__HOST": "elsewhere", "DECOR": "x", "decor_mqtt__host": "x"}

    config = load_config(_write(tmp_path, MINIMAL), environ)

    assert config.mqtt.host == "127.0.0.1"


@pytest.mark.parametrize(
    ("environ", "name", "key"),
    [
        ({"DECOR_MQTT__PORT": "0"}, "DECOR_MQTT__PORT", "mqtt.port"),
        ({"DECOR_MQTT__PORT": "many"}, "DECOR_MQTT__PORT", "mqtt.port"),
        (
            {"DECOR_SUBSCRIPTIONS__0__QOS": "3"},
            "DECOR_SUBSCRIPTIONS__0__QOS",
            "subscriptions.0.qos",
        ),
        ({"DECOR_MQTT__PROTOCOL": "4"}, "DECOR_MQTT__PROTOCOL", "mqtt.protocol"),
        (
            {"DECOR_SUBSCRIPTIONS": "[{qos = 1}]"},
            "DECOR_SUBSCRIPTIONS",
            "subscriptions.0",
        ),
        ({"DECOR_MQTT__HOTS": "broker"}, "DECOR_MQTT__HOTS", "mqtt.hots"),
        ({"DECOR_MQTT": "broker"}, "DECOR_MQTT", "mqtt"),
    ],
)
def test_load_config_names_variable_of_invalid_override(tmp_path, environ, name, key):
    """Test that an invalid value from the environment names its variable and key."""
    error = _refusal(_write(tmp_path, MINIMAL), environ)

    assert error.key == key
    assert f"(overridden by {name})" in error.source


def test_load_config_hints_at_misspelled_variable(tmp_path):
    """Test that a misspelled variable gets a did-you-mean hint like a file key."""
    error = _refusal(_write(tmp_path, MINIMAL), {"DECOR_MQTT__TLS__ENABELD": "true"})

    assert "did you mean 'enabled'?" in str(error)


def test_load_config_refuses_override_inside_a_list_past_its_end(tmp_path):
    """Test that an index past the end of a list is refused, naming the variable."""
    error = _refusal(_write(tmp_path, MINIMAL), {"DECOR_SUBSCRIPTIONS__3__QOS": "0"})

    assert error.key == "subscriptions.3.qos"
    assert error.source == "environment variable DECOR_SUBSCRIPTIONS__3__QOS"


def test_load_config_reports_missing_file(tmp_path):
    """Test that a missing file is a ConfigError naming the file."""
    path = tmp_path / "absent.toml"

    error = _refusal(path)

    assert error.source == str(path)
    assert error.reason == "file not found"


def test_load_config_reports_invalid_toml(tmp_path):
    """Test that a file that is not TOML is a ConfigError naming the file and line."""
    path = _write(tmp_path, "[mqtt]\nhost = broker.local\n")

    error = _refusal(path)

    assert error.source == str(path)
    assert error.reason.startswith("not valid TOML")
    assert "line 2" in error.reason


def test_load_config_reports_a_file_that_is_not_utf8(tmp_path):
    """Test that a file in another encoding is a ConfigError, not a traceback."""
    path = tmp_path / "latin1.toml"
    path.write_bytes("[mqtt]\nhost = 'kantor-\xe9'\n".encode("latin-1"))

    error = _refusal(path)

    assert error.source == str(path)
    assert error.reason.startswith("not UTF-8 text")


def test_load_config_requires_subscriptions(tmp_path):
    """Test that a file without [[subscriptions]] is refused, naming the key."""
    error = _refusal(_write(tmp_path, "[mqtt]\nhost = 'broker'\n"))

    assert error.key == "subscriptions"
    assert error.reason == "required key is missing"


def test_load_config_refuses_empty_subscription_list(tmp_path):
    """Test that subscriptions = [] is refused, naming the key."""
    error = _refusal(_write(tmp_path, "subscriptions = []\n"))

    assert error.key == "subscriptions"
    assert "at least 1" in error.reason


def test_load_config_requires_topic_or_template(tmp_path):
    """Test that a subscription with neither topic nor template is named."""
    error = _refusal(_write(tmp_path, "[[subscriptions]]\nqos = 1\n"))

    assert error.key == "subscriptions.0"
    assert "needs a topic or a topic_template" in error.reason
