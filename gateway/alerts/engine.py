"""Judge readings against alert rules as they arrive, in memory.

The engine keeps, per device and rule, the state it last committed to and a
candidate waiting out its minimum duration; it returns an `AlertChange` only
when a committed state changes, so noise around a threshold (within the
rule's hysteresis) changes nothing. It never touches the database: the alert
service stores and publishes what it returns.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from gateway.alerts.rules import BatteryRule, DeviceTypeRules, LevelRule, RiseRule
from gateway.points import Point

__all__ = ["CAMERA_CONDITIONS", "AlertChange", "AlertEngine", "camera_change"]

logger = logging.getLogger(__name__)

NS_PER_S = 1_000_000_000
NORMAL = 0
# What the CCTV frame sampler can report of a camera (see camera_change).
CAMERA_CONDITIONS = ("offline", "tampered")
CAMERA_SEVERITY = 2


@dataclass(frozen=True, slots=True)
class AlertChange:
    """A rule of a device entered a new level; `severity` 0 means back to normal."""

    device_id: str
    rule: str
    kind: str  # level, rise, battery, silent, camera_offline, camera_tampered
    level: str
    severity: int
    value: float | None
    unit: str
    at_ns: int
    message: str


@dataclass
class _Debounced:
    """A committed state, and a candidate on one side of it since some time."""

    committed: int = NORMAL
    pending: int | None = None
    pending_since_ns: int = 0

    def update(self, candidate: int, at_ns: int, min_duration_s: float) -> bool:
        """Take a candidate; return whether the committed state changed."""
        if candidate == self.committed:
            self.pending = None
            return False
        same_side = self.pending is not None and (
            (self.pending > self.committed) == (candidate > self.committed)
        )
        if not same_side:
            self.pending_since_ns = at_ns
        self.pending = candidate
        if at_ns - self.pending_since_ns < min_duration_s * NS_PER_S:
            return False
        self.committed, self.pending = candidate, None
        return True


@dataclass
class _Rising:
    """Recent values of one field, for the rise over a window."""

    values: deque[tuple[int, float]] = field(default_factory=deque)
    state: _Debounced = field(default_factory=_Debounced)


class AlertEngine:
    """Alert states of every device, changed by the readings it is shown."""

    def __init__(
        self,
        rules: Mapping[str, DeviceTypeRules],
        *,
        device_tag: str = "device_id",
        profile_tag: str = "device_type",
    ) -> None:
        self.rules = rules
        self.device_tag = device_tag
        self.profile_tag = profile_tag
        self._states: dict[tuple[str, str], _Debounced] = {}
        self._rising: dict[tuple[str, str], _Rising] = {}

    def restore(self, device_id: str, rule: str, severity: int) -> None:
        """Start a rule where an alert still open from an earlier run left it."""
        if rule.startswith("rise:"):
            self._rising.setdefault((device_id, rule), _Rising()).state.committed = 1
        elif rule.startswith("level:"):
            self._states[(device_id, rule)] = _Debounced(committed=severity)
        else:
            self._states[(device_id, rule)] = _Debounced(committed=1)

    def observe(self, points: Iterable[Point]) -> list[AlertChange]:
        """Judge each point's fields by its device type's rules; return changes."""
        changes: list[AlertChange] = []
        for point in points:
            device_id = point.tags.get(self.device_tag)
            rules = self.rules.get(point.tags.get(self.profile_tag, ""))
            if device_id is None or rules is None:
                continue
            for level_rule in rules.levels:
                value = _number(point.fields.get(level_rule.field))
                if value is not None:
                    changes.extend(
                        self._level(device_id, level_rule, value, point.time_ns)
                    )
            for rise_rule in rules.rises:
                value = _number(point.fields.get(rise_rule.field))
                if value is not None:
                    changes.extend(
                        self._rise(device_id, rise_rule, value, point.time_ns)
                    )
            for battery_rule in rules.batteries:
                value = _number(point.fields.get(battery_rule.field))
                if value is not None:
                    changes.extend(
                        self._battery(device_id, battery_rule, value, point.time_ns)
                    )
        return changes

    def _level(
        self, device_id: str, rule: LevelRule, value: float, at_ns: int
    ) -> list[AlertChange]:
        state = self._states.setdefault((device_id, rule.rule_id), _Debounced())
        candidate = rule.level_leaving(value, state.committed)
        if not state.update(candidate, at_ns, rule.min_duration_s):
            return []
        name = rule.names[state.committed]
        start = rule.starts[state.committed]
        return [
            AlertChange(
                device_id=device_id,
                rule=rule.rule_id,
                kind="level",
                level=name,
                severity=state.committed,
                value=value,
                unit=rule.unit,
                at_ns=at_ns,
                message=f"{rule.field} {value:g} {rule.unit}: {name} "
                f"(from {start:g} {rule.unit})",
            )
        ]

    def _rise(
        self, device_id: str, rule: RiseRule, value: float, at_ns: int
    ) -> list[AlertChange]:
        rising = self._rising.setdefault((device_id, rule.rule_id), _Rising())
        rising.values.append((at_ns, value))
        oldest_ns = at_ns - int(rule.window_s * NS_PER_S)
        while rising.values and rising.values[0][0] < oldest_ns:
            rising.values.popleft()
        rise = value - min(v for _, v in rising.values)
        active = rising.state.committed != NORMAL
        limit = rule.max_rise - rule.hysteresis if active else rule.max_rise
        candidate = 1 if rise > limit else NORMAL
        if not rising.state.update(candidate, at_ns, rule.min_duration_s):
            return []
        minutes = rule.window_s / 60
        return [
            AlertChange(
                device_id=device_id,
                rule=rule.rule_id,
                kind="rise",
                level="rising" if candidate else "normal",
                severity=rule.severity if candidate else NORMAL,
                value=rise,
                unit=rule.unit,
                at_ns=at_ns,
                message=f"{rule.field} rose {rise:.1f} {rule.unit} in "
                f"{minutes:g} min (alert above {rule.max_rise:g})",
            )
        ]

    def _battery(
        self, device_id: str, rule: BatteryRule, value: float, at_ns: int
    ) -> list[AlertChange]:
        state = self._states.setdefault((device_id, rule.rule_id), _Debounced())
        active = state.committed != NORMAL
        limit = rule.below + rule.hysteresis if active else rule.below
        candidate = 1 if value < limit else NORMAL
        if not state.update(candidate, at_ns, rule.min_duration_s):
            return []
        return [
            AlertChange(
                device_id=device_id,
                rule=rule.rule_id,
                kind="battery",
                level="low" if candidate else "normal",
                severity=rule.severity if candidate else NORMAL,
                value=value,
                unit=rule.unit,
                at_ns=at_ns,
                message=f"{rule.field} {value:g} {rule.unit} "
                f"(alert below {rule.below:g})",
            )
        ]


def camera_change(
    camera_id: str, condition: str, active: bool, at_ns: int, detail: str = ""
) -> AlertChange:
    """Return the change that raises or clears a camera's offline/tampered alert.

    The seam for the CCTV sampler: it passes the result to
    `GatewayOperations.alerts.report`, and an alert then lives, is published
    and notified as any other. Raises ValueError for an unknown condition.
    """
    if condition not in CAMERA_CONDITIONS:
        raise ValueError(
            f"camera condition must be one of {CAMERA_CONDITIONS}, got {condition!r}"
        )
    return AlertChange(
        device_id=camera_id,
        rule=f"camera:{condition}",
        kind=f"camera_{condition}",
        level=condition if active else "normal",
        severity=CAMERA_SEVERITY if active else NORMAL,
        value=None,
        unit="",
        at_ns=at_ns,
        message=(detail or f"camera {condition}")
        if active
        else f"camera no longer {condition}",
    )


def _number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)
