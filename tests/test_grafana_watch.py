"""Grafana kept in step with the registry by a running gateway, debounced."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from gateway.config import GatewayConfig, GrafanaConfig, RegistryConfig
from gateway.grafana.watch import GrafanaWatcher
from gateway.registry import DeviceIn, Registry
from tests.conftest import wait_until
from tests.grafana_standin import GrafanaStandIn
from tests.grafana_support import ACTOR, demo_registry  # noqa: F401 (fixture)

POLL_S = 0.1
# Long against the poll interval, so the registrations below (made one after
# another without waiting) fall within one quiet period.
DEBOUNCE_S = 1.5
WAIT_S = 30.0


@pytest.fixture
def grafana() -> Iterator[GrafanaStandIn]:
    """Give a running Grafana stand-in."""
    standin = GrafanaStandIn()
    standin.start()
    yield standin
    standin.stop()
    assert standin.violations == []


def _config(
    base: GatewayConfig, registry: Registry, grafana: GrafanaStandIn
) -> GatewayConfig:
    return base.model_copy(
        update={
            "registry": RegistryConfig(
                database_url=str(registry.sessions.kw["bind"].url),
                refresh_interval_s=POLL_S,
            ),
            "grafana": GrafanaConfig(
                url=grafana.url,
                token=grafana.token,
                reprovision=True,
                reprovision_debounce_s=DEBOUNCE_S,
            ),
        }
    )


def _river_query(grafana: GrafanaStandIn) -> str:
    river = grafana.dashboard("decor-profile-dinas-pupr-river_gauge")
    query: str = river["panels"][0]["targets"][0]["query"]
    return query


async def test_watcher_provisions_once_per_settled_burst_of_changes(
    demo_registry, grafana, gateway_config
):
    """Test that three quick registrations make one provisioning holding all three."""
    watcher = GrafanaWatcher(_config(gateway_config(), demo_registry, grafana))
    stop = asyncio.Event()
    task = asyncio.create_task(watcher.run(stop))

    assert await wait_until(lambda: watcher.provisionings == 1, WAIT_S)
    for number in (7, 8, 9):
        demo_registry.add_device(
            DeviceIn(
                device_id=f"rg-ciliwung-0{number}",
                profile="river_gauge",
                agency="dinas-pupr",
                site="ciliwung-pancoran-mas",
            ),
            ACTOR,
        )
    assert await wait_until(lambda: watcher.provisionings == 2, WAIT_S)
    # Several more polls with nothing new: no further provisioning.
    await asyncio.sleep(POLL_S * 10)
    stop.set()
    await task

    assert watcher.provisionings == 2
    assert all(f"rg-ciliwung-0{n}" in _river_query(grafana) for n in (7, 8, 9))
    assert grafana.dashboard("decor-profile-dinas-pupr-river_gauge")["version"] == 2


async def test_running_gateway_provisions_grafana_when_configured(
    demo_registry, grafana, gateway_config, running_gateway, influx_v1
):
    """Test that decor run with reprovision on provisions, then follows changes."""
    config = _config(
        gateway_config(influx={"database": influx_v1.database}), demo_registry, grafana
    )

    async with running_gateway(config):
        # Rule groups are provisioned last.
        assert await wait_until(lambda: len(grafana.state.rule_groups) == 3, WAIT_S)
        demo_registry.decommission_device("rg-ciliwung-01", ACTOR)
        assert await wait_until(
            lambda: "rg-ciliwung-01" not in _river_query(grafana), WAIT_S
        )

    assert "rg-ciliwung-02" in _river_query(grafana)
