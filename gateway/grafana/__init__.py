"""Grafana provisioning: datasource, folders, dashboards and alert rules generated
from the registry and the device profiles, pushed to Grafana or written as files."""

from gateway.grafana.alerting import GeneratedRuleGroup, build_rule_groups
from gateway.grafana.bundle import (
    Bundle,
    Folder,
    InfluxSource,
    build_bundle,
    influx_source_of,
)
from gateway.grafana.city import City, CityCamera, CityDevice, CitySite, read_city
from gateway.grafana.dashboards import GeneratedDashboard, build_dashboards
from gateway.grafana.files import write_files
from gateway.grafana.influxql import expand_query
from gateway.grafana.naming import Generation, stable_uid
from gateway.grafana.provision import (
    Change,
    GrafanaUnreachable,
    ProvisionReport,
    provision,
)

__all__ = [
    "Bundle",
    "Change",
    "City",
    "CityCamera",
    "CityDevice",
    "CitySite",
    "Folder",
    "GeneratedDashboard",
    "GeneratedRuleGroup",
    "Generation",
    "GrafanaUnreachable",
    "InfluxSource",
    "ProvisionReport",
    "build_bundle",
    "build_dashboards",
    "build_rule_groups",
    "expand_query",
    "influx_source_of",
    "provision",
    "read_city",
    "stable_uid",
    "write_files",
]
