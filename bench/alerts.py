"""What does judging alerts and liveness cost on the message path?

The same simulated Depok fleet as bench/quality.py (river gauges, rain gauges
and air-quality stations, in arrival order, with a storm raising the rivers
through the alert levels). Measured in the same run:

- baseline: `encode_line` of each point, which every stored point pays anyway;
- quality: `QualityChecker.check`, the profile checks already on the path;
- alerts: `AlertEngine.observe` with the shipped profiles' rules (levels with
  hysteresis, rate of rise, battery), a fresh engine per round;
- liveness: `LivenessTracker.observe` (last-seen bookkeeping only);
- both: what `GatewayOperations.observe` adds per point with alerts and
  liveness on.

Reported: median points/s over `--rounds` and each rate relative to the
baseline, plus how many alert changes the run produced.

    .venv/bin/python bench/alerts.py --devices 300 --readings 100 --rounds 5
"""

from __future__ import annotations

import argparse
import asyncio
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from quality import make_points  # noqa: E402  (the sibling script's fleet)

from devices import load_profiles  # noqa: E402
from gateway.alerts.engine import AlertEngine  # noqa: E402
from gateway.alerts.rules import load_profile_tables, rules_by_device_type  # noqa: E402
from gateway.config import LivenessConfig  # noqa: E402
from gateway.liveness import LivenessTracker  # noqa: E402
from gateway.points import Point, encode_line  # noqa: E402
from gateway.validation import QualityChecker  # noqa: E402

RECEIVE_DELAY_NS = 2_000_000_000


def rate(
    make_stage: Callable[[], Callable[[Point], object]],
    points: list[Point],
    rounds: int,
) -> float:
    """Return the median points/s of `rounds` runs, each with a fresh stage."""
    rates = []
    for _ in range(rounds):
        stage = make_stage()
        start = time.perf_counter()
        for point in points:
            stage(point)
        rates.append(len(points) / (time.perf_counter() - start))
    return statistics.median(rates)


async def _ignore(lines: list[str]) -> None:
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, default=300, help="per device type")
    parser.add_argument("--readings", type=int, default=100, help="per device")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()

    rules = rules_by_device_type(load_profile_tables())
    profiles = load_profiles()
    points = make_points(args.devices, args.readings, unprofiled=False)
    loop = asyncio.new_event_loop()  # the tracker makes an asyncio.Event
    asyncio.set_event_loop(loop)

    def engine() -> Callable[[Point], object]:
        judge = AlertEngine(rules)
        return lambda point: judge.observe((point,))

    def tracker() -> Callable[[Point], object]:
        live = LivenessTracker(LivenessConfig(), rules, lambda *a: True, _ignore)
        return lambda point: live.observe((point,))

    def both() -> Callable[[Point], object]:
        judge, live = engine(), tracker()
        return lambda point: (live(point), judge(point))

    def quality() -> Callable[[Point], object]:
        checker = QualityChecker(profiles)
        return lambda point: checker.check(point, point.time_ns + RECEIVE_DELAY_NS)

    changes = AlertEngine(rules).observe(points)
    print(
        f"Python {platform.python_version()}, {len(points)} points "
        f"({3 * args.devices} devices x {args.readings} readings) x {args.rounds} "
        f"rounds (median points/s); {len(changes)} alert changes per round\n"
    )
    baseline = rate(lambda: encode_line, points, args.rounds)
    rows = [
        ("baseline: encode_line", baseline),
        ("quality checks", rate(quality, points, args.rounds)),
        ("alerts: AlertEngine.observe", rate(engine, points, args.rounds)),
        ("liveness: LivenessTracker.observe", rate(tracker, points, args.rounds)),
        ("alerts + liveness", rate(both, points, args.rounds)),
    ]
    print("| path | points/s | vs baseline |")
    print("|---|---:|---:|")
    for name, points_per_s in rows:
        print(f"| {name} | {points_per_s:,.0f} | {points_per_s / baseline:.2f}x |")
    loop.close()


if __name__ == "__main__":
    main()
