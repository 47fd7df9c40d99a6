"""motions.check_score: the quality score of `learn --check` (issue 24)

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-07 00:00:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("motions", schema=None) as batch_op:
        batch_op.add_column(sa.Column("check_score", sa.Float(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("motions", schema=None) as batch_op:
        batch_op.drop_column("check_score")
