"""How many points per second does encode_line turn into line protocol?

Three points, each encoded by `gateway.points.encode_line` and, as the baseline
measured in the same run, by `influxdb_client.Point(...).to_line_protocol()`:

- plain: a river gauge with 3 tags and 6 fields (4 floats, a bool, a short
  string) and no character that needs escaping;
- escaped: the same shape with spaces, commas, `=`, quotes and a backslash in
  the measurement, tags, field keys and string value;
- cold: like plain, but every point has a device_id never seen before, so
  encode_line's name cache never helps (its worst case).

Every point is built from fresh string objects, as a decoder would make them
(so string hashes are not cached from a previous round). "encode" times only
the encoding of prebuilt points; "build+encode" also builds the library's own
point object (a Point dataclass / an influxdb_client.Point with .tag/.field/
.time), which is how each is used. Reported: median points/s over `--rounds`,
and the ratio encode_line / influxdb_client.

    .venv/bin/python bench/encode.py --points 20000 --rounds 5
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time
from collections.abc import Callable
from importlib.metadata import version
from typing import Any

from influxdb_client import Point as ClientPoint
from influxdb_client import WritePrecision

from gateway.points import Point, encode_line

TIME_NS = 1_717_200_000_123_456_789

SHAPES: dict[str, tuple[str, dict[str, str], dict[str, Any]]] = {
    "plain": (
        "river_gauge",
        {"agency": "bpbd", "device_id": "rg-ciliwung-01", "site": "manggarai"},
        {
            "water_level_cm": 182.4,
            "battery_voltage_v": 3.91,
            "rssi_dbm": -71.0,
            "temperature_c": 28.35,
            "pump_on": True,
            "status": "ok",
        },
    ),
    "escaped": (
        "river gauge,raw",
        {"agency": "BPBD DKI", "room": "Boiler, Main=A", "path": "C:\\gauges\\01"},
        {
            "water level cm": 182.4,
            "battery=v": 3.91,
            "rssi, dbm": -71.0,
            "temperature c": 28.35,
            "pump on": True,
            "note": 'say "hi" C:\\temp\\',
        },
    ),
}


def fresh(text: str) -> str:
    """Return an equal string that is a new object, its hash not yet computed."""
    return text.encode().decode()


Parts = tuple[str, dict[str, str], dict[str, Any]]


def make_points(shape: str, count: int) -> list[Parts]:
    """Return `count` copies of a shape, built from fresh strings."""
    name = "plain" if shape == "cold" else shape
    measurement, tags, fields = SHAPES[name]
    points: list[Parts] = []
    for index in range(count):
        point_tags = {fresh(k): fresh(v) for k, v in tags.items()}
        if shape == "cold":
            point_tags["device_id"] = f"rg-{index:08d}-{time.monotonic_ns()}"
        point_fields = {
            fresh(k): fresh(v) if isinstance(v, str) else v for k, v in fields.items()
        }
        points.append((fresh(measurement), point_tags, point_fields))
    return points


def ours_encode(points: list[Any]) -> Callable[[], None]:
    built = [Point(m, t, f, TIME_NS) for m, t, f in points]

    def run() -> None:
        for point in built:
            encode_line(point)

    return run


def ours_build(points: list[Any]) -> Callable[[], None]:
    def run() -> None:
        for m, t, f in points:
            encode_line(Point(m, t, f, TIME_NS))

    return run


def client_point(m: str, t: dict[str, str], f: dict[str, Any]) -> ClientPoint:
    point = ClientPoint(m)
    for key, value in t.items():
        point.tag(key, value)
    for key, value in f.items():
        point.field(key, value)
    return point.time(TIME_NS, WritePrecision.NS)


def client_encode(points: list[Any]) -> Callable[[], None]:
    built = [client_point(m, t, f) for m, t, f in points]

    def run() -> None:
        for point in built:
            point.to_line_protocol()

    return run


def client_build(points: list[Any]) -> Callable[[], None]:
    def run() -> None:
        for m, t, f in points:
            client_point(m, t, f).to_line_protocol()

    return run


def rate(
    setup: Callable[[list[Any]], Callable[[], None]],
    shape: str,
    count: int,
    rounds: int,
) -> tuple[float, list[float]]:
    """Return the median and every round's points/s; fresh points each round."""
    rates = []
    for _ in range(rounds):
        run = setup(make_points(shape, count))
        start = time.perf_counter()
        run()
        rates.append(count / (time.perf_counter() - start))
    return statistics.median(rates), rates


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()

    print(
        f"Python {platform.python_version()}, influxdb-client "
        f"{version('influxdb-client')}, {args.points} points x {args.rounds} rounds "
        "(median points/s)\n"
    )
    print("| point | timed | encode_line | influxdb_client | ratio |")
    print("|---|---|---:|---:|---:|")
    for shape in ["plain", "escaped", "cold"]:
        for timed, ours, theirs in [
            ("encode", ours_encode, client_encode),
            ("build+encode", ours_build, client_build),
        ]:
            ours_rate, _ = rate(ours, shape, args.points, args.rounds)
            their_rate, _ = rate(theirs, shape, args.points, args.rounds)
            print(
                f"| {shape} | {timed} | {ours_rate:,.0f} | {their_rate:,.0f} | "
                f"{ours_rate / their_rate:.1f}x |"
            )
    sample = Point(*SHAPES["escaped"], TIME_NS)
    print(f"\nescaped line: {encode_line(sample)}")
    print(f"client line:  {client_point(*SHAPES['escaped']).to_line_protocol()}")


if __name__ == "__main__":
    main()
