import os

from django.core.management.base import BaseCommand, CommandError

from ledger.roles import RoleSetupError, db_roles_setup


class Command(BaseCommand):
    help = (
        "Run as the owner role (the one that runs `migrate`), after every migrate: create the application's "
        "database role if missing and grant it what the application needs. It may read and write the business "
        "tables but only INSERT ledger events and checkpoints and seal events; it cannot ALTER, TRUNCATE or DROP "
        "anything. Idempotent. Point the application's DATABASE_URL at this role."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("--app-role", required=True, help="Name of the application's role.")
        parser.add_argument(
            "--app-password-env",
            metavar="VAR",
            help="Environment variable holding the password to give the role if it is created "
            "(not on the command line, where other users could read it).",
        )
        parser.add_argument("--database", default="default", help="Database alias (default: default).")

    def handle(self, *args, app_role: str, app_password_env: str | None, database: str, **options) -> None:
        password = None
        if app_password_env:
            password = os.environ.get(app_password_env)
            if not password:
                raise CommandError(f"--app-password-env: {app_password_env} is not set")
        try:
            for line in db_roles_setup(app_role=app_role, password=password, using=database):
                self.stdout.write(line)
        except RoleSetupError as exc:
            raise CommandError(str(exc)) from None
