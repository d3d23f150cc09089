"""The [alerts], [liveness] and [commands] sections: bad values stop start-up
with one line naming the key, and a profile's bad rule names the profile.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.app import Gateway
from gateway.config import load_config
from gateway.errors import ConfigError

MINIMAL = """
[[subscriptions]]
topic_template = "city/{agency}/{device_type}/{device_id}/telemetry"
"""


def _load(tmp_path: Path, text: str):
    path = tmp_path / "gateway.toml"
    path.write_text(text + MINIMAL)
    return load_config(path, {})


@pytest.mark.parametrize(
    ("text", "key", "reason"),
    [
        (
            '[alerts]\nwebhook_urls = ["hooks.example/x"]\n',
            "alerts.webhook_urls.0",
            "must start with http:// or https://",
        ),
        ('[alerts]\ntopic_prefix = "decor/#"\n', "alerts.topic_prefix", "wildcards"),
        (
            "[alerts]\nretry_min_s = 30.0\nretry_max_s = 5.0\n",
            "alerts.retry_min_s",
            "must not exceed retry_max_s",
        ),
        (
            '[commands]\nreply_topic = "decor/replies"\n',
            "commands.reply_topic",
            "must contain {device_id}",
        ),
        ("[liveness]\ncheck_interval_s = 0\n", "liveness.check_interval_s", ""),
    ],
)
def test_config_refuses_bad_operations_settings_naming_the_key(
    tmp_path: Path, text: str, key: str, reason: str
):
    """Test that a wrong alerts, liveness or commands value names its key."""
    with pytest.raises(ConfigError) as caught:
        _load(tmp_path, text)

    assert key in str(caught.value)
    assert reason in str(caught.value)


def test_gateway_refuses_a_bad_profile_alert_rule_at_start(tmp_path: Path):
    """Test that a profile whose alert rule is wrong stops the gateway at once."""
    profiles = tmp_path / "profiles"
    profiles.mkdir()
    (profiles / "tide.toml").write_text(
        'device_type = "tide_gauge"\nreport_interval_s = 60.0\n'
        '[fields.level_cm]\nunit = "cm"\ntype = "float"\npossible = [0.0, 900.0]\n'
        "[alerts.rise.level_cm]\nwindow_s = 600.0\n"
    )
    config = _load(
        tmp_path,
        f'[quality]\nprofiles_dir = "{profiles}"\n[alerts]\nenabled = true\n',
    )

    with pytest.raises(ConfigError) as caught:
        Gateway(config, source="gateway.toml")

    assert "profile 'tide_gauge'" in str(caught.value)
    assert "missing max_rise" in str(caught.value)
