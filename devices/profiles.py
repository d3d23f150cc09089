"""Device profiles: what each kind of city sensor sends, in which units and ranges."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

__all__ = [
    "DeviceProfile",
    "FieldSpec",
    "flatten_payload",
    "load_profile",
    "load_profiles",
    "parse_profile",
]

PACKAGE = "devices"
PROFILE_SUFFIX = ".toml"
KEY_SEPARATOR = "_"  # as the gateway joins nested keys
FIELD_TYPES = ("float",)


@dataclass(frozen=True, slots=True)
class FieldSpec:
    """One stored field: its unit, value type and physically possible range."""

    unit: str
    type: str
    min: float
    max: float
    description: str = ""

    def contains(self, value: float) -> bool:
        """Tell whether `value` is physically possible for this field."""
        return self.min <= value <= self.max


@dataclass(frozen=True, slots=True)
class DeviceProfile:
    """What one device type sends; fields named as stored (nested keys joined by _).

    `alert_levels` maps a field to its levels in rising order, each level
    named after the status that starts at that value.
    """

    device_type: str
    fields: dict[str, FieldSpec]
    report_interval_s: float
    alert_levels: dict[str, dict[str, float]] = field(default_factory=dict)
    description: str = ""
    sample: dict[str, Any] = field(default_factory=dict)

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


def parse_profile(data: dict[str, Any], source: str) -> DeviceProfile:
    """Build a profile from parsed TOML; raises ValueError naming `source`."""
    try:
        fields = {name: _field_spec(spec) for name, spec in data["fields"].items()}
        alert_levels = {
            name: {level: float(value) for level, value in levels.items()}
            for name, levels in data.get("alert_levels", {}).items()
        }
        profile = DeviceProfile(
            device_type=str(data["device_type"]),
            fields=fields,
            report_interval_s=float(data["report_interval_s"]),
            alert_levels=alert_levels,
            description=str(data.get("description", "")),
            sample=dict(data.get("sample", {})),
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
    return FieldSpec(
        unit=str(spec["unit"]),
        type=str(spec["type"]),
        min=float(spec["min"]),
        max=float(spec["max"]),
        description=str(spec.get("description", "")),
    )


def _check(profile: DeviceProfile, source: str) -> None:
    for name, spec in profile.fields.items():
        if spec.type not in FIELD_TYPES:
            raise ValueError(f"{source}: field {name!r} has unknown type {spec.type!r}")
        if spec.min >= spec.max:
            raise ValueError(f"{source}: field {name!r} has min >= max")
    if profile.report_interval_s <= 0:
        raise ValueError(f"{source}: report_interval_s must be positive")
    for name, levels in profile.alert_levels.items():
        if name not in profile.fields:
            raise ValueError(f"{source}: alert levels for unknown field {name!r}")
        # Levels are looked up in order, so they must rise.
        if list(levels.values()) != sorted(levels.values()):
            raise ValueError(f"{source}: alert levels of {name!r} must rise")
