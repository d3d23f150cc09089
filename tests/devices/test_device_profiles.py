"""Tests of the device profiles shipped in devices/profiles."""

from __future__ import annotations

import pytest

from devices import (
    ACTUATOR_TYPES,
    DEVICE_TYPES,
    flatten_payload,
    load_profile,
    load_profiles,
)
from devices.profiles import parse_profile


def test_load_profiles_every_device_type_shipped():
    """Test that a profile with float fields and units ships for each device type."""
    profiles = load_profiles()

    assert sorted(profiles) == sorted(DEVICE_TYPES + ACTUATOR_TYPES)
    for device_type, profile in profiles.items():
        assert profile.device_type == device_type
        assert profile.report_interval_s > 0
        assert profile.fields
        for spec in profile.fields.values():
            assert spec.type == "float"
            assert spec.unit
            assert spec.min < spec.max


@pytest.mark.parametrize("device_type", DEVICE_TYPES + ACTUATOR_TYPES)
def test_profile_sample_within_field_ranges(device_type):
    """Test that each profile's sample payload has exactly its fields, in range."""
    profile = load_profile(device_type)
    values = flatten_payload(profile.sample)

    assert isinstance(values.pop("ts"), int)
    assert set(values) == set(profile.fields)
    for name, value in values.items():
        assert isinstance(value, float), name
        assert profile.fields[name].contains(value), (name, value)


@pytest.mark.parametrize(
    ("level_cm", "status"),
    [
        (120.0, "normal"),
        (200.0, "waspada"),
        (269.9, "waspada"),
        (300.0, "siaga"),
        (465.0, "awas"),
    ],
)
def test_alert_level_river_gauge_four_levels(level_cm, status):
    """Test that river levels map to normal / waspada / siaga / awas at Pos Depok."""
    assert load_profile("river_gauge").alert_level("water_level_cm", level_cm) == status


def test_alert_level_field_without_levels_none():
    """Test that a field without alert levels has no status."""
    assert load_profile("river_gauge").alert_level("rssi_dbm", -70.0) is None


def test_parse_profile_falling_levels_rejected():
    """Test that alert levels out of order are refused, naming the file."""
    data = {
        "device_type": "river_gauge",
        "report_interval_s": 300.0,
        "fields": {"level_cm": {"unit": "cm", "type": "float", "min": 0.0, "max": 9.0}},
        "alert_levels": {"level_cm": {"normal": 0.0, "awas": 5.0, "siaga": 3.0}},
    }
    with pytest.raises(ValueError, match="bad.toml"):
        parse_profile(data, "bad.toml")


def test_parse_profile_missing_key_rejected():
    """Test that a profile without a report interval is refused, naming the key."""
    data = {"device_type": "rain_gauge", "fields": {}}
    with pytest.raises(ValueError, match="report_interval_s"):
        parse_profile(data, "rain.toml")
