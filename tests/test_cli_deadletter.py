"""`decor deadletter list|show|replay` as a technician runs it: a real subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from gateway.config import load_config
from gateway.deadletters import DeadLetterStore
from gateway.sources import MqttMessage
from tests.conftest import INFLUX_V1_URL, MQTT_PORT, wait_until

DECOR = Path(sys.executable).with_name("decor")
TIMEOUT_S = 60
MS = 1_000_000


@dataclass(frozen=True)
class Result:
    """What one run of `decor` printed and returned."""

    code: int
    stdout: str
    stderr: str


def decor(*args: str) -> Result:
    """Run the installed `decor` script, wide enough that table rows stay whole."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith("DECOR_")}
    done = subprocess.run(
        [str(DECOR), *args],
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
        env=environ | {"COLUMNS": "250"},
    )
    return Result(done.returncode, done.stdout, done.stderr)


def write_config(
    path: Path, topic_prefix: str, database: str, fields: dict[str, str]
) -> Path:
    """Write a gateway config for this test's topics, database and dead letters."""
    declared = ", ".join(f'{name} = "{kind}"' for name, kind in fields.items())
    path.write_text(
        f"""\
[mqtt]
port = {MQTT_PORT}
client_id = "decor-{topic_prefix}"

[influx]
url = "{INFLUX_V1_URL}"
api = "v1"
database = "{database}"
flush_interval_s = 0.2

[dead_letters]
path = "{path.parent / "dead" / "dead-letters.jsonl"}"
topic_prefix = ""

[[subscriptions]]
topic_template = "{topic_prefix}/{{agency}}/{{device_type}}/{{device_id}}/telemetry"
measurement = "{{device_type}}"
fields = {{ {declared} }}
"""
    )
    return path


def listed(config: Path, *args: str) -> list[dict[str, Any]]:
    """Return `decor deadletter list --json` as entries."""
    result = decor("deadletter", "list", "--config", str(config), "--json", *args)
    assert result.code == 0, result
    entries: list[dict[str, Any]] = orjson.loads(result.stdout)
    return entries


async def test_cli_deadletter_replays_fixed_messages_once_at_their_reading_times(
    tmp_path, topic_prefix, running_gateway, publisher, influx_v1
):
    """Test that list shows refused readings and replay stores them once, exactly."""
    config = write_config(
        tmp_path / "gateway.toml",
        topic_prefix,
        influx_v1.database,
        {"level": "integer"},
    )
    topic = f"{topic_prefix}/bpbd/river_gauge/rg-01/telemetry"
    base_ms = int(time.time() * 1000) - 600_000
    async with running_gateway(load_config(config, environ={})) as gateway:
        publisher.publish(topic, orjson.dumps({"ts": base_ms, "level": 12.5}))
        publisher.publish(topic, orjson.dumps({"ts": base_ms + 1000, "level": 7.25}))
        # No time in the payload: stored at the time it was received.
        publisher.publish(topic, orjson.dumps({"level": 3.5}))
        assert await wait_until(lambda: gateway.stats.messages_rejected.total() == 3)

    table = decor("deadletter", "list", "--config", str(config))
    entries = listed(config)
    assert table.code == 0, table
    assert [e["reason"] for e in entries] == ["no_fields"] * 3
    assert {e["state"] for e in entries} == {"pending"}
    for entry in entries:
        assert entry["id"] in table.stdout
    assert "is not an inte" in table.stdout and "json" in table.stdout
    assert all("not_an_integer" in e["detail"] for e in entries)
    assert "3 dead letters, 0 replayed. By reason: no_fields 3" in table.stdout
    received_ns = entries[2]["received_ns"]

    write_config(config, topic_prefix, influx_v1.database, {"level": "float"})
    replay_started_ns = time.time_ns()
    replay = decor("deadletter", "replay", "--config", str(config), "--all")
    again = decor("deadletter", "replay", "--config", str(config), "--all")

    assert replay.code == 0, replay
    for entry in entries:
        assert f"{entry['id']}  stored 1 point" in replay.stdout
    assert "3 of 3 entries stored (3 points)" in replay.stdout
    assert (again.code, again.stdout.strip()) == (0, "Nothing to replay")
    rows = influx_v1.rows("river_gauge")
    assert [(row["time"], row["level"]) for row in rows] == [
        (base_ms * MS, 12.5),
        ((base_ms + 1000) * MS, 7.25),
        (received_ns, 3.5),
    ]
    assert received_ns < replay_started_ns
    assert {e["state"] for e in listed(config)} == {"replayed"}


async def test_cli_deadletter_replay_keeps_what_still_fails_and_says_why(
    tmp_path, topic_prefix, running_gateway, publisher, influx_v1
):
    """Test that a payload that is not JSON stays rejected, with exit code 1."""
    config = write_config(
        tmp_path / "gateway.toml", topic_prefix, influx_v1.database, {}
    )
    topic = f"{topic_prefix}/bpbd/river_gauge/rg-02/telemetry"
    async with running_gateway(load_config(config, environ={})) as gateway:
        publisher.publish(topic, b"level=12.5")
        assert await wait_until(lambda: gateway.stats.messages_rejected.total() == 1)
    [entry] = listed(config)

    dry = decor("deadletter", "replay", "--config", str(config), "--all", "--dry-run")
    replay = decor("deadletter", "replay", "--config", str(config), "--all")
    by_id = decor(
        "deadletter", "replay", "--config", str(config), "--id", entry["id"][:10]
    )

    assert entry["reason"] == "invalid_json"
    for result in (dry, replay, by_id):
        assert result.code == 1, result
        assert f"{entry['id']}  still rejected (invalid_json: " in result.stdout
    assert influx_v1.rows("river_gauge") == []
    assert [e["state"] for e in listed(config)] == ["pending"]


def test_cli_deadletter_show_prints_text_as_text_and_bytes_as_a_hex_dump(tmp_path):
    """Test that show prints UTF-8 text as is and anything else as a hex dump."""
    config = write_config(tmp_path / "gateway.toml", "t", "db", {})
    store = DeadLetterStore(load_config(config, environ={}).dead_letters.path, 10**6)
    facts = {"qos": 1, "retain": False, "received_ns": 1_717_000_000_000_000_000}
    text_id = store.add_message(
        MqttMessage("t/a/b/c/telemetry", b'{"level": "high"}', **facts),
        "wrong_type",
        "level: 'high' is not a number",
        decoder="json",
    )
    binary_id = store.add_message(
        MqttMessage("t/a/b/c/telemetry", b"\x1b[2J\xff\x00ok", **facts),
        "invalid_json",
        "not UTF-8",
        decoder="json",
    )
    store.close()

    text = decor("deadletter", "show", text_id, "--config", str(config))
    binary = decor("deadletter", "show", binary_id, "--config", str(config))
    missing = decor("deadletter", "show", "ZZZZ", "--config", str(config))

    assert text.code == 0, text
    assert '{"level": "high"}' in text.stdout
    assert "2024-05-29T16:26:40.000000000Z" in text.stdout
    assert "wrong_type" in text.stdout and "t/a/b/c/telemetry" in text.stdout
    assert binary.code == 0, binary
    assert "\x1b" not in binary.stdout
    assert "00000000  1b 5b 32 4a ff 00 6f 6b" in binary.stdout
    assert "|.[2J..ok|" in binary.stdout
    assert missing.code == 1 and "no dead letter has id 'ZZZZ'" in missing.stderr


def test_cli_deadletter_list_filters_by_reason_topic_and_time(tmp_path):
    """Test that --reason, --topic, --since and --limit pick the right entries."""
    config = write_config(tmp_path / "gateway.toml", "t", "db", {})
    store = DeadLetterStore(load_config(config, environ={}).dead_letters.path, 10**6)
    now_ns = time.time_ns()
    for topic, reason, age_s in [
        ("t/a/river/1/telemetry", "invalid_json", 7200),
        ("t/a/river/2/telemetry", "no_fields", 60),
        ("t/b/rain/3/telemetry", "invalid_json", 30),
    ]:
        facts = {"qos": 1, "retain": False, "received_ns": now_ns - age_s * 10**9}
        store.add_message(MqttMessage(topic, b"x", **facts), reason, "", decoder="json")
    store.close()

    def topics(*args: str) -> list[str]:
        return [entry["topic"] for entry in listed(config, *args)]

    assert topics("--reason", "invalid_json") == [
        "t/a/river/1/telemetry",
        "t/b/rain/3/telemetry",
    ]
    assert topics("--topic", "t/a/#") == [
        "t/a/river/1/telemetry",
        "t/a/river/2/telemetry",
    ]
    assert topics("--since", "1h") == ["t/a/river/2/telemetry", "t/b/rain/3/telemetry"]
    assert topics("--limit", "1") == ["t/b/rain/3/telemetry"]
    bad = decor("deadletter", "list", "--config", str(config), "--since", "soon")
    assert bad.code == 2 and "--since" in bad.stderr


def test_cli_deadletter_replay_needs_one_choice_of_entries(tmp_path):
    """Test that replay without --id, --reason or --all explains and exits 2."""
    config = write_config(tmp_path / "gateway.toml", "t", "db", {})

    result = decor("deadletter", "replay", "--config", str(config))

    assert result.code == 2
    assert "--id ID (repeatable), --reason R or --all" in result.stderr


def test_cli_deadletter_replays_refused_points_in_batches_keeping_conflicts(
    tmp_path, influx_v1
):
    """Test that point entries are written as their line protocol, conflicts kept."""
    config = write_config(tmp_path / "gateway.toml", "t", influx_v1.database, {})
    store = DeadLetterStore(load_config(config, environ={}).dead_letters.path, 10**7)
    base_ns = (int(time.time()) - 3600) * 1_000_000_000
    lines = [
        f"meter,device=m{i % 7} energy={i}.5 {base_ns + i * MS}" for i in range(250)
    ]
    # InfluxDB already holds energy as a float, so an integer energy conflicts.
    assert (
        influx_v1.write(f"meter,device=old energy=1.0 {base_ns - MS}").status_code
        == 204
    )
    for line in lines:
        store.add("point", "unwritten_at_shutdown", "InfluxDB was away", payload=line)
    conflicting = store.add(
        "point",
        "unwritten_at_shutdown",
        "",
        payload=f"meter,device=x energy=2i {base_ns}",
    )
    store.close()

    replay = decor("deadletter", "replay", "--config", str(config), "--all")

    assert replay.code == 1, replay
    rows = [row for row in influx_v1.rows("meter") if row["device"] != "old"]
    assert len(rows) == 250
    assert {(row["time"], row["energy"]) for row in rows} == {
        (base_ns + i * MS, i + 0.5) for i in range(250)
    }
    assert f"{conflicting}  still rejected (field_type_conflict: " in replay.stdout
    assert "250 of 251 entries stored (250 points)" in replay.stdout


def test_cli_deadletter_replay_leaves_entries_pending_when_influxdb_is_away(
    tmp_path, unused_tcp_port
):
    """Test that an unreachable InfluxDB fails the replay and marks nothing."""
    config = write_config(tmp_path / "gateway.toml", "t", "db", {})
    config.write_text(
        config.read_text().replace(INFLUX_V1_URL, f"http://127.0.0.1:{unused_tcp_port}")
    )
    store = DeadLetterStore(load_config(config, environ={}).dead_letters.path, 10**6)
    store.add("point", "unwritten_at_shutdown", "", payload="m v=1 1717000000000000000")
    store.close()

    replay = decor("deadletter", "replay", "--config", str(config), "--all")

    assert replay.code == 1, replay
    assert (
        "Cannot write: " in replay.stderr and "1 entries not replayed" in replay.stderr
    )
    assert [e["state"] for e in listed(config)] == ["pending"]
