"""Alembic environment of the motion catalogue, shipped inside the package (``motionlib.migrations``).

Run programmatically by ``motionlib.store.db.migrate``; no alembic.ini is needed.
"""
