"""docs/configuration.md is generated from the configuration model and kept so."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from gateway.cli import app
from gateway.config import GatewayConfig, MqttConfig
from gateway.config_reference import render_reference

REFERENCE = Path(__file__).resolve().parent.parent / "docs" / "configuration.md"


def test_committed_reference_matches_the_configuration_model():
    """Test that docs/configuration.md is exactly what the model renders now."""
    committed = REFERENCE.read_text(encoding="utf-8")

    assert committed == render_reference(), (
        "docs/configuration.md differs from the configuration model; run "
        "`decor config reference > docs/configuration.md` and commit it"
    )


def test_reference_lists_every_key_with_its_environment_variable():
    """Test that each key of every table is a row, with its DECOR_ variable."""
    text = render_reference()

    for name in MqttConfig.model_fields:
        if name != "tls":
            assert f"| `mqtt.{name}` |" in text
            assert f"`DECOR_MQTT__{name.upper()}`" in text
    assert "| `mqtt.tls.ca_file` | path, or unset | unset |" in text
    assert "## `[[subscriptions]]`" in text
    assert "`DECOR_SUBSCRIPTIONS__0__QOS`" in text
    assert "| *secret*. Broker password |" in text
    for name in GatewayConfig.model_fields:
        assert f"`{name}" in text or f"[{name}]" in text or f"[[{name}]]" in text


def test_reference_has_a_description_for_every_key():
    """Test that no row of the reference leaves its meaning empty."""
    rows = [line for line in render_reference().splitlines() if line.startswith("| `")]

    assert len(rows) > 60
    empty = [row.split(" | ")[0] for row in rows if row.rstrip().endswith("|  |")]
    assert not empty, f"keys without a description: {empty}"


def test_decor_config_reference_prints_the_reference():
    """Test that the command prints exactly the rendered reference."""
    result = CliRunner().invoke(app, ["config", "reference"])

    assert result.exit_code == 0, result.output
    assert result.output == render_reference()
