"""Device profiles for the quality checks: their limits, and the operator's own."""

from __future__ import annotations

import pytest

from devices import DEVICE_TYPES, flatten_payload, load_profile, load_profiles
from devices.profiles import parse_profile
from gateway.errors import ConfigError
from gateway.validation import load_quality_profiles

TANK = """\
device_type = "{device_type}"
report_interval_s = 60.0

[fields.level_cm]
unit = "cm"
type = "float"
possible = [0.0, 300.0]
expected = [10.0, 250.0]
"""


def _data(**field):
    spec = {"unit": "cm", "type": "float", "possible": [0.0, 100.0], **field}
    return {
        "device_type": "tank",
        "report_interval_s": 60.0,
        "fields": {"level_cm": spec},
    }


@pytest.mark.parametrize("device_type", DEVICE_TYPES)
def test_shipped_profiles_every_field_expected_within_possible(device_type):
    """Test that each shipped field has an expected range inside its possible one."""
    for name, spec in load_profile(device_type).fields.items():
        assert spec.expected is not None, name
        low, high = spec.expected
        assert spec.min <= low < high <= spec.max, name


def test_shipped_profiles_sample_within_expected_range():
    """Test that each shipped sample payload reads as a normal, unflagged reading."""
    for profile in load_profiles().values():
        values = flatten_payload(profile.sample)
        for name, spec in profile.fields.items():
            assert spec.expected[0] <= values[name] <= spec.expected[1], name


def test_shipped_rain_profile_zero_exempt_from_flatline():
    """Test that a dry rain gauge's 0.0 is listed as a value that may stay put."""
    fields = load_profile("rain_gauge").fields

    assert fields["rain_mm"].flatline_except == (0.0,)
    assert fields["rain_rate_mm_h"].flatline_except == (0.0,)


def test_parse_profile_rate_per_minute_stored_per_second():
    """Test that max_rate_per_min is kept as the same rate per second."""
    profile = parse_profile(_data(max_rate_per_min=6.0), "tank.toml")

    assert profile.fields["level_cm"].max_rate_per_s == pytest.approx(0.1)


def test_parse_profile_old_min_max_form_accepted():
    """Test that min/max keys still give the possible range."""
    data = _data()
    data["fields"]["level_cm"] = {"unit": "cm", "type": "float", "min": 1, "max": 9}

    spec = parse_profile(data, "tank.toml").fields["level_cm"]

    assert spec.possible == (1.0, 9.0)
    assert spec.expected is None and spec.max_step is None


def test_parse_profile_defaults_when_keys_left_out():
    """Test that a profile without window or skew keys gets the documented defaults."""
    profile = parse_profile(_data(), "tank.toml")

    assert profile.rate_window_s == 600.0
    assert profile.max_clock_skew_s is None


@pytest.mark.parametrize(
    ("field", "message"),
    [
        ({"expected": [-5.0, 50.0]}, "within the possible range"),
        ({"expected": [50.0, 10.0]}, "must rise"),
        ({"expected": [1.0]}, r"must be \[min, max\]"),
        ({"min": 0.0, "max": 1.0}, "not both"),
        ({"max_rate_per_s": 1.0, "max_rate_per_min": 60.0}, "not both"),
        ({"max_step": 0.0}, "max_step 0.0, which must be positive"),
        ({"flatline_s": -1.0}, "flatline_s"),
        ({"flatline_except": [0.0]}, "no flatline_s"),
        ({"max_step": "10"}, "expected a number"),
        ({"max_step": True}, "expected a number"),
        ({"possible": [0.0, float("inf")]}, "finite"),
    ],
)
def test_parse_profile_bad_limit_refused(field, message):
    """Test that a nonsensical limit is refused, naming the file and the problem."""
    with pytest.raises(ValueError, match=message) as caught:
        parse_profile(_data(**field), "tank.toml")

    assert "tank.toml" in str(caught.value)


def test_parse_profile_field_without_possible_range_refused():
    """Test that a field with neither possible nor min/max is refused by key."""
    data = _data()
    del data["fields"]["level_cm"]["possible"]

    with pytest.raises(ValueError, match="missing key 'possible'"):
        parse_profile(data, "tank.toml")


def test_load_quality_profiles_operator_dir_adds_and_replaces(tmp_path, caplog):
    """Test that profiles in profiles_dir add device types and replace shipped ones."""
    (tmp_path / "tank.toml").write_text(TANK.format(device_type="tank"))
    (tmp_path / "river.toml").write_text(TANK.format(device_type="river_gauge"))
    (tmp_path / "notes.txt").write_text("not a profile")
    caplog.set_level("INFO", logger="gateway.validation.profiles")

    profiles = load_quality_profiles(tmp_path)

    assert sorted(profiles) == [
        "air_quality",
        "rain_gauge",
        "river_gauge",
        "sluice_gate",
        "tank",
    ]
    assert list(profiles["river_gauge"].fields) == ["level_cm"]
    assert "Profile of river_gauge from" in caplog.text


def test_load_quality_profiles_none_gives_shipped():
    """Test that without profiles_dir the shipped profiles are used."""
    assert load_quality_profiles() == load_profiles()


def test_load_quality_profiles_bad_file_config_error(tmp_path):
    """Test that a broken profile stops start-up, naming the file and the key."""
    (tmp_path / "tank.toml").write_text(TANK.format(device_type="tank") + "max_step=")

    with pytest.raises(ConfigError) as caught:
        load_quality_profiles(tmp_path, source="gateway.toml")

    assert caught.value.key == "quality.profiles_dir"
    assert caught.value.source == "gateway.toml"
    assert "tank.toml" in caught.value.reason


def test_load_quality_profiles_missing_dir_config_error(tmp_path):
    """Test that a profiles_dir that does not exist is a configuration error."""
    with pytest.raises(ConfigError, match="not a directory"):
        load_quality_profiles(tmp_path / "absent")


def test_load_quality_profiles_one_type_twice_config_error(tmp_path):
    """Test that two files defining one device type are refused, naming both."""
    for name in ("a.toml", "b.toml"):
        (tmp_path / name).write_text(TANK.format(device_type="tank"))

    with pytest.raises(ConfigError, match="a.toml and b.toml both define"):
        load_quality_profiles(tmp_path)
