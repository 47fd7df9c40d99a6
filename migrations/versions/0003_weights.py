"""motions.weights_fingerprint: the transformer weights a motion was learnt with (issue 25)

NULL for motions stored before it was recorded ("unknown weights"); see motionlib.weights.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-07 00:00:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("motions", schema=None) as batch_op:
        batch_op.add_column(sa.Column("weights_fingerprint", sa.String(length=64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("motions", schema=None) as batch_op:
        batch_op.drop_column("weights_fingerprint")
