"""Device liveness: online, late or offline, from the last message and its cadence.

A device is online while its silence is under `late_after_intervals` times
its expected interval, late until `offline_after_intervals` times, then
offline; a message brings it back online at once. The expected interval is
the registry's `expected_cadence_s`, else its profile's `report_interval_s`.
Each change is published retained on `<topic_prefix>/<device_id>` and
written to InfluxDB, and every state is written again every
`snapshot_interval_s`, so dashboards can count the last state of each device.

Registered active devices are tracked from the gateway's start even before
their first message (silent since the start); devices not registered are
tracked from their first message. Cameras join once something reports them
with `seen` (the frame sampler's seam).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

import orjson

from gateway.alerts.engine import AlertChange
from gateway.alerts.rules import DeviceTypeRules, SilenceRule
from gateway.config import LivenessConfig
from gateway.points import Point, encode_line

__all__ = ["STATES", "LivenessTracker", "Tracked"]

logger = logging.getLogger(__name__)

State = Literal["online", "late", "offline"]
STATES: tuple[State, ...] = ("online", "late", "offline")
SILENT_RULE = "silent"
SILENT_SEVERITY = 2
NS_PER_S = 1_000_000_000

Publish = Callable[[str, bytes, bool], bool]
WriteLines = Callable[[list[str]], Awaitable[None]]
ReportAlerts = Callable[[list[AlertChange]], None]


@dataclass
class Tracked:
    """One device or camera whose silence is measured."""

    device_id: str
    kind: str  # device or camera
    expected_s: float
    silence: SilenceRule
    last_seen_s: float | None  # epoch seconds of the last message; None: never
    since_s: float  # when it was last heard of, or tracking began
    state: State = "online"
    published: bool = False

    def silent_s(self, now_s: float) -> float:
        """Return seconds since the last message (or since tracking began)."""
        return max(0.0, now_s - (self.last_seen_s or self.since_s))

    def state_at(self, now_s: float) -> State:
        """Return the state its silence gives at `now_s`."""
        intervals = self.silent_s(now_s) / self.expected_s
        if intervals >= self.silence.offline_after_intervals:
            return "offline"
        if intervals >= self.silence.late_after_intervals:
            return "late"
        return "online"


class LivenessTracker:
    """The liveness of every device; `seen` on the message path, `run` beside it."""

    def __init__(
        self,
        settings: LivenessConfig,
        rules: Mapping[str, DeviceTypeRules],
        publish: Publish,
        write_lines: WriteLines,
        report_alerts: ReportAlerts | None = None,
        *,
        device_tag: str = "device_id",
        profile_tag: str = "device_type",
    ) -> None:
        self.settings = settings
        self.rules = rules
        self.publish = publish
        self.write_lines = write_lines
        self.report_alerts = report_alerts
        self.device_tag = device_tag
        self.profile_tag = profile_tag
        self.tracked: dict[str, Tracked] = {}
        self._wake = asyncio.Event()
        self._last_snapshot_s = 0.0

    def expect(
        self,
        device_id: str,
        expected_s: float,
        device_type: str = "",
        kind: str = "device",
    ) -> None:
        """Track a registered device or camera, or update its expected interval."""
        silence = self._silence(device_type)
        known = self.tracked.get(device_id)
        if known is None:
            self.tracked[device_id] = Tracked(
                device_id, kind, expected_s, silence, None, time.time()
            )
        else:
            known.expected_s, known.silence = expected_s, silence

    def forget(self, device_id: str) -> None:
        """Stop tracking a device (decommissioned)."""
        self.tracked.pop(device_id, None)

    def seen(self, device_id: str, device_type: str = "", kind: str = "device") -> None:
        """Record a message of a device now (cheap; publishing happens in `run`)."""
        now_s = time.time()
        known = self.tracked.get(device_id)
        if known is None:
            rules = self.rules.get(device_type)
            if rules is None:
                return  # no interval to judge it by
            known = Tracked(
                device_id, kind, rules.report_interval_s, rules.silence, now_s, now_s
            )
            self.tracked[device_id] = known
        known.last_seen_s = now_s
        if known.state != "online" or not known.published:
            self._wake.set()

    def observe(self, points: Iterable[Point]) -> None:
        """Mark the devices of a message's points as heard from now."""
        for device_id, device_type in {
            (p.tags.get(self.device_tag), p.tags.get(self.profile_tag, ""))
            for p in points
        }:
            if device_id:
                self.seen(device_id, device_type)

    async def run(self) -> None:
        """Measure silences, publish and store changes, until cancelled."""
        while True:
            await self.check()
            try:
                await asyncio.wait_for(
                    self._wake.wait(), self.settings.check_interval_s
                )
            except TimeoutError:
                pass
            self._wake.clear()

    async def check(self, now_s: float | None = None) -> list[Tracked]:
        """Apply every state change due now; return the devices that changed.

        A state the broker did not take (away) is published again at the next
        check; InfluxDB gets each change once, and every state at snapshots.
        """
        now_s = time.time() if now_s is None else now_s
        changed = []
        for tracked in list(self.tracked.values()):
            state = tracked.state_at(now_s)
            if state == tracked.state and tracked.published:
                continue
            before = tracked.state
            tracked.state = state
            tracked.published = self.publish(
                f"{self.settings.topic_prefix}/{tracked.device_id}",
                orjson.dumps(_state_body(tracked, now_s)),
                True,
            )
            if state != before:
                changed.append(tracked)
                logger.info(
                    "%s %s is %s (silent %.0f s, expected every %g s)",
                    tracked.kind.capitalize(),
                    tracked.device_id,
                    state,
                    tracked.silent_s(now_s),
                    tracked.expected_s,
                )
                self._alert(tracked, before, now_s)
        snapshot = now_s - self._last_snapshot_s >= self.settings.snapshot_interval_s
        written = list(self.tracked.values()) if snapshot else changed
        if snapshot:
            self._last_snapshot_s = now_s
        if written:
            await self.write_lines(
                [encode_line(self._point(t, now_s)) for t in written]
            )
        return changed

    def counts(self) -> dict[str, int]:
        """Return how many tracked devices are in each state."""
        counts: dict[str, int] = dict.fromkeys(STATES, 0)
        for tracked in self.tracked.values():
            counts[tracked.state] += 1
        return counts

    def _alert(self, tracked: Tracked, before: State, now_s: float) -> None:
        if self.report_alerts is None or not self.settings.alert_offline:
            return
        if tracked.state == "offline":
            severity, level = SILENT_SEVERITY, "offline"
        elif before == "offline":
            severity, level = 0, "normal"
        else:
            return
        self.report_alerts(
            [
                AlertChange(
                    device_id=tracked.device_id,
                    rule=SILENT_RULE,
                    kind="silent" if tracked.kind == "device" else "camera_offline",
                    level=level,
                    severity=severity,
                    value=round(tracked.silent_s(now_s), 1),
                    unit="s",
                    at_ns=int(now_s * NS_PER_S),
                    message=f"silent for {tracked.silent_s(now_s):.0f} s "
                    f"(expected every {tracked.expected_s:g} s)",
                )
            ]
        )

    def _silence(self, device_type: str) -> SilenceRule:
        rules = self.rules.get(device_type)
        return rules.silence if rules is not None else SilenceRule()

    def _point(self, tracked: Tracked, now_s: float) -> Point:
        return Point(
            measurement=self.settings.measurement,
            tags={
                "device_id": tracked.device_id,
                "kind": tracked.kind,
                "state": tracked.state,
            },
            fields={
                "state_code": STATES.index(tracked.state),
                "online": int(tracked.state == "online"),
                "late": int(tracked.state == "late"),
                "offline": int(tracked.state == "offline"),
                "silent_s": round(tracked.silent_s(now_s), 3),
                "expected_interval_s": float(tracked.expected_s),
            },
            time_ns=int(now_s * NS_PER_S),
        )


def _state_body(tracked: Tracked, now_s: float) -> dict[str, object]:
    return {
        "device_id": tracked.device_id,
        "kind": tracked.kind,
        "state": tracked.state,
        "last_seen": _iso(tracked.last_seen_s),
        "silent_s": round(tracked.silent_s(now_s), 3),
        "expected_interval_s": tracked.expected_s,
        "at": _iso(now_s),
    }


def _iso(at_s: float | None) -> str | None:
    return None if at_s is None else datetime.fromtimestamp(at_s, UTC).isoformat()
