"""`decor grafana provision` against the strict Grafana stand-in."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
from grafana_client import GrafanaApi
from typer.testing import CliRunner

from gateway.cli import app
from gateway.grafana import (
    Bundle,
    Folder,
    GeneratedDashboard,
    GrafanaUnreachable,
    provision,
)
from gateway.grafana.naming import MANAGED_TAG
from gateway.registry import DeviceIn
from tests.grafana_standin import GrafanaStandIn
from tests.grafana_support import (
    ACTOR,
    bundle_of,
    check_file_provisioning,
    demo_registry,  # noqa: F401 (fixture)
)


@pytest.fixture
def grafana() -> Iterator[GrafanaStandIn]:
    """Give a running Grafana 11.4 stand-in."""
    standin = GrafanaStandIn()
    standin.start()
    yield standin
    standin.stop()
    assert standin.violations == [], "requests outside the Grafana API contract"


@pytest.fixture
def grafana_api(grafana: GrafanaStandIn) -> Iterator[GrafanaApi]:
    """Give a grafana-client API on the stand-in with its token."""
    api = GrafanaApi.from_url(grafana.url, credential=grafana.token)
    yield api
    api.client.s.close()


def _writes(grafana: GrafanaStandIn) -> list[tuple[str, str, int]]:
    return [r for r in grafana.requests if r[0] != "GET"]


def test_provision_first_run_creates_second_changes_nothing(
    demo_registry, grafana, grafana_api
):
    """Test that a first run creates everything and a second one writes nothing."""
    bundle = bundle_of(demo_registry)

    first = provision(grafana_api, bundle)
    writes_after_first = len(_writes(grafana))
    second = provision(grafana_api, bundle)

    assert {c.action for c in first.changes} == {"create"}
    assert len(first.changes) == 2 + 4 + 7 + 3
    assert {c.action for c in second.changes} == {"unchanged"}
    assert len(_writes(grafana)) == writes_after_first
    assert all(v == 1 for v in grafana.state.dashboard_versions.values())
    assert len(grafana.state.rule_groups) == 3


def test_provision_dry_run_reads_only(demo_registry, grafana, grafana_api):
    """Test that --dry-run reports the creations and writes nothing."""
    report = provision(grafana_api, bundle_of(demo_registry), dry_run=True)

    assert {c.action for c in report.changes} == {"create"}
    assert _writes(grafana) == []
    assert grafana.state.dashboards == {}


def test_provision_hand_edited_dashboard_kept_unless_forced(
    demo_registry, grafana, grafana_api
):
    """Test that a dashboard edited in Grafana is reported, kept, then forced."""
    bundle = bundle_of(demo_registry)
    provision(grafana_api, bundle)
    grafana.edit_dashboard_by_hand(
        "decor-overview", lambda model: model["panels"].pop()
    )
    edited = grafana.dashboard("decor-overview")

    kept = provision(grafana_api, bundle)
    forced = provision(grafana_api, bundle, force=True)
    again = provision(grafana_api, bundle)

    [problem] = kept.problems
    assert (problem.uid, problem.action) == ("decor-overview", "kept")
    assert "edited in Grafana" in problem.detail and "--force" in problem.detail
    assert [c.uid for c in forced.changed] == ["decor-overview"]
    assert forced.changed[0].action == "overwritten"
    restored = grafana.dashboard("decor-overview")
    assert len(restored["panels"]) == len(edited["panels"]) + 1
    assert restored["version"] == 3
    assert again.changed == [] and again.problems == []


def test_provision_new_device_updates_map_dashboard_and_rules(
    demo_registry, grafana, grafana_api
):
    """Test that registering a gauge and provisioning again updates what shows it."""
    provision(grafana_api, bundle_of(demo_registry))
    demo_registry.add_device(
        DeviceIn(
            device_id="rg-ciliwung-09",
            profile="river_gauge",
            agency="dinas-pupr",
            site="ciliwung-pancoran-mas",
        ),
        ACTOR,
    )

    report = provision(grafana_api, bundle_of(demo_registry))

    changed = {c.uid for c in report.changed}
    assert changed == {
        "decor-overview",
        "decor-device-detail",
        "decor-gateway-health",
        "decor-profile-dinas-pupr-river_gauge",
        "decor-agency-dinas-pupr/Pos duga air",
    }
    overview = grafana.dashboard("decor-overview")
    geomap = next(p for p in overview["panels"] if p["type"] == "geomap")
    assert "rg-ciliwung-09" in geomap["targets"][0]["csvContent"]
    river = grafana.dashboard("decor-profile-dinas-pupr-river_gauge")
    assert "rg-ciliwung-09" in river["panels"][0]["targets"][0]["query"]
    rules = grafana.state.rule_groups[("decor-agency-dinas-pupr", "Pos duga air")][
        "rules"
    ]
    assert all("rg-ciliwung-09" in r["data"][0]["model"]["query"] for r in rules)


def test_provision_version_conflict_between_read_and_write_read_again(
    demo_registry, grafana, grafana_api
):
    """Test that a 412 version-mismatch makes the client read again and save once."""
    provision(grafana_api, bundle_of(demo_registry))
    demo_registry.add_device(
        DeviceIn(
            device_id="rg-ciliwung-09",
            profile="river_gauge",
            agency="dinas-pupr",
            site="ciliwung-pancoran-mas",
        ),
        ACTOR,
    )
    uid = "decor-profile-dinas-pupr-river_gauge"
    raced: list[str] = []

    def someone_saves_first(method: str, path: str) -> None:
        # The dashboard is saved elsewhere (same content, new version) between
        # the client's read and its write: Grafana answers the write with 412.
        if method == "GET" and path == f"/dashboards/uid/{uid}" and not raced:
            raced.append("read")
        elif method == "POST" and raced == ["read"]:
            raced.append("saved elsewhere")
            grafana.edit_dashboard_by_hand(uid, lambda model: None)

    grafana.before_request = someone_saves_first
    report = provision(grafana_api, bundle_of(demo_registry))

    assert raced and (_status_of(grafana, "POST", "/api/dashboards/db", 412))
    change = next(c for c in report.changes if c.uid == uid)
    assert change.action == "update"
    assert (
        "rg-ciliwung-09" in grafana.dashboard(uid)["panels"][0]["targets"][0]["query"]
    )
    assert grafana.dashboard(uid)["version"] == 3


def _status_of(grafana: GrafanaStandIn, method: str, path: str, status: int) -> bool:
    return any(r == (method, path, status) for r in grafana.requests)


def test_provision_datasource_name_taken_reported_others_go_on(
    demo_registry, grafana, grafana_api
):
    """Test that a 409 for a taken datasource name fails that object alone."""
    grafana.state.datasources["someone-elses"] = {
        "uid": "someone-elses",
        "name": "DeCOR InfluxDB",
        "type": "influxdb",
        "id": 99,
        "version": 1,
        "readOnly": False,
        "jsonData": {},
    }

    report = provision(grafana_api, bundle_of(demo_registry))

    problems = {c.uid: c.detail for c in report.problems}
    assert problems.pop("decor-influxdb") == (
        "409 data source with the same name already exists"
    )
    # Grafana refuses rules whose datasource is missing; dashboards go ahead.
    assert len(problems) == 3
    assert all("data source decor-influxdb not found" in d for d in problems.values())
    assert {c.kind for c in report.changed} == {"datasource", "folder", "dashboard"}
    assert len(grafana.state.dashboards) == 7


@pytest.mark.parametrize("token", [None, "glsa_wrong"])
def test_provision_refused_token_stops_with_reason(demo_registry, grafana, token):
    """Test that a missing or wrong token stops provisioning with Grafana's reason."""
    api = GrafanaApi.from_url(grafana.url, credential=token)

    with pytest.raises(GrafanaUnreachable) as caught:
        provision(api, bundle_of(demo_registry))
    api.client.s.close()

    expected = (
        "Unauthorized (auth.unauthorized)" if token is None else "Invalid API key"
    )
    assert expected in str(caught.value)
    assert _writes(grafana) == []


def test_provision_unreachable_grafana_stops_with_reason(demo_registry):
    """Test that a Grafana nobody listens for is reported as unreachable."""
    api = GrafanaApi.from_url("http://127.0.0.1:9", credential="glsa_x", timeout=2)

    with pytest.raises(GrafanaUnreachable, match="cannot be reached|failed"):
        provision(api, bundle_of(demo_registry))
    api.client.s.close()


def test_standin_refuses_requests_outside_the_contract(grafana, grafana_api):
    """Test that the stand-in refuses a body its schema forbids and records it."""
    from grafana_client.client import GrafanaBadInputError

    with pytest.raises(GrafanaBadInputError):
        grafana_api.folder.client.POST("/folders", json={"title": 42, "uid": "x"})

    assert grafana.violations == [
        "POST /folders: body $.title: 42 is not of type 'string'"
    ]
    grafana.violations.clear()


# The case shared/cases/C22-grafana-412-conflicts.md, on a Grafana 11.2
# (titles must be unique within a folder there).

C22_A = {
    "uid": "iot-overview",
    "title": "IoT Overview",
    "version": 3,
    "schemaVersion": 39,
    "tags": ["managed-by:gateway"],
    "panels": [
        {
            "id": 1,
            "type": "timeseries",
            "title": "Temperature (gateway)",
            "gridPos": {"h": 8, "w": 24, "x": 0, "y": 0},
        }
    ],
}
C22_B = {
    "uid": "iot-detail",
    "title": "Device Detail",
    "version": 1,
    "schemaVersion": 39,
    "tags": ["managed-by:gateway"],
    "panels": [
        {
            "id": 1,
            "type": "stat",
            "title": "Last seen",
            "gridPos": {"h": 6, "w": 8, "x": 0, "y": 0},
        }
    ],
}


@pytest.fixture
def c22_grafana() -> Iterator[GrafanaStandIn]:
    """Give a Grafana 11.2 stand-in set up as in case C22."""
    standin = GrafanaStandIn(version="11.2.0")
    standin.start()
    standin.add_folder("iot-telemetry", "Telemetry")
    # iot-overview: written by the gateway (its tag), then edited in the UI
    # up to version 7. man-42: made by hand, titled like the gateway's B.
    overview = {
        **C22_A,
        "tags": [MANAGED_TAG],
        "panels": [{**C22_A["panels"][0], "title": "Temperature (edited by a user)"}],
    }
    standin.add_dashboard(overview, "iot-telemetry", version=7)
    standin.add_dashboard(
        {
            "uid": "man-42",
            "title": "Device Detail",
            "schemaVersion": 39,
            "tags": [],
            "panels": [
                {
                    "id": 1,
                    "type": "text",
                    "title": "Notes",
                    "gridPos": {"h": 4, "w": 8, "x": 0, "y": 0},
                }
            ],
        },
        "iot-telemetry",
        version=2,
    )
    yield standin
    standin.stop()
    assert standin.violations == []


def _c22_bundle() -> Bundle:
    def generated(model: dict) -> GeneratedDashboard:
        content = {k: v for k, v in model.items() if k != "version"}
        content["tags"] = [MANAGED_TAG]
        content.setdefault("templating", {"list": []})
        content.setdefault("annotations", {"list": []})
        return GeneratedDashboard(
            model["uid"], model["title"], "iot-telemetry", content
        )

    return Bundle(
        [],
        [Folder("iot-telemetry", "Telemetry")],
        [generated(C22_A), generated(C22_B)],
        [],
    )


def test_c22_edited_dashboard_overwritten_with_force_name_conflict_kept(
    c22_grafana, caplog
):
    """Test case C22: A forced to version 8, B refused, man-42 untouched."""
    api = GrafanaApi.from_url(c22_grafana.url, credential=c22_grafana.token)
    man_42 = c22_grafana.dashboard("man-42")
    caplog.set_level(logging.INFO, logger="gateway.grafana.provision")

    report = provision(api, _c22_bundle(), force=True)
    restart = provision(api, _c22_bundle(), force=True)
    api.client.s.close()

    actions = {c.uid: c for c in report.changes}
    assert actions["iot-overview"].action == "overwritten"
    overview = c22_grafana.dashboard("iot-overview")
    assert overview["version"] == 8
    assert overview["panels"][0]["title"] == "Temperature (gateway)"
    assert c22_grafana.state.dashboards["iot-overview"]["folderUid"] == "iot-telemetry"
    assert "hand edits up to version 7 overwritten" in caplog.text
    assert actions["iot-detail"].action == "failed"
    assert actions["iot-detail"].detail.startswith(
        "title 'Device Detail' is already used by another dashboard in folder "
        "iot-telemetry (uid man-42)"
    )
    assert c22_grafana.dashboard("man-42") == man_42
    assert "iot-detail" not in c22_grafana.state.dashboards
    titles = [d["dashboard"]["title"] for d in c22_grafana.state.dashboards.values()]
    assert titles.count("IoT Overview") == 1
    assert _status_of(c22_grafana, "POST", "/api/dashboards/db", 412)
    assert {c.uid: c.action for c in restart.changes}["iot-overview"] == "unchanged"
    assert c22_grafana.dashboard("iot-overview")["version"] == 8


def test_c22_edited_dashboard_kept_without_force(c22_grafana):
    """Test case C22 without --force: the user's edits to A stay, reported."""
    api = GrafanaApi.from_url(c22_grafana.url, credential=c22_grafana.token)

    report = provision(api, _c22_bundle())
    api.client.s.close()

    actions = {c.uid: c.action for c in report.changes}
    assert actions == {
        "iot-telemetry": "unchanged",
        "iot-overview": "kept",
        "iot-detail": "failed",
    }
    assert c22_grafana.dashboard("iot-overview")["version"] == 7


# The command line


def _config(tmp_path: Path, registry_url: str) -> Path:
    path = tmp_path / "gateway.toml"
    path.write_text(
        f'[registry]\ndatabase_url = "{registry_url}"\n'
        '[grafana]\nlocale = "en"\n'
        '[[subscriptions]]\ntopic = "city/#"\n'
    )
    return path


@pytest.fixture
def demo_config(demo_registry, tmp_path) -> Path:
    """Give a configuration file naming the demo registry."""
    url = str(demo_registry.sessions.kw["bind"].url)
    return _config(tmp_path, url)


def test_cli_provision_then_dry_run_reports_nothing_to_change(demo_config, grafana):
    """Test that decor grafana provision pushes, and a dry run then finds no change."""
    runner = CliRunner()
    args = [
        "grafana",
        "provision",
        "-c",
        str(demo_config),
        "--url",
        grafana.url,
        "--token",
        grafana.token,
    ]

    first = runner.invoke(app, args)
    dry = runner.invoke(app, [*args, "--dry-run"])

    assert first.exit_code == 0, first.output
    assert "16 changed, 0 unchanged" in first.output
    assert dry.exit_code == 0 and "0 would change, 16 unchanged" in dry.output
    assert grafana.dashboard("decor-overview")["title"] == "City overview"


def test_cli_provision_reports_kept_dashboard_with_exit_1(demo_config, grafana):
    """Test that a hand-edited dashboard makes the command exit 1 naming it."""
    runner = CliRunner()
    args = [
        "grafana",
        "provision",
        "-c",
        str(demo_config),
        "--url",
        grafana.url,
        "--token",
        grafana.token,
    ]
    runner.invoke(app, args)
    grafana.edit_dashboard_by_hand("decor-cctv-wall", lambda m: m.update(refresh="5s"))

    result = runner.invoke(app, args)

    assert result.exit_code == 1
    assert "decor-cctv-wall" in result.output and "kept" in result.output


def test_cli_provision_wrong_token_exits_2(demo_config, grafana):
    """Test that a refused token gives one line and exit code 2."""
    result = CliRunner().invoke(
        app,
        [
            "grafana",
            "provision",
            "-c",
            str(demo_config),
            "--url",
            grafana.url,
            "--token",
            "glsa_wrong",
        ],
    )

    assert result.exit_code == 2
    assert "Grafana refused the credentials: 401 Invalid API key" in result.output


def test_cli_provision_to_files_writes_provisioning(demo_config, tmp_path):
    """Test that --to-files writes file provisioning that follows Grafana's rules."""
    out = tmp_path / "out"

    result = CliRunner().invoke(
        app, ["grafana", "provision", "-c", str(demo_config), "--to-files", str(out)]
    )

    assert result.exit_code == 0, result.output
    assert "7 dashboards, 2 datasources, 12 alert rules" in result.output
    assert check_file_provisioning(out, "/etc/grafana/decor/dashboards") == []
