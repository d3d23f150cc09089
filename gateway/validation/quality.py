"""Judge readings against their device profile: refuse the impossible, flag the suspect.

A point is matched to a profile by its `device_type` tag (configurable), or,
when it has no such tag, by its measurement name; a point of no profiled
device type passes unchanged. Its device is told apart by its `device_id`
tag (configurable); without one, only the checks that need no history run.

What happens to a value of a profiled field:

- outside the field's *possible* range: left out of the point and reported
  as a `FieldReject` (reason `impossible_value`); the other fields are kept,
  and a point left with no field at all is dropped;
- outside the *expected* range: kept, flagged `range`;
- further from the device's previous reading than `max_step`: flagged
  `spike`. The step is measured from the last unflagged reading, so the
  reading after a glitch is not flagged for coming back. Two readings in a
  row that agree with each other but not with the old level are a real
  change: the first is flagged, the second becomes the new level (for the
  rate check too). No step is judged across a gap of more than three report
  intervals;
- changing faster than `max_rate_per_min` over the profile's `rate_window_s`
  (against the last reading at least a window old that was not flagged
  `spike` or `rate`): flagged `rate`;
- the same value for longer than `flatline_s`, unless listed in the field's
  `flatline_except`: flagged `flatline`.

A reading no newer than the previous one of its device and field (a repeated
delivery, an out-of-order message) is judged for ranges only, and leaves the
device's history as it was.

Clock: when a point's time is more than `max_clock_skew_s` (the profile's, or
the gateway's default) from the time the gateway received it, the point is
flagged `clock`. A device time *ahead* of the receive time is always wrong, so
the point is stored at the receive time and the device's time is kept in
`device_time_ns`. A device time *behind* is kept by default: late delivery
(the broker's backlog after a gateway restart, a logger catching up after a
cellular outage) looks the same, and moving a two-hour backlog onto the second
it arrived would erase those two hours. `late_reading_time="receive"` treats
such points like the ones ahead instead, for fleets whose clocks drift.

How flags are stored, beside the values, in the same point:

- `quality` (integer): on every point of a profiled device type; 0 when
  nothing is flagged, else the sum of the bits of its flags: range 1, spike 2,
  rate 4, flatline 8, clock 16.
- `<field>_flags` (string): only when that field is flagged; its flags in the
  order range, spike, rate, flatline, joined by commas: `"range,spike"`.
- `device_time_ns` (integer): only when the point is stored at receive time;
  the time the device gave.

These fields never change type and add no tag, so no type conflict and no new
series. A field a device sends under one of these names is left out and
reported (reason `reserved_field`). InfluxQL for dashboards and alerts:

    -- good readings only (a point counts as good when nothing on it is flagged)
    SELECT mean("water_level_cm") FROM "river_gauge"
      WHERE "quality" = 0 AND $timeFilter GROUP BY time($__interval), "device_id"
    -- the flagged values of one field, with why, to overlay as markers
    SELECT "water_level_cm", "water_level_cm_flags" FROM "river_gauge"
      WHERE "water_level_cm_flags" =~ /./ AND $timeFilter
    -- flagged readings per device in the last hour
    SELECT count("quality") FROM "river_gauge"
      WHERE "quality" > 0 AND time > now() - 1h GROUP BY "device_id"
    -- spikes only (one bit)
    SELECT "water_level_cm" FROM "river_gauge" WHERE "quality" & 2 > 0

A condition on a missing field is false in InfluxQL, so points stored before
this stage ran have no `quality` and fall out of `"quality" = 0`.

Known limitation: VictoriaMetrics stores a string field as the number 0, so
there a `<field>_flags` sample only marks that the value was flagged, not why;
`quality` still tells the kinds, for the whole point.

Known limitation: the history the spike, rate and flatline checks use lives in
memory for at most `max_tracked_devices` devices; a restart, or a device
pushed out by newer ones, starts its history afresh, so the first readings
afterwards are not judged against earlier ones.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from devices.profiles import DeviceProfile, FieldSpec
from gateway.decoding.base import FieldReject
from gateway.points import FieldValue, Point

__all__ = [
    "DEFAULT_MAX_CLOCK_SKEW_S",
    "DEFAULT_MAX_TRACKED_DEVICES",
    "DEVICE_TIME_FIELD",
    "FLAGS_SUFFIX",
    "FLAG_BITS",
    "QUALITY_FIELD",
    "CheckResult",
    "LateReadingTime",
    "QualityChecker",
]

logger = logging.getLogger(__name__)

DEFAULT_MAX_CLOCK_SKEW_S = 300.0
DEFAULT_MAX_TRACKED_DEVICES = 10_000
# A step is judged only against a reading this many report intervals old at
# most: after an outage the river may really have moved a metre.
STEP_MAX_GAP_REPORTS = 3.0
NS_PER_S = 1_000_000_000

QUALITY_FIELD = "quality"
FLAGS_SUFFIX = "_flags"
DEVICE_TIME_FIELD = "device_time_ns"
RANGE, SPIKE, RATE, FLATLINE, CLOCK = "range", "spike", "rate", "flatline", "clock"
FLAG_BITS = {RANGE: 1, SPIKE: 2, RATE: 4, FLATLINE: 8, CLOCK: 16}
WRONG_TYPE = "wrong_type"
IMPOSSIBLE_VALUE = "impossible_value"
RESERVED_FIELD = "reserved_field"

LateReadingTime = Literal["device", "receive"]


@dataclass(frozen=True, slots=True)
class CheckResult:
    """A checked point: what to store (None: nothing), values left out, flags.

    `flags` names each flag raised, once per flagged field (clock once per
    point), for counters.
    """

    point: Point | None
    rejected_fields: tuple[FieldReject, ...] = ()
    flags: tuple[str, ...] = ()


class QualityChecker:
    """Check points against device profiles, remembering recent readings per device.

    Args:
        profiles: device profiles by the name points are matched on.
        profile_tag: tag whose value names a point's profile.
        device_tag: tag that tells devices of one type apart.
        max_clock_skew_s: how far a point's time may be from its receive time,
            in seconds, for profiles that set no `max_clock_skew_s`.
        late_reading_time: where to store a point whose time is that far
            behind: "device" time or "receive" time.
        max_tracked_devices: devices whose history is kept; the least
            recently heard from is forgotten first.
    """

    def __init__(
        self,
        profiles: Mapping[str, DeviceProfile],
        *,
        profile_tag: str = "device_type",
        device_tag: str = "device_id",
        max_clock_skew_s: float = DEFAULT_MAX_CLOCK_SKEW_S,
        late_reading_time: LateReadingTime = "device",
        max_tracked_devices: int = DEFAULT_MAX_TRACKED_DEVICES,
    ) -> None:
        if not max_clock_skew_s > 0:
            raise ValueError(
                f"max_clock_skew_s must be positive, got {max_clock_skew_s}"
            )
        if max_tracked_devices < 1:
            raise ValueError(
                f"max_tracked_devices must be at least 1, got {max_tracked_devices}"
            )
        if late_reading_time not in ("device", "receive"):
            raise ValueError(
                "late_reading_time must be 'device' or 'receive', "
                f"got {late_reading_time!r}"
            )
        self._rules = {
            name: _compile(profile, max_clock_skew_s)
            for name, profile in profiles.items()
        }
        self._profile_tag = profile_tag
        self._device_tag = device_tag
        self._late_at_receive = late_reading_time == "receive"
        self._max_devices = max_tracked_devices
        self._devices: OrderedDict[tuple[str, str], dict[str, _FieldState]] = (
            OrderedDict()
        )
        self.devices_forgotten = 0

    @property
    def tracked_devices(self) -> int:
        """Return how many devices' recent readings are remembered."""
        return len(self._devices)

    def check(self, point: Point, received_ns: int) -> CheckResult:
        """Return `point` as it should be stored, with what was left out or flagged.

        Args:
            received_ns: when the gateway received the message, ns since the epoch.
        """
        tags = point.tags
        profile_name = tags.get(self._profile_tag, point.measurement)
        rules = self._rules.get(profile_name)
        if rules is None:
            return CheckResult(point)
        return self._check(rules, point, received_ns)

    def _check(self, rules: _Rules, point: Point, received_ns: int) -> CheckResult:
        fields = dict(point.fields)
        rejected: list[FieldReject] = []
        if not rules.reserved.isdisjoint(fields):
            rejected.extend(_drop_reserved(fields, rules.reserved))
        time_ns, device_time_ns, flags = self._judge_clock(rules, point, received_ns)
        quality = FLAG_BITS[CLOCK] if flags else 0

        device_id = point.tags.get(self._device_tag)
        states = None
        if device_id is not None and rules.has_history:
            states = self._device_states(rules.device_type, device_id)
        rule_of = rules.fields.get
        for name, value in point.fields.items():
            rule = rule_of(name)
            if rule is None:
                continue
            if isinstance(value, str | bool):
                # The profile gives this field a numeric range. Text such as
                # "182 cm" would make InfluxDB refuse the whole point (field
                # type conflict), or, first in a new shard, turn the field into
                # text and refuse every good reading after it.
                del fields[name]
                rejected.append(_not_a_number(rule, value))
                continue
            if not rule.low <= value <= rule.high:
                del fields[name]
                rejected.append(_impossible(rule, value))
                continue
            kinds = _judge_value(rule, value, time_ns, states)
            if kinds:
                fields[rule.flags_key] = ",".join(kinds)
                flags.extend(kinds)
                for kind in kinds:
                    quality |= FLAG_BITS[kind]

        if len(rejected) == len(point.fields):
            return CheckResult(None, tuple(rejected), tuple(flags))
        fields[QUALITY_FIELD] = quality
        if device_time_ns is not None:
            fields[DEVICE_TIME_FIELD] = device_time_ns
        stored = Point(point.measurement, point.tags, fields, time_ns)
        return CheckResult(stored, tuple(rejected), tuple(flags))

    def _judge_clock(
        self, rules: _Rules, point: Point, received_ns: int
    ) -> tuple[int, int | None, list[str]]:
        """Return the time to store, the device time if moved, and the flags."""
        skew_ns = point.time_ns - received_ns
        if -rules.max_skew_ns <= skew_ns <= rules.max_skew_ns:
            return point.time_ns, None, []
        if skew_ns > 0 or self._late_at_receive:
            return received_ns, point.time_ns, [CLOCK]
        return point.time_ns, None, [CLOCK]

    def _device_states(
        self, device_type: str, device_id: str
    ) -> dict[str, _FieldState]:
        key = (device_type, device_id)
        states = self._devices.get(key)
        if states is not None:
            self._devices.move_to_end(key)
            return states
        states = self._devices[key] = {}
        if len(self._devices) > self._max_devices:
            self._devices.popitem(last=False)
            if not self.devices_forgotten:
                logger.warning(
                    "Hearing from more than %d devices; forgetting the history of "
                    "the least recently heard, whose next readings are not judged "
                    "against earlier ones",
                    self._max_devices,
                )
            self.devices_forgotten += 1
        return states


@dataclass(frozen=True, slots=True)
class _FieldRule:
    """One field's limits, in the units the checks compare (ns for times)."""

    name: str
    unit: str
    low: float
    high: float
    expected_low: float
    expected_high: float
    max_step: float | None
    step_gap_ns: int
    max_rate_per_ns: float | None
    window_ns: int
    flatline_ns: int | None
    flatline_except: frozenset[float]
    flags_key: str
    has_history: bool  # whether a check needs the device's earlier readings


@dataclass(frozen=True, slots=True)
class _Rules:
    """One profile, compiled for checking."""

    device_type: str
    fields: dict[str, _FieldRule]
    max_skew_ns: int
    reserved: frozenset[str]
    has_history: bool


class _FieldState:
    """What one device's field said lately: the history spike, rate, flatline use."""

    __slots__ = (
        "anchor_ns",
        "anchor_value",
        "last_ns",
        "pending",
        "ref_ns",
        "ref_value",
        "run_start_ns",
        "run_value",
    )

    def __init__(self) -> None:
        self.last_ns: int | None = None  # the newest reading's time
        self.ref_value = 0.0  # the last reading not flagged spike
        self.ref_ns: int | None = None
        self.pending: float | None = None  # a spike that may be a new level
        self.anchor_value = 0.0  # where the current rate window starts
        self.anchor_ns: int | None = None
        self.run_value: float | None = None  # the value repeated since run_start_ns
        self.run_start_ns = 0


def _compile(profile: DeviceProfile, default_skew_s: float) -> _Rules:
    fields = {
        name: _compile_field(name, spec, profile)
        for name, spec in profile.fields.items()
    }
    reserved = {QUALITY_FIELD, DEVICE_TIME_FIELD}
    reserved.update(rule.flags_key for rule in fields.values())
    clash = reserved & fields.keys()
    if clash:
        raise ValueError(
            f"profile {profile.device_type!r} has field {sorted(clash)[0]!r}, a "
            "name the quality flags are stored under; rename the field"
        )
    skew_s = profile.max_clock_skew_s or default_skew_s
    return _Rules(
        device_type=profile.device_type,
        fields=fields,
        max_skew_ns=round(skew_s * NS_PER_S),
        reserved=frozenset(reserved),
        has_history=any(rule.has_history for rule in fields.values()),
    )


def _compile_field(name: str, spec: FieldSpec, profile: DeviceProfile) -> _FieldRule:
    expected_low, expected_high = spec.expected or spec.possible
    rate = spec.max_rate_per_s
    flatline_s = spec.flatline_s
    return _FieldRule(
        name=name,
        unit=spec.unit,
        low=spec.min,
        high=spec.max,
        expected_low=expected_low,
        expected_high=expected_high,
        max_step=spec.max_step,
        step_gap_ns=round(STEP_MAX_GAP_REPORTS * profile.report_interval_s * NS_PER_S),
        max_rate_per_ns=None if rate is None else rate / NS_PER_S,
        window_ns=round(profile.rate_window_s * NS_PER_S),
        flatline_ns=None if flatline_s is None else round(flatline_s * NS_PER_S),
        flatline_except=frozenset(spec.flatline_except),
        flags_key=name + FLAGS_SUFFIX,
        has_history=not (spec.max_step is None and rate is None and flatline_s is None),
    )


def _judge_value(
    rule: _FieldRule,
    value: float,
    time_ns: int,
    states: dict[str, _FieldState] | None,
) -> list[str]:
    """Return the flags one possible value earns, updating its field's history."""
    kinds = []
    if not rule.expected_low <= value <= rule.expected_high:
        kinds.append(RANGE)
    if states is None or not rule.has_history:
        return kinds
    state = states.get(rule.name)
    if state is None:
        state = states[rule.name] = _FieldState()
    if state.last_ns is not None and time_ns <= state.last_ns:
        return kinds
    state.last_ns = time_ns

    if rule.max_step is not None and _is_spike(
        rule, rule.max_step, state, value, time_ns
    ):
        kinds.append(SPIKE)
    elif rule.max_rate_per_ns is not None and _is_too_fast(
        rule, rule.max_rate_per_ns, state, value, time_ns
    ):
        kinds.append(RATE)
    if rule.flatline_ns is not None and _is_flatline(
        rule, rule.flatline_ns, state, value, time_ns
    ):
        kinds.append(FLATLINE)
    return kinds


def _is_spike(
    rule: _FieldRule, max_step: float, state: _FieldState, value: float, time_ns: int
) -> bool:
    fresh = state.ref_ns is not None and time_ns - state.ref_ns <= rule.step_gap_ns
    if fresh and abs(value - state.ref_value) > max_step:
        if state.pending is None or abs(value - state.pending) > max_step:
            state.pending = value
            return True
        # A second reading close to the first jump: the level really moved, so
        # the rate is measured from here on too.
        state.anchor_value, state.anchor_ns = value, time_ns
    state.ref_value, state.ref_ns, state.pending = value, time_ns, None
    return False


def _is_too_fast(
    rule: _FieldRule,
    max_rate_per_ns: float,
    state: _FieldState,
    value: float,
    time_ns: int,
) -> bool:
    if state.anchor_ns is None:
        state.anchor_value, state.anchor_ns = value, time_ns
        return False
    elapsed_ns = time_ns - state.anchor_ns
    if elapsed_ns < rule.window_ns:
        return False
    # A flagged reading does not start the next window: measured from the
    # last believable one, the rate falls back under the limit as time passes.
    if abs(value - state.anchor_value) > max_rate_per_ns * elapsed_ns:
        return True
    state.anchor_value, state.anchor_ns = value, time_ns
    return False


def _is_flatline(
    rule: _FieldRule, flatline_ns: int, state: _FieldState, value: float, time_ns: int
) -> bool:
    if value != state.run_value:
        state.run_value, state.run_start_ns = value, time_ns
        return False
    return (
        time_ns - state.run_start_ns > flatline_ns and value not in rule.flatline_except
    )


def _not_a_number(rule: _FieldRule, value: str | bool) -> FieldReject:
    return FieldReject(
        rule.name,
        WRONG_TYPE,
        f"{value!r:.64} is not a number; the profile expects {rule.unit or 'a number'}",
    )


def _impossible(rule: _FieldRule, value: float) -> FieldReject:
    return FieldReject(
        rule.name,
        IMPOSSIBLE_VALUE,
        f"{value!r} {rule.unit} is outside the possible range "
        f"{rule.low:g} to {rule.high:g} {rule.unit}",
    )


def _drop_reserved(
    fields: dict[str, FieldValue], reserved: frozenset[str]
) -> list[FieldReject]:
    rejected = []
    for name in sorted(reserved.intersection(fields)):
        del fields[name]
        rejected.append(
            FieldReject(
                name,
                RESERVED_FIELD,
                "the gateway stores quality flags under this name; rename the "
                "device's field to keep it",
            )
        )
    return rejected
