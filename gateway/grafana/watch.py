"""Provision Grafana again when the registry changes, once the changes settle.

The registry is read every `[registry] refresh_interval_s`; what Grafana
shows depends only on the `City` read from it, so a change of that value is
a change worth provisioning. Provisioning waits until the city has stayed the
same for `[grafana] reprovision_debounce_s`, so importing 500 devices makes
one provisioning, not 500.
"""

from __future__ import annotations

import asyncio
import logging
import time

from grafana_client.api import GrafanaApi

from gateway.config import GatewayConfig
from gateway.grafana.bundle import build_bundle, influx_source_of
from gateway.grafana.city import City, read_city
from gateway.grafana.naming import Generation
from gateway.grafana.provision import GrafanaUnreachable, ProvisionReport, provision
from gateway.registry.errors import RegistryError
from gateway.registry.service import Registry
from gateway.validation.profiles import load_quality_profiles

__all__ = ["GrafanaWatcher"]

logger = logging.getLogger(__name__)

GRAFANA_TIMEOUT_S = 10.0


class GrafanaWatcher:
    """Keep a Grafana in step with the registry while the gateway runs."""

    def __init__(self, config: GatewayConfig, source: str = "") -> None:
        self.config = config
        self.source = source
        self.poll_interval_s = config.registry.refresh_interval_s
        self.debounce_s = config.grafana.reprovision_debounce_s
        # How many provisionings ran, and the last one's report (for the API
        # and tests).
        self.provisionings = 0
        self.last_report: ProvisionReport | None = None
        self._provisioned: City | None = None
        self._unreachable = False

    async def run(self, stop: asyncio.Event) -> None:
        """Provision at start, then after each settled registry change, until `stop`."""
        profiles = load_quality_profiles(self.config.quality.profiles_dir, self.source)
        registry = await asyncio.to_thread(
            Registry.open, self.config.registry.database_url, profiles
        )
        try:
            await self._watch(registry, stop)
        finally:
            registry.close()

    async def _watch(self, registry: Registry, stop: asyncio.Event) -> None:
        seen: City | None = None
        changed_at = time.monotonic()
        while not stop.is_set():
            city: City | None
            try:
                city = await asyncio.to_thread(
                    read_city, registry, registry.profiles or {}
                )
            except RegistryError as exc:
                logger.warning("Cannot read the registry for Grafana: %s", exc)
                city = seen
            if city is not None and city != seen:
                seen, changed_at = city, time.monotonic()
            settled = time.monotonic() - changed_at >= self.debounce_s
            if (
                city is not None
                and city != self._provisioned
                and (settled or self._provisioned is None)
            ):
                await asyncio.to_thread(self._provision, city)
            try:
                await asyncio.wait_for(stop.wait(), self.poll_interval_s)
            except TimeoutError:
                pass

    def _provision(self, city: City) -> None:
        settings = self.config.grafana
        generation = Generation(
            locale=settings.locale,
            gateway_api_url=settings.gateway_api_url,
            online_window_s=settings.online_window_s,
        )
        bundle = build_bundle(city, generation, influx_source_of(self.config))
        api = GrafanaApi.from_url(
            settings.url, credential=settings.token, timeout=GRAFANA_TIMEOUT_S
        )
        try:
            report = provision(api, bundle)
        except GrafanaUnreachable as exc:
            # One warning per outage; the next poll tries again.
            if not self._unreachable:
                logger.warning("Grafana at %s not provisioned: %s", settings.url, exc)
            self._unreachable = True
            return
        finally:
            api.client.s.close()
        if self._unreachable:
            logger.info("Grafana at %s reachable again; provisioned", settings.url)
        self._unreachable = False
        self._provisioned = city
        self.provisionings += 1
        self.last_report = report
        logger.info(
            "Provisioned Grafana at %s from the registry: %d changed, "
            "%d kept or failed",
            settings.url,
            len(report.changed),
            len(report.problems),
        )
