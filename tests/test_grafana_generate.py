"""Generated Grafana objects: schema-valid, stable, in both languages."""

from __future__ import annotations

import filecmp
import json
from pathlib import Path

import pytest
import yaml

from gateway.grafana import write_files
from gateway.grafana.demo import main as write_demo_files
from gateway.grafana.files import DEFAULT_DASHBOARDS_PATH
from gateway.grafana.maps import map_csv
from gateway.registry import DeviceIn, SiteIn
from tests.grafana_support import (
    ACTOR,
    bundle_of,
    check_file_provisioning,
    city_of,
    demo_registry,  # noqa: F401 (fixture)
    influxql_targets,
    schema_errors,
)

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("locale", ["id", "en"])
def test_generate_dashboards_valid_against_schema(demo_registry, locale):
    """Test that every generated dashboard passes the dashboard JSON schema."""
    bundle = bundle_of(demo_registry, locale)

    problems = {d.uid: schema_errors(d.model) for d in bundle.dashboards}

    assert len(bundle.dashboards) == 7
    assert all(not errors for errors in problems.values()), problems


def test_generate_same_uids_and_content_every_run(demo_registry):
    """Test that two generations from one registry are identical, uids short."""
    first, second = bundle_of(demo_registry), bundle_of(demo_registry)

    assert [d.model for d in first.dashboards] == [d.model for d in second.dashboards]
    assert [g.rules for g in first.rule_groups] == [g.rules for g in second.rule_groups]
    uids = [d.uid for d in first.dashboards] + [
        r["uid"] for g in first.rule_groups for r in g.rules
    ]
    assert len(uids) == len(set(uids))
    assert all(len(uid) <= 40 for uid in uids)


def test_generate_locale_changes_titles_panels_and_units(demo_registry):
    """Test that locale id and en give different titles, panel names and units."""
    indonesian = {d.uid: d.model for d in bundle_of(demo_registry, "id").dashboards}
    english = {d.uid: d.model for d in bundle_of(demo_registry, "en").dashboards}
    river = "decor-profile-dinas-pupr-river_gauge"

    assert indonesian["decor-overview"]["title"] == "Ikhtisar kota"
    assert english["decor-overview"]["title"] == "City overview"
    assert indonesian[river]["title"].startswith("Pos duga air")
    assert english[river]["title"].startswith("River gauges")
    assert [p["title"] for p in indonesian[river]["panels"]][:2] == [
        "Tinggi muka air",
        "Debit",
    ]
    assert [p["title"] for p in english[river]["panels"]][:2] == [
        "Water level",
        "Discharge",
    ]
    assert (
        indonesian[river]["panels"][1]["fieldConfig"]["defaults"]["unit"]
        == "suffix: m³/detik"
    )
    assert english[river]["panels"][1]["fieldConfig"]["defaults"]["unit"] == "flowcms"


def test_generate_profile_dashboard_alert_levels_as_thresholds(demo_registry):
    """Test that a profile dashboard's level field carries the alert levels."""
    bundle = bundle_of(demo_registry)
    river = next(d for d in bundle.dashboards if d.uid.endswith("river_gauge"))
    level = river.model["panels"][0]

    steps = level["fieldConfig"]["defaults"]["thresholds"]["steps"]

    # normal 0, waspada 200, siaga 270, awas 350 (devices/profiles/river_gauge.toml)
    assert [s["value"] for s in steps] == [None, 200.0, 270.0, 350.0]
    assert [s["color"] for s in steps] == ["green", "yellow", "orange", "red"]
    assert river.folder_uid == "decor-agency-dinas-pupr"


def test_generate_alert_rules_one_per_level_grouped_per_agency_folder(demo_registry):
    """Test that rules follow the levels above the lowest, in bands, per folder."""
    groups = {
        (g.folder_uid, g.title): g for g in bundle_of(demo_registry, "en").rule_groups
    }

    river = groups[("decor-agency-dinas-pupr", "River gauges")]
    conditions = [r["data"][2]["model"]["expression"] for r in river.rules]

    assert set(groups) == {
        ("decor-agency-dinas-pupr", "River gauges"),
        ("decor-agency-bpbd", "Rain gauges"),
        ("decor-agency-dlhk", "Air-quality stations"),
    }
    assert conditions == ["$B >= 200 && $B < 270", "$B >= 270 && $B < 350", "$B >= 350"]
    assert [r["labels"]["level"] for r in river.rules] == ["waspada", "siaga", "awas"]
    assert all(r["folderUID"] == "decor-agency-dinas-pupr" for r in river.rules)
    assert river.interval_s == 60


def test_generate_new_device_reaches_map_profile_dashboard_and_rules(demo_registry):
    """Test that a newly registered gauge reaches the map, its dashboard and rules."""
    demo_registry.add_site(
        SiteIn(
            site_id="pondok-cina",
            name="Pondok Cina",
            latitude=-6.369,
            longitude=106.832,
        ),
        ACTOR,
    )
    before = bundle_of(demo_registry)
    demo_registry.add_device(
        DeviceIn(
            device_id="rg-ciliwung-09",
            profile="river_gauge",
            agency="dinas-pupr",
            site="pondok-cina",
        ),
        ACTOR,
    )

    after = bundle_of(demo_registry)
    city = city_of(demo_registry)

    assert (
        "rg-ciliwung-09,sensor,river_gauge,dinas-pupr,Pondok Cina,-6.369,106.832"
        in map_csv(city)
    )
    overview = next(d for d in after.dashboards if d.uid == "decor-overview")
    map_panel = next(p for p in overview.model["panels"] if p["type"] == "geomap")
    assert "rg-ciliwung-09" in map_panel["targets"][0]["csvContent"]
    river = next(d for d in after.dashboards if d.uid.endswith("river_gauge"))
    assert all("rg-ciliwung-09" in t["query"] for _, t in influxql_targets(river.model))
    rules = next(
        g for g in after.rule_groups if g.folder_uid == "decor-agency-dinas-pupr"
    )
    assert all("rg-ciliwung-09" in r["data"][0]["model"]["query"] for r in rules.rules)
    old = next(
        g for g in before.rule_groups if g.folder_uid == "decor-agency-dinas-pupr"
    )
    assert all(
        "rg-ciliwung-09" not in r["data"][0]["model"]["query"] for r in old.rules
    )


def test_generate_decommissioned_device_leaves_dashboards_and_rules(demo_registry):
    """Test that a decommissioned device is in no query, map row or rule."""
    demo_registry.decommission_device("rg-ciliwung-01", ACTOR)

    bundle = bundle_of(demo_registry)

    text = json.dumps(
        [d.model for d in bundle.dashboards] + [g.rules for g in bundle.rule_groups]
    )
    assert "rg-ciliwung-01" not in text
    assert "rg-ciliwung-02" in text


def test_generate_files_follow_grafana_file_provisioning(demo_registry, tmp_path):
    """Test that --to-files output follows the file-provisioning rules, no secrets."""
    written = write_files(bundle_of(demo_registry), tmp_path, DEFAULT_DASHBOARDS_PATH)

    assert check_file_provisioning(tmp_path, DEFAULT_DASHBOARDS_PATH) == []
    assert len([p for p in written if p.suffix == ".json"]) == 7
    sources = yaml.safe_load(
        (tmp_path / "provisioning/datasources/decor.yaml").read_text()
    )
    influx = sources["datasources"][0]
    assert influx["uid"] == "decor-influxdb"
    assert influx["jsonData"] == {
        "dbName": "decor",
        "httpMode": "POST",
        "version": "InfluxQL",
    }


def test_generate_files_for_influxdb_2_use_token_reference(demo_registry, tmp_path):
    """Test that a 2.x datasource reads InfluxQL through DBRP with a token reference."""
    from gateway.grafana import Generation, InfluxSource, build_bundle

    bundle = build_bundle(
        city_of(demo_registry),
        Generation(),
        InfluxSource("http://influxdb:8086", "2.x", "decor", None, "secret-token"),
    )
    write_files(bundle, tmp_path)

    text = (tmp_path / "provisioning/datasources/decor.yaml").read_text()
    assert "secret-token" not in text
    assert "Token ${DECOR_INFLUX__TOKEN}" in text
    assert bundle.datasources[0]["secureJsonData"] == {
        "httpHeaderValue1": "Token secret-token"
    }


def test_generate_committed_demo_output_is_current(tmp_path):
    """Test that grafana/ holds exactly what the demo city generates now."""
    write_demo_files(str(tmp_path))

    committed = REPO / "grafana"
    for generated in sorted(tmp_path.rglob("*.*")):
        relative = generated.relative_to(tmp_path)
        assert (committed / relative).exists(), f"grafana/{relative} is missing"
        assert filecmp.cmp(generated, committed / relative, shallow=False), (
            f"grafana/{relative} is stale: run python -m gateway.grafana.demo grafana"
        )
    assert check_file_provisioning(committed, DEFAULT_DASHBOARDS_PATH) == []
