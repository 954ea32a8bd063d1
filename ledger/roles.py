"""The two PostgreSQL roles: the owner (runs migrations, owns every table) and the application's role
(web, workers, beat, the sealer), which may read and write business tables but may only INSERT ledger
events and checkpoints and perform the one-time sealing UPDATE. Not owning the tables, it cannot
ALTER (so not DISABLE or DROP a trigger), TRUNCATE or DROP them; column grants keep it from writing
`seq`/`hash` on insert or any content column on update, and the trigger (migration 0003) allows only
the one-time sealing or rejection. See ARCHITECTURE.md, "The ledger's write path"."""

from django.db import connections

from .services import CHECKPOINT_COLUMNS, INSERTABLE_COLUMNS, SEALING_COLUMNS

LEDGER_TABLES = ("ledger_ledgerevent", "ledger_checkpoint")


class RoleSetupError(ValueError):
    """The named role cannot be made the application's role (a superuser, the owner itself, ...)."""


def db_roles_setup(*, app_role: str, password: str | None = None, using: str = "default") -> list[str]:
    """Create the application's role if it is missing (LOGIN, no other attribute) and grant it exactly
    what the application needs on the current database. Idempotent: run it after every `migrate`, as
    the owner (tables created later by the owner get the business-table grants by default privileges).
    Returns what was done, one line each."""
    from psycopg import sql

    connection = connections[using]
    if connection.vendor != "postgresql":
        raise RoleSetupError("database roles exist only on PostgreSQL")
    role = sql.Identifier(app_role)
    done: list[str] = []
    with connection.cursor() as cursor:
        raw = cursor.cursor  # psycopg's own cursor: composes identifiers safely
        raw.execute("SELECT current_user, current_database(), current_schema()")
        owner, database, schema = raw.fetchone()
        if app_role == owner:
            raise RoleSetupError(
                f"{app_role!r} is the role running this command (the owner); the application needs a role of its own"
            )
        raw.execute("SELECT rolsuper FROM pg_roles WHERE rolname = %s", [app_role])
        row = raw.fetchone()
        if row is None:
            raw.execute(
                sql.SQL("CREATE ROLE {} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS{}").format(
                    role, sql.SQL(" PASSWORD {}").format(sql.Literal(password)) if password else sql.SQL("")
                )
            )
            done.append(f"created role {app_role}")
        elif row[0]:
            raise RoleSetupError(f"{app_role!r} is a superuser: it could switch the ledger's triggers off")
        raw.execute("SELECT pg_has_role(%s, %s, 'MEMBER')", [app_role, owner])
        if raw.fetchone()[0]:
            raise RoleSetupError(f"{app_role!r} is a member of the owner role {owner!r}")
        raw.execute("SELECT tablename FROM pg_tables WHERE schemaname = %s AND tableowner = %s", [schema, app_role])
        owned = [r[0] for r in raw.fetchall()]
        if owned:
            raise RoleSetupError(f"{app_role!r} owns tables ({', '.join(owned[:5])}); run migrations as the owner")
        schema_id, db_id = sql.Identifier(schema), sql.Identifier(database)
        statements = [
            sql.SQL("GRANT CONNECT ON DATABASE {} TO {}").format(db_id, role),
            sql.SQL("GRANT USAGE ON SCHEMA {} TO {}").format(schema_id, role),
            sql.SQL("GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA {} TO {}").format(schema_id, role),
            sql.SQL("GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA {} TO {}").format(schema_id, role),
            sql.SQL(
                "ALTER DEFAULT PRIVILEGES IN SCHEMA {} GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO {}"
            ).format(schema_id, role),
            sql.SQL("ALTER DEFAULT PRIVILEGES IN SCHEMA {} GRANT USAGE, SELECT ON SEQUENCES TO {}").format(
                schema_id, role
            ),
            sql.SQL("REVOKE INSERT, UPDATE, DELETE ON django_migrations FROM {}").format(role),
            # The ledger: read, insert content, seal; nothing else.
            sql.SQL("REVOKE ALL ON {} FROM {}").format(sql.SQL(", ").join(map(sql.Identifier, LEDGER_TABLES)), role),
            sql.SQL("GRANT SELECT ON {} TO {}").format(sql.SQL(", ").join(map(sql.Identifier, LEDGER_TABLES)), role),
            sql.SQL("GRANT INSERT ({}) ON ledger_ledgerevent TO {}").format(
                sql.SQL(", ").join(map(sql.Identifier, INSERTABLE_COLUMNS)), role
            ),
            sql.SQL("GRANT UPDATE ({}) ON ledger_ledgerevent TO {}").format(
                sql.SQL(", ").join(map(sql.Identifier, SEALING_COLUMNS)), role
            ),
            sql.SQL("GRANT INSERT ({}) ON ledger_checkpoint TO {}").format(
                sql.SQL(", ").join(map(sql.Identifier, CHECKPOINT_COLUMNS)), role
            ),
        ]
        for statement in statements:
            raw.execute(statement)
        done.append(f"granted {app_role} the application's privileges on {database} (ledger: insert and seal only)")
    return done
