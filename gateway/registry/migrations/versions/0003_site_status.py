"""A status for sites, so that a site no longer used can be decommissioned.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Written out rather than through batch mode: SQLite's batch mode copies
    # the table and drops the old one, which devices and cameras refer to, and
    # foreign keys cannot be switched off inside the migration's transaction.
    # SQLite and PostgreSQL both take a column with its own CHECK this way.
    # Every site registered so far is in use: they all start active.
    op.execute(
        "ALTER TABLE sites ADD COLUMN status VARCHAR(20) DEFAULT 'active' NOT NULL "
        "CONSTRAINT ck_sites_status CHECK (status IN ('active', 'decommissioned'))"
    )


def downgrade() -> None:
    # The CHECK belongs to the column, so it goes with it (SQLite 3.35 or newer).
    op.execute("ALTER TABLE sites DROP COLUMN status")
