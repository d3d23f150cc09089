"""Whether the gateway is alive and whether it can take readings now.

/readyz is ready while the gateway holds its MQTT session and its points have
somewhere to go: InfluxDB takes writes, or the on-disk spool takes them
within the configured limits. Other parts (cameras) add their own checks
through `add_check` of the running `MonitoringServer`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from gateway.app import Gateway
    from gateway.config import MonitoringConfig

__all__ = ["Check", "Readiness", "ReadinessCheck", "readiness"]


@dataclass(frozen=True, slots=True)
class Check:
    """One readiness check's verdict, with a line an operator can act on."""

    ok: bool
    detail: str


ReadinessCheck = Callable[[], Check]


@dataclass(frozen=True, slots=True)
class Readiness:
    """Every check's verdict; ready only if all pass."""

    checks: Mapping[str, Check]

    @property
    def ready(self) -> bool:
        """Tell whether every check passed."""
        return all(check.ok for check in self.checks.values())

    def as_json(self) -> dict[str, object]:
        """Return the verdicts as a JSON-ready object."""
        return {
            "ready": self.ready,
            "checks": {
                name: {"ok": check.ok, "detail": check.detail}
                for name, check in self.checks.items()
            },
        }


def readiness(
    gateway: Gateway,
    limits: MonitoringConfig,
    extra: Mapping[str, ReadinessCheck] | None = None,
) -> Readiness:
    """Check the broker session, the way to InfluxDB, and any added checks."""
    checks = {
        "mqtt": broker_check(gateway),
        "influx": influx_check(gateway, limits),
    }
    for name, check in (extra or {}).items():
        checks[name] = check()
    return Readiness(checks)


def broker_check(gateway: Gateway) -> Check:
    """Pass while the MQTT session is connected."""
    address = gateway.subscriber.address
    if gateway.subscriber.connected.is_set():
        return Check(True, f"connected to MQTT broker {address}")
    return Check(False, f"not connected to MQTT broker {address}")


def influx_check(gateway: Gateway, limits: MonitoringConfig) -> Check:
    """Pass while InfluxDB takes writes, or the spool takes them within limits."""
    writer = gateway.writer
    sink = writer.sink.description
    down_since = writer.sink_down_since
    if down_since is None:
        if writer.ready.is_set():
            return Check(True, f"writing to {sink}")
        return Check(False, f"not yet connected to {sink}")
    down = f"{sink} unreachable for {time.monotonic() - down_since:.0f} s"
    spool = writer.spool
    if spool is None:
        return Check(False, f"{down}; spool off, points held in memory only")
    fill = spool.size_bytes / spool.max_bytes
    age_s = spool.oldest_age_s() if spool.segments else 0.0
    state = f"spool {fill:.0%} full, oldest point {age_s:.0f} s old"
    if fill >= limits.ready_max_spool_fill:
        return Check(
            False,
            f"{down}; {state} (ready below "
            f"{limits.ready_max_spool_fill:.0%}: monitoring.ready_max_spool_fill)",
        )
    if limits.ready_max_spool_age_s and age_s > limits.ready_max_spool_age_s:
        return Check(
            False,
            f"{down}; {state} (ready below {limits.ready_max_spool_age_s:g} s: "
            "monitoring.ready_max_spool_age_s)",
        )
    return Check(True, f"{down}; spooling: {state}")
