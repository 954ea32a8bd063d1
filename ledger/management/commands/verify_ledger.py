from django.core.management.base import BaseCommand, CommandError

from ledger.services import ledger_verify


class Command(BaseCommand):
    help = "Recompute the audit ledger's hash chain. Prints OK, or the first broken sequence number (exit 1)."

    def handle(self, *args, **options) -> None:
        result = ledger_verify()
        if result.ok:
            head = f"head seq {result.head_seq}, hash {result.head_hash}" if result.checked else "empty ledger"
            pending = f"; {result.pending} event(s) committed but not yet sealed" if result.pending else ""
            self.stdout.write(f"OK: {result.checked} events verified, {result.checkpoints_checked} signed "
                              f"checkpoint(s) match ({head}){pending}")
            return
        raise CommandError(f"BROKEN at seq {result.first_bad_seq}: {result.reason}")
