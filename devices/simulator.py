"""Simulated Depok river gauges, rain gauges and air-quality stations on MQTT.

On request one more river gauge, `rg-faulty-01`, misbehaves as field devices
do: between good readings it now and then sends a bad payload, one of
`FAULT_KINDS` in turn, so that the gateway's dead-letter store has something
to show.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson

from devices import weather
from devices.link import FleetLink

__all__ = [
    "DEVICE_TYPES",
    "FAULT_KINDS",
    "FAULTY_DEVICE_ID",
    "SimulatedDevice",
    "SimulationOptions",
    "list_devices",
    "run_simulation",
]

logger = logging.getLogger(__name__)

Reading = dict[str, Any]

DEVICE_TYPES = ("river_gauge", "rain_gauge", "air_quality")
# The storm's timeline is counted in report intervals, so a demo reporting
# every second shows a whole storm in minutes, and one at the default 5 s in
# about half an hour (the real Ciliwung at Depok peaks hours after the rain).
STORM_START_REPORTS = 12.0  # after the first connection to the broker
STORM_SPREAD_REPORTS = 12.0  # the rain reaches sites up to this much later
STORM_RAIN_REPORTS = 120.0  # how long it rains at one site
RIVER_DELAY_REPORTS = 12.0  # before runoff starts raising a gauge
RIVER_TIME_TO_PEAK_REPORTS = 120.0
AIR_WET_TIME_TO_PEAK_REPORTS = 60.0  # rain cools, moistens and washes the air
STORM_PEAK_RAIN_MM_H = 60.0  # at an average site; BMKG "sangat lebat" from 20
TIP_MM = 0.2  # rain per tip of the gauge's bucket
RIVER_BASE_LEVEL_CM = 130.0  # normal at Pos Depok is below 200 cm
RIVER_STORM_RISE_CM = 200.0
RATING_M3S_PER_M2 = 9.0  # flow = k * level², a simple rating curve
# The misbehaving gauge and what it sends now and then instead of a reading: a
# payload cut off by a radio glitch, the level as text with its unit, NaN from
# a failed sensor, a clock back in 1970, bytes that are not text at all, and a
# level the river gauge profile calls impossible.
FAULTY_DEVICE_ID = "rg-faulty-01"
FAULTY_SITE = "Ciliwung, Cimanggis"
FAULT_KINDS = (
    "truncated",
    "level_with_unit",
    "nan_level",
    "clock_not_set",
    "garbage",
    "impossible_level",
)
MIN_FAULTY_EVERY_REPORTS = 2  # at least every other report is a good reading
IMPOSSIBLE_LEVEL_CM = -5000.0  # the profile's possible range starts at 0 cm


@dataclass(frozen=True)
class SimulationOptions:
    """What to simulate and where to publish it."""

    host: str = "127.0.0.1"
    port: int = 18830
    devices_per_type: int = 4  # per device type; at least 1
    device_types: tuple[str, ...] = DEVICE_TYPES
    interval_s: float = 5.0  # each device publishes every interval_s, staggered
    duration_s: float | None = None  # from the first connection; None: until cancelled
    qos: int = 1
    topic_prefix: str = "city"
    seed: int = 1
    rain_event: bool = True  # simulate a storm raising the rivers
    username: str | None = None
    password: str | None = None
    # Add the river gauge FAULTY_DEVICE_ID, sending a bad payload about this
    # often (at least every other report is good); None: no faulty gauge.
    faulty_every_s: float | None = None

    def __post_init__(self) -> None:
        if not self.device_types or not set(self.device_types) <= set(DEVICE_TYPES):
            raise ValueError(f"device_types must be among {DEVICE_TYPES}")
        if self.devices_per_type < 1 or self.interval_s <= 0:
            raise ValueError("need devices_per_type >= 1 and interval_s > 0")
        if self.qos not in (0, 1, 2):
            raise ValueError(f"qos must be 0, 1 or 2, got {self.qos}")
        if self.faulty_every_s is not None and not self.faulty_every_s > 0:
            raise ValueError(f"faulty_every_s must be > 0, got {self.faulty_every_s}")

    def faulty_every_reports(self) -> int:
        """Return every how many reports the faulty gauge sends a bad payload."""
        if self.faulty_every_s is None:
            return 0
        reports = round(self.faulty_every_s / self.interval_s)
        return max(MIN_FAULTY_EVERY_REPORTS, reports)


@dataclass(frozen=True)
class SimulatedDevice:
    """One simulated sensor at a Depok site; its readings depend only on time."""

    device_id: str
    device_type: str
    agency: str
    site: str
    topic: str
    seed: int
    scale: float  # how big the site is: river size, storm strength, traffic
    link_rssi_dbm: float
    storm_start_s: float | None  # epoch seconds when rain starts here; None: dry
    report_interval_s: float
    faulty_every_reports: int = 0  # one report in this many is bad; 0: none

    def reading(self, at_s: float) -> dict[str, Any]:
        """Return the payload this device sends at epoch time `at_s`, as a dict."""
        ts_ms = round(at_s * 1000)
        # Seeded by time as well, so any reading can be recomputed exactly.
        rng = random.Random(f"{self.seed}:{self.device_id}:{ts_ms}")
        return {"ts": ts_ms, **_READINGS[self.device_type](self, at_s, rng)}

    def payload(self, at_s: float, report: int = 0) -> bytes:
        """Return the payload this device sends at epoch time `at_s`.

        Args:
            report: which report of this device it is, counted from 0; only a
                faulty device's payload depends on it.
        """
        reading = self.reading(at_s)
        kind = self.fault(report)
        if kind is None:
            return orjson.dumps(reading)
        rng = random.Random(f"{self.seed}:{self.device_id}:{reading['ts']}:{kind}")
        return _FAULTS[kind](reading, rng)

    def fault(self, report: int) -> str | None:
        """Return the kind of bad payload sent as report number `report`, or None.

        Each cycle of len(FAULT_KINDS) bad payloads has every kind once, in an
        order drawn from the seed.
        """
        every = self.faulty_every_reports
        if not every or report % every != every - 1:
            return None
        cycle, turn = divmod(report // every, len(FAULT_KINDS))
        kinds = list(FAULT_KINDS)
        random.Random(f"{self.seed}:{self.device_id}:faults:{cycle}").shuffle(kinds)
        return kinds[turn]

    def since_storm_s(self, at_s: float) -> float:
        """Return seconds since rain started here (negative before, -inf if dry)."""
        return -math.inf if self.storm_start_s is None else at_s - self.storm_start_s

    def reports_s(self, reports: float) -> float:
        """Return how long this many report intervals last, in seconds."""
        return reports * self.report_interval_s


@dataclass(frozen=True)
class _Fleet:
    agency: str
    id_prefix: str
    places: tuple[tuple[str, str], ...]  # (id part, site), used in turn


def _sub_districts(*names: str) -> tuple[tuple[str, str], ...]:
    return tuple((name.lower().replace(" ", "-"), name) for name in names)


_FLEETS = {
    "river_gauge": _Fleet(
        "dinas-pupr",
        "rg",
        (
            ("ciliwung", "Ciliwung, Pancoran Mas"),
            ("pesanggrahan", "Pesanggrahan, Sawangan"),
            ("ciliwung", "Ciliwung, Sukmajaya"),
            ("pesanggrahan", "Pesanggrahan, Limo"),
            ("ciliwung", "Ciliwung, Beji"),
            ("pesanggrahan", "Pesanggrahan, Bojongsari"),
            ("ciliwung", "Ciliwung, Cilodong"),
            ("pesanggrahan", "Pesanggrahan, Cinere"),
        ),
    ),
    "rain_gauge": _Fleet(
        "bpbd",
        "arg",
        _sub_districts(
            "Beji",
            "Cimanggis",
            "Sawangan",
            "Tapos",
            "Cipayung",
            "Bojongsari",
            "Cilodong",
            "Limo",
            "Cinere",
            "Sukmajaya",
            "Pancoran Mas",
        ),
    ),
    "air_quality": _Fleet(
        "dlhk",
        "aq",
        _sub_districts(
            "Pancoran Mas",
            "Beji",
            "Cimanggis",
            "Sukmajaya",
            "Cinere",
            "Tapos",
            "Sawangan",
            "Limo",
            "Cipayung",
            "Cilodong",
            "Bojongsari",
        ),
    ),
}


def list_devices(
    options: SimulationOptions, start_s: float | None = None
) -> list[SimulatedDevice]:
    """Return the fleet `options` describes, its storm timed from `start_s` (now)."""
    start_s = time.time() if start_s is None else start_s
    devices = []
    for device_type in options.device_types:
        fleet = _FLEETS[device_type]
        counts: dict[str, int] = {}
        for index in range(options.devices_per_type):
            place, site = fleet.places[index % len(fleet.places)]
            counts[place] = counts.get(place, 0) + 1
            device_id = f"{fleet.id_prefix}-{place}-{counts[place]:02d}"
            devices.append(_device(options, device_type, device_id, site, start_s))
    if options.faulty_every_s is not None:
        devices.append(
            _device(
                options,
                "river_gauge",
                FAULTY_DEVICE_ID,
                FAULTY_SITE,
                start_s,
                options.faulty_every_reports(),
            )
        )
    return devices


def _device(
    options: SimulationOptions,
    device_type: str,
    device_id: str,
    site: str,
    start_s: float,
    faulty_every_reports: int = 0,
) -> SimulatedDevice:
    agency = _FLEETS[device_type].agency
    rng = random.Random(f"{options.seed}:{device_id}")
    scale, rssi_dbm = rng.uniform(0.7, 1.3), rng.uniform(-95.0, -60.0)
    storm_start_s = start_s + options.interval_s * (
        STORM_START_REPORTS + rng.uniform(0, STORM_SPREAD_REPORTS)
    )
    return SimulatedDevice(
        device_id=device_id,
        device_type=device_type,
        agency=agency,
        site=site,
        topic=f"{options.topic_prefix}/{agency}/{device_type}/{device_id}/telemetry",
        seed=options.seed,
        scale=scale,
        link_rssi_dbm=rssi_dbm,
        storm_start_s=storm_start_s if options.rain_event else None,
        report_interval_s=options.interval_s,
        faulty_every_reports=faulty_every_reports,
    )


def _river(device: SimulatedDevice, at_s: float, rng: random.Random) -> Reading:
    since_s = device.since_storm_s(at_s) - device.reports_s(RIVER_DELAY_REPORTS)
    to_peak_s = device.reports_s(RIVER_TIME_TO_PEAK_REPORTS)
    rise_cm = RIVER_STORM_RISE_CM * weather.hydrograph(since_s, to_peak_s)
    level_cm = device.scale * (RIVER_BASE_LEVEL_CM + rise_cm) + rng.gauss(0, 1.5)
    flow_m3s = RATING_M3S_PER_M2 * (level_cm / 100) ** 2 * rng.uniform(0.98, 1.02)
    return {
        "water_level_cm": _f(level_cm),
        "flow_m3s": _f(flow_m3s),
        **_battery_and_radio(device, at_s, rng),
    }


def _rain(device: SimulatedDevice, at_s: float, rng: random.Random) -> Reading:
    since_s = device.since_storm_s(at_s)
    rain_s = device.reports_s(STORM_RAIN_REPORTS)
    peak_mm_h = STORM_PEAK_RAIN_MM_H * device.scale
    rate_mm_h = peak_mm_h * weather.rain_shape(since_s, rain_s) * rng.uniform(0.9, 1.1)
    # The bucket tips every TIP_MM; report the tips since the previous report.
    tips = _tips(peak_mm_h, since_s, rain_s) - _tips(
        peak_mm_h, since_s - device.report_interval_s, rain_s
    )
    return {
        "rain_mm": _f(tips * TIP_MM),
        "rain_rate_mm_h": _f(rate_mm_h),
        **_battery_and_radio(device, at_s, rng),
    }


def _air(device: SimulatedDevice, at_s: float, rng: random.Random) -> Reading:
    wet_to_peak_s = device.reports_s(AIR_WET_TIME_TO_PEAK_REPORTS)
    wet = weather.hydrograph(device.since_storm_s(at_s), wet_to_peak_s)
    warmth = weather.daily_cycle(at_s, peak_hour=14.0)  # hottest early afternoon
    traffic = device.scale * weather.rush_hours(at_s)
    pm25_ugm3 = (18.0 + 35.0 * traffic) * (1 - 0.5 * wet) * rng.uniform(0.9, 1.1)
    humidity_pct = 75.0 - 15.0 * warmth + 15.0 * wet + rng.gauss(0, 1)
    return {
        "pm25_ugm3": _f(pm25_ugm3),
        "pm10_ugm3": _f(pm25_ugm3 * 1.6 + rng.uniform(5.0, 10.0)),
        "co_ppm": _f(0.4 + 1.6 * traffic + rng.uniform(0.0, 0.1)),
        "temperature_c": _f(27.5 + 4.5 * warmth - 4.0 * wet + rng.gauss(0, 0.2)),
        "humidity_pct": _f(min(100.0, humidity_pct)),
    }


def _battery_and_radio(
    device: SimulatedDevice, at_s: float, rng: random.Random
) -> Reading:
    # The solar panel lifts the battery voltage while it charges by day.
    voltage_v = 3.8 + 0.3 * weather.sunlight(at_s) + rng.gauss(0, 0.01)
    rssi_dbm = device.link_rssi_dbm + rng.gauss(0, 2)
    return {"battery": {"voltage_v": round(voltage_v, 2)}, "rssi_dbm": _f(rssi_dbm)}


_READINGS: dict[str, Callable[[SimulatedDevice, float, random.Random], Reading]] = {
    "river_gauge": _river,
    "rain_gauge": _rain,
    "air_quality": _air,
}


def _truncated(reading: Reading, rng: random.Random) -> bytes:
    # A radio glitch cuts the frame short; no proper prefix of a JSON object
    # is valid JSON, so any cut after the first third will do.
    whole = orjson.dumps(reading)
    return whole[: rng.randint(len(whole) // 3, len(whole) - 1)]


def _level_with_unit(reading: Reading, rng: random.Random) -> bytes:
    # Firmware that formats the level for its display sends the text.
    level = f"{reading['water_level_cm']:.0f} cm"
    return orjson.dumps(reading | {"water_level_cm": level})


def _nan_level(reading: Reading, rng: random.Random) -> bytes:
    # A failed sensor, written as Python's json.dumps writes it; orjson writes
    # no NaN, so the token goes in by hand.
    text = orjson.dumps(reading | {"water_level_cm": None})
    return text.replace(b'"water_level_cm":null', b'"water_level_cm":NaN')


def _clock_not_set(reading: Reading, rng: random.Random) -> bytes:
    # After a power cut without a clock battery, the logger counts seconds
    # from 1970 again until it next hears the network's time.
    return orjson.dumps(reading | {"ts": rng.randint(1_000, 99_999)})


def _garbage(reading: Reading, rng: random.Random) -> bytes:
    # Line noise, or a binary frame sent to the JSON topic; 0xFF never
    # starts UTF-8 text.
    return b"\xff" + rng.randbytes(rng.randint(8, 40))


def _impossible_level(reading: Reading, rng: random.Random) -> bytes:
    # A pressure sensor lifted out of the water with a wrong offset.
    return orjson.dumps(reading | {"water_level_cm": IMPOSSIBLE_LEVEL_CM})


_FAULTS: dict[str, Callable[[Reading, random.Random], bytes]] = {
    "truncated": _truncated,
    "level_with_unit": _level_with_unit,
    "nan_level": _nan_level,
    "clock_not_set": _clock_not_set,
    "garbage": _garbage,
    "impossible_level": _impossible_level,
}


def _tips(peak_mm_h: float, since_s: float, rain_s: float) -> int:
    rain_mm = weather.rain_since_start_mm(peak_mm_h, since_s, rain_s)
    # The small epsilon keeps a whole number of tips from flooring one short.
    return math.floor(rain_mm / TIP_MM + 1e-9)


def _f(value: float) -> float:
    # Always a float, so a field's type never changes between messages.
    return round(float(value), 1)


async def run_simulation(
    options: SimulationOptions, on_publish: Callable[[str, bytes], None] | None = None
) -> int:
    """Publish readings until duration_s passes or cancelled; return messages published.

    Devices take turns, spread evenly over each interval; the clock (and the
    storm) starts at the first connection. Readings due while the broker is
    away, or long overdue after a stall, are skipped, not sent in a burst.
    """
    link = FleetLink(
        options.host, options.port, options.qos, options.username, options.password
    )
    keeper = asyncio.create_task(link.keep_connected(), name="devices.simulator.mqtt")
    published = skipped = faulty = 0
    try:
        await _first_connection(link, keeper)
        devices = list_devices(options)
        loop = asyncio.get_running_loop()
        started = loop.time()
        for turn in itertools.count():
            rounds, index = divmod(turn, len(devices))
            due_s = (rounds + index / len(devices)) * options.interval_s
            if options.duration_s is not None and due_s >= options.duration_s:
                break
            wait_s = started + due_s - loop.time()
            # After a stall (a blocked loop, a sleeping laptop) drop what is
            # long overdue rather than send a burst of backlogged readings.
            if wait_s < -options.interval_s:
                skipped += 1
                continue
            await asyncio.sleep(max(0.0, wait_s))
            device = devices[index]
            # Every device reports once a round, so the round is its report.
            payload = device.payload(time.time(), rounds)
            if not link.publish(device.topic, payload):
                skipped += 1
                continue
            published += 1
            faulty += device.fault(rounds) is not None
            if on_publish is not None:
                on_publish(device.topic, payload)
        await asyncio.sleep(max(0.0, started + (options.duration_s or 0) - loop.time()))
        return published
    finally:
        keeper.cancel()
        await asyncio.wait({keeper})
        await link.close()
        logger.info(
            "Published %d readings, %d of them bad on purpose; skipped %d "
            "(broker away or running late)",
            published,
            faulty,
            skipped,
        )


async def _first_connection(link: FleetLink, keeper: asyncio.Task[None]) -> None:
    waiter = asyncio.ensure_future(link.connected.wait())
    try:
        await asyncio.wait({waiter, keeper}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        waiter.cancel()
    if keeper.done():
        keeper.result()  # raises what stopped it
