from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand

from trust.ca import CaExistsError, create_internal_ca
from trust.keys import generate_ed25519, key_id, load_public
from trust.model_signing import ensure_ec_key, generate_ec_key, key_fingerprint, public_pem_of


class Command(BaseCommand):
    help = (
        "Create the signing material for the embedded default: the system Ed25519 key (ledger checkpoints, "
        "provenance and evidence-bundle envelopes), the EC P-256 model-signing key (OpenSSF model signatures of "
        "the artifacts SafeShrink produces) and an internal CA with a document-signing certificate and "
        "CRL (PAdES dossiers), at the paths in settings.SAFESHRINK. Keeps what exists unless --force. "
        "Production loads a real key and certificate from configured paths instead."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument(
            "--force",
            action="store_true",
            help="Replace existing keys and CA (old exports will no longer verify against the new CA).",
        )

    def handle(self, *args, force: bool, **options) -> None:
        conf = settings.SAFESHRINK
        private, public = Path(conf["SYSTEM_KEY"]), Path(conf["SYSTEM_PUBLIC_KEY"])
        if force or not private.is_file():
            generate_ed25519(private, public)
            self.stdout.write(f"system key: created {private}")
        self.stdout.write(f"system key id: {key_id(load_public(public))}")
        # The OpenSSF model-signing key (EC P-256: model_signing signs with no Ed25519 key); the same default as
        # compression.services.signatures.model_signing_key_path, which also creates it on first use.
        model_key = Path(conf.get("MODEL_SIGNING_KEY") or private.parent / "model-signing.key.pem")
        if force:
            generate_ec_key(model_key)
        else:
            ensure_ec_key(model_key)
        self.stdout.write(f"model-signing key: {model_key} ({key_fingerprint(public_pem_of(model_key))})")
        ca_dir = Path(conf["SIGNING_CERT"]).parent
        try:
            files = create_internal_ca(ca_dir, conf["ORGANISATION"], force=force)
            self.stdout.write(f"internal CA: created in {files.directory}")
        except CaExistsError:
            self.stdout.write(f"internal CA: kept the one in {ca_dir}")
        self.stdout.write(self.style.SUCCESS("signing material ready"))
