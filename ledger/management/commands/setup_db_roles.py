import os

from django.core.management.base import BaseCommand, CommandError

from ledger.roles import RoleSetupError, db_roles_setup


class Command(BaseCommand):
    help = (
        "Run as the owner role (the one that runs `migrate`), after every migrate: create the application's "
        "database role if missing and grant it what the application needs. It may read and write the business "
        "tables but only INSERT ledger events and checkpoints and seal events; it cannot ALTER, TRUNCATE or DROP "
        "anything. With --sealer-role, a second role alone may seal events and sign checkpoints (the application's "
        "role then only inserts events): run `ledger_sealer` as it. Idempotent. Point the application's "
        "DATABASE_URL at the application's role."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("--app-role", required=True, help="Name of the application's role.")
        parser.add_argument(
            "--app-password-env",
            metavar="VAR",
            help="Environment variable holding the password to give the role if it is created "
            "(not on the command line, where other users could read it).",
        )
        parser.add_argument(
            "--sealer-role",
            help="Name of the sealer's role: the only one that may seal events and sign checkpoints "
            "(SAFESHRINK_LEDGER_SEALING=sealer; `ledger_sealer` connects as it).",
        )
        parser.add_argument(
            "--sealer-password-env",
            metavar="VAR",
            help="Environment variable holding the password to give the sealer's role if it is created.",
        )
        parser.add_argument("--database", default="default", help="Database alias (default: default).")

    def handle(
        self,
        *args,
        app_role: str,
        app_password_env: str | None,
        sealer_role: str | None,
        sealer_password_env: str | None,
        database: str,
        **options,
    ) -> None:
        password, sealer_password = (
            _password(app_password_env, "--app-password-env"),
            _password(sealer_password_env, "--sealer-password-env"),
        )
        try:
            lines = db_roles_setup(
                app_role=app_role,
                password=password,
                sealer_role=sealer_role,
                sealer_password=sealer_password,
                using=database,
            )
            for line in lines:
                self.stdout.write(line)
        except RoleSetupError as exc:
            raise CommandError(str(exc)) from None


def _password(variable: str | None, option: str) -> str | None:
    if not variable:
        return None
    password = os.environ.get(variable)
    if not password:
        raise CommandError(f"{option}: {variable} is not set")
    return password
