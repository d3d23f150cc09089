"""The quality checks: impossible values refused, suspect ones flagged beside them."""

from __future__ import annotations

import dataclasses

import pytest

from devices import SimulationOptions, flatten_payload, list_devices, load_profiles
from devices.profiles import parse_profile
from gateway.decoding import FieldReject
from gateway.points import Point, encode_line
from gateway.validation import QualityChecker

S = 1_000_000_000
T0 = 1_764_780_000 * S  # 2025-12-03 16:40 UTC
MIN = 60 * S
HOUR = 3600 * S


def _river(at_ns: int = T0, device: str = "rg-ciliwung-01", **fields: object) -> Point:
    values = {"water_level_cm": 182.4, "flow_m3s": 29.9, "rssi_dbm": -71.0}
    values.update(fields)
    tags = {"agency": "dinas-pupr", "device_type": "river_gauge", "device_id": device}
    return Point("river_gauge", tags, values, at_ns)


def _rain(at_ns: int, rain_mm: float, device: str = "arg-beji-01") -> Point:
    tags = {"device_type": "rain_gauge", "device_id": device}
    return Point("rain_gauge", tags, {"rain_mm": rain_mm}, at_ns)


@pytest.fixture
def checker() -> QualityChecker:
    """Give a checker of the shipped profiles with the default settings."""
    return QualityChecker(load_profiles())


def _levels(checker, levels, every_ns=5 * MIN, device="rg-ciliwung-01"):
    """Check a river gauge's levels in turn; return the stored points."""
    stored = []
    for index, level in enumerate(levels):
        at_ns = T0 + index * every_ns
        point = _river(at_ns, device, water_level_cm=level)
        stored.append(checker.check(point, at_ns + S).point)
    return stored


def _level_flags(points):
    return [point.fields.get("water_level_cm_flags") for point in points]


def test_check_impossible_value_left_out_other_fields_kept(checker):
    """Test that a value outside the possible range is refused alone, naming it."""
    result = checker.check(_river(water_level_cm=1500.0), T0 + S)

    assert result.point is not None
    assert result.point.fields == {"flow_m3s": 29.9, "rssi_dbm": -71.0, "quality": 0}
    assert result.rejected_fields == (
        FieldReject(
            "water_level_cm",
            "impossible_value",
            "1500.0 cm is outside the possible range 0 to 1000 cm",
        ),
    )
    assert result.flags == ()


def test_check_every_field_impossible_point_dropped(checker):
    """Test that a point whose every value is impossible is not stored at all."""
    point = Point(
        "air_quality",
        {"device_id": "aq-beji-01"},
        {"humidity_pct": 130.0, "temperature_c": -5.0},
        T0,
    )

    result = checker.check(point, T0 + S)

    assert result.point is None
    assert [r.field for r in result.rejected_fields] == [
        "humidity_pct",
        "temperature_c",
    ]


def test_check_good_reading_quality_zero_and_unchanged(checker):
    """Test that a believable reading is stored as sent, with quality 0 added."""
    point = _river()

    result = checker.check(point, T0 + S)

    assert result.point == dataclasses.replace(
        point, fields={**point.fields, "quality": 0}
    )
    assert result.rejected_fields == result.flags == ()


def test_check_outside_expected_range_flagged_and_kept(checker):
    """Test that an unusual but possible value is kept and flagged range."""
    result = checker.check(_river(water_level_cm=612.0), T0 + S)

    assert result.point.fields["water_level_cm"] == 612.0
    assert result.point.fields["water_level_cm_flags"] == "range"
    assert result.point.fields["quality"] == 1
    assert result.flags == ("range",)


def test_check_spike_flagged_and_reading_back_not_flagged(checker):
    """Test that a one-reading jump is flagged spike, and the return is not."""
    stored = _levels(checker, [180.0, 182.0, 410.0, 183.0, 184.0])

    assert _level_flags(stored) == [None, None, "spike", None, None]
    assert [p.fields["quality"] for p in stored] == [0, 0, 2, 0, 0]
    assert [p.fields["water_level_cm"] for p in stored] == [
        180.0,
        182.0,
        410.0,
        183.0,
        184.0,
    ]


def test_check_spike_then_agreeing_reading_new_level(checker):
    """Test that two readings agreeing on a new level flag only the first jump."""
    # A gauge re-mounted 150 cm lower: the level really reads higher now.
    stored = _levels(checker, [180.0, 330.0, 331.0, 332.0, 333.0])

    assert _level_flags(stored) == [None, "spike", None, None, None]


def test_check_step_after_long_gap_not_spike(checker):
    """Test that a big change after more than three report intervals is no spike."""
    # 150 cm in an hour: too big a step for one report, believable for the river.
    stored = _levels(checker, [180.0, 330.0], every_ns=HOUR)

    assert _level_flags(stored) == [None, None]


def test_check_steady_climb_too_fast_flagged_rate(checker):
    """Test that steps each believable, climbing 12 cm a minute, are flagged rate."""
    # 60 cm per 5-minute report: under max_step (100 cm), over 5 cm/min.
    stored = _levels(checker, [100.0 + 60.0 * k for k in range(7)])

    flags = _level_flags(stored)
    assert "spike" not in flags
    # The window is 15 minutes: the reading 15 minutes in is the first judged.
    assert flags[:3] == [None, None, None]
    assert flags[3:] == ["rate", "rate", "rate", "rate"]
    assert stored[3].fields["quality"] == 4


def test_check_storm_rise_within_rate_not_flagged(checker):
    """Test that a flood rising 2 m in 90 minutes (2.2 cm/min) is not flagged."""
    stored = _levels(checker, [120.0 + 11.0 * k for k in range(19)])

    assert _level_flags(stored) == [None] * 19


def test_check_rate_limit_per_second_same_as_per_minute():
    """Test that max_rate_per_s of a user profile means the per-minute value / 60."""
    data = {
        "device_type": "tank",
        "report_interval_s": 60.0,
        "rate_window_s": 60.0,
        "fields": {
            "level_cm": {
                "unit": "cm",
                "type": "float",
                "possible": [0.0, 500.0],
                "max_rate_per_s": 0.5,
            }
        },
    }
    checker = QualityChecker({"tank": parse_profile(data, "tank.toml")})
    flags = []
    for minute, level in enumerate([10.0, 39.0, 70.0]):
        at_ns = T0 + minute * MIN
        point = Point("tank", {"device_id": "t1"}, {"level_cm": level}, at_ns)
        flags.append(checker.check(point, at_ns).point.fields.get("level_cm_flags"))

    # 29 cm in 60 s is under 30; 31 cm is over.
    assert flags == [None, None, "rate"]


def test_check_same_level_for_hours_flagged_flatline(checker):
    """Test that a river level frozen for over six hours is flagged flatline."""
    stored = _levels(checker, [150.0] * 8, every_ns=HOUR)

    flags = _level_flags(stored)
    assert flags[:7] == [None] * 7  # 0 to 6 h: not longer than six hours yet
    assert flags[7] == "flatline"
    assert stored[7].fields["quality"] == 8


def test_check_flatline_rain_zero_exempt_other_amount_flagged(checker):
    """Test that a dry rain gauge reads 0.0 for a week unflagged; 0.4 for 7 h is not."""
    dry = [
        checker.check(_rain(T0 + k * HOUR, 0.0), T0 + k * HOUR).point
        for k in range(7 * 24)
    ]
    start = T0 + 7 * 24 * HOUR
    stuck = [
        checker.check(_rain(start + k * HOUR, 0.4), start + k * HOUR).point
        for k in range(8)
    ]

    assert all(point.fields["quality"] == 0 for point in dry)
    assert [p.fields.get("rain_mm_flags") for p in stuck][6:] == [None, "flatline"]


def test_check_flatline_humidity_saturated_exempt(checker):
    """Test that 100 % humidity all night is not flagged, while 71 % all night is."""
    flags = {}
    for humidity in (100.0, 71.0):
        device = f"aq-{humidity:g}"
        for hour in range(10):
            point = Point(
                "air_quality",
                {"device_type": "air_quality", "device_id": device},
                {"humidity_pct": humidity},
                T0 + hour * HOUR,
            )
            result = checker.check(point, T0 + hour * HOUR)
        flags[humidity] = result.point.fields.get("humidity_pct_flags")

    assert flags == {100.0: None, 71.0: "flatline"}


def test_check_several_flags_on_one_field_in_fixed_order(checker):
    """Test that a value both unusual and a jump carries "range,spike"."""
    stored = _levels(checker, [300.0, 310.0, 480.0, 620.0])

    assert _level_flags(stored) == [None, None, "spike", "range,spike"]
    assert stored[3].fields["quality"] == 1 | 2


def test_check_clock_ahead_stored_at_receive_time_device_time_kept(checker):
    """Test that a device clock an hour fast is flagged and stored at receive time."""
    received_ns = T0 + 2 * S
    point = _river(T0 + HOUR)

    result = checker.check(point, received_ns)

    assert result.point.time_ns == received_ns
    assert result.point.fields["device_time_ns"] == T0 + HOUR
    assert result.point.fields["quality"] == 16
    assert "water_level_cm_flags" not in result.point.fields
    assert result.flags == ("clock",)


def test_check_clock_behind_flagged_kept_at_device_time(checker):
    """Test that a reading an hour old is flagged clock but kept at its own time."""
    result = checker.check(_river(T0), T0 + HOUR)

    assert result.point.time_ns == T0
    assert result.point.fields["quality"] == 16
    assert "device_time_ns" not in result.point.fields


def test_check_clock_behind_receive_policy_stored_at_receive_time():
    """Test that late_reading_time="receive" moves a reading an hour old to now."""
    checker = QualityChecker(load_profiles(), late_reading_time="receive")

    result = checker.check(_river(T0), T0 + HOUR)

    assert result.point.time_ns == T0 + HOUR
    assert result.point.fields["device_time_ns"] == T0


@pytest.mark.parametrize(
    ("skew_ns", "flagged"),
    [(300 * S, False), (-300 * S, False), (300 * S + 1, True), (-300 * S - 1, True)],
)
def test_check_clock_skew_limit_default_300_s(checker, skew_ns, flagged):
    """Test that a device clock up to 300 s off is believed, a ns more is not."""
    result = checker.check(_river(T0 + skew_ns), T0)

    assert (result.flags == ("clock",)) is flagged


def test_check_clock_skew_limit_from_profile():
    """Test that a profile's max_clock_skew_s overrides the gateway's default."""
    profiles = load_profiles()
    profiles["river_gauge"] = dataclasses.replace(
        profiles["river_gauge"], max_clock_skew_s=30.0
    )
    checker = QualityChecker(profiles, max_clock_skew_s=300.0)

    assert checker.check(_river(T0 + 31 * S), T0).flags == ("clock",)
    assert checker.check(_river(T0 + 29 * S, "rg-2"), T0).flags == ()


def test_check_clock_fast_device_judged_at_stored_time(checker):
    """Test that spike and rate history use the stored time, not the device's."""
    # The device's clock runs an hour fast and then is corrected: by its own
    # times the next reading would be an hour older, and so skipped.
    first = checker.check(_river(T0 + HOUR, water_level_cm=180.0), T0)
    second = checker.check(_river(T0 + 5 * MIN, water_level_cm=420.0), T0 + 5 * MIN)

    assert first.point.time_ns == T0
    assert second.point.fields.get("water_level_cm_flags") == "spike"


def test_check_devices_judged_apart(checker):
    """Test that one gauge's readings are never compared with another's."""
    first = checker.check(_river(T0, "rg-a", water_level_cm=100.0), T0)
    other = checker.check(_river(T0 + MIN, "rg-b", water_level_cm=400.0), T0 + MIN)

    assert first.flags == other.flags == ()


def test_check_tracked_devices_bounded_least_recent_forgotten():
    """Test that at most max_tracked_devices histories are kept, oldest dropped."""
    checker = QualityChecker(load_profiles(), max_tracked_devices=2)
    for device in ("rg-a", "rg-b"):
        checker.check(_river(T0, device, water_level_cm=100.0), T0)
    # Hearing from rg-a again keeps it; rg-c then pushes out rg-b.
    checker.check(_river(T0 + MIN, "rg-a", water_level_cm=101.0), T0 + MIN)
    checker.check(_river(T0 + MIN, "rg-c", water_level_cm=100.0), T0 + MIN)

    spike_a = checker.check(_river(T0 + 2 * MIN, "rg-a", water_level_cm=400.0), T0)
    fresh_b = checker.check(_river(T0 + 2 * MIN, "rg-b", water_level_cm=400.0), T0)

    assert checker.tracked_devices == 2
    assert checker.devices_forgotten == 2  # rg-b, then rg-c for rg-b's return
    assert spike_a.flags == ("spike",)
    assert fresh_b.flags == ()  # no history left to compare with


def test_check_tracked_devices_many_stay_bounded():
    """Test that a stream of ten thousand device ids keeps the memory bounded."""
    checker = QualityChecker(load_profiles(), max_tracked_devices=100)

    for index in range(10_000):
        checker.check(_river(T0, f"rg-{index}"), T0)

    assert checker.tracked_devices == 100
    assert checker.devices_forgotten == 9_900


def test_check_no_profile_passes_point_unchanged(checker):
    """Test that a point of a type without a profile is returned as is."""
    point = Point(
        "weather_station",
        {"device_type": "weather_station", "device_id": "ws-1"},
        {"water_level_cm": 5000.0, "quality": "good"},
        T0 + 10 * HOUR,
    )

    result = checker.check(point, T0)

    assert result.point is point
    assert result.rejected_fields == result.flags == ()
    assert checker.tracked_devices == 0


def test_check_profile_by_measurement_when_no_tag(checker):
    """Test that a point without the profile tag is matched by its measurement."""
    point = Point("river_gauge", {"device_id": "rg-01"}, {"water_level_cm": 1500.0}, T0)

    result = checker.check(point, T0)

    assert result.point is None
    assert result.rejected_fields[0].reason == "impossible_value"


def test_check_profile_tag_value_wins_over_measurement(checker):
    """Test that the tag names the profile when both tag and measurement could."""
    point = Point(
        "telemetry",
        {"device_type": "rain_gauge", "device_id": "arg-01"},
        {"rain_mm": 150.0, "water_level_cm": 1500.0},
        T0,
    )

    result = checker.check(point, T0)

    assert result.point.fields == {"water_level_cm": 1500.0, "quality": 0}
    assert [r.field for r in result.rejected_fields] == ["rain_mm"]


def test_check_configured_tag_names():
    """Test that profile and device tags can be named differently."""
    checker = QualityChecker(load_profiles(), profile_tag="kind", device_tag="serial")
    tags = {"kind": "river_gauge", "serial": "0042"}
    checker.check(Point("telemetry", tags, {"water_level_cm": 100.0}, T0), T0)

    result = checker.check(
        Point("telemetry", tags, {"water_level_cm": 400.0}, T0 + MIN), T0 + MIN
    )

    assert result.flags == ("spike",)


def test_check_without_device_id_ranges_only(checker):
    """Test that points without a device id are range-checked but keep no history."""
    tags = {"device_type": "river_gauge"}
    low = checker.check(Point("river_gauge", tags, {"water_level_cm": 100.0}, T0), T0)
    high = checker.check(
        Point("river_gauge", tags, {"water_level_cm": 600.0}, T0 + MIN), T0 + MIN
    )

    assert low.flags == ()
    assert high.flags == ("range",)
    assert checker.tracked_devices == 0


def test_check_older_reading_judged_for_ranges_only(checker):
    """Test that a repeated or out-of-order reading leaves the history alone."""
    _levels(checker, [180.0, 182.0])
    late = checker.check(_river(T0 + 2 * S, water_level_cm=400.0), T0 + 5 * MIN)
    repeated = checker.check(_river(T0 + 5 * MIN, water_level_cm=182.0), T0 + 5 * MIN)
    after = checker.check(_river(T0 + 10 * MIN, water_level_cm=184.0), T0 + 10 * MIN)

    assert late.flags == repeated.flags == after.flags == ()


def test_check_reserved_field_from_device_left_out(checker):
    """Test that a device's own "quality" field cannot clash with the flags."""
    result = checker.check(_river(quality="good", rssi_dbm_flags=3.0), T0)

    assert result.point.fields["quality"] == 0
    assert "rssi_dbm_flags" not in result.point.fields
    assert sorted((r.field, r.reason) for r in result.rejected_fields) == [
        ("quality", "reserved_field"),
        ("rssi_dbm_flags", "reserved_field"),
    ]


def test_check_text_and_boolean_values_in_numeric_fields_refused(checker):
    """Test that a profiled field sent as text or a boolean is left out alone."""
    result = checker.check(
        _river(water_level_cm="high", flow_m3s=True, rssi_dbm=-70.0), T0
    )

    assert "water_level_cm" not in result.point.fields
    assert "flow_m3s" not in result.point.fields
    assert result.point.fields["rssi_dbm"] == -70.0
    assert sorted((r.field, r.reason) for r in result.rejected_fields) == [
        ("flow_m3s", "wrong_type"),
        ("water_level_cm", "wrong_type"),
    ]


def test_check_integer_values_judged(checker):
    """Test that a field declared integer is judged by its number."""
    result = checker.check(_river(water_level_cm=1200, rssi_dbm=-71), T0)

    assert result.rejected_fields[0].detail.startswith("1200 cm is outside")
    assert result.point.fields["rssi_dbm"] == -71


def test_check_unprofiled_fields_of_profiled_point_kept(checker):
    """Test that fields the profile does not name pass through unjudged."""
    result = checker.check(_river(pump_on=True, status="ok", level_x=9e9), T0)

    assert result.point.fields["status"] == "ok"
    assert result.point.fields["level_x"] == 9e9
    assert result.flags == ()


def test_check_input_point_not_modified(checker):
    """Test that checking leaves the decoder's point and its fields untouched."""
    point = _river(water_level_cm=1500.0)
    before = dict(point.fields)

    checker.check(point, T0 + HOUR)

    assert point.fields == before


@pytest.mark.parametrize(
    "kwargs",
    [
        {"max_clock_skew_s": 0.0},
        {"max_tracked_devices": 0},
        {"late_reading_time": "device_time"},
    ],
)
def test_quality_checker_bad_setting_refused(kwargs):
    """Test that a nonsensical setting is refused when the checker is built."""
    with pytest.raises(ValueError, match=next(iter(kwargs))):
        QualityChecker(load_profiles(), **kwargs)


def test_quality_checker_profile_field_clashing_with_flags_refused():
    """Test that a profile field stored under a flag's name is refused."""
    data = {
        "device_type": "pump",
        "report_interval_s": 60.0,
        "fields": {
            name: {"unit": "", "type": "float", "possible": [0.0, 1.0]}
            for name in ("state", "state_flags")
        },
    }

    with pytest.raises(ValueError, match="state_flags"):
        QualityChecker({"pump": parse_profile(data, "pump.toml")})


def test_check_flagged_points_encode_with_stable_types(checker):
    """Test that flag fields encode as integer and string, whatever is flagged."""
    stored = _levels(checker, [180.0, 410.0, 181.0, 700.0])
    stored.append(checker.check(_river(T0 + 3 * HOUR), T0).point)

    lines = [encode_line(point) for point in stored]

    assert "quality=0i" in lines[0]
    assert 'water_level_cm_flags="spike"' in lines[1]
    assert 'water_level_cm_flags="range,spike"' in lines[3]
    assert "quality=3i" in lines[3]
    assert f"device_time_ns={T0 + 3 * HOUR}i" in lines[4]


@pytest.mark.parametrize("device_type", ["river_gauge", "rain_gauge", "air_quality"])
def test_check_simulated_fleet_at_report_interval_unflagged(device_type):
    """Test that the simulated devices, reporting at their profile's pace, pass clean.

    A day and a half of readings through a whole storm: the shipped limits
    must not flag the readings the simulator considers normal.
    """
    profiles = load_profiles()
    checker = QualityChecker(profiles)
    interval_s = profiles[device_type].report_interval_s
    start_s = T0 / S
    options = SimulationOptions(
        devices_per_type=8, device_types=(device_type,), interval_s=interval_s
    )
    flagged = []
    for device in list_devices(options, start_s):
        for index in range(int(36 * 3600 / interval_s)):
            at_s = start_s + index * interval_s
            fields = flatten_payload(device.reading(at_s))
            at_ns = fields.pop("ts") * 1_000_000
            tags = {"device_type": device_type, "device_id": device.device_id}
            result = checker.check(Point(device_type, tags, fields, at_ns), at_ns)
            if result.flags or result.rejected_fields:
                flagged.append((device.device_id, index, result))

    assert flagged == []


def test_quality_checker_refuses_text_in_a_numeric_profile_field():
    """Test that "182 cm" in a field with a numeric range is left out alone."""
    from devices.profiles import load_profiles
    from gateway.points import Point
    from gateway.validation import QualityChecker

    checker = QualityChecker(load_profiles())
    now = 1_717_200_000_000_000_000
    point = Point(
        "river_gauge",
        {"device_type": "river_gauge", "device_id": "rg-faulty-01"},
        {"water_level_cm": "182 cm", "flow_m3s": 3.2},
        now,
    )

    result = checker.check(point, now)

    assert result.point is not None
    assert "water_level_cm" not in result.point.fields
    assert result.point.fields["flow_m3s"] == 3.2
    assert [(r.field, r.reason) for r in result.rejected_fields] == [
        ("water_level_cm", "wrong_type")
    ]
