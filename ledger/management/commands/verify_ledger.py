from django.core.management.base import BaseCommand, CommandError

from ledger.verification import ledger_verify


class Command(BaseCommand):
    help = (
        "Recompute the audit ledger's hash chain and check it against the signed checkpoints and the writers' "
        "signatures. Prints OK, or the first event whose content or link changed (exit 1)."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument(
            "--full",
            action="store_true",
            help="Check every event's writer signature and every checkpoint's signature, not only "
            "those after the last valid checkpoint (slow: about 70 us per event).",
        )

    def handle(self, *args, full: bool = False, **options) -> None:
        result = ledger_verify(full=full)
        if result.ok:
            head = f"head seq {result.head_seq}, hash {result.head_hash}" if result.checked else "empty ledger"
            pending = f"; {result.pending} event(s) committed but not yet sealed" if result.pending else ""
            self.stdout.write(
                f"OK: {result.checked} events verified, {result.checkpoints_checked} signed "
                f"checkpoint(s) match, {result.signatures_checked} writer signature(s) checked "
                f"({head}){pending}"
            )
            return
        where = f" at seq {result.first_bad_seq}" if result.first_bad_seq is not None else ""
        raise CommandError(f"BROKEN{where}: {result.reason}")
