"""Grafana provisioning for a city of many devices: generate, then push.

A SQLite registry holds the demo city of `make demo` (its agencies, sites,
devices and cameras) plus `--devices` more river gauges, rain gauges and
air-quality stations spread over its agencies and sites. Timed, per round:

- generate: read the city from the registry and build every dashboard and
  alert rule with grafana-foundation-sdk (`read_city` + `build_bundle`);
- push, first: `provision()` through grafana-client to the strict Grafana
  11.4 stand-in of the tests (tests/grafana_standin.py), which creates all;
- push, again: the same bundle once more, which must change nothing (it
  reads every object back and compares);
- files: `write_files()` (what `--to-files` writes).

Baseline, measured the same way in the same round: the demo city alone. The
stand-in validates every request against Grafana's OpenAPI description, so
its push times include that work (a real Grafana does its own instead).

    .venv/bin/python bench/provision.py --devices 1000 --rounds 3

Prints a Markdown table; writes bench/results/<YYYY-MM-DD>-provision.json and .md.
"""

from __future__ import annotations

import argparse
import datetime
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from devices.profiles import load_profiles  # noqa: E402
from gateway.grafana import (  # noqa: E402
    Generation,
    InfluxSource,
    build_bundle,
    provision,
    read_city,
)
from gateway.grafana.demo import seed_demo_registry  # noqa: E402
from gateway.grafana.files import write_files  # noqa: E402
from gateway.registry import DeviceIn, Registry  # noqa: E402
from tests.grafana_standin import GrafanaStandIn  # noqa: E402

RESULTS = REPO / "bench" / "results"
ACTOR = "bench"
PROFILES = ["river_gauge", "rain_gauge", "air_quality"]
INFLUX = InfluxSource("http://127.0.0.1:18086", "1.x", "decor")


def city_registry(path: Path, extra_devices: int) -> Registry:
    registry = Registry.open(f"sqlite:///{path}", profiles=load_profiles())
    seed_demo_registry(registry)
    agencies = sorted({d.agency for d in registry.list_devices().items})
    sites = sorted({d.site for d in registry.list_devices().items})
    rows = [
        DeviceIn(
            device_id=f"bench-{index:05d}",
            profile=PROFILES[index % len(PROFILES)],
            agency=agencies[index % len(agencies)],
            site=sites[index % len(sites)],
            status="active",
        )
        for index in range(extra_devices)
    ]
    for start in range(0, len(rows), 200):
        registry.add_devices(rows[start : start + 200], ACTOR)
    return registry


def measure(registry: Registry, work: Path) -> dict[str, float]:
    from grafana_client import GrafanaApi

    figures: dict[str, float] = {}
    started = time.perf_counter()
    city = read_city(registry, load_profiles())
    bundle = build_bundle(city, Generation(locale="id"), INFLUX)
    figures["generate_s"] = time.perf_counter() - started
    figures["devices"] = len(city.devices)
    figures["dashboards"] = len(bundle.dashboards)
    figures["rules"] = sum(len(group.rules) for group in bundle.rule_groups)
    standin = GrafanaStandIn()
    standin.start()
    api = GrafanaApi.from_url(standin.url, credential=standin.token)
    try:
        started = time.perf_counter()
        first = provision(api, bundle)
        figures["push_first_s"] = time.perf_counter() - started
        started = time.perf_counter()
        again = provision(api, bundle)
        figures["push_again_s"] = time.perf_counter() - started
    finally:
        api.client.s.close()
        standin.stop()
    assert {c.action for c in again.changes} == {"unchanged"}, "second push changed"
    assert not standin.violations, standin.violations[:3]
    figures["objects"] = len(first.changes)
    started = time.perf_counter()
    write_files(bundle, work / "files")
    figures["files_s"] = time.perf_counter() - started
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--devices", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    rounds = []
    with tempfile.TemporaryDirectory(prefix="decor-provision-") as tmp:
        work = Path(tmp)
        demo = city_registry(work / "demo.db", 0)
        city = city_registry(work / "city.db", args.devices)
        try:
            for index in range(args.rounds):
                pair = {"demo": measure(demo, work), "city": measure(city, work)}
                rounds.append(pair)
                print(f"round {index + 1}: {json.dumps(pair)}", flush=True)
        finally:
            demo.close()
            city.close()
    table = markdown_table(rounds, args)
    print("\n" + table)
    RESULTS.mkdir(exist_ok=True)
    stem = RESULTS / f"{datetime.date.today().isoformat()}-provision"
    stem.with_suffix(".json").write_text(
        json.dumps({"config": vars(args), "rounds": rounds}, indent=2)
    )
    stem.with_suffix(".md").write_text(table)
    print(f"wrote {stem.relative_to(REPO)}.json, .md")


def markdown_table(rounds: list[dict], args: argparse.Namespace) -> str:
    def median(city: str, key: str) -> float:
        return statistics.median(r[city][key] for r in rounds)

    lines = [
        f"Demo city plus {args.devices:,} devices against the demo city alone "
        f"(the baseline), {args.rounds} rounds, medians; pushes go to the strict "
        "Grafana 11.4 stand-in.",
        "",
        "| city | devices | dashboards | alert rules | objects | generate s "
        "| push, first s | push, again s | files s |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for city in ("demo", "city"):
        lines.append(
            f"| {city} | {median(city, 'devices'):.0f} | "
            f"{median(city, 'dashboards'):.0f} | {median(city, 'rules'):.0f} | "
            f"{median(city, 'objects'):.0f} | {median(city, 'generate_s'):.2f} | "
            f"{median(city, 'push_first_s'):.2f} | {median(city, 'push_again_s'):.2f} | "
            f"{median(city, 'files_s'):.2f} |"
        )
    ratio = median("city", "push_first_s") / max(median("demo", "push_first_s"), 1e-9)
    generate = median("city", "generate_s") / max(median("demo", "generate_s"), 1e-9)
    lines += [
        "",
        f"The large city takes {generate:.1f}x the demo's time to generate and "
        f"{ratio:.1f}x to push the first time.",
    ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
