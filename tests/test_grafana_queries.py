"""Every InfluxQL query of every generated panel and alert rule, on real InfluxDB 1.x.

The demo city's devices (the simulator's readings, as the gateway stores
them) and cameras (health points as the CCTV sampler writes them) are written
into a fresh database, with one unregistered device beside them. Each query
is expanded as Grafana would and must return rows for exactly the registered
devices its panel is about.
"""

from __future__ import annotations

import re
import time
from typing import Any

import pytest

from devices.profiles import flatten_payload
from devices.simulator import SimulationOptions, list_devices
from gateway.grafana import expand_query
from gateway.registry import DeviceIn
from tests.grafana_support import (
    ACTOR,
    bundle_of,
    city_of,
    demo_registry,  # noqa: F401 (fixture)
    influxql_targets,
)

pytestmark = pytest.mark.services

STEP_S = 300
POINTS_PER_DEVICE = 12
STRANGER = "rg-stranger-01"
TIME_RANGE = "time >= now() - 1h"


def _write_demo_data(influx, city) -> None:
    """Write an hour of readings for every registered device, and a stranger's."""
    now_s = time.time()
    simulated = {
        d.device_id: d for d in list_devices(SimulationOptions(faulty_every_s=5.0), 0.0)
    }
    lines = []
    devices = [(d.device_id, d.profile, d.agency) for d in city.devices]
    devices.append((STRANGER, "river_gauge", "dinas-pupr"))
    for device_id, profile, agency in devices:
        source = simulated.get(device_id) or simulated["rg-ciliwung-01"]
        for step in range(POINTS_PER_DEVICE):
            at_s = now_s - step * STEP_S - 30
            reading = flatten_payload(source.reading(at_s))
            reading.pop("ts")
            # Every third reading flagged as a spike, as the profile checks do.
            quality = 2 if step % 3 == 0 else 0
            fields = ",".join(f"{k}={float(v)}" for k, v in sorted(reading.items()))
            lines.append(
                f"{profile},agency={agency},device_id={device_id},"
                f"device_type={profile} "
                f"{fields},quality={quality}i {int(at_s * 1e9)}"
            )
    for camera in city.cameras:
        for step in range(POINTS_PER_DEVICE):
            at_s = now_s - step * 60 - 10
            lines.append(
                f"camera_health,camera={camera.camera_id} online=true,latency_ms=85.0,"
                f"errors=0i,decode_ms=12.5 {int(at_s * 1e9)}"
            )
    response = influx.write("\n".join(lines))
    assert response.status_code == 204, response.text


def _run(influx, query: str) -> list[dict[str, Any]]:
    # The expanded query must not leave any Grafana macro behind.
    assert "$" not in query.replace("$/", ""), query
    return influx.query(query)


def _tag_values(series: list[dict[str, Any]], tag: str) -> set[str]:
    values = {s.get("tags", {}).get(tag) for s in series}
    for s in series:  # resultFormat table with GROUP BY: tags also come as tags
        if tag in s.get("columns", []):
            index = s["columns"].index(tag)
            values |= {row[index] for row in s["values"]}
    return {v for v in values if v}


def _expected_devices(city, query: str) -> set[str]:
    """Return the registered devices a query's panel is about (from the registry)."""
    measurement = re.search(r'FROM "(\w+)"', query)
    agency = re.search(r"\"agency\" = '([\w-]+)'", query)
    return {
        d.device_id
        for d in city.devices
        if measurement
        and d.profile == measurement.group(1)
        and (agency is None or d.agency == agency.group(1))
    }


def _variables(city) -> dict[str, Any]:
    return {
        "agency": sorted({a for a, _ in city.agencies}),
        "site": ".*",
        "device": sorted(d.device_id for d in city.devices),
    }


def test_every_panel_query_returns_rows_for_its_devices(demo_registry, influx_v1):
    """Test that each panel's query returns exactly its registered devices' rows."""
    city = city_of(demo_registry)
    _write_demo_data(influx_v1, city)
    checked = 0

    for dashboard in bundle_of(demo_registry).dashboards:
        for title, target in influxql_targets(dashboard.model):
            query = expand_query(
                target["query"], time_filter=TIME_RANGE, variables=_variables(city)
            )
            series = _run(influx_v1, query)
            where = f"{dashboard.uid} / {title}: {query}"
            assert series, f"no rows for {where}"
            if re.search(r'GROUP BY .*"device_id"|"device_id"\)$', target["query"]):
                if 'count("last")' in target["query"]:
                    # Online stat: the number of devices that reported recently.
                    [row] = series[0]["values"]
                    assert row[1] == len(_expected_devices(city, query)), where
                else:
                    assert _tag_values(series, "device_id") == _expected_devices(
                        city, query
                    ), where
            elif 'GROUP BY "camera"' in target["query"]:
                assert _tag_values(series, "camera") == {
                    c.camera_id for c in city.cameras
                }, where
            else:
                values = [v for s in series for row in s["values"] for v in row[1:]]
                assert any(v not in (None, 0, False) for v in values), (
                    f"all empty: {where}"
                )
            checked += 1

    assert checked >= 30


def test_every_alert_rule_query_returns_its_devices(demo_registry, influx_v1):
    """Test that each alert rule's query, over its own window, returns its devices."""
    city = city_of(demo_registry)
    _write_demo_data(influx_v1, city)
    rules = [r for g in bundle_of(demo_registry).rule_groups for r in g.rules]

    for rule in rules:
        reading = rule["data"][0]
        window = reading["relativeTimeRange"]["from"]
        query = expand_query(
            reading["model"]["query"], time_filter=f"time >= now() - {window}s"
        )
        series = _run(influx_v1, query)
        assert _tag_values(series, "device_id") == _expected_devices(city, query), rule[
            "title"
        ]
    assert len(rules) == 12


def test_device_detail_variables_narrow_to_site_and_device(demo_registry, influx_v1):
    """Test the device detail's variable queries: a site gives its devices only."""
    city = city_of(demo_registry)
    _write_demo_data(influx_v1, city)
    detail = next(
        d for d in bundle_of(demo_registry).dashboards if d.uid == "decor-device-detail"
    )
    variables = {v["name"]: v for v in detail.model["templating"]["list"]}
    site_value = next(
        option.split(" : ")[1]
        for option in re.split(r"(?<!\\), ", variables["site"]["query"])
        if option.startswith("Ciliwung\\, Pancoran Mas")
    )
    agencies = _run(influx_v1, variables["agency"]["query"])

    devices = _run(
        influx_v1,
        expand_query(
            variables["device"]["query"],
            variables={"agency": ["dinas-pupr"], "site": site_value},
        ),
    )
    river_panel = next(
        t for _, t in influxql_targets(detail.model) if '"river_gauge"' in t["query"]
    )
    one = _run(
        influx_v1,
        expand_query(
            river_panel["query"],
            time_filter=TIME_RANGE,
            variables={
                "agency": ["dinas-pupr"],
                "site": ".*",
                "device": ["rg-ciliwung-01"],
            },
        ),
    )

    assert {row[1] for s in agencies for row in s["values"]} == {
        "bpbd",
        "dinas-pupr",
        "dlhk",
    }
    assert {row[1] for s in devices for row in s["values"]} == {"rg-ciliwung-01"}
    assert _tag_values(one, "device_id") == {"rg-ciliwung-01"}


def test_new_device_with_data_shows_after_provisioning_again(demo_registry, influx_v1):
    """Test that a newly registered device's rows come back from its panels' queries."""
    city = city_of(demo_registry)
    _write_demo_data(influx_v1, city)
    demo_registry.add_device(
        DeviceIn(
            device_id=STRANGER,
            profile="river_gauge",
            agency="dinas-pupr",
            site="ciliwung-pancoran-mas",
        ),
        ACTOR,
    )

    river = next(
        d
        for d in bundle_of(demo_registry).dashboards
        if d.uid == "decor-profile-dinas-pupr-river_gauge"
    )
    [(_, target), *_] = list(influxql_targets(river.model))
    series = _run(influx_v1, expand_query(target["query"], time_filter=TIME_RANGE))

    assert STRANGER in _tag_values(series, "device_id")
