"""Simulated devices that answer commands: a river gauge and a sluice gate.

Each holds its own MQTT connection, reports on its telemetry topic every
`interval_s`, and listens on its command topic. A command is JSON with
`correlation_id`, `action`, `args` and `reply_to`; over MQTT 5 the reply
topic and correlation id also come as the Response Topic and Correlation
Data properties, and the answer carries them back both ways. Answers are
`{"correlation_id": ..., "status": "ok" | "error", "detail": ...}`.

Both take `set_interval` (reporting interval); the gate also takes `open`
and `close` and moves `travel_pct_per_s` towards its target, reporting
`gate_position_pct` and `gate_open` as it goes.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import gmqtt
import orjson
from gmqtt.mqtt.constants import MQTTv50, MQTTv311

__all__ = ["ACTUATOR_TYPES", "CommandableDevice", "GateState"]

logger = logging.getLogger(__name__)

ACTUATOR_TYPES = ("sluice_gate",)
CONNECT_TIMEOUT_S = 10.0
KEEPALIVE_S = 15
GATE_TRAVEL_PCT_PER_S = 20.0  # closed to open in five seconds, for demos
BATTERY_V = 3.95


@dataclass
class GateState:
    """Where the gate is and where it is going, in percent open."""

    position_pct: float = 0.0
    target_pct: float = 0.0
    travel_pct_per_s: float = GATE_TRAVEL_PCT_PER_S
    moved_at_s: float = field(default_factory=time.monotonic)

    def advance(self, now_s: float) -> None:
        """Move towards the target for the time since the last move."""
        step = self.travel_pct_per_s * (now_s - self.moved_at_s)
        self.moved_at_s = now_s
        if self.position_pct < self.target_pct:
            self.position_pct = min(self.target_pct, self.position_pct + step)
        else:
            self.position_pct = max(self.target_pct, self.position_pct - step)


class CommandableDevice:
    """One simulated device that reports and obeys; `run` until cancelled."""

    def __init__(
        self,
        device_id: str,
        device_type: str,
        *,
        host: str = "127.0.0.1",
        port: int = 18830,
        topic_prefix: str = "city",
        agency: str = "dinas-pupr",
        interval_s: float = 5.0,
        protocol: str = "5",
        level_cm: Callable[[], float] | None = None,
        answer_commands: bool = True,
    ) -> None:
        if device_type not in ("river_gauge", "sluice_gate"):
            raise ValueError(f"no commandable simulator for {device_type!r}")
        self.device_id = device_id
        self.device_type = device_type
        self.host, self.port = host, port
        base = f"{topic_prefix}/{agency}/{device_type}/{device_id}"
        self.telemetry_topic = f"{base}/telemetry"
        self.command_topic = f"{base}/command"
        self.interval_s = interval_s
        self.protocol = protocol
        self.level_cm = level_cm or (lambda: 150.0)
        self.answer_commands = answer_commands
        self.gate = GateState()
        self.commands_received: list[dict[str, Any]] = []
        self.reports_sent = 0
        self._client: gmqtt.Client | None = None
        self._interval_changed = asyncio.Event()

    async def run(self) -> None:
        """Connect, listen for commands and report every interval until cancelled."""
        client = gmqtt.Client(
            f"decor-sim-{self.device_id}-{uuid.uuid4().hex[:6]}",
            logger=logging.getLogger(f"{__name__}.gmqtt"),
        )
        client.on_message = self._on_message
        version = MQTTv50 if self.protocol == "5" else MQTTv311
        await asyncio.wait_for(
            client.connect(
                self.host, self.port, keepalive=KEEPALIVE_S, version=version
            ),
            CONNECT_TIMEOUT_S,
        )
        self._client = client
        client.subscribe(self.command_topic, qos=1)
        try:
            while True:
                self.report()
                self._interval_changed.clear()
                try:
                    await asyncio.wait_for(
                        self._interval_changed.wait(), self.interval_s
                    )
                except TimeoutError:
                    pass
        finally:
            self._client = None
            await client.disconnect()

    def report(self) -> None:
        """Publish one reading now."""
        if self._client is None:
            return
        reading: dict[str, Any] = {"ts": time.time_ns() // 1_000_000}
        if self.device_type == "river_gauge":
            reading["water_level_cm"] = float(self.level_cm())
            reading["battery"] = {"voltage_v": BATTERY_V}
        else:
            self.gate.advance(time.monotonic())
            position = round(self.gate.position_pct, 1)
            moving = position != self.gate.target_pct
            reading |= {
                "gate_position_pct": position,
                "gate_open": 1.0 if position >= 100.0 else 0.0,
                "motor_current_a": 8.5 if moving else 0.0,
            }
        self._client.publish(self.telemetry_topic, orjson.dumps(reading), qos=1)
        self.reports_sent += 1

    async def _on_message(
        self, client: gmqtt.Client, topic: str, payload: bytes, qos: int, props: Any
    ) -> int:
        try:
            command = orjson.loads(payload)
        except orjson.JSONDecodeError:
            logger.warning("%s: command is not JSON: %r", self.device_id, payload[:200])
            return 0
        self.commands_received.append(command)
        if not self.answer_commands:
            return 0
        status, detail = self._obey(command)
        reply_to = _first(props.get("response_topic")) or command.get("reply_to")
        correlation = _first(props.get("correlation_data"))
        if isinstance(correlation, str):
            correlation = correlation.encode()
        if not reply_to:
            logger.warning("%s: command without a reply topic", self.device_id)
            return 0
        answer = {
            "correlation_id": command.get("correlation_id"),
            "status": status,
            "detail": detail,
        }
        properties = (
            {"correlation_data": correlation}
            if self.protocol == "5" and correlation
            else {}
        )
        client.publish(str(reply_to), orjson.dumps(answer), qos=1, **properties)
        # The gate reports as soon as it starts moving, as real loggers do.
        self._interval_changed.set()
        return 0

    def _obey(self, command: dict[str, Any]) -> tuple[str, str]:
        action = command.get("action")
        args = command.get("args") or {}
        if action == "set_interval":
            interval = args.get("interval_s")
            if not isinstance(interval, int | float) or interval <= 0:
                return (
                    "error",
                    f"interval_s must be a positive number, got {interval!r}",
                )
            self.interval_s = float(interval)
            return "ok", f"reporting every {self.interval_s:g} s"
        if self.device_type == "sluice_gate" and action in ("open", "close"):
            self.gate.advance(time.monotonic())
            self.gate.target_pct = 100.0 if action == "open" else 0.0
            return "ok", f"gate {'opening' if action == 'open' else 'closing'}"
        return "error", f"unknown action {action!r}"


def _first(value: Any) -> Any:
    if isinstance(value, list | tuple):
        return value[0] if value else None
    return value
