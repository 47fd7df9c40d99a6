"""Engine creation and automatic schema migration.

SQLite connections get WAL journaling, a 30 s busy timeout and foreign keys. Write transactions
made through ``write_engine(engine)`` start with ``BEGIN IMMEDIATE`` so concurrent writers queue
on the busy timeout instead of failing with a stale-snapshot "database is locked".

Opening a library costs one query on the ``alembic_version`` table: migrations are numbered
(``migrations/versions/NNNN_*.py`` holds revision ``NNNN``), so the head is the largest number and
alembic is imported only when the catalogue is older than that (or new).

PostgreSQL (``postgresql+psycopg://…``, the ``[postgres]`` extra) runs at READ COMMITTED; what
must be serialised there takes a transaction-scoped advisory lock (``lock``): the schema upgrade,
and the check "is this blob still used?" before its file is deleted.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import create_engine, event, exc, text
from sqlalchemy.engine import Engine

if TYPE_CHECKING:
    from alembic.config import Config

__all__ = ["open_engine", "migrate", "write_engine", "alembic_config", "current_revision", "head_revision",
           "schema_revision", "BUSY_TIMEOUT_S", "lock"]

BUSY_TIMEOUT_S = 30.0
_IMMEDIATE = "motionlib_begin_immediate"


def is_sqlite(engine: Engine) -> bool:
    return engine.dialect.name == "sqlite"


def open_engine(url: str, *, echo: bool = False) -> Engine:
    """Create an engine for ``url``; SQLite gets WAL, a busy timeout and foreign keys on every connection."""
    if url.startswith("sqlite"):
        engine = create_engine(url, echo=echo, connect_args={"timeout": BUSY_TIMEOUT_S})

        @event.listens_for(engine, "connect")
        def _on_connect(dbapi_conn, _record):
            # Let SQLAlchemy (the "begin" hook below) own transactions instead of pysqlite's
            # implicit BEGIN, so BEGIN IMMEDIATE and transactional DDL work.
            dbapi_conn.isolation_level = None
            cur = dbapi_conn.cursor()
            try:
                cur.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
                if url not in ("sqlite://", "sqlite:///:memory:"):
                    cur.execute("PRAGMA journal_mode = WAL")
                cur.execute("PRAGMA foreign_keys = ON")
                cur.execute("PRAGMA synchronous = NORMAL")
            finally:
                cur.close()

        @event.listens_for(engine, "begin")
        def _on_begin(conn):
            if conn.get_execution_options().get(_IMMEDIATE):
                conn.exec_driver_sql("BEGIN IMMEDIATE")
            else:
                conn.exec_driver_sql("BEGIN")

        return engine
    return create_engine(url, echo=echo, pool_pre_ping=True)


def lock(conn, key: str) -> None:
    """Serialise transactions on ``key`` until this one ends: a PostgreSQL advisory lock; on SQLite a
    no-op, because write transactions there (``write_engine``) already hold the database's write lock."""
    if conn.dialect.name == "postgresql":
        conn.execute(text("SELECT pg_advisory_xact_lock(hashtextextended(:k, 0))"), {"k": f"motionlib:{key}"})


def write_engine(engine: Engine) -> Engine:
    """A view of ``engine`` whose transactions take the SQLite write lock up front (no-op elsewhere)."""
    return engine.execution_options(**{_IMMEDIATE: True})


def migrations_path() -> Path:
    return Path(str(resources.files("motionlib.migrations")))


def alembic_config(engine: Engine | None = None) -> Config:
    """An alembic Config built in code: script_location = the installed ``motionlib.migrations``."""
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(migrations_path()))
    if engine is not None:
        cfg.set_main_option("sqlalchemy.url", engine.url.render_as_string(hide_password=False).replace("%", "%%"))
    return cfg


def head_revision() -> str | None:
    """The newest migration's revision: the largest ``NNNN`` of ``migrations/versions/NNNN_*.py``."""
    numbers = [p.name.split("_", 1)[0] for p in (migrations_path() / "versions").glob("[0-9]*_*.py")]
    return max(numbers, default=None)


def schema_revision(engine: Engine) -> str | None:
    """The catalogue's revision in one plain query (None: no schema yet), without alembic."""
    try:
        with engine.connect() as conn:
            rows = conn.exec_driver_sql("SELECT version_num FROM alembic_version").all()
    except (exc.OperationalError, exc.ProgrammingError):  # no such table (SQLite / PostgreSQL): a new catalogue
        return None
    return rows[0][0] if len(rows) == 1 else None


def current_revision(engine: Engine) -> str | None:
    """The catalogue's revision as alembic reads it."""
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def migrate(engine: Engine, revision: str = "head") -> None:
    """``alembic upgrade <revision>`` on ``engine``; safe when several processes open a library at once.

    A catalogue already at the head costs one query and never imports alembic."""
    if revision == "head" and schema_revision(engine) == head_revision():
        return  # fast path: nothing to do, no write lock taken
    from alembic import command

    cfg = alembic_config(engine)
    # One transaction around the whole upgrade; on SQLite it is BEGIN IMMEDIATE, so a second
    # process opening the library at the same moment waits and then finds the schema current.
    with write_engine(engine).begin() as conn:
        lock(conn, "migrate")  # PostgreSQL: the second process waits here, then finds nothing to do
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, revision)
