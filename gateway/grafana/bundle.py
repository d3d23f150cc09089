"""Everything provisioned into Grafana, generated together: datasources, folders,
dashboards and alert rule groups."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from gateway.config import GatewayConfig
from gateway.grafana.alerting import GeneratedRuleGroup, build_rule_groups
from gateway.grafana.city import City
from gateway.grafana.dashboards import (
    GeneratedDashboard,
    build_dashboards,
    folder_uid_of,
)
from gateway.grafana.naming import (
    CITY_FOLDER_UID,
    DATASOURCE_UID,
    STATIC_DATASOURCE_UID,
    Generation,
)

__all__ = ["Bundle", "Folder", "InfluxSource", "build_bundle", "influx_source_of"]

DATASOURCE_NAME = "DeCOR InfluxDB"
STATIC_DATASOURCE_NAME = "DeCOR registry positions"
# Secrets in provisioning files are environment references that Grafana
# expands when it reads them, so generated files never hold a password.
PASSWORD_REFERENCE = "${DECOR_INFLUX__PASSWORD}"
TOKEN_REFERENCE = "${DECOR_INFLUX__TOKEN}"


@dataclass(frozen=True)
class Folder:
    """A Grafana folder with a stable uid."""

    uid: str
    title: str


@dataclass(frozen=True)
class InfluxSource:
    """How Grafana reaches InfluxDB.

    Args:
        database: 1.x: the database; 2.x: the database name a DBRP mapping
            gives the bucket.
        secret: 1.x: the password; 2.x: the token; None: written as an
            environment reference (files) or left out (API).
    """

    url: str
    version: Literal["1.x", "2.x"]
    database: str
    username: str | None = None
    secret: str | None = field(default=None, repr=False)


@dataclass(frozen=True)
class Bundle:
    """The generated objects, in the order Grafana needs them created."""

    datasources: list[dict[str, Any]]
    folders: list[Folder]
    dashboards: list[GeneratedDashboard]
    rule_groups: list[GeneratedRuleGroup]


def influx_source_of(settings: GatewayConfig) -> InfluxSource:
    """Return the datasource settings a gateway configuration implies."""
    grafana = settings.grafana
    influx = settings.influx
    url = grafana.influx_url or influx.url
    if grafana.influx_version == "2.x":
        return InfluxSource(url, "2.x", influx.bucket, None, influx.token or None)
    return InfluxSource(url, "1.x", influx.database, influx.username, influx.password)


def build_bundle(city: City, settings: Generation, influx: InfluxSource) -> Bundle:
    """Generate every Grafana object for `city`."""
    folders = [Folder(CITY_FOLDER_UID, settings.words.text("city_folder"))]
    folders += [Folder(folder_uid_of(agency), name) for agency, name in city.agencies]
    return Bundle(
        datasources=[_influx_datasource(influx), _static_datasource()],
        folders=folders,
        dashboards=build_dashboards(city, settings),
        rule_groups=build_rule_groups(city, settings),
    )


def _influx_datasource(influx: InfluxSource) -> dict[str, Any]:
    json_data: dict[str, Any] = {
        "dbName": influx.database,
        "httpMode": "POST",
        "version": "InfluxQL",
    }
    body: dict[str, Any] = {
        "uid": DATASOURCE_UID,
        "name": DATASOURCE_NAME,
        "type": "influxdb",
        "access": "proxy",
        "url": influx.url,
        "isDefault": True,
        "jsonData": json_data,
    }
    if influx.version == "2.x":
        # InfluxQL on 2.x authenticates with the token in a header.
        json_data["httpHeaderName1"] = "Authorization"
        body["secureJsonData"] = {
            "httpHeaderValue1": f"Token {influx.secret or TOKEN_REFERENCE}"
        }
    elif influx.username:
        body["user"] = influx.username
        body["secureJsonData"] = {"password": influx.secret or PASSWORD_REFERENCE}
    return body


def _static_datasource() -> dict[str, Any]:
    return {
        "uid": STATIC_DATASOURCE_UID,
        "name": STATIC_DATASOURCE_NAME,
        "type": "grafana-testdata-datasource",
        "access": "proxy",
        "isDefault": False,
        "jsonData": {},
    }
