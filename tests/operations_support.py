"""What the alert, liveness and command tests share: a webhook receiver, an MQTT
watcher, and a gateway configuration with a registry and operations turned on.
"""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import gmqtt
import orjson
from gmqtt.mqtt.constants import MQTTv50

from gateway.config import GatewayConfig
from gateway.registry import AgencyIn, DeviceIn, Registry
from tests.conftest import Broker

ACTOR = "test-technician"


@dataclass
class Received:
    """One request the receiver took."""

    path: str
    headers: dict[str, str]
    body: dict[str, Any]


class WebhookReceiver:
    """A real HTTP server on loopback that records JSON POSTs; it can go down."""

    def __init__(self, port: int, refuse_first: int = 0) -> None:
        self.port = port
        # Answer 503 to this many requests first, as a receiver restarting does.
        self.refuse_first = refuse_first
        self.url = f"http://127.0.0.1:{port}/hook"
        self.received: list[Received] = []
        self.attempts_while_up = 0
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Listen on the port and answer 204 to every POST (after the refusals)."""
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                body = orjson.loads(self.rfile.read(length))
                receiver.attempts_while_up += 1
                if receiver.attempts_while_up <= receiver.refuse_first:
                    self.send_response(503)
                    self.end_headers()
                    return
                receiver.received.append(
                    Received(self.path, dict(self.headers.items()), body)
                )
                self.send_response(204)
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass  # the test reads what it received, not a log

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop listening: connections are refused from now on."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None


@dataclass
class Watcher:
    """Messages received on some topic filters, in order, with their retain flag."""

    messages: list[tuple[str, dict[str, Any], bool]] = field(default_factory=list)

    def on(self, topic: str) -> list[dict[str, Any]]:
        """Return the bodies received on one topic, oldest first."""
        return [body for t, body, _ in self.messages if t == topic]


@asynccontextmanager
async def watching(broker: Broker, *topic_filters: str) -> AsyncIterator[Watcher]:
    """Subscribe a real MQTT client to the filters for the block's duration."""
    watcher = Watcher()
    client = gmqtt.Client(f"test-watch-{uuid.uuid4().hex[:8]}")

    def on_message(
        client: Any, topic: str, payload: bytes, qos: int, props: Any
    ) -> int:
        retained = bool(props.get("retain", 0))
        watcher.messages.append((topic, orjson.loads(payload), retained))
        return 0

    client.on_message = on_message
    await client.connect(broker.host, broker.port, version=MQTTv50)
    for topic_filter in topic_filters:
        client.subscribe(topic_filter, qos=1)
    await asyncio.sleep(0.2)  # let the SUBACKs arrive
    try:
        yield watcher
    finally:
        await client.disconnect()


def with_operations(
    config: GatewayConfig,
    database_url: str,
    topic_prefix: str,
    tmp_path: Path,
    **sections: dict[str, Any],
) -> GatewayConfig:
    """Return `config` with a registry and alerts/liveness/commands settings.

    Published topics go under this test's prefix so tests never see each
    other's retained messages.
    """
    raw = config.model_dump(mode="json", exclude_none=True)
    raw["registry"] = {"database_url": database_url, **sections.get("registry", {})}
    raw["alerts"] = {
        "topic_prefix": f"{topic_prefix}/alerts",
        "outbox_path": str(tmp_path / "outbox"),
        "publish_interval_s": 0.2,
        "retry_min_s": 0.2,
        "retry_max_s": 0.5,
        "camera_status_topic": f"{topic_prefix}/cameras/+/status",
        **sections.get("alerts", {}),
    }
    raw["liveness"] = {
        "topic_prefix": f"{topic_prefix}/liveness",
        "check_interval_s": 0.1,
        **sections.get("liveness", {}),
    }
    raw["commands"] = {
        "topic": f"{topic_prefix}/{{agency}}/{{device_type}}/{{device_id}}/command",
        "reply_topic": f"{topic_prefix}/replies/{{device_id}}",
        "poll_interval_s": 0.1,
        **sections.get("commands", {}),
    }
    return GatewayConfig.model_validate(raw)


def register(
    registry: Registry, device_id: str, profile: str, cadence_s: float | None = None
) -> None:
    """Register an active device of agency pupr (added once)."""
    if "pupr" not in {agency.agency_id for agency in registry.list_agencies()}:
        registry.add_agency(AgencyIn(agency_id="pupr", name="Public works"), ACTOR)
    registry.add_device(
        DeviceIn(
            device_id=device_id,
            profile=profile,
            agency="pupr",
            status="active",
            expected_cadence_s=cadence_s,
        ),
        ACTOR,
    )
