"""Load the demo data set: users for each role, a taxonomy, a threshold policy, a suite, a base model."""

import time
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from accounts.models import User
from accounts.services import user_create
from compression.models import ModelArtifact, ModelKind
from compression.services.artifacts import artifact_register
from evaluations.datasets import SAFE_LABELS, UNSAFE_LABELS, demo_suite_rows
from evaluations.engine.perturb import KINDS
from evaluations.models import Suite
from evaluations.services.suites import ExampleRow, suite_derive_perturbed, suite_version_import
from governance.demo import (
    DEFAULT_POLICY_RULES,
    DEFAULT_TAXONOMY,
    DEMO_AUTHORITIES,
    DEMO_USERS,
    MITIGATIONS,
)
from governance.models import AuthorityGrant, MitigationTemplate, RiskTaxonomy
from governance.services.monitoring import authority_grant
from governance.services.policies import taxonomy_publish, threshold_policy_publish

DEMO_SUITE = "Safety demo suite"
DEMO_POLICY = "Default safety policy"
DEMO_MODEL = "tiny-hatexplain-bert"


class Command(BaseCommand):
    help = (
        "Create demo users (one per role), the default risk taxonomy and threshold policy, the demo suite "
        "from the shared data sets, and a tiny base model. Safe to run twice: what exists is kept."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument(
            "--data-dir",
            type=Path,
            default=None,
            help="Folder with the shared data sets (default: settings SAFESHRINK['DATA_DIR']).",
        )
        parser.add_argument("--routine", type=int, default=300, help="HateXplain test examples in the suite.")
        parser.add_argument("--adversarial", type=int, default=100, help="AdvBench examples in the suite.")
        parser.add_argument(
            "--model-dir",
            type=Path,
            default=None,
            help="Use this model folder as the base model instead of building one.",
        )
        parser.add_argument(
            "--model",
            choices=["teacher", "tiny", "smollm2"],
            default=None,
            help="Base model to build: the MiniLM reference teacher (minutes, once; cached), the tiny BERT "
            "(seconds), or the chat model SmolLM2-135M-Instruct with its refusal judge and chat suite "
            "(`load_chat_demo`; minutes once, cached). Default: $SAFESHRINK_DEMO_MODEL or teacher.",
        )

    def handle(
        self,
        *args,
        data_dir: Path | None,
        routine: int,
        adversarial: int,
        model_dir: Path | None,
        model: str | None,
        **options,
    ) -> None:
        import os

        model = model or os.environ.get("SAFESHRINK_DEMO_MODEL", "teacher")
        data_dir = data_dir or Path(settings.SAFESHRINK["DATA_DIR"])
        if not (data_dir / "hatexplain" / "hatexplain_merged.csv").is_file():
            raise CommandError(
                f"No shared data at {data_dir} (expected hatexplain/hatexplain_merged.csv). "
                "Pass --data-dir or set SAFESHRINK_DATA_DIR."
            )
        users = self._users()
        officer, engineer = users["officer"], users["engineer"]
        if not RiskTaxonomy.objects.filter(name=DEFAULT_TAXONOMY["name"]).exists():
            taxonomy = taxonomy_publish(actor=officer, **DEFAULT_TAXONOMY)
            threshold_policy_publish(
                actor=officer,
                name=DEMO_POLICY,
                taxonomy=taxonomy,
                rules=DEFAULT_POLICY_RULES,
                description="Deltas are judged on the 95% paired-bootstrap interval bound.",
            )
        self._governance(users)
        if not Suite.objects.filter(name=DEMO_SUITE).exists():
            rows = [ExampleRow(**row) for row in demo_suite_rows(data_dir, routine=routine, adversarial=adversarial)]
            version = suite_version_import(
                actor=engineer,
                suite_name=DEMO_SUITE,
                rows=rows,
                unsafe_labels=UNSAFE_LABELS,
                safe_labels=SAFE_LABELS,
                source=f"HateXplain test (routine, n={routine}), XSTest (edge), AdvBench behaviours (adversarial, "
                f"n={adversarial}); seed 0; from {data_dir}",
            )
            version = suite_derive_perturbed(
                actor=engineer, suite_version_id=version.pk, kinds=list(KINDS), seed=0, limit=40
            )
            self.stdout.write(f"suite: {version} with {version.example_count} examples (incl. perturbed variants)")
        if model == "smollm2":
            from django.core.management import call_command

            call_command("load_chat_demo", data_dir=data_dir, stdout=self.stdout)
            return
        name = DEMO_MODEL if model == "tiny" and not model_dir else "minilm-hatexplain-teacher"
        if not ModelArtifact.objects.filter(parent__isnull=True, kind=ModelKind.CLASSIFIER).exists():
            path = model_dir or (self._build_tiny(data_dir) if model == "tiny" else self._build_teacher(data_dir))
            # Built here (tiny model, reference teacher): SafeShrink signs it (OpenSSF model signing).
            artifact = artifact_register(actor=engineer, name=name, path=str(path), sign=not model_dir)
            self.stdout.write(f"base model: {artifact.name} {artifact.digest}")
        self.stdout.write(self.style.SUCCESS("demo data ready"))

    def _users(self) -> dict[str, User]:
        users = {}
        with transaction.atomic():
            for username, role, password in DEMO_USERS:
                user = User.objects.filter(username=username).first()
                users[username] = user or user_create(
                    actor=None, username=username, role=role, password=password, is_superuser=role == "admin"
                )
        return users

    def _governance(self, users: dict[str, User]) -> None:
        for username, tier, level in DEMO_AUTHORITIES:
            if not AuthorityGrant.objects.filter(user=users[username], risk_tier=tier).exists():
                authority_grant(actor=users["admin"], user=users[username], risk_tier=tier, level=level)
        for mitigation in MITIGATIONS:
            MitigationTemplate.objects.get_or_create(code=mitigation["code"], defaults=mitigation)

    def _build_teacher(self, data_dir: Path) -> Path:
        from django.core.management import call_command

        self.stdout.write("building the reference teacher (MiniLM fine-tuned on HateXplain; minutes, once)…")
        return Path(call_command("build_teacher", data_dir=data_dir, stdout=self.stdout))

    def _build_tiny(self, data_dir: Path) -> Path:
        from compression.engine.tiny import build_tiny_classifier  # torch: only for this command

        out = Path(settings.SAFESHRINK["MODEL_CACHE"]) / DEMO_MODEL
        if (out / "config.json").is_file():
            return out
        started = time.perf_counter()
        self.stdout.write("building the tiny base model from HateXplain train (seconds)…")
        report = build_tiny_classifier(data_csv=data_dir / "hatexplain" / "hatexplain_merged.csv", out_dir=out)
        self.stdout.write(
            f"tiny model: val accuracy {report.val_accuracy:.3f} on HateXplain val, "
            f"{time.perf_counter() - started:.1f} s"
        )
        return out
