"""A PostgreSQL cursor that binds parameters on the server, for the ledger's hot statements.

Django's psycopg cursors bind parameters in the client (the query text is rebuilt, parsed and planned
by the server on every call) and prepare nothing. The append INSERT runs once per audited change and
the sealing UPDATE takes four arrays: both are cheaper bound on the server, the INSERT prepared once
per connection (bench/ledger.py measures the difference). The cursor is still wrapped by Django, so
errors are translated and queries are logged and counted exactly as any other."""

import contextlib
import functools
from collections.abc import Iterator
from typing import Any

from django.db import connection


@functools.cache
def _cursor_class(prepare: bool) -> type:
    import psycopg

    if not prepare:
        return psycopg.Cursor

    class PreparedCursor(psycopg.Cursor):
        def execute(self, query, params=None, *, prepare=None, binary=None):
            return super().execute(query, params, prepare=True, binary=binary)

    return PreparedCursor


@contextlib.contextmanager
def server_cursor(*, prepare: bool = False, using: Any = None) -> Iterator[Any]:
    """Django's cursor wrapper around a server-binding psycopg cursor on the default connection (which
    must be PostgreSQL); with prepare=True every statement is prepared on first use per connection.
    The psycopg cursor is made once per connection and kept (making one per statement cost more CPU
    than the rest of the INSERT's client side). `using`: the connection (default: the default one),
    for callers that already hold it (each lookup through `django.db.connection` costs microseconds)."""
    db: Any = connection if using is None else using
    db.ensure_connection()
    raw = db.connection
    attribute = "_safeshrink_prepared_cursor" if prepare else "_safeshrink_server_cursor"
    cursor = getattr(raw, attribute, None)
    if cursor is None or cursor.closed:
        with db.wrap_database_errors:
            cursor = _cursor_class(prepare)(raw)
        setattr(raw, attribute, cursor)
    yield db._prepare_cursor(cursor)
