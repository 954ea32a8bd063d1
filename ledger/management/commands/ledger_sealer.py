import signal

from django.core.management.base import BaseCommand

from ledger.services import ledger_seal, ledger_seal_loop


class Command(BaseCommand):
    help = (
        "Run the dedicated ledger sealer: chain committed events (seq, prev_hash, hash, signed checkpoints) "
        "in batches until stopped (SIGTERM or Ctrl-C). Use it with SAFESHRINK_LEDGER_SEALING=sealer, where "
        "writers only insert; running it beside inline sealing is harmless. --once seals what is pending "
        "and exits."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("--once", action="store_true", help="Seal every pending event, print the count, exit.")
        parser.add_argument(
            "--idle",
            type=float,
            default=0.2,
            metavar="SECONDS",
            help="Pause after finding nothing to seal (default 0.2).",
        )
        parser.add_argument(
            "--busy",
            type=float,
            default=0.02,
            metavar="SECONDS",
            help="Pause after sealing a batch, letting the next batch gather (default 0.02).",
        )

    def handle(self, *args, once: bool, idle: float, busy: float, **options) -> None:
        if once:
            self.stdout.write(f"sealed {ledger_seal()} event(s)")
            return
        stopping = {"now": False}

        def stop(*_: object) -> None:
            stopping["now"] = True

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        verbose = options["verbosity"] > 1
        self.stdout.write(f"ledger sealer running (idle {idle} s, busy {busy} s); stop with SIGTERM or Ctrl-C")
        total = ledger_seal_loop(
            idle_seconds=idle,
            busy_seconds=busy,
            stop=lambda: stopping["now"],
            on_sealed=(lambda n: self.stdout.write(f"sealed {n}")) if verbose else None,
        )
        self.stdout.write(f"ledger sealer stopped after sealing {total} event(s)")
