"""Cameras, API tokens, and the broker account of each device.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # SQLite cannot add a column with constraints in place: batch mode copies
    # the table, rows included.
    with op.batch_alter_table("devices") as batch:
        batch.add_column(sa.Column("mqtt_username", sa.String(128), nullable=True))
    op.create_table(
        "cameras",
        sa.Column("camera_id", sa.String(64), nullable=False),
        sa.Column("agency_id", sa.String(64), nullable=False),
        sa.Column("site_id", sa.String(64), nullable=True),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("stream_url", sa.String(1000), nullable=False),
        sa.Column("snapshot_url", sa.String(1000), nullable=False),
        sa.Column("username", sa.String(200), nullable=False),
        sa.Column("password", sa.String(200), nullable=False),
        sa.Column("sample_interval_s", sa.Float(), nullable=False),
        sa.Column("expected_cadence_s", sa.Float(), nullable=False),
        sa.Column("notes", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "status IN ('provisioned', 'active', 'decommissioned')",
            name=op.f("ck_cameras_status"),
        ),
        sa.CheckConstraint(
            "sample_interval_s > 0", name=op.f("ck_cameras_interval_positive")
        ),
        sa.CheckConstraint(
            "expected_cadence_s > 0", name=op.f("ck_cameras_cadence_positive")
        ),
        sa.ForeignKeyConstraint(
            ["agency_id"],
            ["agencies.agency_id"],
            name=op.f("fk_cameras_agency_id_agencies"),
        ),
        sa.ForeignKeyConstraint(
            ["site_id"], ["sites.site_id"], name=op.f("fk_cameras_site_id_sites")
        ),
        sa.PrimaryKeyConstraint("camera_id", name=op.f("pk_cameras")),
    )
    op.create_index(op.f("ix_cameras_agency_id"), "cameras", ["agency_id"])
    op.create_table(
        "api_tokens",
        sa.Column("token_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("role", sa.String(20), nullable=False),
        sa.Column("token_sha256", sa.String(64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "role IN ('admin', 'technician', 'operator')",
            name=op.f("ck_api_tokens_role"),
        ),
        sa.PrimaryKeyConstraint("token_id", name=op.f("pk_api_tokens")),
        sa.UniqueConstraint("name", name=op.f("uq_api_tokens_name")),
        sa.UniqueConstraint("token_sha256", name=op.f("uq_api_tokens_token_sha256")),
    )


def downgrade() -> None:
    op.drop_table("api_tokens")
    op.drop_table("cameras")
    with op.batch_alter_table("devices") as batch:
        batch.drop_column("mqtt_username")
