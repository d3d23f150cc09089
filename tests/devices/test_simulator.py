"""Tests of the simulated Depok devices: readings, fleet and publishing over MQTT."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import re
import shutil
import socket
import statistics
import subprocess
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import gmqtt
import orjson
import pytest

from devices import (
    DEVICE_TYPES,
    SimulationOptions,
    flatten_payload,
    list_devices,
    load_profiles,
    run_simulation,
)
from devices import simulator, weather
from tests.conftest import wait_until

START_S = 1764694800.0  # 2025-12-03 00:00 in Depok (WIB)
HOUR_S = 3600.0
DEVICE_ID = re.compile(r"^[a-z0-9]+(-[a-z0-9]+)+$")
MOSQUITTO = shutil.which("mosquitto") or shutil.which("mosquitto", path="/usr/sbin")


def _of_type(devices, device_type):
    return [device for device in devices if device.device_type == device_type]


@pytest.mark.parametrize("start_hour", [0.0, 7.0, 14.0])
def test_reading_every_payload_float_fields_within_profile(start_hour):
    """Test that payloads are JSON objects of float fields in the profile's ranges."""
    profiles = load_profiles()
    start_s = START_S + start_hour * HOUR_S
    # Minute by minute through the storm, then every 7 minutes for a day.
    times = [start_s + 60.0 * k for k in range(90)]
    times += [start_s + 420.0 * k for k in range(220)]
    for seed in (1, 2, 3):
        fleet = list_devices(SimulationOptions(devices_per_type=12, seed=seed), start_s)
        for device in fleet:
            profile = profiles[device.device_type]
            for at_s in times:
                document = orjson.loads(device.payload(at_s))
                assert isinstance(document, dict)
                assert document.pop("ts") == round(at_s * 1000)
                values = flatten_payload(document)
                assert set(values) == set(profile.fields), device.device_id
                for name, value in values.items():
                    where = (device.device_id, name, value)
                    assert type(value) is float, where
                    assert profile.fields[name].contains(value), where


def test_reading_rain_event_raises_rivers_above_dry_weather():
    """Test that a storm lifts every river gauge well above its dry-weather level."""
    rainy = _of_type(list_devices(SimulationOptions(), START_S), "river_gauge")
    dry = _of_type(
        list_devices(SimulationOptions(rain_event=False), START_S), "river_gauge"
    )
    river_peak_s = START_S + SimulationOptions().interval_s * (
        simulator.STORM_START_REPORTS
        + simulator.RIVER_DELAY_REPORTS
        + simulator.RIVER_TIME_TO_PEAK_REPORTS
    )

    for wet, calm in zip(rainy, dry, strict=True):
        assert wet.reading(START_S) == calm.reading(START_S)
        wet_cm = wet.reading(river_peak_s)["water_level_cm"]
        calm_cm = calm.reading(river_peak_s)["water_level_cm"]
        assert wet_cm > calm_cm + 100.0, wet.device_id


def test_reading_rivers_peak_after_the_rain():
    """Test that the rivers are highest minutes after the rain is heaviest."""
    fleet = list_devices(SimulationOptions(), START_S)
    times = [START_S + 10.0 * k for k in range(360)]

    def total(device_type, field, at_s):
        return sum(d.reading(at_s)[field] for d in _of_type(fleet, device_type))

    rain_peak_s = max(times, key=lambda t: total("rain_gauge", "rain_rate_mm_h", t))
    river_peak_s = max(times, key=lambda t: total("river_gauge", "water_level_cm", t))
    assert river_peak_s - rain_peak_s >= 180.0


def test_reading_storm_timeline_counted_in_report_intervals():
    """Test that with 1 s reports rivers rise as with 5 s reports, 5 times sooner."""
    reports = (
        simulator.STORM_START_REPORTS
        + simulator.RIVER_DELAY_REPORTS
        + simulator.RIVER_TIME_TO_PEAK_REPORTS
    )

    def levels_cm(interval_s):
        options = SimulationOptions(
            device_types=("river_gauge",), interval_s=interval_s
        )
        at_s = START_S + reports * interval_s
        fleet = list_devices(options, START_S)
        return [device.reading(at_s)["water_level_cm"] for device in fleet]

    for fast_cm, slow_cm in zip(levels_cm(1.0), levels_cm(5.0), strict=True):
        assert fast_cm == pytest.approx(slow_cm, abs=10.0)
        assert fast_cm > 200.0


def test_reading_rain_gauge_tips_add_up_to_storm_total():
    """Test that a gauge's reports are whole 0.2 mm tips adding up to the storm."""
    options = SimulationOptions(device_types=("rain_gauge",), interval_s=5.0)
    for gauge in list_devices(options, START_S):
        reports = [gauge.reading(START_S + 5.0 * k)["rain_mm"] for k in range(1, 800)]
        peak_mm_h = simulator.STORM_PEAK_RAIN_MM_H * gauge.scale
        rain_s = gauge.reports_s(simulator.STORM_RAIN_REPORTS)
        storm_mm = weather.rain_since_start_mm(peak_mm_h, rain_s, rain_s)

        tips = [report / simulator.TIP_MM for report in reports]
        assert all(t == pytest.approx(round(t)) and t >= 0 for t in tips)
        whole_tips_mm = math.floor(storm_mm / simulator.TIP_MM) * simulator.TIP_MM
        assert sum(reports) == pytest.approx(whole_tips_mm)


def test_reading_dry_weather_no_rain():
    """Test that without a rain event the rain gauges report no rain all day."""
    options = SimulationOptions(device_types=("rain_gauge",), rain_event=False)
    for gauge in list_devices(options, START_S):
        for k in range(0, 288):
            reading = gauge.reading(START_S + 300.0 * k)
            assert reading["rain_mm"] == reading["rain_rate_mm_h"] == 0.0


def test_reading_air_quality_follows_the_day():
    """Test that air is dirtier at rush hour than at night, and warmest by day."""
    options = SimulationOptions(device_types=("air_quality",), rain_event=False)
    for station in list_devices(options, START_S):
        rush, night = station.reading(START_S + 7.5 * HOUR_S), station.reading(START_S)
        afternoon = station.reading(START_S + 14.0 * HOUR_S)
        dawn = station.reading(START_S + 4.0 * HOUR_S)

        assert rush["pm25_ugm3"] > night["pm25_ugm3"] + 10.0
        assert rush["co_ppm"] > night["co_ppm"]
        assert afternoon["temperature_c"] > dawn["temperature_c"] + 5.0
        assert afternoon["humidity_pct"] < dawn["humidity_pct"]


def test_reading_same_seed_same_payloads():
    """Test that one seed always gives the same payloads and another seed differs."""
    times = [START_S + 37.0 * k for k in range(50)]

    def payloads(seed):
        fleet = list_devices(SimulationOptions(seed=seed), START_S)
        return [device.payload(at_s) for device in fleet for at_s in times]

    assert payloads(7) == payloads(7)
    assert payloads(7) != payloads(8)


@pytest.mark.parametrize("per_type", [1, 4, 30])
def test_list_devices_requested_count_per_type_distinct_ids(per_type):
    """Test that the fleet has the requested devices per type, with distinct ids."""
    fleet = list_devices(SimulationOptions(devices_per_type=per_type, topic_prefix="t"))

    per_type_counts = Counter(d.device_type for d in fleet)
    assert per_type_counts == dict.fromkeys(DEVICE_TYPES, per_type)
    assert len({d.device_id for d in fleet}) == len(fleet)
    for device in fleet:
        assert DEVICE_ID.match(device.device_id), device.device_id
        assert device.topic == (
            f"t/{device.agency}/{device.device_type}/{device.device_id}/telemetry"
        )


@pytest.mark.parametrize(
    "bad",
    [
        {"devices_per_type": 0},
        {"device_types": ("cctv",)},
        {"device_types": ()},
        {"interval_s": 0.0},
        {"qos": 3},
    ],
)
def test_simulation_options_invalid_rejected(bad):
    """Test that impossible options are refused when made."""
    with pytest.raises(ValueError):
        SimulationOptions(**bad)


async def test_run_simulation_broker_receives_every_reading(broker, topic_prefix):
    """Test that every reading published reaches a subscriber on the real broker."""
    received: list[tuple[str, bytes]] = []
    published: list[tuple[str, bytes]] = []
    published_at: list[float] = []
    subscribed = asyncio.Event()

    def on_message(client, topic, payload, qos, properties):
        received.append((topic, payload))
        return 0

    def on_publish(topic, payload):
        published.append((topic, payload))
        published_at.append(time.monotonic())

    subscriber = gmqtt.Client(f"test-sub-{uuid.uuid4().hex[:8]}")
    subscriber.on_message = on_message
    subscriber.on_subscribe = lambda *args: subscribed.set()
    await subscriber.connect(broker.host, broker.port)
    options = SimulationOptions(
        host=broker.host,
        port=broker.port,
        devices_per_type=1,
        interval_s=0.5,
        duration_s=2.0,
        topic_prefix=topic_prefix,
    )
    try:
        subscriber.subscribe(f"{topic_prefix}/#", qos=1)
        await asyncio.wait_for(subscribed.wait(), timeout=5)
        count = await asyncio.wait_for(run_simulation(options, on_publish), timeout=15)
        await wait_until(lambda: len(received) >= len(published), timeout_s=5)
    finally:
        await subscriber.disconnect()

    # 3 devices, each every 0.5 s for 2 s, taking turns a sixth of a second apart.
    assert count == len(published) == 12
    assert Counter(topic for topic, _ in published) == {
        device.topic: 4 for device in list_devices(options)
    }
    assert sorted(received) == sorted(published)
    gaps = [b - a for a, b in zip(published_at, published_at[1:])]
    assert statistics.median(gaps) == pytest.approx(0.5 / 3, abs=0.05)


@pytest.mark.skipif(MOSQUITTO is None, reason="needs the mosquitto binary")
async def test_run_simulation_broker_restart_reconnects_with_one_warning(
    tmp_path, caplog
):
    """Test that a simulation outlives a broker restart, warns once, disconnects."""
    caplog.set_level(logging.INFO, logger="devices")
    port = _free_port()
    published: list[str] = []
    options = SimulationOptions(
        port=port,
        devices_per_type=1,
        interval_s=0.2,
        topic_prefix="test-restart",
    )
    task: asyncio.Task[int] | None = None
    try:
        with _mosquitto(tmp_path / "first.log", port):
            task = asyncio.create_task(
                run_simulation(options, lambda topic, _: published.append(topic))
            )
            assert await wait_until(lambda: len(published) >= 3, timeout_s=10)
        await asyncio.sleep(1.0)  # readings fall due with no broker
        before_restart = len(published)
        with _mosquitto(tmp_path / "second.log", port):
            assert await wait_until(lambda: len(published) >= before_restart + 3)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
    finally:
        if task is not None:
            task.cancel()

    warnings = [
        r.getMessage()
        for r in caplog.records
        if r.name.startswith("devices") and r.levelno >= logging.WARNING
    ]
    assert len(warnings) == 1 and warnings[0].startswith("Lost MQTT broker"), warnings
    broker_log = (tmp_path / "second.log").read_text()
    assert "Received DISCONNECT from decor-sim-" in broker_log


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def _mosquitto(log_path: Path, port: int) -> Iterator[None]:
    """Run a private Mosquitto on `port` for the block, logging to `log_path`."""
    config = log_path.with_suffix(".conf")
    config.write_text(
        f"listener {port} 127.0.0.1\nallow_anonymous true\n"
        "log_dest stdout\nlog_type all\n"
    )
    with log_path.open("wb") as log:
        broker = subprocess.Popen(
            [str(MOSQUITTO), "-c", str(config)], stdout=log, stderr=subprocess.STDOUT
        )
    try:
        deadline = time.monotonic() + 10
        while True:
            with contextlib.suppress(OSError):
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            assert broker.poll() is None and time.monotonic() < deadline, "no broker"
            time.sleep(0.05)
        yield
    finally:
        broker.terminate()
        broker.wait(timeout=10)
