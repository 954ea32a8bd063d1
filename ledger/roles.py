"""The PostgreSQL roles: the owner (runs migrations, owns every table), the application's role (web,
workers, beat) and, optionally, the sealer's role. The application's role may read and write business
tables but may only INSERT ledger events; it also performs the one-time sealing UPDATE and signs
checkpoints unless a separate sealer role is named, which then alone may (and may do nothing else:
read the ledger, seal, insert checkpoints). Not owning the tables, neither can ALTER (so not DISABLE
or DROP a trigger), TRUNCATE or DROP them; column grants keep them from writing `seq`/`hash` on insert
or any content column on update, and the trigger (migration 0003) allows only the one-time sealing or
rejection. The events' monthly partitions (migration 0004) carry no grant at all: they are reached
through the parent table only. See ARCHITECTURE.md, "Who may write the ledger"."""

from django.db import connections

from .services import CHECKPOINT_COLUMNS, INSERTABLE_COLUMNS, SEALING_COLUMNS

LEDGER_TABLES = ("ledger_ledgerevent", "ledger_checkpoint")


class RoleSetupError(ValueError):
    """The named role cannot be made the application's role (a superuser, the owner itself, ...)."""


def _check_role(raw, sql, role_name: str, owner: str, password: str | None, done: list[str]) -> None:
    """Create `role_name` if missing (LOGIN, no other attribute); refuse the owner, a superuser, a member of
    the owner and a role owning tables."""
    if role_name == owner:
        raise RoleSetupError(
            f"{role_name!r} is the role running this command (the owner); the application needs a role of its own"
        )
    raw.execute("SELECT rolsuper FROM pg_roles WHERE rolname = %s", [role_name])
    row = raw.fetchone()
    if row is None:
        raw.execute(
            sql.SQL("CREATE ROLE {} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS{}").format(
                sql.Identifier(role_name),
                sql.SQL(" PASSWORD {}").format(sql.Literal(password)) if password else sql.SQL(""),
            )
        )
        done.append(f"created role {role_name}")
    elif row[0]:
        raise RoleSetupError(f"{role_name!r} is a superuser: it could switch the ledger's triggers off")
    raw.execute("SELECT pg_has_role(%s, %s, 'MEMBER')", [role_name, owner])
    if raw.fetchone()[0]:
        raise RoleSetupError(f"{role_name!r} is a member of the owner role {owner!r}")
    raw.execute("SELECT tablename FROM pg_tables WHERE tableowner = %s", [role_name])
    owned = [r[0] for r in raw.fetchall()]
    if owned:
        raise RoleSetupError(f"{role_name!r} owns tables ({', '.join(owned[:5])}); run migrations as the owner")


def db_roles_setup(
    *,
    app_role: str,
    password: str | None = None,
    sealer_role: str | None = None,
    sealer_password: str | None = None,
    using: str = "default",
) -> list[str]:
    """Create the application's role (and the sealer's, if named) where missing and grant each exactly
    what it needs on the current database. Idempotent: run it after every `migrate`, as the owner
    (tables created later by the owner get the business-table grants by default privileges; ledger
    partitions made later lose them as they are made). Returns what was done, one line each."""
    from psycopg import sql

    connection = connections[using]
    if connection.vendor != "postgresql":
        raise RoleSetupError("database roles exist only on PostgreSQL")
    if sealer_role is not None and sealer_role == app_role:
        raise RoleSetupError("the sealer's role must differ from the application's role")
    role = sql.Identifier(app_role)
    done: list[str] = []
    with connection.cursor() as cursor:
        raw = cursor.cursor  # psycopg's own cursor: composes identifiers safely
        raw.execute("SELECT current_user, current_database(), current_schema()")
        owner, database, schema = raw.fetchone()
        _check_role(raw, sql, app_role, owner, password, done)
        if sealer_role is not None:
            _check_role(raw, sql, sealer_role, owner, sealer_password, done)
            for member, of in ((app_role, sealer_role), (sealer_role, app_role)):
                raw.execute("SELECT pg_has_role(%s, %s, 'MEMBER')", [member, of])
                if raw.fetchone()[0]:
                    raise RoleSetupError(f"{member!r} is a member of {of!r}: the two roles must stay apart")
        raw.execute(
            "SELECT quote_ident(c.relname) FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
            "WHERE i.inhparent = 'ledger_ledgerevent'::regclass ORDER BY 1"
        )
        partitions = [sql.SQL(r[0]) for r in raw.fetchall()]
        raw.execute("SELECT to_regprocedure('ledger_event_partitions_ensure(integer)') IS NOT NULL")
        has_partition_function = raw.fetchone()[0]
        schema_id, db_id = sql.Identifier(schema), sql.Identifier(database)
        ledger_tables = sql.SQL(", ").join(map(sql.Identifier, LEDGER_TABLES))
        insertable = sql.SQL(", ").join(map(sql.Identifier, INSERTABLE_COLUMNS))
        sealing = sql.SQL(", ").join(map(sql.Identifier, SEALING_COLUMNS))
        checkpoint = sql.SQL(", ").join(map(sql.Identifier, CHECKPOINT_COLUMNS))
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
            # The ledger: read, insert content (and seal, without a sealer role); nothing else.
            sql.SQL("REVOKE ALL ON {} FROM {}").format(ledger_tables, role),
            sql.SQL("GRANT SELECT ON {} TO {}").format(ledger_tables, role),
            sql.SQL("GRANT INSERT ({}) ON ledger_ledgerevent TO {}").format(insertable, role),
        ]
        if sealer_role is None:
            statements += [
                sql.SQL("GRANT UPDATE ({}) ON ledger_ledgerevent TO {}").format(sealing, role),
                sql.SQL("GRANT INSERT ({}) ON ledger_checkpoint TO {}").format(checkpoint, role),
            ]
        else:
            sealer = sql.Identifier(sealer_role)
            statements += [
                sql.SQL("GRANT CONNECT ON DATABASE {} TO {}").format(db_id, sealer),
                sql.SQL("GRANT USAGE ON SCHEMA {} TO {}").format(schema_id, sealer),
                sql.SQL("REVOKE ALL ON ALL TABLES IN SCHEMA {} FROM {}").format(schema_id, sealer),
                sql.SQL("REVOKE ALL ON ALL SEQUENCES IN SCHEMA {} FROM {}").format(schema_id, sealer),
                sql.SQL("GRANT SELECT ON {} TO {}").format(ledger_tables, sealer),
                sql.SQL("GRANT UPDATE ({}) ON ledger_ledgerevent TO {}").format(sealing, sealer),
                sql.SQL("GRANT INSERT ({}) ON ledger_checkpoint TO {}").format(checkpoint, sealer),
            ]
        # Partitions are reached through the parent only ("ON ALL TABLES" above included them).
        grantees = sql.SQL(", ").join([role] + ([sql.Identifier(sealer_role)] if sealer_role else []))
        statements += [sql.SQL("REVOKE ALL ON {} FROM {}").format(p, grantees) for p in partitions]
        if has_partition_function:
            statements.append(
                sql.SQL("GRANT EXECUTE ON FUNCTION ledger_event_partitions_ensure(integer) TO {}").format(grantees)
            )
        for statement in statements:
            raw.execute(statement)
        done.append(
            f"granted {app_role} the application's privileges on {database} "
            + (
                f"(ledger: insert only); {sealer_role} the sealer's (ledger: read, seal, sign checkpoints)"
                if sealer_role
                else "(ledger: insert and seal only)"
            )
        )
    return done
