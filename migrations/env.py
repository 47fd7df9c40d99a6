"""Alembic env for the motion catalogue.

Usable programmatically: pass an open SQLAlchemy connection as ``config.attributes["connection"]``
(what ``motionlib.store.db.migrate`` does). Without one it falls back to ``sqlalchemy.url``.
Batch mode (``render_as_batch=True``) keeps one history that runs on SQLite and PostgreSQL.

New revisions: ``alembic -x ... revision --autogenerate --rev-id 0002 -m "..."`` with a Config whose
script_location points at this folder (see ``motionlib.store.db.alembic_config``).
"""

from alembic import context
from sqlalchemy import create_engine, pool
from sqlmodel import SQLModel

from motionlib.store import models  # noqa: F401  (registers the tables on SQLModel.metadata)

config = context.config
target_metadata = SQLModel.metadata


def include_object(obj, name, type_, reflected, compare_to):
    # SQLModel.metadata is process-global; only the catalogue's own tables belong to this history.
    if type_ == "table":
        return name in models.TABLES
    table = getattr(obj, "table", None)
    if table is not None:
        return table.name in models.TABLES
    return True


def _configure(**kw) -> None:
    context.configure(
        target_metadata=target_metadata,
        render_as_batch=True,
        include_object=include_object,
        compare_type=True,
        **kw,
    )


def run_offline() -> None:
    _configure(url=config.get_main_option("sqlalchemy.url"), literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()


def run_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _configure(connection=connection)
        with context.begin_transaction():
            context.run_migrations()
        return
    engine = create_engine(config.get_main_option("sqlalchemy.url"), poolclass=pool.NullPool)
    with engine.connect() as connection:
        _configure(connection=connection)
        with context.begin_transaction():
            context.run_migrations()


if context.is_offline_mode():
    run_offline()
else:
    run_online()
