"""Alerts, their events (the publishing outbox) and commands to devices.

Numbered 0010 so that migrations of other work in progress fit before it;
only down_revision changes when they land.

Revision ID: 0010_alerts_commands
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010_alerts_commands"
down_revision = "0003"
branch_labels = None
depends_on = None

_ALERT_STATES = "'firing', 'acknowledged', 'resolved'"
_COMMAND_STATES = (
    "'awaiting_approval', 'queued', 'sent', 'acknowledged', 'confirmed', 'failed'"
)


def _time(name: str, nullable: bool = False) -> sa.Column[object]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "alerts",
        sa.Column("alert_id", sa.Integer(), nullable=False),
        sa.Column("device_id", sa.String(64), nullable=False),
        sa.Column("rule", sa.String(128), nullable=False),
        sa.Column("kind", sa.String(40), nullable=False),
        sa.Column("level", sa.String(64), nullable=False),
        sa.Column("severity", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(20), nullable=False),
        sa.Column("value", sa.Float(), nullable=True),
        sa.Column("unit", sa.String(40), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        _time("fired_at"),
        _time("acknowledged_at", nullable=True),
        sa.Column("acknowledged_by", sa.String(200), nullable=True),
        _time("resolved_at", nullable=True),
        _time("updated_at"),
        sa.CheckConstraint(f"state IN ({_ALERT_STATES})", name=op.f("ck_alerts_state")),
        sa.PrimaryKeyConstraint("alert_id", name=op.f("pk_alerts")),
    )
    op.create_index(op.f("ix_alerts_device_id"), "alerts", ["device_id"])
    op.create_index(op.f("ix_alerts_state"), "alerts", ["state"])
    op.create_table(
        "alert_events",
        sa.Column("event_id", sa.Integer(), nullable=False),
        sa.Column("alert_id", sa.Integer(), nullable=False),
        _time("at"),
        sa.Column("event", sa.String(20), nullable=False),
        sa.Column("level", sa.String(64), nullable=False),
        sa.Column("value", sa.Float(), nullable=True),
        sa.Column("actor", sa.String(200), nullable=False),
        sa.Column("published", sa.Boolean(), nullable=False),
        sa.ForeignKeyConstraint(
            ["alert_id"],
            ["alerts.alert_id"],
            name=op.f("fk_alert_events_alert_id_alerts"),
        ),
        sa.PrimaryKeyConstraint("event_id", name=op.f("pk_alert_events")),
    )
    op.create_index(op.f("ix_alert_events_alert_id"), "alert_events", ["alert_id"])
    op.create_index(op.f("ix_alert_events_published"), "alert_events", ["published"])
    op.create_table(
        "commands",
        sa.Column("command_id", sa.String(32), nullable=False),
        sa.Column("device_id", sa.String(64), nullable=False),
        sa.Column("action", sa.String(64), nullable=False),
        sa.Column("args", sa.JSON(), nullable=False),
        sa.Column("state", sa.String(20), nullable=False),
        sa.Column("critical", sa.Boolean(), nullable=False),
        sa.Column("requested_by", sa.String(200), nullable=False),
        sa.Column("approved_by", sa.String(200), nullable=True),
        sa.Column("timeout_s", sa.Float(), nullable=False),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.Column("reply", sa.JSON(), nullable=True),
        _time("created_at"),
        _time("sent_at", nullable=True),
        _time("acknowledged_at", nullable=True),
        _time("finished_at", nullable=True),
        sa.CheckConstraint(
            f"state IN ({_COMMAND_STATES})", name=op.f("ck_commands_state")
        ),
        sa.CheckConstraint("timeout_s > 0", name=op.f("ck_commands_timeout_positive")),
        sa.ForeignKeyConstraint(
            ["device_id"],
            ["devices.device_id"],
            name=op.f("fk_commands_device_id_devices"),
        ),
        sa.PrimaryKeyConstraint("command_id", name=op.f("pk_commands")),
    )
    op.create_index(op.f("ix_commands_device_id"), "commands", ["device_id"])
    op.create_index(op.f("ix_commands_state"), "commands", ["state"])


def downgrade() -> None:
    op.drop_table("commands")
    op.drop_table("alert_events")
    op.drop_table("alerts")
