"""Snapshots, and what a sandbox needs for auto-resume, idle timeouts and its boot report.

Revision ID: 0002
Revises: 0001

Rows made before this revision get the defaults: no auto-resume, no idle timeout, a lifetime
of 300 s (the server's default), booted clean.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("sandboxes") as batch:
        batch.add_column(sa.Column("auto_resume", sa.Boolean(), nullable=False, server_default=sa.false()))
        batch.add_column(sa.Column("timeout", sa.Integer(), nullable=False, server_default="300"))
        batch.add_column(sa.Column("idle_timeout", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("boot", sa.String(16), nullable=False, server_default="clean"))
    op.create_table(
        "snapshots",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column(
            "team_id",
            sa.String(32),
            sa.ForeignKey("teams.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("sandbox_id", sa.String(64), nullable=False),
        sa.Column("template", sa.String(200), nullable=False),
        sa.Column("memory", sa.Boolean(), nullable=False),
        sa.Column("size_bytes", sa.Integer(), nullable=False),
        sa.Column("cpu_count", sa.Float(), nullable=False),
        sa.Column("memory_mb", sa.Integer(), nullable=False),
        sa.Column("disk_mb", sa.Integer(), nullable=False),
        sa.Column("pids", sa.Integer(), nullable=False),
        sa.Column("env_vars", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("deleted_at", sa.DateTime(), nullable=True),
        sa.UniqueConstraint("team_id", "name", "version", name="uq_snapshots_team_name_version"),
    )
    op.create_index("ix_snapshots_team_created", "snapshots", ["team_id", "created_at"])


def downgrade() -> None:
    op.drop_table("snapshots")
    with op.batch_alter_table("sandboxes") as batch:
        for column in ("boot", "idle_timeout", "timeout", "auto_resume"):
            batch.drop_column(column)
