"""A throwaway PostgreSQL server for tests and benchmarks: ``initdb`` in a temporary folder, a free
port on 127.0.0.1, run as a non-root user (``postgres`` when started by root), stopped and deleted
at the end. Nothing here is used by the catalogue itself; it only needs the server binaries
(Debian: ``apt-get install postgresql-15``) and the ``[postgres]`` extra (psycopg).
"""

from __future__ import annotations

import glob
import os
import pwd
import secrets
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

__all__ = ["ThrowawayPostgres", "PostgresUnavailable", "find_bin_dir"]


class PostgresUnavailable(RuntimeError):
    """No PostgreSQL server can be started here; the message says why."""


def find_bin_dir() -> Path | None:
    """The folder holding ``initdb``/``pg_ctl`` ($MOTIONLIB_PG_BIN, the PATH, or Debian's versioned folder)."""
    env = os.environ.get("MOTIONLIB_PG_BIN")
    candidates = [env] if env else []
    found = shutil.which("initdb")
    if found:
        candidates.append(str(Path(os.path.realpath(found)).parent))
    candidates += sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True)
    for c in candidates:
        if c and (Path(c) / "initdb").is_file() and (Path(c) / "pg_ctl").is_file():
            return Path(c)
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ThrowawayPostgres:
    """``with ThrowawayPostgres() as pg: pg.create_database("x") -> URL``; raises PostgresUnavailable."""

    def __init__(self):
        self.bin = find_bin_dir()
        if self.bin is None:
            raise PostgresUnavailable("PostgreSQL server binaries (initdb, pg_ctl) not found; "
                                      "apt-get install postgresql-15, or set MOTIONLIB_PG_BIN")
        try:
            import psycopg  # noqa: F401
        except ImportError:
            raise PostgresUnavailable("the psycopg driver is missing; pip install -e '.[postgres]'") from None
        self.user = None  # run the server as this OS user (None: the current one)
        if os.geteuid() == 0:
            try:
                self.user = pwd.getpwnam(os.environ.get("MOTIONLIB_PG_OS_USER", "postgres"))
            except KeyError:
                raise PostgresUnavailable("running as root and there is no 'postgres' user to run the server as "
                                          "(initdb refuses root)") from None
        self.dir = Path(tempfile.mkdtemp(prefix="motionlib-pg-"))
        self.data = self.dir / "data"
        self.port = _free_port()
        self.password = secrets.token_hex(8)
        self.started = False

    def _run(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
        cmd = [str(self.bin / args[0]), *args[1:]]
        kw = {}
        if self.user is not None:
            uid, gid = self.user.pw_uid, self.user.pw_gid
            kw = dict(user=uid, group=gid, extra_groups=[])
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=self.dir, **kw)
        if res.returncode:
            tail = (res.stderr or res.stdout).strip().splitlines()[-3:]
            raise PostgresUnavailable(f"{args[0]} failed: {' / '.join(tail)}")
        return res

    def start(self) -> "ThrowawayPostgres":
        if self.user is not None:
            os.chown(self.dir, self.user.pw_uid, self.user.pw_gid)
        pwfile = self.dir / "pw"
        pwfile.write_text(self.password)
        if self.user is not None:
            os.chown(pwfile, self.user.pw_uid, self.user.pw_gid)
        self._run("initdb", "-D", str(self.data), "-U", "motionlib", "--auth=scram-sha-256",
                  f"--pwfile={pwfile}", "-E", "UTF8", "--no-sync")
        opts = (f"-c listen_addresses=127.0.0.1 -c port={self.port} -c unix_socket_directories={self.dir} "
                "-c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200")
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.dir / "log"), "-o", opts, "-w", "-t", "60",
                  "start")
        self.started = True
        return self

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+psycopg://motionlib:{self.password}@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str | None = None) -> str:
        """A new empty database on the server; returns its SQLAlchemy URL."""
        import psycopg

        name = name or f"t_{secrets.token_hex(6)}"
        with psycopg.connect(self.url().replace("+psycopg", ""), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def stop(self) -> None:
        if self.started:
            try:
                self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")
            except (PostgresUnavailable, subprocess.TimeoutExpired):
                pass
            self.started = False
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> "ThrowawayPostgres":
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc) -> None:
        self.stop()

