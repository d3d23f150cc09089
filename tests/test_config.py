"""Configuration: the TOML file, DECOR_* overrides, and one-line errors."""

from __future__ import annotations

import json
import re
import socket
import tomllib
from pathlib import Path

import pytest
from pydantic import BaseModel

from gateway.app import build_routes
from gateway.config import GatewayConfig, MqttConfig, load_config
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


TEMPLATE = "city/{agency}/{device_type}/{device_id}/telemetry"


def _subscription(**keys: object) -> str:
    """Return a [[subscriptions]] table setting each key to its TOML value."""
    lines = [f"{key} = {_toml(value)}" for key, value in keys.items()]
    return "[[subscriptions]]\n" + "\n".join(lines) + "\n"


def _toml(value: object) -> str:
    if isinstance(value, list):
        return "[" + ", ".join(_toml(item) for item in value) + "]"
    if isinstance(value, dict):
        items = (f"{json.dumps(k)} = {_toml(v)}" for k, v in value.items())
        return "{" + ", ".join(items) + "}"
    # A JSON string is a TOML basic string, escapes (\u0000) included.
    return json.dumps(value)


@pytest.mark.parametrize(
    ("topic", "rule"),
    [
        ("city/#/telemetry", "# may only be the whole last level"),
        ("city/temp#", "# may only be the whole last level"),
        ("city/##", "# may only be the whole last level"),
        ("city/+x/telemetry", "+ may only be a whole level"),
        ("city/x+", "+ may only be a whole level"),
        ("city/\u0000/telemetry", "NUL"),
        ("a" * 65_536, "longer than 65535 bytes"),
        ("$share//city/#", "needs a group name"),
        ("$share/gate+way/city/#", "needs a group name"),
        ("$share/gate#/city", "needs a group name"),
        ("$share/gateway", "needs a filter after the group"),
        ("$share/gateway/", "needs a filter after the group"),
        ("$share/gateway/city/#/x", "# may only be the whole last level"),
    ],
)
def test_load_config_refuses_invalid_topic_filter(tmp_path, topic, rule):
    """Test that a topic the broker would refuse to subscribe to is named."""
    error = _refusal(_write(tmp_path, _subscription(topic=topic)))

    assert error.key == "subscriptions.0.topic"
    assert error.reason.startswith("not a valid MQTT topic filter: ")
    assert rule in error.reason
    assert error.reason.endswith(f"got {topic!r}")


@pytest.mark.parametrize(
    "topic",
    [
        "#",
        "+",
        "city/#",
        "city/+/+/telemetry",
        "city//telemetry",
        "/city",
        "$SYS/broker/#",
        "$share/decor/city/#",
        "$share/decor/+",
    ],
)
def test_load_config_accepts_valid_topic_filter(tmp_path, topic):
    """Test that every form MQTT allows in a topic filter is accepted as written."""
    config = load_config(_write(tmp_path, _subscription(topic=topic)), {})

    assert config.subscriptions[0].topic == topic
    assert build_routes(config)[0].topic_filter == topic


@pytest.mark.parametrize(
    ("excluded", "rule"),
    [
        ("", "it is empty"),
        ("zigbee2mqtt/bridge/#/x", "# may only be the whole last level"),
        ("zigbee2mqtt/+bridge", "+ may only be a whole level"),
        ("$share/decor/zigbee2mqtt/bridge/#", "$share/ is for subscribing"),
    ],
)
def test_load_config_refuses_invalid_exclude_topic(tmp_path, excluded, rule):
    """Test that a bad exclude_topics entry is named by its position."""
    text = _subscription(topic="zigbee2mqtt/#", exclude_topics=["x/#", excluded])

    error = _refusal(_write(tmp_path, text))

    assert error.key == "subscriptions.0.exclude_topics.1"
    assert rule in error.reason
    assert error.reason.endswith(f"got {excluded!r}")


@pytest.mark.parametrize(
    ("topic", "template"),
    [
        ("sensors/+/+", TEMPLATE),
        ("city/+/+/telemetry", TEMPLATE),
        ("city/+/+/+/+/telemetry", TEMPLATE),
        # Each reaches topics the other does not: city/a/x/b and city/a/b.
        ("city/+/x/#", "city/{agency}/{device_id}"),
        # A leading wildcard does not reach topics starting with $.
        ("#", "$SYS/broker/{name}"),
        ("$share/decor/city/+", TEMPLATE),
    ],
)
def test_load_config_refuses_topic_outside_its_template(tmp_path, topic, template):
    """Test that a topic and a template that describe other topics are refused."""
    text = _subscription(topic=topic, topic_template=template)

    error = _refusal(_write(tmp_path, text))

    assert error.key == "subscriptions.0.topic"
    assert f"topic {topic!r}" in error.reason
    assert f"topic_template {template!r}" in error.reason
    assert "describe different topics" in error.reason


@pytest.mark.parametrize(
    "topic",
    [
        "city/+/+/+/telemetry",
        # Wider: the extra topics are rejected or left out by exclude_topics.
        "city/#",
        "#",
        # Narrower: every message it delivers fits the template.
        "city/bpbd/+/+/telemetry",
        "city/bpbd/river_gauge/rg-01/telemetry",
        "$share/decor/city/+/+/+/telemetry",
    ],
)
def test_load_config_accepts_topic_covering_or_narrowing_its_template(tmp_path, topic):
    """Test that a topic that covers or narrows its template's filter is kept."""
    text = _subscription(topic=topic, topic_template=TEMPLATE)

    config = load_config(_write(tmp_path, text), {})

    route = build_routes(config)[0]
    assert route.topic_filter == topic
    assert route.template is not None
    assert route.template.tag_names == ("agency", "device_type", "device_id")


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("city/{agency/{device_id}", "must be literal text"),
        ("city/#/{device_id}", "must be literal text"),
        ("city/{device_id}/{device_id}", "names tag 'device_id' twice"),
        ("city/{agency}/{time}", "{time}"),
        ("city/\u0000/{device_id}", "NUL"),
    ],
)
def test_load_config_refuses_unusable_topic_template(tmp_path, template, expected):
    """Test that a template that gives no valid filter or tag is refused at load."""
    error = _refusal(_write(tmp_path, _subscription(topic_template=template)))

    assert error.key == "subscriptions.0.topic_template"
    assert expected in error.reason
    assert repr(template) in error.reason


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("127.0.0.1:28086", "(write 'http://127.0.0.1:28086')"),
        ("localhost:8086", "(write 'http://localhost:8086')"),
        ("not a url", "must be an http:// or https:// URL with a host"),
        ("ftp://influx:8086", "must be an http:// or https:// URL with a host"),
        ("http://", "must be an http:// or https:// URL with a host"),
        ("http://[::1", "must be an http:// or https:// URL with a host"),
        ("http://influx:0", "port must be 1-65535"),
        ("http://influx:99999", "port must be 1-65535"),
        ("http://influx:8086/?db=decor", "must not have a ?query or #fragment"),
    ],
)
def test_load_config_refuses_influx_url_without_http_and_host(tmp_path, url, expected):
    """Test that an InfluxDB URL the client cannot use is named, with a fix."""
    error = _refusal(_write(tmp_path, f"[influx]\nurl = {url!r}\n" + MINIMAL))

    assert error.key == "influx.url"
    assert expected in error.reason
    assert error.reason.endswith(f"got {url!r}")


def test_load_config_refuses_credentials_in_influx_url_without_showing_them(tmp_path):
    """Test that a URL holding a password is refused without printing it."""
    url = "http://decor:s3cret-pw@influx:8086"

    error = _refusal(_write(tmp_path, f"[influx]\nurl = {url!r}\n" + MINIMAL))

    assert error.key == "influx.url"
    assert "must not hold credentials" in error.reason
    assert "s3cret-pw" not in str(error)


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8086",
        "https://influx.depok.go.id:8086",
        "http://[::1]:8086",
        "http://proxy.local/influx/",
        "https://us-east-1-1.aws.cloud2.influxdata.com",
    ],
)
def test_load_config_accepts_http_and_https_urls(tmp_path, url):
    """Test that http(s) URLs with a host, a port or a path prefix are kept."""
    config = load_config(_write(tmp_path, f"[influx]\nurl = {url!r}\n" + MINIMAL), {})

    assert config.influx.url == url


@pytest.mark.parametrize(
    ("table", "low", "high"),
    [
        ("influx", "retry_min_s", "retry_max_s"),
        ("mqtt", "reconnect_min_s", "reconnect_max_s"),
    ],
)
def test_load_config_refuses_first_delay_longer_than_longest(
    tmp_path, table, low, high
):
    """Test that a backoff whose first delay exceeds its longest is refused."""
    text = f"[{table}]\n{low} = 60.0\n{high} = 30.0\n" + MINIMAL

    error = _refusal(_write(tmp_path, text))

    assert error.key == f"{table}.{low}"
    assert error.reason == f"must not exceed {high} (30.0), got 60.0"


def test_load_config_accepts_equal_first_and_longest_delay(tmp_path):
    """Test that a fixed backoff (first delay = longest delay) is accepted."""
    text = "[influx]\nretry_min_s = 5.0\nretry_max_s = 5.0\n" + MINIMAL

    config = load_config(_write(tmp_path, text), {})

    assert config.influx.retry_min_s == config.influx.retry_max_s == 5.0


@pytest.mark.parametrize(
    ("table", "key", "value"),
    [
        ("mqtt", "reconnect_max_s", "inf"),
        ("influx", "flush_interval_s", "nan"),
        ("influx", "timeout_s", "inf"),
        ("influx", "retry_min_s", "-inf"),
        ("influx", "retry_max_s", "+inf"),
        ("decoding", "max_past_s", "inf"),
        ("decoding", "max_future_s", "nan"),
    ],
)
def test_load_config_refuses_infinite_or_nan_seconds(tmp_path, table, key, value):
    """Test that TOML's inf and nan are refused for every number of seconds."""
    error = _refusal(_write(tmp_path, f"[{table}]\n{key} = {value}\n" + MINIMAL))

    assert error.key == f"{table}.{key}"
    assert "finite number" in error.reason


@pytest.mark.parametrize(
    ("table", "key", "value"),
    [
        ("influx", "flush_interval_s", "3601.0"),
        ("influx", "timeout_s", "3600.5"),
        ("influx", "retry_max_s", "7200.0"),
        ("mqtt", "reconnect_max_s", "86400.0"),
    ],
)
def test_load_config_refuses_delay_longer_than_an_hour(tmp_path, table, key, value):
    """Test that a delay, interval or timeout beyond an hour is refused."""
    error = _refusal(_write(tmp_path, f"[{table}]\n{key} = {value}\n" + MINIMAL))

    assert error.key == f"{table}.{key}"
    assert "less than or equal to 3600" in error.reason
    assert error.reason.endswith(f"got {float(value)!r}")


def test_load_config_accepts_delays_of_an_hour(tmp_path):
    """Test that an hour itself is accepted for the bounded delays."""
    keys = ("flush_interval_s", "timeout_s", "retry_min_s", "retry_max_s")
    text = "[influx]\n" + "".join(f"{key} = 3600.0\n" for key in keys) + MINIMAL

    config = load_config(_write(tmp_path, text), {})

    assert [getattr(config.influx, key) for key in keys] == [3600.0] * 4


def test_load_config_names_variable_of_an_infinite_override(tmp_path):
    """Test that DECOR_INFLUX__TIMEOUT_S=inf is refused, naming the variable."""
    error = _refusal(_write(tmp_path, MINIMAL), {"DECOR_INFLUX__TIMEOUT_S": "inf"})

    assert error.key == "influx.timeout_s"
    assert error.source.endswith("(overridden by DECOR_INFLUX__TIMEOUT_S)")
    assert "finite number" in error.reason


def test_load_config_bounds_session_expiry_by_mqtt(tmp_path):
    """Test that a session expiry past MQTT 5's four bytes is refused."""
    text = "[mqtt]\nsession_expiry_s = 4294967296\n" + MINIMAL

    error = _refusal(_write(tmp_path, text))

    assert error.key == "mqtt.session_expiry_s"
    assert "less than or equal to 4294967295" in error.reason


def test_load_config_reads_protocol_5_written_as_a_number(tmp_path):
    """Test that protocol = 5, a TOML integer, is taken as the version "5"."""
    config = load_config(_write(tmp_path, "[mqtt]\nprotocol = 5\n" + MINIMAL), {})

    assert config.mqtt.protocol == "5"


@pytest.mark.parametrize(
    ("value", "hint"),
    [
        ("3.1", ' (did you mean "3.1.1"?)'),
        ("'311'", ' (did you mean "3.1.1"?)'),
        ("3", ' (did you mean "3.1.1"?)'),
        ("'4'", ' (did you mean "3.1.1"?)'),
        ("'MQTTv3.1.1'", ' (did you mean "3.1.1"?)'),
        ("5.0", ' (did you mean "5"?)'),
        ("'v5'", ' (did you mean "5"?)'),
        ("'latest'", ""),
        ("true", ""),
    ],
)
def test_load_config_refuses_other_protocol_with_hint(tmp_path, value, hint):
    """Test that a protocol other than "5" or "3.1.1" is named, with a hint."""
    error = _refusal(_write(tmp_path, f"[mqtt]\nprotocol = {value}\n" + MINIMAL))

    written = tomllib.loads(f"v = {value}")["v"]
    assert error.key == "mqtt.protocol"
    assert error.reason == f'must be "5" or "3.1.1", got {written!r}{hint}'


@pytest.mark.parametrize(
    ("influx", "key"),
    [
        ({"api": "v1", "database": ""}, "influx.database"),
        ({"api": "auto", "database": ""}, "influx.database"),
        ({"api": "v2", "bucket": ""}, "influx.bucket"),
    ],
)
def test_load_config_requires_database_or_bucket_for_its_api(tmp_path, influx, key):
    """Test that an empty database (v1, auto) or bucket (v2) is refused."""
    table = "".join(f"{k} = {_toml(v)}\n" for k, v in influx.items())

    error = _refusal(_write(tmp_path, "[influx]\n" + table + MINIMAL))

    assert error.key == key
    assert f"when api is {influx['api']!r}, got ''" in error.reason


@pytest.mark.parametrize(
    "influx", [{"api": "v2", "database": ""}, {"api": "v1", "bucket": ""}]
)
def test_load_config_ignores_empty_name_the_api_does_not_use(tmp_path, influx):
    """Test that v2 needs no database and v1 no bucket."""
    table = "".join(f"{k} = {_toml(v)}\n" for k, v in influx.items())

    config = load_config(_write(tmp_path, "[influx]\n" + table + MINIMAL), {})

    assert config.influx.api == influx["api"]


@pytest.mark.parametrize(
    ("keys", "key", "expected"),
    [
        ({"tags": {"time": "x"}}, "tags", "tag key 'time' is reserved"),
        ({"tags": {"": "x"}}, "tags", "tag key '' is empty"),
        ({"payload_tags": {"time": "ts"}}, "payload_tags", "'time' is reserved"),
        ({"measurement": "#{device_type}"}, "measurement", "starts with #"),
        ({"measurement": "\t#temp"}, "measurement", "starts with #"),
        ({"measurement": ""}, "measurement", "at least 1 character"),
        ({"measurement": "temp}"}, "measurement", "unbalanced { or }"),
        ({"measurement": "{device_type"}, "measurement", "unbalanced { or }"),
        ({"field": "x}"}, "field", "unbalanced { or }"),
        ({"field": "time"}, "field", "reserved by InfluxDB"),
        ({"measurement": "{agency!r}"}, "measurement", "got {agency!r}"),
        ({"measurement": "{agency:>8}"}, "measurement", "got {agency:>8}"),
        ({"measurement": "{agency.name}"}, "measurement", "got {agency.name}"),
        ({"measurement": "{0}"}, "measurement", "got {0}"),
        ({"field": "{}"}, "field", "plain {name} placeholders, got {}"),
        ({"measurement": "{site}"}, "measurement", "does not capture"),
    ],
)
def test_load_config_refuses_names_influxdb_refuses(tmp_path, keys, key, expected):
    """Test that a name no point could be stored under is refused at start-up."""
    text = _subscription(topic_template="city/{agency}/{device_type}", **keys)

    error = _refusal(_write(tmp_path, text))

    assert error.key == f"subscriptions.0.{key}"
    assert expected in error.reason


def test_load_config_accepts_literal_braces_in_a_name(tmp_path):
    """Test that {{ and }} write literal braces in a measurement name."""
    text = _subscription(topic_template="city/{device_type}", measurement="{{x}}")

    config = load_config(_write(tmp_path, text), {})

    assert build_routes(config)[0].measurement == "{{x}}"


def test_load_config_names_unknown_zone_without_pydantic_words(tmp_path):
    """Test that a check's own message is the reason, without "Value error"."""
    error = _refusal(_write(tmp_path, MINIMAL + "timezone = 'Asia/Depok'\n"))

    assert error.key == "subscriptions.0.timezone"
    assert error.reason == (
        "unknown time zone 'Asia/Depok' (use an IANA name such as Asia/Jakarta)"
    )


@pytest.mark.parametrize(
    ("name", "text", "table", "expected"),
    [
        ("DECOR_SUBSCRIPTIONS__0__TAGS__SITE", "1", "tags", {"site": "1"}),
        ("DECOR_SUBSCRIPTIONS__0__TAGS__ON", "true", "tags", {"on": "true"}),
        (
            "DECOR_SUBSCRIPTIONS__0__TAGS__DAY",
            "2024-06-01",
            "tags",
            {"day": "2024-06-01"},
        ),
        (
            "DECOR_SUBSCRIPTIONS__0__PAYLOAD_TAGS__SERIAL",
            "12345678901234567890",
            "payload_tags",
            {"serial": "12345678901234567890"},
        ),
        (
            "DECOR_SUBSCRIPTIONS__0__FIELDS__PULSES",
            "integer",
            "fields",
            {"pulses": "integer"},
        ),
    ],
)
def test_load_config_keeps_text_of_table_values_from_environment(
    tmp_path, name, text, table, expected
):
    """Test that a value for a key inside a table of text is kept as written."""
    config = load_config(_write(tmp_path, MINIMAL), {name: text})

    assert getattr(config.subscriptions[0], table) == expected


def test_load_config_keeps_text_of_list_element_from_environment(tmp_path):
    """Test that a list of text keeps an overridden element as written."""
    text = MINIMAL + "exclude_topics = ['city/old/#']\n"

    config = load_config(
        _write(tmp_path, text), {"DECOR_SUBSCRIPTIONS__0__EXCLUDE_TOPICS__0": "2024"}
    )

    assert config.subscriptions[0].exclude_topics == ["2024"]


@pytest.mark.parametrize("file_sets_port", [True, False])
@pytest.mark.parametrize(
    ("name", "through", "replacement"),
    [
        ("DECOR_MQTT__PORT__X", "mqtt.port", "DECOR_MQTT__PORT"),
        (
            "DECOR_MQTT__TLS__ENABLED__ON",
            "mqtt.tls.enabled",
            "DECOR_MQTT__TLS__ENABLED",
        ),
        (
            "DECOR_SUBSCRIPTIONS__0__QOS__LEVEL",
            "subscriptions.0.qos",
            "DECOR_SUBSCRIPTIONS__0__QOS",
        ),
    ],
)
def test_load_config_names_variable_reaching_through_a_value(
    tmp_path, file_sets_port, name, through, replacement
):
    """Test that a variable going on past a key holding one value is named."""
    text = ("[mqtt]\nport = 1883\n" if file_sets_port else "") + MINIMAL

    error = _refusal(_write(tmp_path, text), {name: "1"})

    assert error.source == f"environment variable {name}"
    assert error.key == name.removeprefix("DECOR_").lower().replace("__", ".")
    assert error.reason.startswith(f"{through} holds one value, not a table")
    assert f"(set {replacement} instead)" in error.reason


def test_load_config_names_variable_inside_an_unknown_key(tmp_path):
    """Test that DECOR_MQTT__HOTS__X blames the variable and hints at host."""
    error = _refusal(_write(tmp_path, MINIMAL), {"DECOR_MQTT__HOTS__X": "1"})

    assert error.key == "mqtt.hots"
    assert error.source.endswith("(overridden by DECOR_MQTT__HOTS__X)")
    assert "did you mean 'host'?" in error.reason


def test_mqtt_config_defaults_keep_the_session(monkeypatch):
    """Test that by default the broker keeps our session and readings an hour."""
    monkeypatch.setattr(socket, "gethostname", lambda: "gw-01")

    mqtt = MqttConfig()

    assert mqtt.clean_start is False
    assert mqtt.session_expiry_s == 3600
    assert mqtt.client_id == "decor-gateway-gw-01"


@pytest.mark.parametrize(
    ("hostname", "client_id"),
    [
        ("ops-1.depok.go.id", "decor-gateway-ops-1-depok-go-id"),
        ("Kantor Depok_2", "decor-gateway-Kantor-Depok-2"),
        ("gerbang-ü", "decor-gateway-gerbang"),
        ("", "decor-gateway"),
        ("...", "decor-gateway"),
    ],
)
def test_mqtt_config_derives_default_client_id_from_host_name(
    monkeypatch, hostname, client_id
):
    """Test that the default client id is decor-gateway-<host name>, made safe."""
    monkeypatch.setattr(socket, "gethostname", lambda: hostname)

    assert MqttConfig().client_id == client_id


def test_mqtt_config_keeps_long_host_names_apart_within_64_characters(monkeypatch):
    """Test that two long host names sharing a prefix give two valid client ids."""
    ids = []
    for host in ("rack-" * 20 + "a", "rack-" * 20 + "b"):
        monkeypatch.setattr(socket, "gethostname", lambda host=host: host)
        ids.append(MqttConfig().client_id)

    assert ids[0] != ids[1]
    assert all(len(client_id) == 64 for client_id in ids)
    assert all(client_id.startswith("decor-gateway-rack-rack-") for client_id in ids)
    assert [MqttConfig.model_validate({"client_id": i}).client_id for i in ids] == ids
