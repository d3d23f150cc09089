"""Camera state changes on MQTT: a retained status per camera and an event stream."""

from __future__ import annotations

import asyncio
import time
import uuid

import gmqtt
import orjson

from gateway.cctv.runner import run_cctv
from gateway.config import GatewayConfig
from tests.cctv_support import CLIP, free_port


async def _subscribe(
    broker, topic_filter: str
) -> tuple[gmqtt.Client, list[tuple[str, dict, bool]]]:
    received: list[tuple[str, dict, bool]] = []
    client = gmqtt.Client(f"test-cctv-{uuid.uuid4().hex[:8]}")

    def on_message(client, topic, payload, qos, properties):
        received.append((topic, orjson.loads(payload), bool(properties.get("retain"))))
        return 0

    client.on_message = on_message
    await client.connect(broker.host, broker.port)
    client.subscribe(topic_filter, qos=1)
    return client, received


async def test_cctv_publishes_retained_status_and_events(tmp_path, broker, influx_v1):
    """Test that each camera's state is retained on <prefix>/<id>/status and its
    changes are sent on <prefix>/<id>/event."""
    prefix = f"test-{uuid.uuid4().hex[:8]}/cameras"
    config = GatewayConfig.model_validate(
        {
            "subscriptions": [{"topic": "unused/#"}],
            "mqtt": {"host": broker.host, "port": broker.port},
            "influx": {"url": influx_v1.url, "database": influx_v1.database},
            "dead_letters": {"path": str(tmp_path / "dead.jsonl")},
            "cctv": {
                "snapshot_dir": str(tmp_path / "snaps"),
                "status_topic_prefix": prefix,
                "open_timeout_s": 1.0,
                "retry_min_s": 0.5,
            },
            "cameras": [
                {"id": "good", "url": str(CLIP), "interval_s": 1},
                {
                    "id": "down",
                    "url": f"rtsp://127.0.0.1:{free_port()}/x",
                    "interval_s": 1,
                },
            ],
        }
    )
    events_client, events = await _subscribe(broker, f"{prefix}/+/event")
    stop = asyncio.Event()
    runner = asyncio.create_task(run_cctv(config, stop))
    try:
        for _ in range(100):
            if {e["camera"] for _, e, _ in events} >= {"good", "down"}:
                break
            await asyncio.sleep(0.1)
        # A dashboard subscribing later still gets each status at once.
        status_client, statuses = await _subscribe(broker, f"{prefix}/+/status")
        for _ in range(50):
            if len({topic for topic, _, _ in statuses}) >= 2:
                break
            await asyncio.sleep(0.1)
    finally:
        stop.set()
        await runner
        await events_client.disconnect()
        await status_client.disconnect()

    by_camera = {e["camera"]: e for _, e, _ in events}
    assert by_camera["good"]["event"] == "online"
    assert by_camera["down"]["event"] == "offline"
    assert by_camera["down"]["reason"] == "refused"
    latest = {
        topic.split("/")[-2]: (status, retained) for topic, status, retained in statuses
    }
    assert latest["good"][0]["state"] == "online" and latest["good"][1] is True
    assert latest["down"][0]["state"] == "offline" and latest["down"][1] is True
    health = await influx_v1.wait_for_rows("camera_health", 2)
    kinds = {(row["camera"], row["error"]) for row in health}
    assert ("down", "refused") in kinds and ("good", "") in kinds
    assert any(row.get("errors_refused") for row in health if row["camera"] == "down")


def test_decor_cctv_run_samples_a_camera_as_the_demo_runs_it(
    tmp_path, broker, influx_v1
):
    """Test that `decor cctv run`, the command `make demo` starts, samples a
    file camera into snapshots and answers on its HTTP port, then exits 0."""
    import subprocess
    import sys
    from pathlib import Path

    import httpx

    snapshots = tmp_path / "snaps"
    port = free_port()
    config = tmp_path / "cctv.toml"
    config.write_text(
        f"""
[mqtt]
host = "{broker.host}"
port = {broker.port}
[influx]
url = "{influx_v1.url}"
database = "{influx_v1.database}"
[dead_letters]
path = "{tmp_path / "dead.jsonl"}"
[[subscriptions]]
topic = "unused/#"
[cctv]
snapshot_dir = "{snapshots}"
[[cameras]]
id = "cli-cam"
url = "{CLIP}"
interval_s = 1.0
"""
    )
    decor = str(Path(sys.executable).with_name("decor"))
    process = subprocess.Popen(
        [
            decor,
            "cctv",
            "run",
            "--config",
            str(config),
            "--duration",
            "6",
            "--http-port",
            str(port),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    answered = None
    for _ in range(100):
        if process.poll() is not None:
            break
        try:
            answered = httpx.get(
                f"http://127.0.0.1:{port}/cameras/cli-cam/snapshot.jpg", timeout=2
            )
            if answered.status_code == 200:
                break
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    output, _ = process.communicate(timeout=60)

    assert process.returncode == 0, output.decode(errors="replace")[-3000:]
    assert answered is not None and answered.status_code == 200
    assert answered.content[:2] == b"\xff\xd8"  # a JPEG
    assert list(snapshots.rglob("*.jpg"))
