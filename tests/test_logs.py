"""Log lines: text or JSON, the device's id on lines about a device, no secrets.

The end-to-end tests run `decor run` as a process against the real broker and
InfluxDB, at debug level so every library's lines are in play, and read what
it writes to stderr.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import time
from pathlib import Path

import orjson
import pytest

from gateway.config import GatewayConfig
from gateway.logs import (
    JsonFormatter,
    Redactor,
    TextFormatter,
    about_camera,
    about_device,
    secrets_in,
)
from tests.conftest import INFLUX_V1_URL, WAIT_S, Broker
from tests.test_faults import mqtt_client, reading

MQTT_PASSWORD = "mqtt-Pa55word-7f3a"
INFLUX_PASSWORD = "influx-Pa55word-91c2"
INFLUX_TOKEN = "v2-token-5ec2e7-abcdef"
DATABASE_PASSWORD = "pg-Pa55word-0d4e"
DYNSEC_PASSWORD = "dynsec-Pa55word-aa11"
SECRETS = (
    MQTT_PASSWORD,
    INFLUX_PASSWORD,
    INFLUX_TOKEN,
    DATABASE_PASSWORD,
    DYNSEC_PASSWORD,
)


def record(message: str, *args: object, **extra: object) -> logging.LogRecord:
    """Return a warning record of logger gateway.test."""
    made = logging.LogRecord(
        "gateway.test", logging.WARNING, __file__, 1, message, args, None
    )
    made.__dict__.update(extra)
    return made


def settings_with_secrets() -> GatewayConfig:
    """Return a configuration holding every kind of secret it can hold."""
    return GatewayConfig.model_validate(
        {
            "mqtt": {"username": "gw", "password": MQTT_PASSWORD},
            "influx": {"username": "gw", "password": INFLUX_PASSWORD},
            "registry": {
                "database_url": "postgresql+psycopg://decor:"
                f"{DATABASE_PASSWORD}@db.example/registry",
                "dynsec": {"password": DYNSEC_PASSWORD},
            },
            "subscriptions": [{"topic": "a/#"}],
        }
    )


def test_secrets_in_finds_every_secret_the_configuration_holds():
    """Test that passwords, the token and the database URL's password are found."""
    settings = settings_with_secrets().model_copy(
        update={
            "influx": settings_with_secrets().influx.model_copy(
                update={"token": INFLUX_TOKEN}
            )
        }
    )
    found = secrets_in(settings)

    for secret in SECRETS:
        assert secret in found
    assert "gw" not in found  # user names are not secrets


def test_redactor_masks_secrets_urls_headers_and_pairs():
    """Test that known secrets and credentials in URLs, Authorization headers
    and key=value pairs become ***, and the rest of the line stays readable."""
    redact = Redactor([INFLUX_TOKEN, "abc"])

    assert redact(f"sent {INFLUX_TOKEN} to x") == "sent *** to x"
    assert redact("postgresql://decor:hunter22@db/registry") == (
        "postgresql://decor:***@db/registry"
    )
    assert redact("Authorization: Bearer eyJhbGciOi.x-y_z") == (
        "Authorization: Bearer ***"
    )
    assert redact("GET /write?db=decor&u=admin&p=x&password=hunter22&token=t0k") == (
        "GET /write?db=decor&u=admin&p=x&password=***&token=***"
    )
    assert redact('{"password": "hunter22"}') == '{"password": "***"}'
    # Secrets too short to mask safely are left alone.
    assert redact("abc cab") == "abc cab"


def test_json_formatter_writes_one_object_with_ids_and_no_secrets():
    """Test that a JSON line holds time, level, logger, message, the device id
    and the traceback, with secrets masked in the message and the traceback."""
    formatter = JsonFormatter(Redactor([MQTT_PASSWORD]))
    try:
        raise RuntimeError(f"broker said no to {MQTT_PASSWORD}")
    except RuntimeError:
        failing = record("Cannot log in with %s", MQTT_PASSWORD, device_id="rg-01")
        failing.exc_info = sys.exc_info()

    document = orjson.loads(formatter.format(failing))

    assert document["level"] == "warning"
    assert document["logger"] == "gateway.test"
    assert document["message"] == "Cannot log in with ***"
    assert document["device_id"] == "rg-01"
    assert "RuntimeError: broker said no to ***" in document["exception"]
    assert MQTT_PASSWORD not in formatter.format(failing)
    assert document["time"].endswith("+00:00")


def test_text_formatter_appends_ids_from_the_task_context():
    """Test that lines logged inside about_device / about_camera carry the id,
    and lines outside do not."""
    formatter = TextFormatter(Redactor())

    with about_device("aq-07"):
        inside = formatter.format(record("Spike in %s", "pm25"))
    with about_camera("gate-2"):
        camera = formatter.format(record("Stream stalled"))
    outside = formatter.format(record("Spike in %s", "pm25"))

    assert inside.endswith("gateway.test: Spike in pm25 [device_id=aq-07]")
    assert camera.endswith("Stream stalled [camera_id=gate-2]")
    assert outside.endswith("gateway.test: Spike in pm25")


def write_config(path: Path, broker: Broker, topic_prefix: str, database: str) -> Path:
    """Write a gateway configuration holding secrets; return its path."""
    path.write_text(
        f"""
log_level = "debug"

[mqtt]
host = "{broker.host}"
port = {broker.port}
client_id = "decor-{topic_prefix}"
username = "gateway"
password = "{MQTT_PASSWORD}"

[influx]
url = "{INFLUX_V1_URL}"
api = "v1"
database = "{database}"
username = "gateway"
password = "{INFLUX_PASSWORD}"
token = "{INFLUX_TOKEN}"
flush_interval_s = 0.2

[registry]
database_url = "postgresql+psycopg://decor:{DATABASE_PASSWORD}@127.0.0.1/decor"

[registry.dynsec]
password = "{DYNSEC_PASSWORD}"

[dead_letters]
path = "{path.parent / "dead-letters.jsonl"}"

[spool]
path = "{path.parent / "spool"}"

[quality]
enabled = false

[[subscriptions]]
topic_template = "{topic_prefix}/{{agency}}/{{device_type}}/{{device_id}}/telemetry"
measurement = "{{device_type}}"
""",
        encoding="utf-8",
    )
    return path


async def run_and_publish(
    config: Path, broker: Broker, topic_prefix: str, *args: str
) -> str:
    """Run `decor run`, publish one good and one bad reading, stop it; return stderr."""
    process = await asyncio.create_subprocess_exec(
        Path(sys.executable).with_name("decor"),
        "run",
        "--config",
        str(config),
        "--no-summary",
        *args,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "COLUMNS": "200"},
    )
    assert process.stderr is not None
    lines: list[bytes] = []
    try:
        async with asyncio.timeout(WAIT_S):
            while b"Subscribed to" not in (line := await process.stderr.readline()):
                assert line, b"".join(lines).decode()
                lines.append(line)
            lines.append(line)
        topic = f"{topic_prefix}/bpbd/river_gauge/rg-logs-01/telemetry"
        async with mqtt_client(broker.port) as client:
            client.publish(topic, reading(int(time.time() * 1000), level_cm=1.0), qos=1)
            client.publish(topic, b'{"level_cm": "182 cm"', qos=1)
        async with asyncio.timeout(WAIT_S):
            while b"Rejected a message" not in (
                line := await process.stderr.readline()
            ):
                assert line, b"".join(lines).decode()
                lines.append(line)
            lines.append(line)
    finally:
        if process.returncode is None:
            process.terminate()
        rest, _ = await process.communicate()
    return (b"".join(lines) + (rest or b"")).decode()


@pytest.mark.parametrize("log_format", ["json", "text"])
async def test_decor_run_logs_device_ids_and_never_a_secret(
    broker, topic_prefix, influx_v1, tmp_path, log_format
):
    """Test that a debug run of `decor run` logs in the chosen format, names the
    device on the line about its rejected reading, and never shows a secret."""
    config = write_config(
        tmp_path / "gateway.toml", broker, topic_prefix, influx_v1.database
    )

    output = await run_and_publish(
        config, broker, topic_prefix, "--log-format", log_format
    )

    for secret in SECRETS:
        assert secret not in output
    lines = output.splitlines()
    assert len(lines) > 5
    if log_format == "json":
        documents = [orjson.loads(line) for line in lines]
        [rejected] = [d for d in documents if "Rejected a message" in d["message"]]
        assert rejected["device_id"] == "rg-logs-01"
        assert rejected["level"] == "warning"
        assert rejected["logger"] == "gateway.app"
        assert all(set(d) >= {"time", "level", "logger", "message"} for d in documents)
    else:
        [rejected] = [line for line in lines if "Rejected a message" in line]
        assert rejected.endswith("[device_id=rg-logs-01]")
        assert " WARNING gateway.app: " in rejected
