"""Device profiles: what each kind of city sensor sends, in which units and ranges.

Besides units and alert levels, a profile says which values to believe. Per
field (every key but `unit` and `type` is optional):

- `possible = [min, max]`: what the quantity can physically be; a value
  outside is refused (the older `min = ...` / `max = ...` keys mean the same).
- `expected = [min, max]`: the usual range at these sites; a value outside is
  kept but flagged `range`.
- `max_step`: the largest believable change between two consecutive readings
  of one device, in the field's unit; a larger jump is flagged `spike`.
- `max_rate_per_min` (or `max_rate_per_s`): the fastest believable change,
  in the field's unit per minute (second), measured over the profile's
  `rate_window_s`; faster is flagged `rate`.
- `flatline_s`: a value repeated unchanged for longer than this is flagged
  `flatline` (a stuck sensor); `flatline_except` lists values that may stay
  put for good (a dry rain gauge reads 0.0 for weeks).

Per profile, optionally: `rate_window_s` (default 600 s) and
`max_clock_skew_s` (how far a device's clock may be from the gateway's before
its readings are flagged `clock`; default: the gateway's setting).
"""

from __future__ import annotations

import math
import tomllib
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

__all__ = [
    "DEFAULT_RATE_WINDOW_S",
    "PROFILE_SUFFIX",
    "DeviceProfile",
    "FieldSpec",
    "flatten_payload",
    "load_profile",
    "load_profile_file",
    "load_profiles",
    "parse_profile",
]

PACKAGE = "devices"
PROFILE_SUFFIX = ".toml"
KEY_SEPARATOR = "_"  # as the gateway joins nested keys
FIELD_TYPES = ("float",)
DEFAULT_RATE_WINDOW_S = 600.0
SECONDS_PER_MINUTE = 60.0


@dataclass(frozen=True, slots=True)
class FieldSpec:
    """One stored field: its unit, value type, possible range and quality limits.

    `min` and `max` bound what is physically possible. The limits left None
    are not checked; `max_rate_per_s` is in the field's unit per second.
    """

    unit: str
    type: str
    min: float
    max: float
    description: str = ""
    expected: tuple[float, float] | None = None
    max_step: float | None = None
    max_rate_per_s: float | None = None
    flatline_s: float | None = None
    flatline_except: tuple[float, ...] = ()

    @property
    def possible(self) -> tuple[float, float]:
        """Return the physically possible range as (min, max)."""
        return (self.min, self.max)

    def contains(self, value: float) -> bool:
        """Tell whether `value` is physically possible for this field."""
        return self.min <= value <= self.max


@dataclass(frozen=True, slots=True)
class DeviceProfile:
    """What one device type sends; fields named as stored (nested keys joined by _).

    `alert_levels` maps a field to its levels in rising order, each level
    named after the status that starts at that value. `max_clock_skew_s` None
    means the gateway's own setting applies.
    """

    device_type: str
    fields: dict[str, FieldSpec]
    report_interval_s: float
    alert_levels: dict[str, dict[str, float]] = field(default_factory=dict)
    description: str = ""
    sample: dict[str, Any] = field(default_factory=dict)
    rate_window_s: float = DEFAULT_RATE_WINDOW_S
    max_clock_skew_s: float | None = None

    def alert_level(self, field_name: str, value: float) -> str | None:
        """Return the status `value` of `field_name` is in; None if it has no levels."""
        levels = self.alert_levels.get(field_name)
        if not levels:
            return None
        status = next(iter(levels))
        for name, starts_at in levels.items():
            if value >= starts_at:
                status = name
        return status


def load_profiles() -> dict[str, DeviceProfile]:
    """Load every profile shipped in devices/profiles, by device type."""
    directory = resources.files(PACKAGE).joinpath("profiles")
    profiles = {}
    for entry in sorted(directory.iterdir(), key=lambda e: e.name):
        if entry.name.endswith(PROFILE_SUFFIX):
            profile = parse_profile(tomllib.loads(entry.read_text("utf-8")), entry.name)
            profiles[profile.device_type] = profile
    return profiles


def load_profile(device_type: str) -> DeviceProfile:
    """Load the shipped profile of one device type; raises FileNotFoundError if none."""
    name = device_type + PROFILE_SUFFIX
    entry = resources.files(PACKAGE).joinpath("profiles", name)
    return parse_profile(tomllib.loads(entry.read_text("utf-8")), entry.name)


def load_profile_file(path: Path) -> DeviceProfile:
    """Load a profile from a TOML file; raises OSError, or ValueError naming it."""
    try:
        data = tomllib.loads(path.read_text("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path}: {exc}") from None
    return parse_profile(data, str(path))


def parse_profile(data: dict[str, Any], source: str) -> DeviceProfile:
    """Build a profile from parsed TOML; raises ValueError naming `source`."""
    try:
        fields = {name: _field_spec(spec) for name, spec in data["fields"].items()}
        alert_levels = {
            name: {level: float(value) for level, value in levels.items()}
            for name, levels in data.get("alert_levels", {}).items()
        }
        skew = data.get("max_clock_skew_s")
        profile = DeviceProfile(
            device_type=str(data["device_type"]),
            fields=fields,
            report_interval_s=float(data["report_interval_s"]),
            alert_levels=alert_levels,
            description=str(data.get("description", "")),
            sample=dict(data.get("sample", {})),
            rate_window_s=_number(data.get("rate_window_s", DEFAULT_RATE_WINDOW_S)),
            max_clock_skew_s=None if skew is None else _number(skew),
        )
    except KeyError as exc:
        raise ValueError(f"{source}: missing key {exc}") from None
    except (AttributeError, TypeError, ValueError) as exc:
        raise ValueError(f"{source}: {exc}") from None
    _check(profile, source)
    return profile


def flatten_payload(payload: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Return a payload's values under their stored names: nested keys joined by _."""
    flat: dict[str, Any] = {}
    for key, value in payload.items():
        name = f"{prefix}{KEY_SEPARATOR}{key}" if prefix else key
        if isinstance(value, dict):
            flat.update(flatten_payload(value, name))
        else:
            flat[name] = value
    return flat


def _field_spec(spec: dict[str, Any]) -> FieldSpec:
    low, high = _possible(spec)
    expected = spec.get("expected")
    flatline = spec.get("flatline_s")
    return FieldSpec(
        unit=str(spec["unit"]),
        type=str(spec["type"]),
        min=low,
        max=high,
        description=str(spec.get("description", "")),
        expected=None if expected is None else _pair(expected, "expected"),
        max_step=_optional_number(spec.get("max_step")),
        max_rate_per_s=_rate_per_s(spec),
        flatline_s=None if flatline is None else _number(flatline),
        flatline_except=tuple(_number(v) for v in spec.get("flatline_except", ())),
    )


def _possible(spec: dict[str, Any]) -> tuple[float, float]:
    # `min`/`max` is the first form of the possible range; both forms at once
    # could disagree, so one must be chosen.
    if "possible" in spec:
        if "min" in spec or "max" in spec:
            raise ValueError("give either possible = [min, max] or min/max, not both")
        return _pair(spec["possible"], "possible")
    if "min" not in spec:
        raise KeyError("possible")
    return _number(spec["min"]), _number(spec["max"])


def _rate_per_s(spec: dict[str, Any]) -> float | None:
    per_s, per_min = spec.get("max_rate_per_s"), spec.get("max_rate_per_min")
    if per_s is not None and per_min is not None:
        raise ValueError("give either max_rate_per_s or max_rate_per_min, not both")
    if per_min is not None:
        return _number(per_min) / SECONDS_PER_MINUTE
    return _optional_number(per_s)


def _pair(value: Any, key: str) -> tuple[float, float]:
    if not isinstance(value, list) or len(value) != 2:
        raise ValueError(f"{key} must be [min, max], got {value!r}")
    return _number(value[0]), _number(value[1])


def _optional_number(value: Any) -> float | None:
    return None if value is None else _number(value)


def _number(value: Any) -> float:
    # TOML gives ints and floats; text or a boolean is a typo, not a number.
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"expected a number, got {value!r}")
    if not math.isfinite(value):
        raise ValueError(f"expected a finite number, got {value!r}")
    return float(value)


def _check(profile: DeviceProfile, source: str) -> None:
    for name, spec in profile.fields.items():
        problem = _field_problem(spec)
        if problem:
            raise ValueError(f"{source}: field {name!r} {problem}")
    if profile.report_interval_s <= 0:
        raise ValueError(f"{source}: report_interval_s must be positive")
    if profile.rate_window_s <= 0:
        raise ValueError(f"{source}: rate_window_s must be positive")
    if profile.max_clock_skew_s is not None and profile.max_clock_skew_s <= 0:
        raise ValueError(f"{source}: max_clock_skew_s must be positive")
    for name, levels in profile.alert_levels.items():
        if name not in profile.fields:
            raise ValueError(f"{source}: alert levels for unknown field {name!r}")
        # Levels are looked up in order, so they must rise.
        if list(levels.values()) != sorted(levels.values()):
            raise ValueError(f"{source}: alert levels of {name!r} must rise")


def _field_problem(spec: FieldSpec) -> str:
    """Return what is wrong with a field's limits, or '' if nothing."""
    if spec.type not in FIELD_TYPES:
        return f"has unknown type {spec.type!r}"
    if spec.min >= spec.max:
        return "has min >= max"
    if spec.expected is not None:
        low, high = spec.expected
        if not spec.min <= low < high <= spec.max:
            return (
                f"has expected range {list(spec.expected)}, which must rise and lie "
                f"within the possible range {list(spec.possible)}"
            )
    for key in ("max_step", "max_rate_per_s", "flatline_s"):
        value = getattr(spec, key)
        if value is not None and value <= 0:
            return f"has {key} {value}, which must be positive"
    if spec.flatline_except and spec.flatline_s is None:
        return "has flatline_except but no flatline_s"
    return ""
