"""A throwaway PostgreSQL server for tests.

:class:`PostgresServer` runs ``initdb`` and ``pg_ctl`` from Debian's
``/usr/lib/postgresql/<version>/bin`` (``scripts/postgres.sh`` installs them) on
a free loopback port in a fresh temporary directory, with trust authentication
and fsync off, and removes everything on :meth:`stop`. PostgreSQL refuses to run
as root, so under root the server runs as the ``postgres`` user.

Fixtures: ``postgres_server`` (one server per test session; the tests that use it
skip only when the binaries are absent) and ``postgres_url`` (an empty database
on it for each test). Import both into a test module, or into conftest.py to
share one server between modules.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import uuid
from pathlib import Path

import pytest

RUN_AS = "postgres"
START_TIMEOUT_S = 60


def find_bin_dir() -> Path | None:
    """The newest ``/usr/lib/postgresql/*/bin`` that has initdb, pg_ctl and postgres."""
    found = [
        Path(d)
        for d in glob.glob("/usr/lib/postgresql/*/bin")
        if all(os.access(Path(d) / tool, os.X_OK) for tool in ("initdb", "pg_ctl", "postgres"))
    ]
    return max(found, key=lambda d: int(d.parent.name) if d.parent.name.isdigit() else 0) if found else None


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PostgresServer:
    """One PostgreSQL server in its own temporary directory; superuser ``postgres``."""

    def __init__(self, bin_dir: Path) -> None:
        self.bin_dir = bin_dir
        self.root: Path | None = None
        self.port: int | None = None
        self.test_url: str | None = None
        self._as_user: list[str] = []

    @property
    def data_dir(self) -> Path:
        assert self.root is not None
        return self.root / "data"

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{database}"

    def _run(self, *args: str, timeout: float = START_TIMEOUT_S) -> None:
        cmd = [*self._as_user, *args]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=self.root)
        if done.returncode:
            log = self.root / "server.log" if self.root else None
            tail = log.read_text()[-2000:] if log and log.exists() else ""
            raise RuntimeError(f"{' '.join(args[:2])} failed ({done.returncode}): {done.stderr.strip()}\n{tail}")

    def start(self) -> "PostgresServer":
        self.root = Path(tempfile.mkdtemp(prefix="perfcast-pg-"))
        if os.geteuid() == 0:
            user = pwd.getpwnam(RUN_AS)
            os.chown(self.root, user.pw_uid, user.pw_gid)
            self._as_user = ["runuser", "-u", RUN_AS, "--"]
        self._run(
            str(self.bin_dir / "initdb"), "-D", str(self.data_dir), "-U", "postgres", "--auth=trust",
            "--no-sync", "--encoding=UTF8", "--locale=C",
        )
        for _ in range(3):  # the free port may be taken by someone else before the server binds it
            self.port = free_port()
            options = f"-F -p {self.port} -k {self.root} -c listen_addresses=127.0.0.1"
            try:
                self._run(
                    str(self.bin_dir / "pg_ctl"), "start", "-w", "-t", str(START_TIMEOUT_S),
                    "-D", str(self.data_dir), "-l", str(self.root / "server.log"), "-o", options,
                )
                return self
            except RuntimeError:
                log = self.root / "server.log"
                if not log.exists() or "could not bind" not in log.read_text():
                    raise
        raise RuntimeError("PostgreSQL found no free port")

    def stop(self) -> None:
        if self.root is None:
            return
        if (self.data_dir / "postmaster.pid").exists():
            self._run(str(self.bin_dir / "pg_ctl"), "stop", "-D", str(self.data_dir), "-m", "immediate", "-w")
        shutil.rmtree(self.root, ignore_errors=True)
        self.root = None

    def _admin(self, database: str = "postgres"):
        import psycopg

        return psycopg.connect(host="127.0.0.1", port=self.port, user="postgres", dbname=database, autocommit=True)

    def create_database(self) -> str:
        """A new empty database; returns its URL."""
        name = "t_" + uuid.uuid4().hex[:12]
        with self._admin() as c:
            c.execute(f'CREATE DATABASE "{name}" TEMPLATE template0')
        return self.url(name)

    def empty_database(self, url: str) -> None:
        """Make a database empty again (much faster than a new one): end its other
        sessions and recreate the ``public`` schema."""
        with self._admin(url.rsplit("/", 1)[1]) as c:
            c.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
            c.execute("DROP SCHEMA public CASCADE")
            c.execute("CREATE SCHEMA public")


@pytest.fixture(scope="session")
def postgres_server():
    bin_dir = find_bin_dir()
    if bin_dir is None:
        pytest.skip("PostgreSQL server binaries not found in /usr/lib/postgresql/*/bin (run scripts/postgres.sh)")
    if os.geteuid() == 0:
        try:
            pwd.getpwnam(RUN_AS)
        except KeyError:
            pytest.skip(f"running as root and there is no {RUN_AS!r} user to run PostgreSQL as")
    server = PostgresServer(bin_dir)
    try:
        yield server.start()
    finally:
        server.stop()


@pytest.fixture
def postgres_url(postgres_server):
    """The URL of an empty database (one per session, emptied for each test)."""
    if postgres_server.test_url is None:
        postgres_server.test_url = postgres_server.create_database()
    postgres_server.empty_database(postgres_server.test_url)
    return postgres_server.test_url
