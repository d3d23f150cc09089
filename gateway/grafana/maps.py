"""The city map: sensors and cameras at their sites, coloured by whether they report.

InfluxDB holds no coordinates, so the registry's positions travel inside the
panel as inline CSV of Grafana's bundled TestData datasource (target A). The
InfluxDB targets count each device's and camera's recent points; the panel's
transformations join both on the `name` column, and a marker is green when
its `readings` count is above zero, red when it is zero or missing.
"""

from __future__ import annotations

import csv
import io

from grafana_foundation_sdk.builders import common as common_builders
from grafana_foundation_sdk.builders import geomap, testdata
from grafana_foundation_sdk.models import common
from grafana_foundation_sdk.models import dashboard as dashboard_model

from gateway.grafana.city import City
from gateway.grafana.influxql import InfluxQLTarget, quote_identifier, regex_of
from gateway.grafana.naming import DATASOURCE_UID, STATIC_DATASOURCE_UID, Generation
from gateway.grafana.panels import (
    count_thresholds,
    device_filter,
    key_field,
    map_window_s,
    measurement,
)

__all__ = ["map_csv", "map_panel"]

STATIC = dashboard_model.DataSourceRef(
    type_val="grafana-testdata-datasource", uid=STATIC_DATASOURCE_UID
)
MIXED = dashboard_model.DataSourceRef(type_val="datasource", uid="-- Mixed --")
# Depok's centre, used when no site has a position.
DEFAULT_CENTRE = (-6.4025, 106.7942)


def map_csv(city: City) -> str:
    """Return the map's inline CSV: one row per placed device and camera."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(
        ["name", "kind", "profile", "agency", "site", "latitude", "longitude"]
    )
    for device in city.devices:
        site = city.site(device.site)
        if site and site.latitude is not None and site.longitude is not None:
            writer.writerow(
                [
                    device.device_id,
                    "sensor",
                    device.profile,
                    device.agency,
                    site.name,
                    site.latitude,
                    site.longitude,
                ]
            )
    for camera in city.cameras:
        site = city.site(camera.site)
        if site and site.latitude is not None and site.longitude is not None:
            writer.writerow(
                [
                    camera.camera_id,
                    "camera",
                    "camera",
                    camera.agency,
                    site.name,
                    site.latitude,
                    site.longitude,
                ]
            )
    return out.getvalue()


def map_panel(city: City, settings: Generation) -> geomap.Panel:
    """Return the geomap panel of every placed device and camera."""
    words = settings.words
    window = map_window_s(settings, city)
    panel = (
        geomap.Panel()
        .title(words.text("map"))
        .description(words.text("map_state", window=f"{window // 60} min"))
        .datasource(MIXED)
        .with_target(
            testdata.Dataquery()
            .ref_id("A")
            .datasource(STATIC)
            .scenario_id("csv_content")
            .csv_content(map_csv(city))
        )
        .thresholds(count_thresholds(1))
        .view(
            geomap.MapViewConfig()
            .id("coords")
            .lat(_centre(city)[0])
            .lon(_centre(city)[1])
            .zoom(12)
        )
        .layers([_markers(words.text("map"))])
    )
    for number, profile_name in enumerate(city.profiles_in_use(), start=1):
        field = quote_identifier(key_field(city.profiles[profile_name]))
        devices = city.devices_of(profile=profile_name)
        panel.with_target(
            InfluxQLTarget(
                chr(ord("A") + number),
                f'SELECT count({field}) AS "readings" FROM {measurement(profile_name)} '
                f"WHERE {device_filter(devices)} AND time > now() - {window}s "
                'GROUP BY "device_id"',
                DATASOURCE_UID,
                "table",
            )
        )
    if city.cameras:
        ids = [camera.camera_id for camera in city.cameras]
        panel.with_target(
            InfluxQLTarget(
                "CAM",
                'SELECT count("latency_ms") AS "readings" FROM "camera_health" '
                f'WHERE "camera" =~ {regex_of(ids)} AND time > now() - {window}s '
                'GROUP BY "camera"',
                DATASOURCE_UID,
                "table",
            )
        )
    for transformation in _join_on_name():
        panel.with_transformation(transformation)
    return panel


def _markers(name: str) -> common_builders.MapLayerOptions:
    return (
        common_builders.MapLayerOptions()
        .type("markers")
        .name(name)
        .location(
            common_builders.FrameGeometrySource()
            .mode(common.FrameGeometrySourceMode.COORDS)
            .latitude("latitude")
            .longitude("longitude")
        )
        .config(
            {
                "showLegend": True,
                "style": {
                    "color": {"field": "readings"},
                    "size": {"fixed": 8},
                    "symbol": {"fixed": "img/icons/marker/circle.svg", "mode": "fixed"},
                    "text": {"field": "name", "mode": "field"},
                },
            }
        )
        .tooltip(True)
    )


def _join_on_name() -> list[dashboard_model.DataTransformerConfig]:
    # The InfluxDB tables name their key column device_id or camera; renamed to
    # `name`, they join the registry's rows.
    return [
        dashboard_model.DataTransformerConfig(
            id_val="organize",
            options={"renameByName": {"device_id": "name", "camera": "name"}},
        ),
        dashboard_model.DataTransformerConfig(
            id_val="joinByField", options={"byField": "name", "mode": "outer"}
        ),
    ]


def _centre(city: City) -> tuple[int, int]:
    # The SDK types the view's centre as integers; Grafana accepts any number.
    placed = [
        (s.latitude, s.longitude)
        for s in city.sites
        if s.latitude is not None and s.longitude is not None
    ]
    if not placed:
        return DEFAULT_CENTRE  # type: ignore[return-value]
    lat = sum(p[0] for p in placed) / len(placed)
    lon = sum(p[1] for p in placed) / len(placed)
    return round(lat, 4), round(lon, 4)  # type: ignore[return-value]
