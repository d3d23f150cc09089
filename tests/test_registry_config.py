"""The [registry] section of the configuration."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from gateway.config import GatewayConfig

BASE = {"subscriptions": [{"topic": "x/#"}]}


@pytest.mark.parametrize(
    ("dynsec", "expected"),
    [
        ({"command_topic": "city/{agency}/command"}, "must contain {device_id}"),
        ({"telemetry_topics": ["city/+/{device_id}"]}, "no wildcards"),
        ({"telemetry_topics": ["city/{site}/{device_id}"]}, "got ['site']"),
    ],
)
def test_registry_dynsec_topic_templates_are_checked_at_load(dynsec, expected):
    """Test that a device topic shared by devices or holding wildcards is refused."""
    with pytest.raises(ValidationError) as refused:
        GatewayConfig.model_validate({**BASE, "registry": {"dynsec": dynsec}})

    assert expected in str(refused.value)


def test_registry_database_url_stays_out_of_the_repr():
    """Test that a database password in the URL is not shown by the config's repr."""
    url = "postgresql+psycopg://decor:pg-secret@db/decor"

    config = GatewayConfig.model_validate({**BASE, "registry": {"database_url": url}})

    assert "pg-secret" not in repr(config)
