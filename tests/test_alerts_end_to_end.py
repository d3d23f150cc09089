"""Alerts end to end: a simulated river gauge through the real broker, the running
gateway, the registry database (SQLite), InfluxDB 1.x, retained MQTT alert
messages and a local webhook receiver that is down at first.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
from pathlib import Path

import orjson

from devices.actuators import CommandableDevice
from devices.profiles import load_profiles
from gateway.alerts.store import AlertStore
from gateway.registry import Registry
from tests.conftest import WAIT_S, wait_until
from tests.operations_support import (
    WebhookReceiver,
    register,
    watching,
    with_operations,
)
from tests.test_faults import free_port

SECRET = "shared-with-the-receiver"
# Waspada from 200 cm, siaga 270, awas 350; a level ends 10 cm below its start.
# Each step: (level sent, the gauge's level name the gateway must hold after it).
LEVELS = [
    (150.0, "normal"),
    (205.0, "waspada"),
    (196.0, "waspada"),  # noise inside the hysteresis: no change
    (203.0, "waspada"),
    (192.0, "waspada"),
    (275.0, "siaga"),
    (264.0, "siaga"),  # noise again
    (355.0, "awas"),
    (345.0, "awas"),
    (330.0, "siaga"),
    (250.0, "waspada"),
    (185.0, "normal"),
]


async def test_gauge_across_levels_fires_escalates_and_resolves_one_alert(
    broker, gateway_config, running_gateway, topic_prefix, influx_v1, tmp_path: Path
):
    """Test that a gauge crossing the levels and back makes one alert whose events
    reach the database, MQTT (retained), InfluxDB and a webhook that was down."""
    database_url = f"sqlite:///{tmp_path / 'registry.db'}"
    registry = Registry.open(database_url, load_profiles())
    register(registry, "rg-alert", "river_gauge")
    receiver = WebhookReceiver(free_port())
    config = with_operations(
        gateway_config(influx={"database": influx_v1.database}),
        database_url,
        topic_prefix,
        tmp_path,
        alerts={
            "enabled": True,
            "webhook_urls": [receiver.url],
            "webhook_secret": SECRET,
        },
    )
    level = {"cm": LEVELS[0][0]}
    gauge = CommandableDevice(
        "rg-alert",
        "river_gauge",
        port=broker.port,
        topic_prefix=topic_prefix,
        agency="pupr",
        interval_s=3600.0,  # the test sends each reading itself
        level_cm=lambda: level["cm"],
    )
    alert_topic = f"{topic_prefix}/alerts/rg-alert"
    store = AlertStore(registry)

    async with (
        watching(broker, alert_topic) as watcher,
        running_gateway(config) as gateway,
    ):
        device = asyncio.create_task(gauge.run())
        assert await wait_until(lambda: gateway.stats.messages_received >= 1)
        for index, (level_cm, expected) in enumerate(LEVELS[1:], start=2):
            level["cm"] = level_cm
            gauge.report()
            assert await wait_until(
                lambda n=index: gateway.stats.messages_received >= n
            )
            state = gateway.operations.alerts.engine._states[
                ("rg-alert", "level:water_level_cm")
            ]
            assert state.committed == ["normal", "waspada", "siaga", "awas"].index(
                expected
            ), (level_cm, expected)
            if index == 2:
                # The duty officer acknowledges the first warning (any role may).
                assert await wait_until(lambda: store.list_alerts().total >= 1)
                first = store.list_alerts().items[-1]
                store.acknowledge(first.alert_id, "officer-ani")
                assert await wait_until(
                    lambda: len(list((tmp_path / "outbox").glob("*.json"))) >= 2
                )
        # Every event published; then the receiver comes up and gets them all.
        assert await wait_until(
            lambda: (
                len(
                    [
                        m
                        for m in watcher.on(alert_topic)
                        if m["alert"]["rule"] == "level:water_level_cm"
                    ]
                )
                >= 7
            )
        )
        assert receiver.received == []
        receiver.start()
        try:
            assert await wait_until(lambda: len(receiver.received) >= 8, WAIT_S)
            await asyncio.sleep(0.5)  # nothing more should arrive
        finally:
            receiver.stop()
        device.cancel()
        await asyncio.gather(device, return_exceptions=True)
        rows = await influx_v1.wait_for_rows("alert_events", 8)

    alerts = store.list_alerts(state="all").items
    level_alerts = [a for a in alerts if a.rule == "level:water_level_cm"]
    assert len(level_alerts) == 1
    level_alert = level_alerts[0]
    assert (level_alert.state, level_alert.level) == ("resolved", "waspada")
    assert level_alert.acknowledged_by == "officer-ani"
    events = [(e.event, e.level) for e in store.get(level_alert.alert_id).events]
    assert events == [
        ("fired", "waspada"),
        ("acknowledged", "waspada"),
        ("escalated", "siaga"),
        ("escalated", "awas"),
        ("deescalated", "siaga"),
        ("deescalated", "waspada"),
        ("resolved", "normal"),
    ]
    # The rise from 150 to 205 cm within minutes fired the rate-of-rise rule too.
    assert {a.rule for a in alerts} == {"level:water_level_cm", "rise:water_level_cm"}

    mqtt_events = [
        (m["event"]["event"], m["event"]["level"])
        for m in watcher.on(alert_topic)
        if m["alert"]["rule"] == "level:water_level_cm"
    ]
    assert mqtt_events == events
    last = watcher.on(alert_topic)[-1]
    assert last["device_id"] == "rg-alert"

    # Every event reached the webhook once, in order, signed, after the outage.
    bodies = [r.body for r in receiver.received]
    assert len({b["event"]["event_id"] for b in bodies}) == len(bodies)
    assert [
        (b["event"]["event"], b["event"]["level"])
        for b in bodies
        if b["alert"]["rule"] == "level:water_level_cm"
    ] == events
    assert [b["event"]["event_id"] for b in bodies] == sorted(
        b["event"]["event_id"] for b in bodies
    )
    for request in receiver.received:
        content = orjson.dumps(request.body)
        expected = hmac.new(SECRET.encode(), content, hashlib.sha256).hexdigest()
        assert request.headers["X-Decor-Signature"] == f"sha256={expected}"
        assert request.body["version"] == 1
    assert not list((tmp_path / "outbox").glob("*.json"))
    assert gateway.operations.alerts.notifier.failed_attempts >= 1

    stored = [
        (r["event"], r["level"]) for r in rows if r["rule"] == "level:water_level_cm"
    ]
    assert sorted(stored) == sorted(events)
    registry.close()


async def test_retained_alert_state_reaches_a_late_subscriber(
    broker, gateway_config, running_gateway, topic_prefix, publisher, tmp_path: Path
):
    """Test that a dashboard subscribing after the fact gets the latest alert state."""
    database_url = f"sqlite:///{tmp_path / 'registry.db'}"
    registry = Registry.open(database_url, load_profiles())
    config = with_operations(
        gateway_config(), database_url, topic_prefix, tmp_path, alerts={"enabled": True}
    )
    topic = f"{topic_prefix}/pupr/river_gauge/rg-late/telemetry"
    alert_topic = f"{topic_prefix}/alerts/rg-late"

    async with running_gateway(config):
        publisher.publish(topic, orjson.dumps({"water_level_cm": 280.0}))
        assert await wait_until(lambda: AlertStore(registry).list_alerts().total == 1)
        assert await wait_until(lambda: not AlertStore(registry).unpublished())
    async with watching(broker, alert_topic) as watcher:
        assert await wait_until(lambda: bool(watcher.messages))

    topic_seen, body, retained = watcher.messages[0]
    assert (topic_seen, retained) == (alert_topic, True)
    assert body["alert"]["level"] == "siaga"
    assert [a["level"] for a in body["open"]] == ["siaga"]
    registry.close()


async def test_camera_statuses_raise_and_clear_camera_alerts(
    broker, gateway_config, running_gateway, topic_prefix, publisher, tmp_path: Path
):
    """Test that the CCTV sampler's statuses (covered, then offline, then online
    again) open and resolve tampered and offline alerts, once each."""
    database_url = f"sqlite:///{tmp_path / 'registry.db'}"
    registry = Registry.open(database_url)
    store = AlertStore(registry)
    config = with_operations(
        gateway_config(), database_url, topic_prefix, tmp_path, alerts={"enabled": True}
    )
    status_topic = f"{topic_prefix}/cameras/cam-panus/status"
    statuses = [
        {"state": "starting"},
        {"state": "online", "covered": False, "frozen": False},
        {"state": "online", "covered": True, "frozen": False},
        {"state": "online", "covered": True, "frozen": False},  # told again
        {"state": "offline", "reason": "timeout", "covered": False},
        {"state": "online", "covered": False, "frozen": False},
    ]

    async with running_gateway(config) as gateway:
        await gateway.operations.link.subscribed.wait()
        for number, status in enumerate(statuses, start=1):
            body = orjson.dumps({"camera": "cam-panus", **status})
            publisher.publish(status_topic, body)
            # Each status is judged before the next is sent.
            await asyncio.sleep(0.3)
        assert await wait_until(
            lambda: (
                store.list_alerts(state="resolved").total == 2
                and not store.unpublished()
            )
        )

    alerts = {a.rule: a for a in store.list_alerts(state="all").items}
    assert set(alerts) == {"camera:tampered", "camera:offline"}
    assert alerts["camera:tampered"].kind == "camera_tampered"
    assert alerts["camera:offline"].message == "camera offline (timeout)"
    history = [
        (e.event, alert.rule)
        for alert in alerts.values()
        for e in store.get(alert.alert_id).events
    ]
    assert sorted(history) == sorted(
        [
            ("fired", "camera:tampered"),
            ("resolved", "camera:tampered"),
            ("fired", "camera:offline"),
            ("resolved", "camera:offline"),
        ]
    )
    registry.close()


async def test_alert_events_become_grafana_annotations(
    gateway_config, running_gateway, topic_prefix, publisher, tmp_path: Path
):
    """Test that with grafana_url set each event is POSTed to /api/annotations
    with the service account token and tags naming device, rule and level."""
    database_url = f"sqlite:///{tmp_path / 'registry.db'}"
    grafana = WebhookReceiver(free_port())  # stands in for Grafana's HTTP API
    grafana.start()
    config = with_operations(
        gateway_config(),
        database_url,
        topic_prefix,
        tmp_path,
        alerts={
            "enabled": True,
            "grafana_url": f"http://127.0.0.1:{grafana.port}/",
            "grafana_token": "glsa_test",
        },
    )
    try:
        async with running_gateway(config):
            publisher.publish(
                f"{topic_prefix}/pupr/river_gauge/rg-graf/telemetry",
                orjson.dumps({"water_level_cm": 360.0}),
            )
            assert await wait_until(lambda: len(grafana.received) >= 1)
    finally:
        grafana.stop()

    by_rule = {r.body["tags"][3]: r for r in grafana.received}
    level = by_rule["level:water_level_cm"]
    assert level.path == "/api/annotations"
    assert level.headers["Authorization"] == "Bearer glsa_test"
    assert level.body["tags"] == [
        "decor",
        "alert",
        "rg-graf",
        "level:water_level_cm",
        "awas",
        "fired",
    ]
    assert level.body["text"].startswith("[AWAS] rg-graf: water_level_cm 360 cm")
    assert isinstance(level.body["time"], int)
