"""motions.lineage_json: how an edited motion was derived, its operations and parents (issue 28)

NULL for learnt motions and for every motion stored before it was recorded; see motionlib.edit.
Parents are named by id, name and blob hash at the time of the edit, so removing a parent leaves
the child whole (its lineage then shows the parent as removed).

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-07 00:00:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("motions", schema=None) as batch_op:
        batch_op.add_column(sa.Column("lineage_json", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("motions", schema=None) as batch_op:
        batch_op.drop_column("lineage_json")
