"""renders.image_sha256, renders.image_preview: the first frame an image-to-video render started from (issue 29)

The sha256 of the image file as given, and a small PNG preview of it (at most 96 pixels on its long
side, a few kB, kept in the row so a render's record stays one row). NULL for text-to-video renders and
for renders recorded before.

(Numbered 0004 on its branch; the lead renumbers it at merge if another 0004 lands first: the migration
lives in this one file.)

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-07 00:00:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("renders", schema=None) as batch_op:
        batch_op.add_column(sa.Column("image_sha256", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("image_preview", sa.LargeBinary(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("renders", schema=None) as batch_op:
        batch_op.drop_column("image_preview")
        batch_op.drop_column("image_sha256")
