"""initial catalogue: motions, motion_tags, renders

Revision ID: 0001
Revises:
Create Date: 2025-01-01 00:00:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "motions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("model_name", sa.String(), nullable=False),
        sa.Column("model_source", sa.String(), nullable=True),
        sa.Column("config_hash", sa.String(), nullable=True),
        sa.Column("family", sa.String(), nullable=False),
        sa.Column("latent_frames", sa.Integer(), nullable=False),
        sa.Column("latent_rows", sa.Integer(), nullable=False),
        sa.Column("latent_cols", sa.Integer(), nullable=False),
        sa.Column("source_sha256", sa.String(), nullable=True),
        sa.Column("source_name", sa.String(), nullable=True),
        sa.Column("source_fps", sa.Float(), nullable=True),
        sa.Column("source_frames", sa.Integer(), nullable=True),
        sa.Column("source_width", sa.Integer(), nullable=True),
        sa.Column("source_height", sa.Integer(), nullable=True),
        sa.Column("params_json", sa.Text(), nullable=False),
        sa.Column("loss_json", sa.Text(), nullable=False),
        sa.Column("blob_sha256", sa.String(length=64), nullable=False),
        sa.Column("blob_bytes", sa.Integer(), nullable=False),
        sa.Column("thumb_png", sa.String(), nullable=True),
        sa.Column("thumb_gif", sa.String(), nullable=True),
        sa.Column("descriptor", sa.LargeBinary(), nullable=True),
        sa.Column("descriptor_version", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_motions")),
        sqlite_autoincrement=True,  # ids are never reused (the descriptor index is keyed by id)
    )
    with op.batch_alter_table("motions", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_motions_name"), ["name"], unique=True)
        batch_op.create_index(batch_op.f("ix_motions_model_name"), ["model_name"], unique=False)
        batch_op.create_index(batch_op.f("ix_motions_blob_sha256"), ["blob_sha256"], unique=False)

    op.create_table(
        "motion_tags",
        sa.Column("motion_id", sa.Integer(), nullable=False),
        sa.Column("tag", sa.String(length=64), nullable=False),
        sa.ForeignKeyConstraint(["motion_id"], ["motions.id"], ondelete="CASCADE",
                                name=op.f("fk_motion_tags_motion_id_motions")),
        sa.PrimaryKeyConstraint("motion_id", "tag", name=op.f("pk_motion_tags")),
    )
    with op.batch_alter_table("motion_tags", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_motion_tags_tag"), ["tag"], unique=False)

    op.create_table(
        "renders",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("motion_id", sa.Integer(), nullable=True),
        sa.Column("motion_name", sa.String(length=64), nullable=True),
        sa.Column("prompt", sa.Text(), nullable=False),
        sa.Column("seed", sa.Integer(), nullable=True),
        sa.Column("steps", sa.Integer(), nullable=True),
        sa.Column("strength", sa.Float(), nullable=True),
        sa.Column("output_path", sa.Text(), nullable=False),
        sa.Column("seconds", sa.Float(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["motion_id"], ["motions.id"], ondelete="SET NULL",
                                name=op.f("fk_renders_motion_id_motions")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_renders")),
    )
    with op.batch_alter_table("renders", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_renders_motion_id"), ["motion_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_renders_motion_name"), ["motion_name"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("renders", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_renders_motion_name"))
        batch_op.drop_index(batch_op.f("ix_renders_motion_id"))
    op.drop_table("renders")
    with op.batch_alter_table("motion_tags", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_motion_tags_tag"))
    op.drop_table("motion_tags")
    with op.batch_alter_table("motions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_motions_blob_sha256"))
        batch_op.drop_index(batch_op.f("ix_motions_model_name"))
        batch_op.drop_index(batch_op.f("ix_motions_name"))
    op.drop_table("motions")
