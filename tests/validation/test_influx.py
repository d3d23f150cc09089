"""Quality flags in the real InfluxDB 1.x, read back with a dashboard's InfluxQL."""

from __future__ import annotations

import time

import pytest

from devices import load_profiles
from gateway.points import Point, encode_line
from gateway.validation import QualityChecker

S = 1_000_000_000
MIN = 60 * S
HOUR = 3600 * S
# Levels of two river gauges, one every 5 minutes: rg-a glitches twice.
LEVELS = {
    "rg-a": [180.0, 182.0, 410.0, 183.0, 620.0, 184.0],
    "rg-b": [95.0, 95.5, 96.0, 96.2, 96.1, 96.4],
}


@pytest.fixture
def start_ns() -> int:
    """Give a time 40 minutes ago, whole seconds, so every reading is in the hour."""
    return (time.time_ns() - 40 * MIN) // S * S


def _checked(checker: QualityChecker, start_ns: int) -> list[Point]:
    """Check the gauges' readings in the order they arrive; return what to store."""
    stored = []
    for index in range(6):
        for device, levels in LEVELS.items():
            at_ns = start_ns + index * 5 * MIN
            tags = {"device_type": "river_gauge", "device_id": device}
            point = Point("river_gauge", tags, {"water_level_cm": levels[index]}, at_ns)
            stored.append(checker.check(point, at_ns + 2 * S).point)
    return stored


def _write_one_by_one(influx_v1, points: list[Point]) -> None:
    """Write each point in its own request, as batches split at any point would."""
    for point in points:
        response = influx_v1.write(encode_line(point))
        assert response.status_code == 204, response.text


def _values(series: list[dict]) -> dict[str, list]:
    return {s["tags"]["device_id"]: s["values"] for s in series}


def test_flags_written_point_by_point_no_type_conflict(influx_v1, start_ns):
    """Test that flagged and unflagged points of one device store side by side."""
    stored = _checked(QualityChecker(load_profiles()), start_ns)

    _write_one_by_one(influx_v1, stored)

    rows = influx_v1.query(
        'SELECT "water_level_cm", "water_level_cm_flags", "quality" '
        'FROM "river_gauge" WHERE "device_id" = \'rg-a\''
    )[0]["values"]
    assert rows == [
        [start_ns, 180.0, None, 0],
        [start_ns + 5 * MIN, 182.0, None, 0],
        [start_ns + 10 * MIN, 410.0, "spike", 2],
        [start_ns + 15 * MIN, 183.0, None, 0],
        [start_ns + 20 * MIN, 620.0, "range,spike", 3],
        [start_ns + 25 * MIN, 184.0, None, 0],
    ]
    field_types = dict(
        influx_v1.query('SHOW FIELD KEYS FROM "river_gauge"')[0]["values"]
    )
    assert field_types == {
        "quality": "integer",
        "water_level_cm": "float",
        "water_level_cm_flags": "string",
    }
    # Flags live in fields: still one series per device.
    assert len(influx_v1.query('SHOW SERIES FROM "river_gauge"')[0]["values"]) == 2


def test_flags_flagged_readings_per_device_last_hour(influx_v1, start_ns):
    """Test that a dashboard counts each device's flagged readings of the last hour."""
    _write_one_by_one(influx_v1, _checked(QualityChecker(load_profiles()), start_ns))

    flagged = influx_v1.query(
        'SELECT count("quality") FROM "river_gauge" '
        'WHERE "quality" > 0 AND time > now() - 1h GROUP BY "device_id"'
    )
    readings = influx_v1.query(
        'SELECT count("quality") FROM "river_gauge" '
        'WHERE time > now() - 1h GROUP BY "device_id"'
    )

    assert {d: v[0][1] for d, v in _values(flagged).items()} == {"rg-a": 2}
    assert {d: v[0][1] for d, v in _values(readings).items()} == {
        "rg-a": 6,
        "rg-b": 6,
    }


def test_flags_good_readings_only_and_flagged_overlay(influx_v1, start_ns):
    """Test that a panel can plot good readings and mark the flagged ones apart."""
    _write_one_by_one(influx_v1, _checked(QualityChecker(load_profiles()), start_ns))

    good = influx_v1.query(
        'SELECT max("water_level_cm") FROM "river_gauge" '
        'WHERE "quality" = 0 AND time > now() - 1h GROUP BY "device_id"'
    )
    marks = influx_v1.query(
        'SELECT "water_level_cm", "water_level_cm_flags" FROM "river_gauge" '
        'WHERE "water_level_cm_flags" =~ /./ AND time > now() - 1h'
    )
    spikes = influx_v1.query(
        'SELECT "water_level_cm" FROM "river_gauge" WHERE "quality" & 2 > 0'
    )

    assert {d: v[0][1] for d, v in _values(good).items()} == {
        "rg-a": 184.0,
        "rg-b": 96.4,
    }
    assert [row[1:] for row in marks[0]["values"]] == [
        [410.0, "spike"],
        [620.0, "range,spike"],
    ]
    assert [row[1] for row in spikes[0]["values"]] == [410.0, 620.0]


def test_flags_clock_fast_device_stored_at_receive_time(influx_v1, start_ns):
    """Test that a device an hour fast lands at the receive time, its time kept."""
    checker = QualityChecker(load_profiles())
    received_ns = start_ns + 7 * S
    tags = {"device_type": "river_gauge", "device_id": "rg-fast"}
    point = Point("river_gauge", tags, {"water_level_cm": 150.0}, start_ns + HOUR)
    good = Point("river_gauge", tags, {"water_level_cm": 150.5}, start_ns + 5 * MIN)

    _write_one_by_one(
        influx_v1,
        [
            checker.check(point, received_ns).point,
            checker.check(good, good.time_ns).point,
        ],
    )

    rows = influx_v1.rows("river_gauge")
    assert rows == [
        {
            "time": received_ns,
            "device_type": "river_gauge",
            "device_id": "rg-fast",
            "water_level_cm": 150.0,
            "quality": 16,
            "device_time_ns": start_ns + HOUR,
        },
        {
            "time": start_ns + 5 * MIN,
            "device_type": "river_gauge",
            "device_id": "rg-fast",
            "water_level_cm": 150.5,
            "quality": 0,
            "device_time_ns": None,
        },
    ]
    clock = influx_v1.query(
        'SELECT count("quality") FROM "river_gauge" WHERE "quality" & 16 > 0'
    )
    assert clock[0]["values"][0][1] == 1


def test_flags_one_batch_mixed_points_accepted_whole(influx_v1, start_ns):
    """Test that one request mixing flagged and unflagged lines is stored whole."""
    stored = _checked(QualityChecker(load_profiles()), start_ns)

    response = influx_v1.write("\n".join(encode_line(point) for point in stored))

    assert response.status_code == 204, response.text
    assert len(influx_v1.rows("river_gauge")) == 12
