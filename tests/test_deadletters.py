"""The dead-letter store: what is kept, how it is bounded, published and replayed."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from pathlib import Path
from typing import Any

import gmqtt
import orjson
import pytest

from gateway.app import build_routes
from gateway.config import DeadLetterConfig, GatewayConfig
from gateway.deadletters import (
    DeadLetterPublisher,
    DeadLetterStore,
    ReplayLog,
    prepare_replay,
    read_entries,
    select_entries,
)
from gateway.decoding import FieldReject
from gateway.sources import MqttMessage
from tests.conftest import wait_until

MS = 1_000_000


def message(
    payload: bytes, topic: str = "city/bpbd/river_gauge/rg-01/telemetry", **kw: Any
) -> MqttMessage:
    """Return a message as the subscriber would hand it over."""
    facts = {"qos": 1, "retain": False, "received_ns": 1_717_000_000_123_456_789}
    return MqttMessage(topic=topic, payload=payload, **(facts | kw))


def files_of(path: Path) -> list[Path]:
    """Return the store's files: the current one and the rotated ones."""
    return sorted(path.parent.glob(path.name + "*"))


def test_deadletter_store_keeps_every_fact_of_a_message_exactly(tmp_path):
    """Test that topic, QoS, retain, receive time, decoder and bytes come back."""
    store = DeadLetterStore(tmp_path / "dl.jsonl", 1_000_000)
    binary = b"\xff\xfe\x00garbage\n\x1b[31m"
    first = store.add_message(
        message(binary, qos=0, retain=True), "invalid_json", "bad", decoder="json"
    )
    second = store.add_message(
        message(b'{"level": 12.5, "temp": 20.0}'),
        "not_an_integer",
        "level: 12.5 is not an integer",
        decoder="json",
        fields=[FieldReject("level", "not_an_integer", "12.5 is not an integer")],
    )
    third = store.add("point", "field_type_conflict", "refused", payload="m v=1 1")
    store.close()

    entries, damaged = read_entries(store.path)

    assert damaged == 0
    assert [e.id for e in entries] == [first, second, third]
    raw, partial, point = entries
    assert (raw.kind, raw.reason, raw.detail, raw.decoder) == (
        "message",
        "invalid_json",
        "bad",
        "json",
    )
    assert raw.payload == binary and "payload_base64" in raw.raw
    assert (raw.topic, raw.qos, raw.retain) == (
        "city/bpbd/river_gauge/rg-01/telemetry",
        0,
        True,
    )
    assert raw.received_ns == 1_717_000_000_123_456_789
    assert raw.message() == message(binary, qos=0, retain=True)
    assert partial.kind == "field" and partial.raw["payload"] == (
        '{"level": 12.5, "temp": 20.0}'
    )
    assert partial.fields == (
        FieldReject("level", "not_an_integer", "12.5 is not an integer"),
    )
    assert (point.kind, point.payload, point.topic) == (
        "point",
        b"m v=1 1",
        "",
    )


def test_deadletter_store_stays_within_max_bytes_deleting_the_oldest(tmp_path, caplog):
    """Test that rotation bounds the total size and counts what it deleted, once."""
    caplog.set_level(logging.INFO, logger="gateway.deadletters")
    store = DeadLetterStore(tmp_path / "dl.jsonl", 8192, max_files=4)
    ids = [
        store.add_message(
            message(orjson.dumps({"n": index, "pad": "x" * 100})),
            "no_fields",
            "nothing storable",
            decoder="json",
        )
        for index in range(300)
    ]
    store.close()

    files = files_of(store.path)
    entries, _ = read_entries(store.path)
    largest_entry = max(len(line) for line in store.path.read_bytes().splitlines())
    assert len(files) <= 4
    assert sum(f.stat().st_size for f in files) <= 8192 + largest_entry
    # The newest survive, in order; the count of deleted ones adds up.
    assert [e.id for e in entries] == ids[-len(entries) :]
    assert store.entries_deleted == 300 - len(entries)
    assert store.entries_deleted_unreplayed == store.entries_deleted > 0
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "never replayed" in warnings[0].getMessage()


def test_deadletter_store_counts_replayed_entries_apart_when_deleting(tmp_path):
    """Test that deleting entries already replayed is not counted as a loss."""
    path = tmp_path / "dl.jsonl"
    store = DeadLetterStore(path, 4096, max_files=2)
    early = [
        store.add("message", "no_fields", "x" * 200, topic="t/1") for _ in range(3)
    ]
    store.close()
    entries, _ = read_entries(path)
    ReplayLog(path).mark(
        prepare_replay(entry, []) for entry in entries if entry.id in early
    )

    store = DeadLetterStore(path, 4096, max_files=2)
    for _ in range(40):
        store.add("message", "no_fields", "y" * 200, topic="t/2")
    store.close()

    assert store.entries_deleted >= 3
    assert store.entries_deleted_unreplayed == store.entries_deleted - 3


def test_deadletter_store_keeps_ids_unique_and_sorted_across_restarts(
    tmp_path, monkeypatch
):
    """Test that a restarted store, even with the clock stepped back, adds new ids."""
    path = tmp_path / "dl.jsonl"
    first = DeadLetterStore(path, 1_000_000)
    before = [first.add("message", "invalid_json", "a", topic="t") for _ in range(5)]
    first.close()

    stepped_back = time.time_ns() - 3600 * 1_000_000_000
    monkeypatch.setattr(time, "time_ns", lambda: stepped_back)
    second = DeadLetterStore(path, 1_000_000)
    after = [second.add("message", "invalid_json", "b", topic="t") for _ in range(5)]
    second.close()

    entries, damaged = read_entries(path)
    assert damaged == 0
    assert [e.id for e in entries] == before + after
    assert len(set(before + after)) == 10
    assert sorted(before + after) == before + after


def test_deadletter_store_appends_after_a_line_cut_short_by_a_crash(tmp_path):
    """Test that a half-written last line costs only itself, not the next entry."""
    path = tmp_path / "dl.jsonl"
    store = DeadLetterStore(path, 1_000_000)
    kept = store.add("message", "invalid_json", "a", topic="t", payload=b"x")
    store.close()
    with open(path, "ab") as file:
        file.write(b'{"id":"01ABCDEFGHJKMN","kind":"mess')

    store = DeadLetterStore(path, 1_000_000)
    new = store.add("message", "invalid_json", "b", topic="t", payload=b"y")
    store.close()

    entries, damaged = read_entries(path)
    assert [e.id for e in entries] == [kept, new]
    assert damaged == 1


async def test_deadletter_store_buffers_while_running_and_writes_on_close(tmp_path):
    """Test that a running store writes within about a second, and all at close."""
    store = DeadLetterStore(tmp_path / "dl.jsonl", 1_000_000)
    task = asyncio.create_task(store.run())
    await asyncio.sleep(0)
    first = store.add("message", "invalid_json", "a", topic="t", payload=b"1")

    # Buffered: nothing has reached the file before the flusher ran.
    assert not store.path.exists() or first.encode() not in store.path.read_bytes()
    assert await wait_until(
        lambda: store.path.exists() and first.encode() in store.path.read_bytes()
    )
    last = store.add("message", "invalid_json", "b", topic="t", payload=b"2")
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    await store.aclose()

    entries, _ = read_entries(store.path)
    assert [e.id for e in entries] == [first, last]


def test_deadletter_store_says_once_when_it_cannot_write(tmp_path, caplog):
    """Test that an unwritable store logs one error and counts the lost entries."""
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where a directory should be")
    store = DeadLetterStore(blocker / "dl.jsonl", 1_000_000)

    for _ in range(3):
        store.add("message", "invalid_json", "a", topic="t")
    store.close()

    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1 and "Cannot write dead letters" in errors[0].getMessage()
    assert store.entries_lost == 3 and store.entries_written == 0


def test_deadletter_publisher_limits_each_reason_and_counts_the_rest():
    """Test that each reason has its own burst, and held-back ones are reported."""
    sent: list[tuple[str, dict[str, Any]]] = []

    def publish(topic: str, payload: bytes) -> bool:
        sent.append((topic, orjson.loads(payload)))
        return True

    publisher = DeadLetterPublisher("ops/dl", 0.001, 3, publish)
    entry = {"id": "X", "time": "t", "kind": "message", "detail": "d", "topic": "a"}
    for _ in range(10):
        publisher.offer(entry | {"reason": "invalid_json"}, b"nope")
    publisher.offer(entry | {"reason": "no_fields"}, b"{}")
    nulls = [{"field": "f", "reason": "null_value", "detail": "value is null"}]
    publisher.offer(entry | {"reason": "null_value", "fields": nulls}, b"{}")

    assert [topic for topic, _ in sent] == ["ops/dl/invalid_json"] * 3 + [
        "ops/dl/no_fields"
    ]
    assert publisher.suppressed == {"invalid_json": 7}
    assert publisher.published == 4
    assert sent[0][1]["payload"] == "nope" and sent[0][1]["suppressed_before"] == 0


def test_deadletter_publisher_cuts_large_payloads_and_counts_when_offline():
    """Test that a published payload is cut to a few KB and flagged as cut."""
    sent: list[dict[str, Any]] = []
    online = True

    def publish(topic: str, payload: bytes) -> bool:
        if online:
            sent.append(orjson.loads(payload))
        return online

    publisher = DeadLetterPublisher("ops/dl", 100.0, 10, publish)
    entry = {"id": "X", "time": "t", "kind": "message", "reason": "r", "detail": ""}
    publisher.offer(entry, b"a" * 10_000)
    online = False
    publisher.offer(entry, b"b")

    [document] = sent
    assert len(document["payload"]) == 4096
    assert document["payload_truncated"] is True
    assert document["payload_bytes"] == 10_000
    assert publisher.not_connected == 1


def routes_for(gateway_config, topic_prefix: str, **subscription: Any) -> list:
    """Build the routes of one river-gauge subscription with extra keys."""
    config = gateway_config(
        subscriptions=[
            {
                "topic_template": f"{topic_prefix}/{{agency}}/{{device_type}}/"
                "{device_id}/telemetry",
                "measurement": "{device_type}",
            }
            | subscription
        ]
    )
    return build_routes(config)


def test_deadletter_replay_decodes_with_the_current_routes_at_the_original_time(
    gateway_config, topic_prefix, tmp_path
):
    """Test that a replayed message keeps its receive time and uses new types."""
    store = DeadLetterStore(tmp_path / "dl.jsonl", 1_000_000)
    topic = f"{topic_prefix}/bpbd/river_gauge/rg-01/telemetry"
    received_ns = time.time_ns() - 3600 * 1_000_000_000
    store.add_message(
        message(b'{"level": 12.5}', topic, received_ns=received_ns),
        "no_fields",
        "no storable value in the message (not_an_integer)",
        decoder="json",
    )
    store.close()
    [entry] = read_entries(store.path)[0]

    still = prepare_replay(
        entry, routes_for(gateway_config, topic_prefix, fields={"level": "integer"})
    )
    fixed = prepare_replay(
        entry, routes_for(gateway_config, topic_prefix, fields={"level": "float"})
    )

    assert (still.ok, still.reason) == (False, "no_fields")
    assert fixed.ok and fixed.lines == (
        "river_gauge,agency=bpbd,device_id=rg-01,device_type=river_gauge "
        f"level=12.5 {received_ns}",
    )


def test_deadletter_replay_of_left_out_values_writes_only_those_values(
    gateway_config, topic_prefix, tmp_path
):
    """Test that replaying a partly stored message adds just the values left out."""
    store = DeadLetterStore(tmp_path / "dl.jsonl", 1_000_000)
    topic = f"{topic_prefix}/bpbd/river_gauge/rg-01/telemetry"
    payload = b'{"ts": 1717000000000, "level": 12.5, "temp": 20.0, "flow": null}'
    store.add_message(
        message(payload, topic, received_ns=1_717_000_001_000_000_000),
        "not_an_integer",
        "level: 12.5 is not an integer",
        decoder="json",
        fields=[
            FieldReject("level", "not_an_integer", "12.5 is not an integer"),
            FieldReject("flow", "null_value", "value is null"),
        ],
    )
    store.close()
    [entry] = read_entries(store.path)[0]

    fixed = prepare_replay(
        entry, routes_for(gateway_config, topic_prefix, fields={"level": "float"})
    )

    assert fixed.ok
    assert fixed.lines == (
        "river_gauge,agency=bpbd,device_id=rg-01,device_type=river_gauge "
        "level=12.5 1717000000000000000",
    )
    assert select_entries([entry], reason="null_value") == [entry]


def test_deadletter_replay_of_null_and_nan_values_has_nothing_to_recover(
    gateway_config, topic_prefix, tmp_path
):
    """Test that values no configuration can store do not fail a replay forever."""
    store = DeadLetterStore(tmp_path / "dl.jsonl", 1_000_000)
    topic = f"{topic_prefix}/bpbd/river_gauge/rg-01/telemetry"
    store.add_message(
        message(b'{"level": NaN, "flow": null, "temp": 20.0}', topic),
        "non_finite",
        "level: value is nan",
        decoder="json",
        fields=[
            FieldReject("level", "non_finite", "value is nan"),
            FieldReject("flow", "null_value", "value is null"),
        ],
    )
    store.close()
    [entry] = read_entries(store.path)[0]

    outcome = prepare_replay(entry, routes_for(gateway_config, topic_prefix))

    assert (outcome.ok, outcome.lines) == (True, ())
    assert "nothing left to recover" in outcome.note


def test_deadletter_replay_refuses_a_payload_that_was_cut_when_kept(tmp_path):
    """Test that a payload kept only in part is never replayed as if whole."""
    store = DeadLetterStore(tmp_path / "dl.jsonl", 1_000_000)
    store.add_message(
        message(b"{" + b" " * 300_000 + b"}"), "too_big", "d", decoder="json"
    )
    store.close()
    [entry] = read_entries(store.path)[0]

    outcome = prepare_replay(entry, [])

    assert (outcome.ok, outcome.reason) == (False, "payload_truncated")


def with_dead_letters(config: GatewayConfig, **keys: Any) -> GatewayConfig:
    """Return the config with [dead_letters] keys changed."""
    dead = config.dead_letters.model_dump() | keys
    return config.model_copy(update={"dead_letters": DeadLetterConfig(**dead)})


async def test_gateway_publishes_dead_letters_on_the_broker(
    gateway_config, running_gateway, publisher, broker, topic_prefix
):
    """Test that a refused message arrives on <prefix>/<reason> as JSON."""
    prefix = f"{topic_prefix}-dl/deadletter"
    config = with_dead_letters(gateway_config(), topic_prefix=prefix)
    received: list[tuple[str, dict[str, Any]]] = []
    listener = gmqtt.Client(f"test-dl-{uuid.uuid4().hex[:8]}")
    listener.on_message = lambda client, topic, payload, qos, props: received.append(
        (topic, orjson.loads(payload))
    )
    await listener.connect(broker.host, broker.port)
    listener.subscribe(f"{prefix}/#", qos=0)
    topic = f"{topic_prefix}/bpbd/river_gauge/rg-01/telemetry"
    try:
        async with running_gateway(config) as gateway:
            await asyncio.sleep(0.2)  # the listener's SUBSCRIBE is in place
            publisher.publish(topic, b"not json \xff")
            assert await wait_until(lambda: len(received) == 1)
            published = gateway.dead_letters.publisher
            assert published is not None and published.published == 1
    finally:
        await listener.disconnect()

    [(dl_topic, document)] = received
    [entry] = read_entries(config.dead_letters.path)[0]
    assert dl_topic == f"{prefix}/invalid_json"
    assert document["id"] == entry.id
    assert document["topic"] == topic
    assert document["reason"] == "invalid_json"
    assert document["decoder"] == "json"
    assert document["payload_base64"] == entry.raw["payload_base64"]
    assert entry.payload == b"not json \xff"
    assert document["received"] == entry.raw["received"]


async def test_gateway_keeps_misfit_and_partial_messages_with_their_decoder(
    gateway_config, running_gateway, publisher, topic_prefix, influx_v1
):
    """Test that a misfit topic names its decoder; left-out values share an entry."""
    config = gateway_config(
        influx={"database": influx_v1.database},
        subscriptions=[
            {
                "topic": f"{topic_prefix}/#",
                "topic_template": f"{topic_prefix}/{{agency}}/{{device_type}}/"
                "{device_id}/telemetry",
                "measurement": "{device_type}",
                "fields": {"level": "integer", "count": "integer"},
            }
        ],
    )
    topic = f"{topic_prefix}/bpbd/river_gauge/rg-01/telemetry"
    async with running_gateway(config) as gateway:
        publisher.publish(topic, b'{"level": 1.5, "count": 2.5, "temp": 20.0}')
        publisher.publish(f"{topic_prefix}/short", b'{"temp": 1.0}')
        await influx_v1.wait_for_rows("river_gauge", 1)
        await wait_until(lambda: gateway.stats.messages_received >= 2)

    entries, _ = read_entries(config.dead_letters.path)
    by_kind = {entry.kind: entry for entry in entries}
    assert len(entries) == 2
    assert by_kind["message"].reason == "unmatched_topic"
    assert by_kind["message"].decoder == "json"
    assert [f.field for f in by_kind["field"].fields] == ["level", "count"]
    assert gateway.stats.fields_rejected == {"not_an_integer": 2}


@pytest.mark.parametrize("prefix", ["a/+/b", "a/#"])
def test_deadletter_config_refuses_a_topic_prefix_with_wildcards(prefix):
    """Test that a publishing prefix with a wildcard is a configuration error."""
    with pytest.raises(ValueError, match="wildcards"):
        DeadLetterConfig(topic_prefix=prefix)


async def test_gateway_names_no_decoder_for_a_message_no_route_takes(gateway_config):
    """Test that a message no subscription covers is kept with decoder "none"."""
    from gateway.app import Gateway

    gateway = Gateway(gateway_config())
    gateway.routes = []
    await gateway.handle_message(message(b'{"a": 1}', "elsewhere/x"))
    gateway.dead_letters.close()

    [entry] = read_entries(gateway.config.dead_letters.path)[0]
    assert (entry.reason, entry.decoder, entry.topic) == (
        "unmatched_topic",
        "none",
        "elsewhere/x",
    )


async def test_replay_applies_the_profile_checks_as_the_live_gateway_does(
    gateway_config, topic_prefix
):
    """Test that replaying an impossible reading still leaves that value out."""
    from gateway.app import Gateway, build_quality_checker
    from gateway.deadletters import prepare_replay

    config = gateway_config(quality={"enabled": True})
    gateway = Gateway(config)
    message = MqttMessage(
        f"{topic_prefix}/dinas-pupr/river_gauge/rg-faulty-01/telemetry",
        orjson.dumps({"water_level_cm": -5000.0, "flow_m3s": 3.2}),
        # QoS 0: no writer runs here to store flow_m3s, and at QoS 1 the
        # handler would wait for that before returning.
        qos=0,
        retain=False,
        received_ns=time.time_ns(),
    )
    await gateway.handle_message(message)
    gateway.dead_letters.close()
    [entry], _ = read_entries(config.dead_letters.path)

    unchecked = prepare_replay(entry, gateway.routes)
    checked = prepare_replay(entry, gateway.routes, build_quality_checker(config))

    assert entry.reason == "impossible_value"
    assert unchecked.ok  # without the checks the bad value would be stored
    assert not checked.ok
    assert checked.reason == "impossible_value"
