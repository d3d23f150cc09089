"""Build the dashboards operators watch, from the registry and the device profiles.

Every dashboard is built with grafana-foundation-sdk and returned as Grafana's
JSON model with a stable uid. Queries name measurements and tags as the
gateway writes them: measurement = the profile (`measurement =
"{device_type}"`), tags `agency` and `device_id`; camera health as the CCTV
sampler writes it (`camera_health`, tag `camera`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from grafana_foundation_sdk.builders import common as common_builders
from grafana_foundation_sdk.builders import dashboard as dashboard_builders
from grafana_foundation_sdk.builders import stat, table, text, timeseries
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import common
from grafana_foundation_sdk.models import dashboard as dashboard_model
from grafana_foundation_sdk.models import text as text_model

from gateway.grafana.city import City
from gateway.grafana.influxql import (
    InfluxQLTarget,
    quote_identifier,
    quote_string,
    regex_of,
)
from gateway.grafana.maps import map_panel
from gateway.grafana.naming import (
    CITY_FOLDER_UID,
    DATASOURCE_UID,
    MANAGED_TAG,
    Generation,
    stable_uid,
)
from gateway.grafana.panels import (
    INFLUX,
    agency_condition,
    count_thresholds,
    device_filter,
    grid,
    key_field,
    legend_table,
    level_thresholds,
    measurement,
    online_window_s,
    reduce_last,
)

__all__ = ["GeneratedDashboard", "build_dashboards", "folder_uid_of"]

# How often an open dashboard reloads its data.
REFRESH = "1m"


@dataclass(frozen=True)
class GeneratedDashboard:
    """A dashboard's JSON model and the folder it belongs in."""

    uid: str
    title: str
    folder_uid: str
    model: dict[str, Any]


def folder_uid_of(agency: str) -> str:
    """Return the stable uid of an agency's folder."""
    return stable_uid("agency", agency)


def build_dashboards(city: City, settings: Generation) -> list[GeneratedDashboard]:
    """Return every dashboard for `city`, in a stable order."""
    built = [
        _overview(city, settings),
        _device_detail(city, settings),
        _cctv_wall(city, settings),
        _gateway_health(city, settings),
    ]
    for agency, _ in city.agencies:
        for profile in city.profiles_in_use():
            if city.devices_of(agency=agency, profile=profile):
                built.append(_profile_dashboard(city, settings, agency, profile))
    return built


def _finish(
    builder: dashboard_builders.Dashboard, uid: str, title: str, folder_uid: str
) -> GeneratedDashboard:
    model = json.loads(json.dumps(builder.build(), cls=JSONEncoder))
    # Panel ids must be unique within a dashboard for links and the editor.
    for number, panel in enumerate(model.get("panels", []), start=1):
        panel["id"] = number
    return GeneratedDashboard(uid, title, folder_uid, model)


def _dashboard(uid: str, title: str, tags: list[str]) -> dashboard_builders.Dashboard:
    return (
        dashboard_builders.Dashboard(title)
        .uid(uid)
        .tags([MANAGED_TAG, *tags])
        .refresh(REFRESH)
        .time("now-6h", "now")
        .timezone("browser")
        .tooltip(dashboard_model.DashboardCursorSync.CROSSHAIR)
    )


def _overview(city: City, settings: Generation) -> GeneratedDashboard:
    words = settings.words
    uid = stable_uid("overview")
    title = words.text("overview")
    board = _dashboard(uid, title, ["overview"])
    x = y = 0

    # Online devices: one stat per agency and profile, green when all report.
    for agency, agency_name in city.agencies:
        for profile_name in city.profiles_in_use():
            devices = city.devices_of(agency=agency, profile=profile_name)
            if not devices:
                continue
            profile = city.profiles[profile_name]
            window = online_window_s(settings, profile)
            query = (
                f'SELECT count("last") AS "online" FROM (SELECT last('
                f"{quote_identifier(key_field(profile))}) FROM "
                f"{measurement(profile_name)} WHERE {agency_condition(agency)} AND "
                f"{device_filter(devices)} AND time > now() - {window}s "
                'GROUP BY "device_id")'
            )
            panel = (
                stat.Panel()
                .title(
                    words.text(
                        "online",
                        profile=words.profile(profile_name),
                        agency=agency_name,
                        count=len(devices),
                    )
                )
                .datasource(INFLUX)
                .with_target(InfluxQLTarget("A", query, DATASOURCE_UID))
                .thresholds(count_thresholds(len(devices)))
                .color_mode(common.BigValueColorMode.BACKGROUND)
                .graph_mode(common.BigValueGraphMode.NONE)
                .reduce_options(reduce_last())
                .no_value("0")
                .grid_pos(grid(x, y, 6, 4))
            )
            board.with_panel(panel)
            x, y = (x + 6, y) if x < 18 else (0, y + 4)
    y += 4

    # Latest key reading of every device, coloured by its profile's alert levels.
    for profile_name in city.profiles_in_use():
        devices = city.devices_of(profile=profile_name)
        profile = city.profiles[profile_name]
        field = key_field(profile)
        query = (
            f"SELECT last({quote_identifier(field)}) FROM "
            f"{measurement(profile_name)} WHERE {device_filter(devices)} AND "
            '$timeFilter GROUP BY "device_id"'
        )
        panel = (
            stat.Panel()
            .title(
                f"{words.text('latest', field=words.field(field))}: "
                f"{words.profile(profile_name)}"
            )
            .datasource(INFLUX)
            .with_target(
                InfluxQLTarget("A", query, DATASOURCE_UID, alias="$tag_device_id")
            )
            .unit(words.unit(profile.fields[field].unit))
            .reduce_options(reduce_last())
            .color_mode(common.BigValueColorMode.BACKGROUND)
            .graph_mode(common.BigValueGraphMode.NONE)
            .grid_pos(grid(0, y, 24, 5))
        )
        levels = profile.alert_levels.get(field)
        if levels:
            panel.thresholds(level_thresholds(levels))
        board.with_panel(panel)
        y += 5

    board.with_panel(
        _alert_list(words.text("active_alerts")).grid_pos(grid(0, y, 8, 12))
    )
    board.with_panel(map_panel(city, settings).grid_pos(grid(8, y, 16, 12)))
    return _finish(board, uid, title, CITY_FOLDER_UID)


def _alert_list(title: str) -> dashboard_builders.Panel:
    # Grafana's own alert list panel: the firing and pending instances of the
    # generated alert rules. The SDK build has no alertlist builder, so the
    # generic panel builder carries its options.
    return (
        dashboard_builders.Panel()
        .type("alertlist")
        .title(title)
        .options(
            {
                "viewMode": "list",
                "groupMode": "default",
                "groupBy": [],
                "maxItems": 50,
                "sortOrder": 1,
                "dashboardAlerts": False,
                "alertName": "",
                "alertInstanceLabelFilter": '{managed_by="decor"}',
                "showInstances": True,
                "stateFilter": {
                    "firing": True,
                    "pending": True,
                    "noData": False,
                    "normal": False,
                    "error": True,
                },
            }
        )
    )


def _profile_dashboard(
    city: City, settings: Generation, agency: str, profile_name: str
) -> GeneratedDashboard:
    words = settings.words
    profile = city.profiles[profile_name]
    devices = city.devices_of(agency=agency, profile=profile_name)
    uid = stable_uid("profile", agency, profile_name)
    title = words.text(
        "profile_dashboard",
        profile=words.profile(profile_name),
        agency=city.agency_name(agency),
    )
    board = _dashboard(uid, title, [f"profile:{profile_name}", f"agency:{agency}"])
    where = f"{agency_condition(agency)} AND {device_filter(devices)}"
    y = 0
    for field, spec in profile.fields.items():
        query = (
            f"SELECT mean({quote_identifier(field)}) FROM {measurement(profile_name)} "
            f"WHERE {where} AND $timeFilter "
            'GROUP BY time($__interval), "device_id" fill(none)'
        )
        panel = (
            timeseries.Panel()
            .title(words.field(field))
            .description(spec.description)
            .datasource(INFLUX)
            .with_target(
                InfluxQLTarget("A", query, DATASOURCE_UID, alias="$tag_device_id")
            )
            .unit(words.unit(spec.unit))
            .legend(legend_table())
            .grid_pos(grid(0, y, 24, 8))
        )
        levels = profile.alert_levels.get(field)
        if levels:
            # Alert levels drawn as coloured bands behind the lines.
            panel.thresholds(level_thresholds(levels)).thresholds_style(
                _threshold_style()
            )
        board.with_panel(panel)
        y += 8
    return _finish(board, uid, title, folder_uid_of(agency))


def _threshold_style() -> common_builders.GraphThresholdsStyleConfig:
    return common_builders.GraphThresholdsStyleConfig().mode(
        common.GraphThresholdsStyleMode.LINE_AND_AREA
    )


def _device_detail(city: City, settings: Generation) -> GeneratedDashboard:
    words = settings.words
    uid = stable_uid("device-detail")
    title = words.text("device_detail")
    board = _dashboard(uid, title, ["device-detail"])
    for variable in _detail_variables(city, settings):
        board.with_variable(variable)
    y = 0
    for profile_name in city.profiles_in_use():
        profile = city.profiles[profile_name]
        board.with_row(
            dashboard_builders.Row(words.profile(profile_name)).grid_pos(
                grid(0, y, 24, 1)
            )
        )
        y += 1
        x = 0
        for field, spec in profile.fields.items():
            query = (
                f"SELECT mean({quote_identifier(field)}) FROM "
                f'{measurement(profile_name)} WHERE "agency" =~ /^$agency$/ AND '
                '"device_id" =~ /^$device$/ AND $timeFilter '
                'GROUP BY time($__interval), "device_id" fill(none)'
            )
            panel = (
                timeseries.Panel()
                .title(words.field(field))
                .datasource(INFLUX)
                .with_target(
                    InfluxQLTarget("A", query, DATASOURCE_UID, alias="$tag_device_id")
                )
                .unit(words.unit(spec.unit))
                .grid_pos(grid(x, y, 12, 7))
            )
            levels = profile.alert_levels.get(field)
            if levels:
                panel.thresholds(level_thresholds(levels)).thresholds_style(
                    _threshold_style()
                )
            board.with_panel(panel)
            x, y = (12, y) if x == 0 else (0, y + 7)
        y += 7 if x else 0
    return _finish(board, uid, title, CITY_FOLDER_UID)


def _detail_variables(
    city: City, settings: Generation
) -> list[dashboard_builders.QueryVariable | dashboard_builders.CustomVariable]:
    words = settings.words
    agency = (
        dashboard_builders.QueryVariable("agency")
        .label(words.text("variable_agency"))
        .datasource(INFLUX)
        .query('SHOW TAG VALUES WITH KEY = "agency"')
        .refresh(dashboard_model.VariableRefresh.ON_DASHBOARD_LOAD)
        .sort(dashboard_model.VariableSort.ALPHABETICAL_ASC)
        .multi(True)
        .include_all(True)
        .all_value(".*")
    )
    # Sites are not InfluxDB tags: each option's value is the regex of its
    # devices, so the device list narrows to the chosen site.
    site_options = []
    for site in city.sites:
        ids = [d.device_id for d in city.devices if d.site == site.site_id]
        if ids:
            pattern = "|".join(i.replace(".", "\\.") for i in ids)
            # Grafana splits custom values at commas; "\\," keeps one in a name.
            site_options.append(f"{site.name.replace(',', chr(92) + ',')} : {pattern}")
    site_variable = (
        dashboard_builders.CustomVariable("site")
        .label(words.text("variable_site"))
        .values(", ".join(site_options))
        .include_all(True)
        .all_value(".*")
    )
    device = (
        dashboard_builders.QueryVariable("device")
        .label(words.text("variable_device"))
        .datasource(INFLUX)
        .query(
            'SHOW TAG VALUES WITH KEY = "device_id" WHERE "agency" =~ /^$agency$/ '
            'AND "device_id" =~ /^(${site:raw})$/'
        )
        .refresh(dashboard_model.VariableRefresh.ON_DASHBOARD_LOAD)
        .sort(dashboard_model.VariableSort.ALPHABETICAL_ASC)
        .multi(True)
        .include_all(True)
    )
    return [agency, site_variable, device]


def _cctv_wall(city: City, settings: Generation) -> GeneratedDashboard:
    words = settings.words
    uid = stable_uid("cctv-wall")
    title = words.text("cctv_wall")
    board = _dashboard(uid, title, ["cctv"])
    base = settings.gateway_api_url.rstrip("/")
    y = 0
    for index, camera in enumerate(city.cameras):
        x = (index % 4) * 6
        y = (index // 4) * 9
        site = city.site(camera.site)
        caption = f"{camera.camera_id}" + (f" · {site.name}" if site else "")
        # ${__to} changes on every refresh, so the browser fetches a new image.
        html = (
            f'<img src="{base}/cameras/{camera.camera_id}/snapshot.jpg?t=${{__to}}" '
            f'alt="{caption}" style="width:100%;height:100%;object-fit:contain"/>'
        )
        board.with_panel(
            text.Panel()
            .title(words.text("camera", camera=caption))
            .mode(text_model.TextMode.HTML)
            .content(html)
            .grid_pos(grid(x, y, 6, 7))
        )
        query = (
            'SELECT last("latency_ms") AS "latency_ms" FROM "camera_health" WHERE '
            f'"camera" = {quote_string(camera.camera_id)} '
            "AND $timeFilter"
        )
        board.with_panel(
            stat.Panel()
            .title(f"{camera.camera_id}: {words.text('camera_latency')}")
            .datasource(INFLUX)
            .with_target(InfluxQLTarget("A", query, DATASOURCE_UID))
            .unit("ms")
            .reduce_options(reduce_last())
            .graph_mode(common.BigValueGraphMode.AREA)
            .no_value("offline")
            .grid_pos(grid(x, y + 7, 6, 2))
        )
    if city.cameras:
        ids = [c.camera_id for c in city.cameras]
        query = (
            'SELECT last("online") AS "online", last("latency_ms") AS "latency_ms", '
            'last("errors") AS "errors" FROM "camera_health" WHERE "camera" =~ '
            f'{regex_of(ids)} AND $timeFilter GROUP BY "camera"'
        )
        board.with_panel(
            table.Panel()
            .title(words.text("camera_health"))
            .datasource(INFLUX)
            .with_target(InfluxQLTarget("A", query, DATASOURCE_UID, "table"))
            .grid_pos(grid(0, y + 9, 24, 8))
        )
    return _finish(board, uid, title, CITY_FOLDER_UID)


def _gateway_health(city: City, settings: Generation) -> GeneratedDashboard:
    words = settings.words
    uid = stable_uid("gateway-health")
    title = words.text("gateway_health")
    board = _dashboard(uid, title, ["gateway"])
    points = (
        timeseries.Panel().title(words.text("points_per_minute")).datasource(INFLUX)
    )
    flagged = timeseries.Panel().title(words.text("flagged")).datasource(INFLUX)
    last_report = table.Panel().title(words.text("last_report")).datasource(INFLUX)
    for number, profile_name in enumerate(city.profiles_in_use()):
        ref = chr(ord("A") + number)
        field = quote_identifier(key_field(city.profiles[profile_name]))
        source = measurement(profile_name)
        devices = device_filter(city.devices_of(profile=profile_name))
        points.with_target(
            InfluxQLTarget(
                ref,
                f"SELECT count({field}) FROM {source} WHERE $timeFilter "
                "GROUP BY time(1m) fill(0)",
                DATASOURCE_UID,
                alias=words.profile(profile_name),
            )
        )
        flagged.with_target(
            InfluxQLTarget(
                ref,
                f'SELECT count("quality") FROM {source} WHERE "quality" > 0 AND '
                "$timeFilter GROUP BY time(1m) fill(0)",
                DATASOURCE_UID,
                alias=words.profile(profile_name),
            )
        )
        last_report.with_target(
            InfluxQLTarget(
                ref,
                f"SELECT last({field}) FROM {source} WHERE {devices} AND $timeFilter "
                'GROUP BY "device_id"',
                DATASOURCE_UID,
                "table",
            )
        )
    board.with_panel(points.unit("short").grid_pos(grid(0, 0, 12, 8)))
    board.with_panel(flagged.unit("short").grid_pos(grid(12, 0, 12, 8)))
    board.with_panel(last_report.grid_pos(grid(0, 8, 12, 10)))
    # Known limitation: the gateway keeps rejects by reason, spool size and
    # write latency in memory only (GatewayStats), not in InfluxDB, so this
    # panel explains where to read them instead of charting them.
    board.with_panel(
        text.Panel()
        .title(words.text("not_written"))
        .mode(text_model.TextMode.MARKDOWN)
        .content(words.text("not_written_text"))
        .grid_pos(grid(12, 8, 12, 10))
    )
    return _finish(board, uid, title, CITY_FOLDER_UID)
