"""What the Grafana tests share: the demo city, the schema, file checks."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from jsonschema import Draft7Validator

from devices.profiles import load_profiles
from gateway.grafana import (
    Bundle,
    City,
    Generation,
    InfluxSource,
    build_bundle,
    read_city,
)
from gateway.grafana.demo import seed_demo_registry
from gateway.registry import Registry
from tests.grafana_standin import CONTRACT_DIR

INFLUX = InfluxSource("http://127.0.0.1:18086", "1.x", "decor")
ACTOR = "test-technician"


def dashboard_validator() -> Draft7Validator:
    """Return a validator for the dashboard JSON schema of the contract."""
    schema = json.loads((CONTRACT_DIR / "dashboard.schema.json").read_text("utf-8"))
    return Draft7Validator(schema)


def schema_errors(model: dict[str, Any]) -> list[str]:
    """Return each way a dashboard model breaks the schema, as text."""
    return [
        f"{error.json_path}: {error.message[:200]}"
        for error in dashboard_validator().iter_errors(model)
    ]


@pytest.fixture
def demo_registry(tmp_path: Path) -> Iterator[Registry]:
    """Give a SQLite registry holding the demo city of `make demo`."""
    registry = Registry.open(
        f"sqlite:///{tmp_path / 'registry.db'}", profiles=load_profiles()
    )
    seed_demo_registry(registry)
    yield registry
    registry.close()


def city_of(registry: Registry) -> City:
    """Return the city the registry describes."""
    return read_city(registry, load_profiles())


def bundle_of(registry: Registry, locale: str = "id") -> Bundle:
    """Return everything generated for the registry's city."""
    settings = Generation(locale="en" if locale == "en" else "id")
    return build_bundle(city_of(registry), settings, INFLUX)


def influxql_targets(model: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """Yield (panel title, target) for every InfluxQL target of a dashboard."""
    for panel in model.get("panels", []):
        for target in panel.get("targets", []):
            if target.get("datasource", {}).get("type") == "influxdb":
                yield panel.get("title", ""), target


def check_file_provisioning(out_dir: Path, dashboards_path: str) -> list[str]:
    """Return what breaks Grafana's file-provisioning rules in `out_dir`.

    The rules are Grafana's documented ones: `apiVersion: 1`; each datasource
    with a name, type, access and a uid unique in the org; each dashboard
    provider of type `file` whose `options.path` holds the dashboards of its
    folder, each dashboard JSON with a uid unique across providers; alert rule
    groups with a name, folder, a duration-string interval and rules that name
    their condition among their queries.
    """
    problems: list[str] = []
    provisioning = out_dir / "provisioning"
    sources = yaml.safe_load((provisioning / "datasources" / "decor.yaml").read_text())
    problems += _api_version(sources, "datasources")
    seen: set[str] = set()
    for source in sources.get("datasources", []):
        for key in ("name", "type", "access", "uid"):
            if not source.get(key):
                problems.append(f"datasource {source.get('name')} lacks {key}")
        if source.get("uid") in seen:
            problems.append(f"datasource uid {source['uid']} twice")
        seen.add(source.get("uid"))
    providers = yaml.safe_load((provisioning / "dashboards" / "decor.yaml").read_text())
    problems += _api_version(providers, "dashboards")
    uids: set[str] = set()
    for provider in providers.get("providers", []):
        if provider.get("type") != "file" or not provider.get("folderUid"):
            problems.append(
                f"provider {provider.get('name')}: type file and folderUid needed"
            )
        path = provider["options"]["path"]
        if not path.startswith(dashboards_path):
            problems.append(
                f"provider {provider['name']}: path {path} outside {dashboards_path}"
            )
        local = out_dir / "dashboards" / Path(path).relative_to(dashboards_path)
        files = sorted(local.glob("*.json"))
        if not files:
            problems.append(f"provider {provider['name']}: no dashboards in {local}")
        for file in files:
            model = json.loads(file.read_text("utf-8"))
            if model.get("uid") in uids:
                problems.append(f"dashboard uid {model.get('uid')} twice")
            uids.add(model.get("uid"))
            problems += [f"{file.name} {e}" for e in schema_errors(model)]
    rules = yaml.safe_load((provisioning / "alerting" / "decor.yaml").read_text())
    problems += _api_version(rules, "alerting")
    folders = {p["folder"] for p in providers["providers"]}
    for group in rules.get("groups", []):
        if group.get("folder") not in folders:
            problems.append(
                f"rule group {group.get('name')}: folder {group.get('folder')} "
                "not provisioned"
            )
        if not str(group.get("interval", "")).endswith("s"):
            problems.append(
                f"rule group {group.get('name')}: interval must be a duration"
            )
        for rule in group.get("rules", []):
            refs = [query["refId"] for query in rule.get("data", [])]
            if rule.get("condition") not in refs or not rule.get("uid"):
                problems.append(f"rule {rule.get('title')}: condition or uid missing")
    return problems


def _api_version(document: dict[str, Any], name: str) -> list[str]:
    return [] if document.get("apiVersion") == 1 else [f"{name}: apiVersion must be 1"]
