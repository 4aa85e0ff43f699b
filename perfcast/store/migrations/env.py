"""Alembic environment of the perfcast store.

:func:`perfcast.store.db.upgrade_schema` runs it with an open connection in
``config.attributes["connection"]`` (inside its own transaction). Run from the
``alembic`` command instead, it connects to ``sqlalchemy.url`` of the config (with the store's SQLite settings), or
writes SQL in offline mode.
"""

from __future__ import annotations

from alembic import context
from perfcast.store.db import VERSION_TABLE, make_engine
from perfcast.store.models import Base

OPTIONS = {
    "target_metadata": Base.metadata,
    "version_table": VERSION_TABLE,
    "transactional_ddl": True,
    "render_as_batch": True,
    "compare_type": True,
}


def _run(connection) -> None:
    context.configure(connection=connection, **OPTIONS)
    with context.begin_transaction():
        context.run_migrations()


def main() -> None:
    config = context.config
    if context.is_offline_mode():
        context.configure(url=config.get_main_option("sqlalchemy.url"), literal_binds=True, **OPTIONS)
        with context.begin_transaction():
            context.run_migrations()
        return
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    engine = make_engine(config.get_main_option("sqlalchemy.url"))
    try:
        with engine.connect() as conn:
            _run(conn)
    finally:
        engine.dispose()


main()
