"""/metrics, /healthz and /readyz of a running gateway, asked over a real socket.

The gateway runs against the real broker and InfluxDB; the outage tests start
their own Mosquitto, or point InfluxDB at a port nothing listens on, so the
shared services are never disturbed.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.parser import text_string_to_metric_families

from gateway.app import Gateway
from gateway.config import GatewayConfig, MonitoringConfig
from gateway.errors import ConfigError
from gateway.monitoring import Check
from tests.conftest import WAIT_S, wait_until
from tests.test_faults import (
    free_port,
    gateway_running,
    mqtt_client,
    private_mosquitto,  # noqa: F401 - a fixture
    reading,
)

MS = 1_000_000


def monitored(config: GatewayConfig, **limits: Any) -> GatewayConfig:
    """Return `config` with the monitoring endpoints on a free loopback port."""
    monitoring = MonitoringConfig(enabled=True, port=0, **limits)
    return config.model_copy(update={"monitoring": monitoring})


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    """Give an HTTP client for the gateway's endpoints."""
    async with httpx.AsyncClient(timeout=5) as client:
        yield client


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Parse a Prometheus exposition into {(sample name, labels): value}."""
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = tuple(sorted(sample.labels.items()))
            found[(sample.name, labels)] = sample.value
    return found


async def scrape(http: httpx.AsyncClient, gateway: Gateway) -> dict[Any, float]:
    """Return the samples of the gateway's /metrics."""
    response = await http.get(f"http://127.0.0.1:{gateway.monitoring.port}/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=")
    return samples(response.text)


async def ready(http: httpx.AsyncClient, gateway: Gateway) -> httpx.Response:
    """Ask the gateway's /readyz."""
    return await http.get(f"http://127.0.0.1:{gateway.monitoring.port}/readyz")


async def wait_for_status(
    http: httpx.AsyncClient, gateway: Gateway, status: int
) -> httpx.Response:
    """Poll /readyz until it answers `status`; return the last answer."""
    answers: list[httpx.Response] = []

    async def poll() -> bool:
        if not gateway.monitoring.started.is_set():
            return False
        answers.append(await ready(http, gateway))
        return answers[-1].status_code == status

    deadline = time.monotonic() + WAIT_S
    while not await poll() and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
    assert answers, "the monitoring server did not start"
    return answers[-1]


async def test_metrics_count_readings_stored_rejected_and_written_in_batches(
    gateway_config, running_gateway, publisher, topic_prefix, influx_v1, http
):
    """Test that /metrics shows readings received, stored and refused by reason,
    dead letters by reason, and the size and duration of each write request."""
    config = monitored(gateway_config(influx={"database": influx_v1.database}))
    topic = f"{topic_prefix}/bpbd/river_gauge/rg-metrics-01/telemetry"
    base_ms = int(time.time() * 1000) - 60_000

    async with running_gateway(config) as gateway:
        for index in range(5):
            publisher.publish(topic, reading(base_ms + index * 1000, level_cm=index))
        publisher.publish(topic, b'{"ts": 1, "level_cm": ')
        publisher.publish(topic, b"182 cm")
        await influx_v1.wait_for_rows("river_gauge", 5)
        assert await wait_until(lambda: gateway.dead_letters.entries_written == 2)
        found = await scrape(http, gateway)

    assert found[("decor_mqtt_messages_received_total", ())] == 7
    assert found[("decor_points_stored_total", ())] == 5
    invalid_json = (("reason", "invalid_json"),)
    assert found[("decor_mqtt_messages_rejected_total", invalid_json)] == 2
    assert found[("decor_dead_letters_total", invalid_json)] == 2
    requests = found[("decor_write_requests_total", ())]
    assert requests >= 1
    # Every stored request was observed once, with its points.
    assert found[("decor_write_batch_points_count", ())] == requests
    assert found[("decor_write_batch_points_sum", ())] == 5
    assert found[("decor_write_duration_seconds_count", ())] == requests
    assert found[("decor_write_duration_seconds_sum", ())] > 0
    assert found[("decor_mqtt_connected", ())] == 1
    assert found[("decor_influx_up", ())] == 1
    assert found[("decor_spool_bytes", ())] == 0
    assert found[("decor_spool_oldest_point_age_seconds", ())] == 0


async def test_readyz_turns_unready_when_the_broker_stops_and_ready_when_it_is_back(
    gateway_config,
    topic_prefix,
    influx_v1,
    private_mosquitto,  # noqa: F811 - the fixture imported above
    http,
):
    """Test that /readyz answers 503 naming the broker while it is down, /healthz
    stays 200, and both are 200 once the gateway has reconnected."""
    await private_mosquitto.start()
    port = private_mosquitto.port
    config = monitored(
        gateway_config(mqtt={"port": port}, influx={"database": influx_v1.database})
    )

    async with gateway_running(config) as gateway:
        answer = await wait_for_status(http, gateway, 200)
        assert answer.status_code == 200, answer.text
        assert answer.json()["checks"]["mqtt"] == {
            "ok": True,
            "detail": f"connected to MQTT broker 127.0.0.1:{port}",
        }

        await private_mosquitto.stop()
        answer = await wait_for_status(http, gateway, 503)
        assert answer.status_code == 503, answer.text
        assert answer.json() == {
            "ready": False,
            "checks": {
                "mqtt": {
                    "ok": False,
                    "detail": f"not connected to MQTT broker 127.0.0.1:{port}",
                },
                "influx": answer.json()["checks"]["influx"],
            },
        }
        assert answer.json()["checks"]["influx"]["ok"] is True
        alive = await http.get(f"http://127.0.0.1:{gateway.monitoring.port}/healthz")
        assert (alive.status_code, alive.json()) == (200, {"status": "alive"})
        assert (await scrape(http, gateway))[("decor_mqtt_connected", ())] == 0

        await private_mosquitto.start()
        answer = await wait_for_status(http, gateway, 200)
        assert answer.status_code == 200, answer.text
        async with mqtt_client(port) as client:
            topic = f"{topic_prefix}/bpbd/river_gauge/rg-back-01/telemetry"
            client.publish(topic, reading(int(time.time() * 1000), v=1.0), qos=1)
        assert await wait_until(lambda: gateway.stats.messages_received == 1)


@pytest.mark.parametrize("spooled", [True, False], ids=["spool", "memory"])
async def test_readyz_while_influxdb_is_unreachable_depends_on_the_spool(
    gateway_config, publisher, topic_prefix, http, spooled
):
    """Test that with InfluxDB unreachable /readyz is ready while points go to
    the spool within its limits, and unready past them or with no spool."""
    url = f"http://127.0.0.1:{free_port()}"
    config = monitored(
        gateway_config(influx={"url": url}, spool={"enabled": spooled}),
        ready_max_spool_age_s=2.0,
    )
    topic = f"{topic_prefix}/bpbd/river_gauge/rg-spool-01/telemetry"

    async with gateway_running(config) as gateway:
        assert await wait_until(lambda: gateway.writer.sink_down_since is not None)
        answer = await wait_for_status(http, gateway, 200 if spooled else 503)
        influx = answer.json()["checks"]["influx"]
        if not spooled:
            assert answer.status_code == 503
            assert influx["ok"] is False
            assert "spool off, points held in memory only" in influx["detail"]
            return
        assert answer.status_code == 200, answer.text
        assert influx["detail"].startswith(f"InfluxDB v1 at {url}")
        assert "spooling: spool 0% full" in influx["detail"]

        publisher.publish(topic, reading(int(time.time() * 1000), level_cm=1.0))
        assert await wait_until(lambda: gateway.stats.spool_points == 1)
        # The spooled point grows older than ready_max_spool_age_s.
        answer = await wait_for_status(http, gateway, 503)
        assert answer.status_code == 503, answer.text
        detail = answer.json()["checks"]["influx"]["detail"]
        assert "monitoring.ready_max_spool_age_s" in detail
        found = await scrape(http, gateway)
        assert found[("decor_influx_up", ())] == 0
        assert found[("decor_spool_points", ())] == 1
        assert found[("decor_spool_oldest_point_age_seconds", ())] > 2.0


async def test_monitoring_seam_takes_collectors_and_readiness_checks(
    gateway_config, running_gateway, influx_v1, http
):
    """Test that a collector and a readiness check added by another part show
    in /metrics and /readyz, and that a taken name is refused."""
    config = monitored(gateway_config(influx={"database": influx_v1.database}))

    class Cameras:
        def collect(self) -> list[GaugeMetricFamily]:
            family = GaugeMetricFamily("decor_cameras", "Cameras", labels=["state"])
            family.add_metric(["offline"], 2)
            return [family]

    async with running_gateway(config) as gateway:
        gateway.metrics.add_collector(Cameras())
        with pytest.raises(ValueError):
            gateway.metrics.add_collector(Cameras())
        gateway.monitoring.add_check("cameras", lambda: Check(False, "2 offline"))
        with pytest.raises(ValueError, match="already registered"):
            gateway.monitoring.add_check("mqtt", lambda: Check(True, ""))
        found = await scrape(http, gateway)
        answer = await ready(http, gateway)

    assert found[("decor_cameras", (("state", "offline"),))] == 2
    assert answer.status_code == 503
    assert answer.json()["checks"]["cameras"] == {"ok": False, "detail": "2 offline"}
    assert answer.json()["checks"]["mqtt"]["ok"] is True


async def test_monitoring_port_taken_stops_start_up_naming_the_key(gateway_config):
    """Test that a monitoring port already in use stops the gateway with a
    ConfigError naming monitoring.port, before it connects anywhere."""
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        config = gateway_config().model_copy(
            update={"monitoring": MonitoringConfig(enabled=True, port=port)}
        )
        gateway = Gateway(config)
        with pytest.raises(ConfigError) as caught:
            await gateway.run(asyncio.Event())

    assert caught.value.key == "monitoring.port"
    assert f"cannot listen on 127.0.0.1:{port}" in str(caught.value)
    assert not gateway.subscriber.connected.is_set()
