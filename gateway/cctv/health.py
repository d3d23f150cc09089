"""Each camera's health: online or offline, and frozen, covered or blurred.

A camera is online from its first good frame. It is offline as soon as a
sample attempt fails (the reason says why: timeout, refused, stalled...), or
when no good frame came for two sampling intervals whatever the cause, so an
operator hears of a dead camera within two intervals. Frozen, covered and
blurred are conditions of an online camera's picture.

Every sample attempt becomes a health point; every good sample a frame
point. A change of state or condition becomes an event.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass
from typing import Any

from gateway.cctv.worker import SampleResult
from gateway.points import Point

__all__ = ["CameraHealth", "HealthEvent"]

# Reason given when a camera went silent without a reported error.
SILENT = "no_frame"
CONDITIONS = ("frozen", "covered", "blurred")


@dataclass(frozen=True, slots=True)
class HealthEvent:
    """A change in a camera's state or conditions."""

    camera: str
    time_ns: int
    event: str  # online, offline, frozen, unfrozen, covered, uncovered, ...
    reason: str = ""


class CameraHealth:
    """Track one camera's state from its sample results."""

    def __init__(self, camera: str, interval_s: float, site: str = "") -> None:
        self.camera = camera
        self.interval_s = interval_s
        self.site = site
        self.state = "starting"
        self.reason = ""
        self.conditions = dict.fromkeys(CONDITIONS, False)
        self.since_ns = time.time_ns()
        self.errors: Counter[str] = Counter()
        self.samples = 0
        self.last_good_monotonic: float | None = None
        self.last_good_ns: int | None = None
        self.last_facts: dict[str, Any] = {}
        self.resolution = ""
        self._started = time.monotonic()

    def note(self, result: SampleResult) -> list[HealthEvent]:
        """Take a sample result; return the events it caused."""
        if not result.ok:
            self.errors[result.error_kind] += 1
            return self._set_state("offline", result.error_kind, result.time_ns)
        self.samples += 1
        self.last_good_monotonic = time.monotonic()
        self.last_good_ns = result.time_ns
        self.resolution = f"{result.width}x{result.height}"
        events = self._set_state("online", "", result.time_ns)
        facts = result.facts
        if facts is not None:
            self.last_facts = {
                "brightness": round(facts.brightness, 1),
                "sharpness": round(facts.sharpness, 1),
                "motion": None if facts.motion is None else round(facts.motion, 2),
                "people": facts.people,
            }
            for name in CONDITIONS:
                value = bool(getattr(facts, name))
                if value != self.conditions[name]:
                    self.conditions[name] = value
                    events.append(
                        HealthEvent(
                            self.camera,
                            result.time_ns,
                            name if value else f"un{name}",
                        )
                    )
        return events

    def check_silence(self, interval_s: float | None = None) -> list[HealthEvent]:
        """Mark the camera offline if no good frame came for two intervals."""
        interval_s = self.interval_s if interval_s is None else interval_s
        if interval_s <= 0 or self.state == "offline":
            return []
        last = self.last_good_monotonic or self._started
        if time.monotonic() - last <= 2 * interval_s:
            return []
        return self._set_state("offline", SILENT, time.time_ns())

    def status(self) -> dict[str, Any]:
        """Return the state as published on MQTT and served by the HTTP API."""
        return {
            "camera": self.camera,
            "state": self.state,
            "reason": self.reason,
            **self.conditions,
            "since": self.since_ns / 1e9,
            "last_sample": None
            if self.last_good_ns is None
            else self.last_good_ns / 1e9,
            "resolution": self.resolution,
            "samples": self.samples,
            "errors": dict(self.errors),
            **self.last_facts,
        }

    def health_point(self, result: SampleResult, measurement: str) -> Point:
        """Return the health point of one sample attempt."""
        fields: dict[str, float | int | bool | str] = {
            "online": result.ok,
            "error": result.error_kind,
            "errors": sum(self.errors.values()),
        }
        for kind, count in self.errors.items():
            fields[f"errors_{kind}"] = count
        if result.ok:
            fields |= {
                "latency_ms": round(result.latency_s * 1000, 2),
                "decode_ms": round(result.decode_s * 1000, 2),
                "width": result.width,
                "height": result.height,
            }
        return Point(measurement, self._tags(), fields, result.time_ns)

    def frame_point(self, result: SampleResult, measurement: str) -> Point | None:
        """Return the frame point of a good sample, None for a failed one."""
        facts = result.facts
        if not result.ok or facts is None:
            return None
        fields: dict[str, float | int | bool | str] = {
            "brightness": facts.brightness,
            "contrast": facts.contrast,
            "sharpness": facts.sharpness,
            "frozen": facts.frozen,
            "covered": facts.covered,
            "blurred": facts.blurred,
        }
        if facts.motion is not None:
            fields["motion"] = facts.motion
        if facts.people is not None:
            fields["people"] = facts.people
        return Point(measurement, self._tags(), fields, result.time_ns)

    def _tags(self) -> dict[str, str]:
        tags = {"camera": self.camera}
        if self.site:
            tags["site"] = self.site
        return tags

    def _set_state(self, state: str, reason: str, time_ns: int) -> list[HealthEvent]:
        if state == self.state and reason == self.reason:
            return []
        changed = state != self.state
        self.state, self.reason = state, reason
        if not changed:
            return []  # still offline, for another reason: no new event
        self.since_ns = time_ns
        if state == "offline":
            # Conditions of the picture mean nothing without a picture.
            self.conditions = dict.fromkeys(CONDITIONS, False)
        return [HealthEvent(self.camera, time_ns, state, reason)]
