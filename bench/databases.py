"""A fresh PostgreSQL database for a benchmark, on the server that DATABASE_URL names."""

import os


def postgres_server(bench: str) -> str:
    """The server part of DATABASE_URL (without the database name); PostgreSQL only."""
    base = os.environ.get("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/postgres")
    if not base.startswith("postgres"):
        raise RuntimeError(f"bench/{bench}.py needs DATABASE_URL to point at PostgreSQL")
    return base.rsplit("/", 1)[0]


def database_recreate(server: str, name: str) -> str:
    """Drop (closing its connections) and create the database `name`; returns its URL."""
    import psycopg

    with psycopg.connect(f"{server}/postgres", autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        conn.execute(f"CREATE DATABASE {name}")
    return f"{server}/{name}"


def database_drop(server: str, name: str) -> None:
    import psycopg

    with psycopg.connect(f"{server}/postgres", autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
