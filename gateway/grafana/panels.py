"""Panel pieces shared by the generated dashboards: queries, thresholds, layout."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from grafana_foundation_sdk.builders import common as common_builders
from grafana_foundation_sdk.builders import dashboard as dashboard_builders
from grafana_foundation_sdk.models import common
from grafana_foundation_sdk.models import dashboard as dashboard_model

from devices.profiles import DeviceProfile
from gateway.grafana.city import City, CityDevice
from gateway.grafana.influxql import quote_identifier, quote_string, regex_of
from gateway.grafana.naming import DATASOURCE_UID, Generation

__all__ = [
    "INFLUX",
    "LEVEL_COLOURS",
    "device_filter",
    "grid",
    "key_field",
    "level_thresholds",
    "online_window_s",
    "reduce_last",
]

INFLUX = dashboard_model.DataSourceRef(type_val="influxdb", uid=DATASOURCE_UID)
# Colours of alert levels, lowest first (the first is the base: no alert).
LEVEL_COLOURS = ("green", "yellow", "orange", "red", "dark-red", "purple")
# How many report intervals without a reading make a device offline.
MISSED_REPORTS_OFFLINE = 3


def key_field(profile: DeviceProfile) -> str:
    """Return a profile's key reading: its first field with alert levels, or first."""
    if profile.alert_levels:
        return next(iter(profile.alert_levels))
    return next(iter(profile.fields))


def device_filter(devices: Sequence[CityDevice]) -> str:
    """Return an InfluxQL condition matching exactly these devices."""
    return f'"device_id" =~ {regex_of([d.device_id for d in devices])}'


def agency_condition(agency: str) -> str:
    """Return an InfluxQL condition on the agency tag."""
    return f'"agency" = {quote_string(agency)}'


def measurement(profile: str) -> str:
    """Return the measurement of a profile's points (the profile's name)."""
    return quote_identifier(profile)


def online_window_s(settings: Generation, profile: DeviceProfile) -> int:
    """Return how recent a reading must be for a device of `profile` to be online."""
    if settings.online_window_s is not None:
        return int(settings.online_window_s)
    return int(MISSED_REPORTS_OFFLINE * profile.report_interval_s)


def map_window_s(settings: Generation, city: City) -> int:
    """Return the online window of the map: the longest of the profiles shown."""
    windows = [
        online_window_s(settings, city.profiles[p]) for p in city.profiles_in_use()
    ]
    return max(windows, default=int(settings.online_window_s or 900))


def level_thresholds(
    levels: Mapping[str, float],
) -> dashboard_builders.ThresholdsConfig:
    """Return thresholds whose steps are a field's alert levels, lowest as the base."""
    ordered = sorted(levels.items(), key=lambda item: item[1])
    steps = [
        dashboard_model.Threshold(
            value=None if index == 0 else value,
            color=LEVEL_COLOURS[min(index, len(LEVEL_COLOURS) - 1)],
        )
        for index, (_, value) in enumerate(ordered)
    ]
    return (
        dashboard_builders.ThresholdsConfig()
        .mode(dashboard_model.ThresholdsMode.ABSOLUTE)
        .steps(steps)
    )


def count_thresholds(expected: int) -> dashboard_builders.ThresholdsConfig:
    """Return thresholds that are red below `expected` and green at it."""
    return (
        dashboard_builders.ThresholdsConfig()
        .mode(dashboard_model.ThresholdsMode.ABSOLUTE)
        .steps(
            [
                dashboard_model.Threshold(value=None, color="red"),
                dashboard_model.Threshold(value=float(max(expected, 1)), color="green"),
            ]
        )
    )


def reduce_last() -> common_builders.ReduceDataOptions:
    """Return reduce options that show each series' last non-null value."""
    return common_builders.ReduceDataOptions().calcs(["lastNotNull"]).values(False)


def grid(x: int, y: int, w: int, h: int) -> dashboard_model.GridPos:
    """Return a panel position; x and w in Grafana's 24 columns."""
    return dashboard_model.GridPos(h=h, w=w, x=x, y=y)


def legend_table() -> common_builders.VizLegendOptions:
    """Return a legend listing each series with its last value."""
    return (
        common_builders.VizLegendOptions()
        .display_mode(common.LegendDisplayMode.TABLE)
        .placement(common.LegendPlacement.RIGHT)
        .show_legend(True)
        .calcs(["lastNotNull", "max"])
    )
