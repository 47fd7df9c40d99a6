"""Numbered alembic revisions: 0001, 0002, ..."""
