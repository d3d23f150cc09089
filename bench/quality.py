"""How many points per second does the quality check judge?

Points are simulated readings of the Depok fleet (river gauges, rain gauges
and air-quality stations in equal numbers, in arrival order), checked by
`QualityChecker.check` with the shipped profiles. Measured in the same run:

- baseline: a function that returns the point it is given, called the same
  way; what a gateway without the stage pays for the call;
- no profile: the same points under a device type no profile names, so
  `check` takes its passthrough path;
- profiled: every point judged (ranges, spike, rate, flatline, clock), with
  each device's history kept, a fresh checker per round;
- encode_line: the same points encoded to line protocol, for scale: every
  stored point pays that anyway.

Reported: median points/s over `--rounds` and each rate relative to the
baseline.

    .venv/bin/python bench/quality.py --devices 300 --readings 100 --rounds 5
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time
from collections.abc import Callable

from devices import SimulationOptions, flatten_payload, list_devices, load_profiles
from gateway.points import Point, encode_line
from gateway.validation import CheckResult, QualityChecker

START_S = 1_764_780_000.0
INTERVAL_S = 300.0
RECEIVE_DELAY_NS = 2_000_000_000

Check = Callable[[Point, int], object]


def make_points(devices_per_type: int, readings: int, unprofiled: bool) -> list[Point]:
    """Return every device's readings in arrival order, as a decoder makes them."""
    options = SimulationOptions(
        devices_per_type=devices_per_type, interval_s=INTERVAL_S
    )
    fleet = list_devices(options, START_S)
    points = []
    for index in range(readings):
        at_s = START_S + index * INTERVAL_S
        for device in fleet:
            fields = flatten_payload(device.reading(at_s))
            at_ns = fields.pop("ts") * 1_000_000
            device_type = "unprofiled" if unprofiled else device.device_type
            tags = {
                "agency": device.agency,
                "device_type": device_type,
                "device_id": device.device_id,
            }
            points.append(Point(device_type, tags, fields, at_ns))
    return points


def passthrough(point: Point, received_ns: int) -> CheckResult:
    """Return the point unchanged: the cost of calling a stage that does nothing."""
    return CheckResult(point)


def rate(make_check: Callable[[], Check], points: list[Point], rounds: int) -> float:
    """Return the median points/s of `rounds` runs, each with a fresh check."""
    rates = []
    for _ in range(rounds):
        check = make_check()
        start = time.perf_counter()
        for point in points:
            check(point, point.time_ns + RECEIVE_DELAY_NS)
        rates.append(len(points) / (time.perf_counter() - start))
    return statistics.median(rates)


def encode_rate(points: list[Point], rounds: int) -> float:
    """Return the median points/s of encode_line over the same points."""
    rates = []
    for _ in range(rounds):
        start = time.perf_counter()
        for point in points:
            encode_line(point)
        rates.append(len(points) / (time.perf_counter() - start))
    return statistics.median(rates)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, default=300, help="per device type")
    parser.add_argument("--readings", type=int, default=100, help="per device")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()

    profiles = load_profiles()
    points = make_points(args.devices, args.readings, unprofiled=False)
    unprofiled = make_points(args.devices, args.readings, unprofiled=True)
    print(
        f"Python {platform.python_version()}, {len(points)} points "
        f"({3 * args.devices} devices x {args.readings} readings) x {args.rounds} "
        "rounds (median points/s)\n"
    )
    baseline = rate(lambda: passthrough, points, args.rounds)
    rows = [
        ("baseline (returns the point)", baseline),
        (
            "check, no profile",
            rate(lambda: QualityChecker(profiles).check, unprofiled, args.rounds),
        ),
        (
            "check, profiled",
            rate(lambda: QualityChecker(profiles).check, points, args.rounds),
        ),
        ("encode_line (for scale)", encode_rate(points, args.rounds)),
    ]
    print("| path | points/s | vs baseline |")
    print("|---|---:|---:|")
    for name, points_per_s in rows:
        print(f"| {name} | {points_per_s:,.0f} | {points_per_s / baseline:.2f}x |")


if __name__ == "__main__":
    main()
