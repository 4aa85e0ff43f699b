"""Where the store lives and how it is opened: URL resolution, engines, migrations.

The store is SQLite at ``~/.perfcast/perfcast.db`` unless ``PERFCAST_DB`` or an
explicit argument names another database: any SQLAlchemy URL (PostgreSQL
included) or a plain file path. Opening runs the packaged alembic migrations up
to the newest revision inside one transaction, so a failure leaves the database
as it was. A database that holds tables but no perfcast schema version is
refused without being written to.

SQLite connections run with foreign keys on and a busy timeout, the database in
WAL mode; write transactions start with ``BEGIN IMMEDIATE`` so that concurrent
writers wait for each other instead of failing on a stale snapshot. Inserts use
RETURNING, which needs SQLite 3.35 or newer (Python 3.11 builds bundle newer ones).
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, create_engine, event, inspect
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError, SQLAlchemyError
from sqlalchemy.pool import StaticPool

from perfcast.errors import UsageError

ENV_VAR = "PERFCAST_DB"
DEFAULT_PATH = Path("~") / ".perfcast" / "perfcast.db"
MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
VERSION_TABLE = "perfcast_alembic_version"
SQLITE_BUSY_TIMEOUT_MS = 30_000
PG_CONNECT_TIMEOUT_S = 10
# Execution option that makes a SQLite transaction take the write lock when it begins.
WRITE_OPTION = "perfcast_write"
# Key of the PostgreSQL advisory lock that serialises concurrent schema upgrades.
PG_MIGRATION_LOCK = 0x70666373


class NotAStore(Exception):
    """The database exists but holds something other than a perfcast store."""


def resolve_url(url: str | os.PathLike | None = None) -> str:
    """The store URL: ``url``, else ``$PERFCAST_DB``, else the default SQLite file.

    A value without ``://`` is a file path and becomes a ``sqlite:///`` URL.
    """
    value = os.fspath(url) if url is not None else os.environ.get(ENV_VAR) or str(DEFAULT_PATH)
    if "://" in value:
        return value
    return "sqlite:///" + str(Path(value).expanduser().absolute())


def display_url(url: str) -> str:
    """``url`` with its password hidden, for messages."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return url


def _sqlite_memory(url: URL) -> bool:
    return url.database in (None, "", ":memory:") or url.query.get("mode") == "memory"


def _sqlite_on_connect(dbapi_connection, _record) -> None:
    dbapi_connection.isolation_level = None  # transactions are begun by _sqlite_on_begin
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys = ON")
    cursor.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
    cursor.close()


def _sqlite_on_begin(conn: Connection) -> None:
    conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.get_execution_options().get(WRITE_OPTION) else "BEGIN")


def normalize_url(url: str | URL) -> URL:
    """Parse ``url``; a bare ``postgresql://`` uses psycopg 3, the driver perfcast installs."""
    parsed = make_url(url)
    if parsed.drivername == "postgresql":
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed


def make_engine(url: str | URL) -> Engine:
    """An engine with the store's connection settings (see the module docstring)."""
    parsed = normalize_url(url)
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        kwargs: dict = {"connect_args": {"check_same_thread": False}}
        if _sqlite_memory(parsed):
            kwargs["poolclass"] = StaticPool
        engine = create_engine(parsed, **kwargs)
        event.listen(engine, "connect", _sqlite_on_connect)
        event.listen(engine, "begin", _sqlite_on_begin)
        return engine
    connect_args = {}
    if backend == "postgresql" and "connect_timeout" not in parsed.query:
        connect_args["connect_timeout"] = PG_CONNECT_TIMEOUT_S
    return create_engine(parsed, pool_pre_ping=True, connect_args=connect_args)


@contextmanager
def write_transaction(engine: Engine) -> Iterator[Connection]:
    """A connection in a transaction that writes (on SQLite: holds the write lock from the start)."""
    with engine.execution_options(**{WRITE_OPTION: True}).begin() as conn:
        yield conn


def alembic_config(connection: Connection | None = None) -> Config:
    """An alembic configuration for the packaged migrations, built in code (no alembic.ini)."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR).replace("%", "%%"))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def _current_revisions(conn: Connection, script: ScriptDirectory) -> set[str]:
    """The schema revisions the database is at; empty for an empty database.

    Raises :class:`NotAStore` for a database with other tables, or a revision
    this version of perfcast does not know.
    """
    tables = inspect(conn).get_table_names()
    if VERSION_TABLE not in tables:
        if tables:
            shown = ", ".join(sorted(tables)[:5]) + (", ..." if len(tables) > 5 else "")
            raise NotAStore(f"the database holds tables that are not a perfcast store ({shown})")
        return set()
    context = MigrationContext.configure(conn, opts={"version_table": VERSION_TABLE})
    current = set(context.get_current_heads())
    known = {s.revision for s in script.walk_revisions()}
    if current - known:
        raise NotAStore(f"schema revision {', '.join(sorted(current - known))} is unknown to this perfcast (newer?)")
    return current


def upgrade_schema(engine: Engine) -> bool:
    """Bring the schema to the newest revision; return whether anything was run.

    An up-to-date database is only read. Otherwise the upgrade runs in a single
    write transaction (PostgreSQL: under an advisory lock), after checking again
    that the database is an empty database or a perfcast store.
    """
    script = ScriptDirectory.from_config(alembic_config())
    heads = set(script.get_heads())
    with engine.connect() as conn:
        if _current_revisions(conn, script) == heads:
            return False
    with write_transaction(engine) as conn:
        if conn.dialect.name == "postgresql":
            conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({PG_MIGRATION_LOCK})")
        if _current_revisions(conn, script) == heads:
            return False
        command.upgrade(alembic_config(conn), "head")
    return True


def _enable_wal(engine: Engine) -> None:
    raw = engine.raw_connection()
    try:
        raw.driver_connection.execute("PRAGMA journal_mode = WAL").fetchall()
    finally:
        raw.close()


def _sqlite_path(url: URL) -> Path | None:
    if url.get_backend_name() != "sqlite" or _sqlite_memory(url) or url.query.get("uri"):
        return None
    return Path(url.database)


def _reason(exc: BaseException) -> str:
    """The first line of a database error, without SQLAlchemy's decorations."""
    if isinstance(exc, NoSuchModuleError):
        return f"unknown database dialect {str(exc).rpartition(':')[2]!r}"
    if isinstance(exc, ImportError):
        return f"database driver not installed ({exc})"
    if isinstance(exc, OSError) and exc.strerror:
        return f"{exc.strerror}: {exc.filename}" if exc.filename else exc.strerror
    orig = getattr(exc, "orig", None) or exc
    lines = [line.strip() for line in str(orig).splitlines() if line.strip()]
    return lines[0] if lines else type(orig).__name__


def _remove_sqlite_files(path: Path) -> None:
    for suffix in ("", "-wal", "-shm", "-journal"):
        Path(str(path) + suffix).unlink(missing_ok=True)


def open_engine(url: str | os.PathLike | None = None) -> tuple[Engine, str]:
    """Open (creating or upgrading) the store database; return the engine and a display URL.

    Every failure is a :class:`UsageError` naming the URL; a SQLite file that this
    call created is removed again when opening fails.
    """
    text = resolve_url(url)
    label = display_url(text)
    created: Path | None = None
    engine: Engine | None = None
    try:
        parsed = normalize_url(text)
        path = _sqlite_path(parsed)
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            if not path.exists():
                created = path
        engine = make_engine(parsed)
        upgrade_schema(engine)
        if path is not None:
            _enable_wal(engine)
        return engine, label
    except (SQLAlchemyError, OSError, ImportError, NotAStore) as exc:
        if engine is not None:
            engine.dispose()
        if created is not None:
            _remove_sqlite_files(created)
        raise UsageError(label, f"cannot open the store: {_reason(exc)}") from None
