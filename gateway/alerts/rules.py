"""Alert rules of each device type, read from its profile's TOML.

A profile's `[alert_levels.<field>]` names the graded levels (river gauges:
normal, waspada, siaga, awas); its `[alerts]` table says how to judge them and
adds other rules:

    [alerts.levels.water_level_cm]
    hysteresis = 10.0        # a level ends only this far below where it starts
    min_duration_s = 60.0    # a new level must hold this long to count

    [alerts.rise.water_level_cm]
    max_rise = 30.0          # rising more than this ...
    window_s = 600.0         # ... within this many seconds fires
    hysteresis = 5.0

    [alerts.battery]
    field = "battery_voltage_v"
    below = 3.4
    hysteresis = 0.1

    [alerts.silence]
    late_after_intervals = 1.5
    offline_after_intervals = 3.0

The first level of a field is its normal state and raises no alert; each
later level is one grade more severe. Every key but the thresholds has a
default, and a profile without `[alerts]` still alerts on its levels.
"""

from __future__ import annotations

import math
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from devices.profiles import PROFILE_SUFFIX
from gateway.errors import ConfigError

__all__ = [
    "BatteryRule",
    "DeviceTypeRules",
    "LevelRule",
    "RiseRule",
    "SilenceRule",
    "load_profile_tables",
    "parse_rules",
    "rules_by_device_type",
]

PROFILES_DIR_KEY = "quality.profiles_dir"
DEFAULT_LATE_AFTER_INTERVALS = 1.5
DEFAULT_OFFLINE_AFTER_INTERVALS = 3.0
RISE_SEVERITY = 2
BATTERY_SEVERITY = 1


@dataclass(frozen=True, slots=True)
class LevelRule:
    """Graded levels of one field: names in rising order and where each starts."""

    field: str
    names: tuple[str, ...]
    starts: tuple[float, ...]
    unit: str = ""
    hysteresis: float = 0.0
    min_duration_s: float = 0.0

    @property
    def rule_id(self) -> str:
        """Return the rule's name as alerts carry it: level:<field>."""
        return f"level:{self.field}"

    def raw_level(self, value: float) -> int:
        """Return the index of the level `value` is in, ignoring hysteresis."""
        index = 0
        for position, start in enumerate(self.starts):
            if value >= start:
                index = position
        return index

    def level_leaving(self, value: float, current: int) -> int:
        """Return the level for `value` while in `current`, hysteresis applied.

        Rising takes the level's own start; falling below `current` needs the
        value to drop `hysteresis` under the start of `current`.
        """
        raw = self.raw_level(value)
        if raw >= current:
            return raw
        index = raw
        for position in range(current, raw, -1):
            if value >= self.starts[position] - self.hysteresis:
                index = position
                break
        return index


@dataclass(frozen=True, slots=True)
class RiseRule:
    """A field rising more than `max_rise` within `window_s` seconds."""

    field: str
    max_rise: float
    window_s: float
    unit: str = ""
    hysteresis: float = 0.0
    min_duration_s: float = 0.0
    severity: int = RISE_SEVERITY

    @property
    def rule_id(self) -> str:
        """Return the rule's name as alerts carry it: rise:<field>."""
        return f"rise:{self.field}"


@dataclass(frozen=True, slots=True)
class BatteryRule:
    """A battery field below `below` (it clears at `below + hysteresis`)."""

    field: str
    below: float
    unit: str = ""
    hysteresis: float = 0.0
    min_duration_s: float = 0.0
    severity: int = BATTERY_SEVERITY

    @property
    def rule_id(self) -> str:
        """Return the rule's name as alerts carry it: battery:<field>."""
        return f"battery:{self.field}"


@dataclass(frozen=True, slots=True)
class SilenceRule:
    """When a silent device counts as late, then offline, in expected intervals."""

    late_after_intervals: float = DEFAULT_LATE_AFTER_INTERVALS
    offline_after_intervals: float = DEFAULT_OFFLINE_AFTER_INTERVALS


@dataclass(frozen=True, slots=True)
class DeviceTypeRules:
    """Every alert rule of one device type."""

    device_type: str
    report_interval_s: float
    levels: tuple[LevelRule, ...] = ()
    rises: tuple[RiseRule, ...] = ()
    batteries: tuple[BatteryRule, ...] = ()
    silence: SilenceRule = field(default_factory=SilenceRule)


def load_profile_tables(
    profiles_dir: Path | None = None, source: str = ""
) -> dict[str, dict[str, Any]]:
    """Return each profile's parsed TOML by device type: shipped, then the operator's.

    Raises ConfigError naming the file when one cannot be read.
    """
    tables: dict[str, dict[str, Any]] = {}
    shipped = resources.files("devices").joinpath("profiles")
    for entry in sorted(shipped.iterdir(), key=lambda e: e.name):
        if entry.name.endswith(PROFILE_SUFFIX):
            data = tomllib.loads(entry.read_text("utf-8"))
            tables[str(data["device_type"])] = data
    if profiles_dir is None or not profiles_dir.is_dir():
        # A missing directory is reported by the quality profiles' loader.
        return tables
    for path in sorted(profiles_dir.glob("*" + PROFILE_SUFFIX)):
        try:
            data = tomllib.loads(path.read_text("utf-8"))
            tables[str(data["device_type"])] = data
        except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError, KeyError) as exc:
            raise ConfigError(
                f"{path}: {exc}", key=PROFILES_DIR_KEY, source=source
            ) from None
    return tables


def rules_by_device_type(
    tables: Mapping[str, dict[str, Any]], source: str = ""
) -> dict[str, DeviceTypeRules]:
    """Return the alert rules of every profile; raise ConfigError naming a bad one."""
    rules = {}
    for device_type, data in tables.items():
        try:
            rules[device_type] = parse_rules(data)
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigError(
                f"profile {device_type!r}: alerts: {exc}",
                key=PROFILES_DIR_KEY,
                source=source,
            ) from None
    return rules


def parse_rules(data: Mapping[str, Any]) -> DeviceTypeRules:
    """Build one device type's rules from its profile; raise ValueError if bad."""
    alerts = _table(data.get("alerts", {}), "alerts")
    fields = _table(data.get("fields", {}), "fields")
    level_settings = _table(alerts.get("levels", {}), "alerts.levels")
    levels = []
    for name, raw_levels in _table(
        data.get("alert_levels", {}), "alert_levels"
    ).items():
        settings = _table(level_settings.get(name, {}), f"alerts.levels.{name}")
        starts = {level: _number(v, name) for level, v in raw_levels.items()}
        levels.append(
            LevelRule(
                field=name,
                names=tuple(starts),
                starts=tuple(starts.values()),
                unit=_unit(fields, name),
                hysteresis=_non_negative(settings, "hysteresis", name),
                min_duration_s=_non_negative(settings, "min_duration_s", name),
            )
        )
    unknown = set(level_settings) - {rule.field for rule in levels}
    if unknown:
        raise ValueError(f"alerts.levels for fields without alert_levels: {unknown}")
    rises = [
        RiseRule(
            field=name,
            max_rise=_positive(spec, "max_rise", name),
            window_s=_positive(spec, "window_s", name),
            unit=_unit(fields, name),
            hysteresis=_non_negative(spec, "hysteresis", name),
            min_duration_s=_non_negative(spec, "min_duration_s", name),
        )
        for name, spec in _table(alerts.get("rise", {}), "alerts.rise").items()
    ]
    batteries = []
    if "battery" in alerts:
        spec = _table(alerts["battery"], "alerts.battery")
        name = str(spec["field"])
        batteries.append(
            BatteryRule(
                field=name,
                below=_number(spec["below"], name),
                unit=_unit(fields, name),
                hysteresis=_non_negative(spec, "hysteresis", name),
                min_duration_s=_non_negative(spec, "min_duration_s", name),
            )
        )
    silence_spec = _table(alerts.get("silence", {}), "alerts.silence")
    silence = SilenceRule(
        late_after_intervals=_number(
            silence_spec.get("late_after_intervals", DEFAULT_LATE_AFTER_INTERVALS),
            "late_after_intervals",
        ),
        offline_after_intervals=_number(
            silence_spec.get(
                "offline_after_intervals", DEFAULT_OFFLINE_AFTER_INTERVALS
            ),
            "offline_after_intervals",
        ),
    )
    if not 1 <= silence.late_after_intervals < silence.offline_after_intervals:
        raise ValueError(
            "alerts.silence needs 1 <= late_after_intervals < offline_after_intervals"
        )
    return DeviceTypeRules(
        device_type=str(data["device_type"]),
        report_interval_s=_number(data["report_interval_s"], "report_interval_s"),
        levels=tuple(levels),
        rises=tuple(rises),
        batteries=tuple(batteries),
        silence=silence,
    )


def _table(value: Any, key: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ValueError(f"{key} must be a table, got {value!r}")
    return value


def _unit(fields: Mapping[str, Any], name: str) -> str:
    if name not in fields:
        raise ValueError(f"field {name!r} is not among the profile's fields")
    return str(fields[name].get("unit", ""))


def _number(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{name}: expected a number, got {value!r}")
    if not math.isfinite(value):
        raise ValueError(f"{name}: expected a finite number, got {value!r}")
    return float(value)


def _non_negative(spec: Mapping[str, Any], key: str, name: str) -> float:
    value = _number(spec.get(key, 0.0), f"{name}.{key}")
    if value < 0:
        raise ValueError(f"{name}.{key} must be 0 or more, got {value}")
    return value


def _positive(spec: Mapping[str, Any], key: str, name: str) -> float:
    if key not in spec:
        raise ValueError(f"{name}: missing {key}")
    value = _number(spec[key], f"{name}.{key}")
    if value <= 0:
        raise ValueError(f"{name}.{key} must be positive, got {value}")
    return value
