"""Tests of the misbehaving river gauge: its bad payloads and what the gateway keeps."""

from __future__ import annotations

import asyncio
import json
import math
import uuid
from collections import Counter
from typing import Any

import gmqtt
import orjson
import pytest

from devices import SimulationOptions, flatten_payload, list_devices, load_profiles
from devices.simulator import (
    FAULT_KINDS,
    FAULTY_DEVICE_ID,
    IMPOSSIBLE_LEVEL_CM,
    SimulatedDevice,
    run_simulation,
)
from gateway.deadletters import read_entries
from tests.conftest import wait_until

START_S = 1764694800.0  # 2025-12-03 00:00 in Depok (WIB)
CYCLES = 4
# The reason the gateway gives for each kind of bad payload, with the river
# gauge profile's quality checks on.
GATEWAY_REASONS = {
    "truncated": "invalid_json",
    "level_with_unit": "wrong_type",  # the profile says a number: left out alone
    "nan_level": "non_finite",
    "clock_not_set": "implausible_timestamp",
    "garbage": "invalid_json",
    "impossible_level": "impossible_value",
}


def _faulty_gauge(**options: Any) -> SimulatedDevice:
    fleet = list_devices(SimulationOptions(**options), START_S)
    return next(d for d in fleet if d.device_id == FAULTY_DEVICE_ID)


def _kind_of(payload: bytes) -> str | None:
    """Tell which bad payload this is, as an operator reading it would; None: good."""
    try:
        # The standard library reads NaN, as the gateway does.
        document = json.loads(payload.decode("utf-8"))
    except UnicodeDecodeError:
        return "garbage"
    except json.JSONDecodeError:
        return "truncated"
    level = document["water_level_cm"]
    if isinstance(level, str):
        return "level_with_unit"
    if math.isnan(level):
        return "nan_level"
    if level == IMPOSSIBLE_LEVEL_CM:
        return "impossible_level"
    if document["ts"] < 10**6:
        return "clock_not_set"
    return None


@pytest.mark.parametrize("seed", [1, 2, 3, 4])
def test_fault_every_kind_once_per_cycle(seed):
    """Test that bad payloads come every n-th report, each kind once per cycle."""
    gauge = _faulty_gauge(seed=seed, interval_s=1.0, faulty_every_s=3.0)
    reports = range(3 * len(FAULT_KINDS) * CYCLES)

    kinds = [gauge.fault(report) for report in reports]
    assert [r for r in reports if kinds[r] is not None] == [
        r for r in reports if r % 3 == 2
    ]
    bad = [kind for kind in kinds if kind is not None]
    for cycle in range(CYCLES):
        chunk = bad[cycle * len(FAULT_KINDS) : (cycle + 1) * len(FAULT_KINDS)]
        assert sorted(chunk) == sorted(FAULT_KINDS), (seed, cycle)
    size = len(FAULT_KINDS)
    orders = {tuple(bad[i : i + size]) for i in range(0, len(bad), size)}
    assert len(orders) > 1  # the order changes from cycle to cycle


def test_fault_payloads_are_what_field_devices_send():
    """Test that each kind's payload is the good reading spoilt in that one way."""
    gauge = _faulty_gauge(interval_s=1.0, faulty_every_s=2.0)
    for report in range(1, 2 * len(FAULT_KINDS) * CYCLES, 2):
        at_s = START_S + report
        kind = gauge.fault(report)
        payload, good = gauge.payload(at_s, report), gauge.reading(at_s)
        assert _kind_of(payload) == kind, (report, payload)

        if kind == "truncated":
            assert orjson.dumps(good).startswith(payload)
            assert len(payload) >= len(orjson.dumps(good)) // 3
        elif kind == "garbage":
            assert payload[0] == 0xFF and 9 <= len(payload) <= 41
        else:
            document = json.loads(payload)
            level = document.pop("water_level_cm")
            expected_level = {
                "level_with_unit": f"{good['water_level_cm']:.0f} cm",
                "impossible_level": -5000.0,
            }.get(kind, good["water_level_cm"])
            assert level == expected_level or (
                kind == "nan_level" and math.isnan(level)
            )
            good.pop("water_level_cm")
            if kind == "clock_not_set":
                assert 1_000 <= document.pop("ts") <= 99_999
                good.pop("ts")
            assert document == good, (report, payload)


def test_fault_same_seed_same_bad_payloads():
    """Test that one seed always gives the same payloads and another seed differs."""

    def payloads(seed):
        gauge = _faulty_gauge(seed=seed, interval_s=1.0, faulty_every_s=2.0)
        return [gauge.payload(START_S + r, r) for r in range(2 * 6 * CYCLES)]

    def kinds(seed):
        return [_kind_of(payload) for payload in payloads(seed)]

    assert payloads(7) == payloads(7)
    assert payloads(7) != payloads(8)
    assert kinds(7) != kinds(8)


@pytest.mark.parametrize(
    ("interval_s", "faulty_every_s", "every_reports"),
    [(1.0, 5.0, 5), (5.0, 12.0, 2), (5.0, 1.0, 2), (0.2, 0.5, 2)],
)
def test_fault_good_readings_between_bad_ones(
    interval_s, faulty_every_s, every_reports
):
    """Test that the faulty gauge's other reports are good river gauge readings."""
    profile = load_profiles()["river_gauge"]
    gauge = _faulty_gauge(interval_s=interval_s, faulty_every_s=faulty_every_s)
    reports = range(every_reports * len(FAULT_KINDS) * 2)

    good = [r for r in reports if gauge.fault(r) is None]
    assert len(good) == len(reports) * (every_reports - 1) // every_reports
    for report in good:
        at_s = START_S + report * interval_s
        payload = gauge.payload(at_s, report)
        assert payload == orjson.dumps(gauge.reading(at_s))
        values = flatten_payload(orjson.loads(payload))
        values.pop("ts")
        assert set(values) == set(profile.fields)
        for name, value in values.items():
            assert profile.fields[name].contains(value), (report, name, value)


def test_list_devices_faulty_gauge_only_when_asked():
    """Test that the faulty gauge is one extra river gauge, there only on request."""
    plain = list_devices(SimulationOptions(devices_per_type=2), START_S)
    faulty = list_devices(
        SimulationOptions(devices_per_type=2, faulty_every_s=10.0), START_S
    )

    assert all(device.fault(r) is None for device in plain for r in range(50))
    assert [d.device_id for d in faulty] == [d.device_id for d in plain] + [
        FAULTY_DEVICE_ID
    ]
    assert faulty[-1].device_type == "river_gauge"
    assert faulty[-1].topic == (
        f"city/dinas-pupr/river_gauge/{FAULTY_DEVICE_ID}/telemetry"
    )


@pytest.mark.parametrize("faulty_every_s", [0.0, -5.0, math.nan])
def test_simulation_options_faulty_every_not_positive_rejected(faulty_every_s):
    """Test that a faulty gauge reporting never or backwards is refused."""
    with pytest.raises(ValueError, match="faulty_every_s"):
        SimulationOptions(faulty_every_s=faulty_every_s)


async def test_run_simulation_broker_receives_bad_payloads(broker, topic_prefix):
    """Test that a subscriber on the real broker gets every kind of bad payload."""
    received: list[bytes] = []
    published: list[bytes] = []
    subscribed = asyncio.Event()
    options = SimulationOptions(
        host=broker.host,
        port=broker.port,
        devices_per_type=1,
        device_types=("river_gauge",),
        interval_s=0.1,
        duration_s=1.2,  # 12 reports: 6 good and 6 bad, one of each kind
        topic_prefix=topic_prefix,
        faulty_every_s=0.2,
    )
    gauge = list_devices(options)[-1]

    def on_message(client, topic, payload, qos, properties):
        if topic == gauge.topic:
            received.append(payload)
        return 0

    def on_publish(topic, payload):
        if topic == gauge.topic:
            published.append(payload)

    subscriber = gmqtt.Client(f"test-sub-{uuid.uuid4().hex[:8]}")
    subscriber.on_message = on_message
    subscriber.on_subscribe = lambda *args: subscribed.set()
    await subscriber.connect(broker.host, broker.port)
    try:
        subscriber.subscribe(f"{topic_prefix}/#", qos=1)
        await asyncio.wait_for(subscribed.wait(), timeout=5)
        await asyncio.wait_for(run_simulation(options, on_publish), timeout=15)
        await wait_until(lambda: len(received) >= len(published), timeout_s=5)
    finally:
        await subscriber.disconnect()

    assert received == published
    assert [_kind_of(payload) for payload in received] == [
        gauge.fault(report) for report in range(12)
    ]
    assert Counter(map(_kind_of, received)) == {None: 6} | dict.fromkeys(FAULT_KINDS, 1)


async def test_run_simulation_gateway_dead_letters_bad_payloads_with_reasons(
    gateway_config, running_gateway, influx_v1, topic_prefix
):
    """Test that the gateway keeps each bad payload with its reason, stores the rest."""
    config = gateway_config(
        subscriptions=[
            {
                "topic_template": f"{topic_prefix}/{{agency}}/{{device_type}}/"
                "{device_id}/telemetry",
                "measurement": "{device_type}",
                "timestamp_key": "ts",
            }
        ],
        influx={"database": influx_v1.database},
        quality={"enabled": True},
    )
    options = SimulationOptions(
        port=config.mqtt.port,
        devices_per_type=1,
        device_types=("river_gauge",),
        interval_s=0.2,
        duration_s=2.4,  # 12 reports: 6 good and 6 bad, one of each kind
        topic_prefix=topic_prefix,
        faulty_every_s=0.4,
    )
    gauge = list_devices(options)[-1]
    sent: list[bytes] = []

    def on_publish(topic, payload):
        if topic == gauge.topic:
            sent.append(payload)

    async with running_gateway(config):
        await asyncio.wait_for(run_simulation(options, on_publish), timeout=15)
        # Good readings, and the three left without their water level.
        await wait_until(lambda: len(_rows_of(influx_v1, FAULTY_DEVICE_ID)) >= 9)
    entries, damaged = read_entries(config.dead_letters.path)

    assert damaged == 0
    assert Counter(entry.reason for entry in entries) == Counter(
        GATEWAY_REASONS.values()
    )
    expected = []
    for payload in sent:
        kind = _kind_of(payload)
        if kind in (None, "nan_level", "impossible_level", "level_with_unit"):
            document = json.loads(payload)
            level = None if kind else document["water_level_cm"]
            expected.append((document["ts"] * 10**6, level, document["flow_m3s"]))
    rows = _rows_of(influx_v1, FAULTY_DEVICE_ID)
    assert [(r["time"], r["water_level_cm"], r["flow_m3s"]) for r in rows] == expected


def _rows_of(influx_v1, device_id: str) -> list[dict[str, Any]]:
    return [r for r in influx_v1.rows("river_gauge") if r["device_id"] == device_id]
