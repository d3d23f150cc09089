"""Unit tests of the alert rules and the in-memory engine: levels with hysteresis
and minimum duration, rate of rise, battery low, and bad rule tables.
"""

from __future__ import annotations

import copy
import tomllib
from importlib import resources
from typing import Any

import pytest

from gateway.alerts.engine import AlertEngine
from gateway.alerts.rules import parse_rules, rules_by_device_type
from gateway.errors import ConfigError
from gateway.points import Point

S = 1_000_000_000


def _river_table() -> dict[str, Any]:
    text = resources.files("devices").joinpath("profiles", "river_gauge.toml")
    return tomllib.loads(text.read_text("utf-8"))


def _engine(table: dict[str, Any]) -> AlertEngine:
    return AlertEngine({"river_gauge": parse_rules(table)})


def _point(at_s: float, **fields: float) -> Point:
    return Point(
        "river_gauge",
        {"device_id": "rg-1", "device_type": "river_gauge"},
        dict(fields),
        int(at_s * S),
    )


def _levels(engine: AlertEngine, readings: list[tuple[float, float]]) -> list[str]:
    changes = []
    for at_s, level_cm in readings:
        changes += [
            c.level
            for c in engine.observe([_point(at_s, water_level_cm=level_cm)])
            if c.rule == "level:water_level_cm"
        ]
    return changes


def test_engine_level_needs_minimum_duration_before_it_counts():
    """Test that a level held shorter than min_duration_s raises nothing."""
    table = _river_table()
    table["alerts"]["levels"]["water_level_cm"]["min_duration_s"] = 60.0
    engine = _engine(table)

    changes = _levels(
        engine,
        [
            (0, 150.0),
            (10, 210.0),
            (20, 150.0),
            (100, 210.0),
            (130, 280.0),
            (161, 281.0),
        ],
    )

    # The 10 s excursion is ignored; the rise from t=100 counts at t=161, and
    # it commits to the level the water is in by then.
    assert changes == ["siaga"]


def test_engine_level_falls_only_below_the_hysteresis():
    """Test that a level ends only once the value is hysteresis below its start."""
    engine = _engine(_river_table())

    changes = _levels(
        engine, [(0, 205.0), (1, 195.0), (2, 191.0), (3, 205.0), (4, 189.0)]
    )

    assert changes == ["waspada", "normal"]


def test_engine_rate_of_rise_fires_and_clears():
    """Test that a rise over max_rise within the window fires and clears after."""
    engine = _engine(_river_table())
    seen = []
    for at_s, level in [(0, 100.0), (300, 120.0), (540, 135.0), (1200, 136.0)]:
        seen += [
            (c.level, round(c.value or 0, 1))
            for c in engine.observe([_point(at_s, water_level_cm=level)])
            if c.rule == "rise:water_level_cm"
        ]

    # 35 cm in 9 minutes fires; eleven minutes on, the window holds no rise.
    assert seen == [("rising", 35.0), ("normal", 0.0)]


def test_engine_battery_low_clears_above_its_hysteresis():
    """Test that a battery alert fires below 3.4 V and clears from 3.5 V."""
    engine = _engine(_river_table())
    seen = []
    for at_s, volts in enumerate([3.6, 3.39, 3.45, 3.42, 3.5]):
        seen += [
            c.level for c in engine.observe([_point(at_s, battery_voltage_v=volts)])
        ]

    assert seen == ["low", "normal"]


def test_engine_restore_continues_an_open_alert():
    """Test that an alert open before a restart is not fired again."""
    engine = _engine(_river_table())
    engine.restore("rg-1", "level:water_level_cm", 2)

    assert _levels(engine, [(0, 275.0), (1, 150.0)]) == ["normal"]


def test_engine_ignores_points_without_device_or_rules():
    """Test that points of unknown device types or without a device raise nothing."""
    engine = _engine(_river_table())
    other = Point("x", {"device_id": "a", "device_type": "kettle"}, {"t": 99.0}, 0)
    anonymous = Point("x", {"device_type": "river_gauge"}, {"water_level_cm": 400.0}, 0)

    assert engine.observe([other, anonymous]) == []


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda t: t["alerts"]["rise"]["water_level_cm"].pop("max_rise"), "max_rise"),
        (
            lambda t: t["alerts"]["battery"].update(field="nothing"),
            "'nothing' is not among",
        ),
        (
            lambda t: t["alerts"]["levels"].update(rssi_dbm={"hysteresis": 1.0}),
            "without alert_levels",
        ),
        (
            lambda t: t["alerts"]["silence"].update(late_after_intervals=4.0),
            "late_after_intervals < offline_after_intervals",
        ),
        (
            lambda t: t["alerts"]["levels"]["water_level_cm"].update(hysteresis=-1),
            "must be 0 or more",
        ),
    ],
)
def test_rules_refuse_a_bad_table_naming_the_profile(change, message):
    """Test that a wrong alert rule stops start-up with the profile and the key."""
    table = copy.deepcopy(_river_table())
    change(table)

    with pytest.raises(ConfigError) as caught:
        rules_by_device_type({"river_gauge": table}, "gateway.toml")

    assert "profile 'river_gauge'" in str(caught.value)
    assert message in str(caught.value)


def test_camera_change_records_and_clears_a_tamper_alert(tmp_path):
    """Test that the CCTV seam's tampered report opens an alert and clears it."""
    from gateway.alerts.engine import camera_change
    from gateway.alerts.store import AlertStore
    from gateway.registry import Registry

    registry = Registry.open(f"sqlite:///{tmp_path / 'registry.db'}")
    store = AlertStore(registry)
    fired = store.record(
        camera_change("cam-panus", "tampered", True, 1 * S, "view blocked")
    )
    cleared = store.record(camera_change("cam-panus", "tampered", False, 2 * S))
    alert = store.get(fired.alert_id).alert
    registry.close()

    assert (fired.event, cleared.event) == ("fired", "resolved")
    assert (alert.kind, alert.rule, alert.state) == (
        "camera_tampered",
        "camera:tampered",
        "resolved",
    )
    with pytest.raises(ValueError, match="offline"):
        camera_change("cam-panus", "dusty", True, 0)
