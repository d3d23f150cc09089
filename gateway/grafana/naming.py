"""Stable uids and the settings every generated Grafana object shares."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from gateway.grafana.locale import Locale, Words

__all__ = [
    "CITY_FOLDER_UID",
    "DATASOURCE_UID",
    "MANAGED_TAG",
    "STATIC_DATASOURCE_UID",
    "Generation",
    "stable_uid",
]

# Grafana refuses uids longer than 40 characters.
MAX_UID_CHARS = 40
DATASOURCE_UID = "decor-influxdb"
# Grafana's bundled TestData datasource, used only to carry the registry's
# site positions (inline CSV) to the map: InfluxDB holds no coordinates.
STATIC_DATASOURCE_UID = "decor-registry-static"
CITY_FOLDER_UID = "decor-city"
# Every dashboard the gateway generates carries this tag; a dashboard with our
# uid but without the tag was not made by us and is never overwritten.
MANAGED_TAG = "managed-by:decor"


@dataclass(frozen=True)
class Generation:
    """What generated objects depend on besides the registry.

    Args:
        gateway_api_url: the gateway's HTTP API as browsers reach it.
        online_window_s: a device reporting within this is online; None:
            three times its profile's report interval.
    """

    locale: Locale = "id"
    gateway_api_url: str = "http://127.0.0.1:8080"
    online_window_s: float | None = None

    @property
    def words(self) -> Words:
        """Return the dashboard text in this locale."""
        return Words(self.locale)


def stable_uid(*parts: str) -> str:
    """Return a uid made of `parts`, the same on every run, at most 40 characters.

    Readable when it fits ("decor-agency-pupr"); otherwise a prefix and a
    SHA-256 digest of the whole name, so two long names never share a uid.
    """
    readable = "-".join(("decor", *parts))
    if len(readable) <= MAX_UID_CHARS:
        return readable
    digest = hashlib.sha256(readable.encode()).hexdigest()
    return f"decor-{digest[: MAX_UID_CHARS - 6]}"
