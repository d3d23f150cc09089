"""Grafana alert rules from the profiles' alert levels, a group per agency and profile.

Each level above a field's lowest becomes one rule, firing per device while
the device's latest reading lies in that level's band (from its value up to
the next level's). Rules list their devices by id, so registering or
retiring a device changes the rules at the next provisioning.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from grafana_foundation_sdk.builders import alerting, expr
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import alerting as alerting_model

from gateway.grafana.city import City
from gateway.grafana.dashboards import folder_uid_of
from gateway.grafana.influxql import InfluxQLTarget, quote_identifier
from gateway.grafana.naming import DATASOURCE_UID, Generation, stable_uid
from gateway.grafana.panels import (
    agency_condition,
    device_filter,
    measurement,
    online_window_s,
)

__all__ = ["GeneratedRuleGroup", "build_rule_groups"]

EVALUATE_EVERY_S = 60
EXPRESSION_UID = "__expr__"
# Label that marks the rules' alerts as the gateway's (the alert list filters on it).
MANAGED_LABEL = {"managed_by": "decor"}


@dataclass(frozen=True)
class GeneratedRuleGroup:
    """An alert rule group as Grafana's provisioning API takes it."""

    folder_uid: str
    title: str
    interval_s: int
    rules: list[dict[str, Any]]

    def api_body(self) -> dict[str, Any]:
        """Return the body of PUT .../folder/{uid}/rule-groups/{title}."""
        return {
            "title": self.title,
            "folderUid": self.folder_uid,
            "interval": self.interval_s,
            "rules": self.rules,
        }


def build_rule_groups(city: City, settings: Generation) -> list[GeneratedRuleGroup]:
    """Return a rule group per agency and profile that has alert levels and devices."""
    groups = []
    for agency, _ in city.agencies:
        for profile_name in city.profiles_in_use():
            profile = city.profiles[profile_name]
            devices = city.devices_of(agency=agency, profile=profile_name)
            if not devices or not profile.alert_levels:
                continue
            folder_uid = folder_uid_of(agency)
            title = settings.words.profile(profile_name)
            group = (
                alerting.RuleGroup(title)
                .folder_uid(folder_uid)
                .interval(EVALUATE_EVERY_S)
            )
            where = f"{agency_condition(agency)} AND {device_filter(devices)}"
            window = online_window_s(settings, profile)
            for field, levels in profile.alert_levels.items():
                ordered = sorted(levels.items(), key=lambda item: item[1])
                for index, (level, low) in enumerate(ordered[1:], start=1):
                    high = ordered[index + 1][1] if index + 1 < len(ordered) else None
                    query = (
                        f"SELECT last({quote_identifier(field)}) FROM "
                        f"{measurement(profile_name)} WHERE {where} AND $timeFilter "
                        'GROUP BY "device_id"'
                    )
                    rule = _rule(
                        settings,
                        uid=stable_uid("rule", agency, profile_name, field, level),
                        title=settings.words.text(
                            "rule",
                            field=settings.words.field(field),
                            level=settings.words.level(level),
                            profile=settings.words.profile(profile_name),
                            agency=city.agency_name(agency),
                        ),
                        query=query,
                        window_s=window,
                        condition=_band(low, high),
                        labels={
                            **MANAGED_LABEL,
                            "agency": agency,
                            "profile": profile_name,
                            "field": field,
                            "level": level,
                        },
                        summary=settings.words.text(
                            "rule_summary",
                            field=settings.words.field(field),
                            unit=profile.fields[field].unit,
                            level=settings.words.level(level),
                        ),
                    )
                    group.with_rule(rule.folder_uid(folder_uid).rule_group(title))
            built = json.loads(json.dumps(group.build(), cls=JSONEncoder))
            groups.append(
                GeneratedRuleGroup(
                    folder_uid, built["title"], built["interval"], built["rules"]
                )
            )
    return groups


def _band(low: float, high: float | None) -> str:
    # A level starts at its value and lasts until the next level's.
    if high is None:
        return f"$B >= {low:g}"
    return f"$B >= {low:g} && $B < {high:g}"


def _rule(
    settings: Generation,
    *,
    uid: str,
    title: str,
    query: str,
    window_s: int,
    condition: str,
    labels: dict[str, str],
    summary: str,
) -> alerting.Rule:
    reading = (
        alerting.Query("A")
        .datasource_uid(DATASOURCE_UID)
        .relative_time_range(alerting_model.RelativeTimeRange(from_val=window_s, to=0))
        .model(InfluxQLTarget("A", query, DATASOURCE_UID))
    )
    latest = (
        alerting.Query("B")
        .datasource_uid(EXPRESSION_UID)
        .model(expr.TypeReduce().ref_id("B").expression("A").reducer("last"))
    )
    band = (
        alerting.Query("C")
        .datasource_uid(EXPRESSION_UID)
        .model(expr.TypeMath().ref_id("C").expression(condition))
    )
    return (
        alerting.Rule(title)
        .uid(uid)
        .queries([reading, latest, band])
        .condition("C")
        # A device that stops reporting is the online panels' concern, not a level.
        .no_data_state("OK")
        .exec_err_state("Error")
        .for_val("0s")
        .org_id(1)
        .labels(labels)
        .annotations({"summary": summary})
    )
