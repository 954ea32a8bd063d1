"""Drive the demo through the REST API, as an engineer would with the Python client."""

import contextlib
import time

from django.core.management.base import BaseCommand, CommandError

from governance.demo import DEMO_USERS, demo_outcome
from governance.management.commands.load_demo import DEMO_POLICY, DEMO_SUITE
from safeshrink_client import ApiError, Client


class Command(BaseCommand):
    help = (
        "Run the demo pipeline against a running server: register nothing new, create an experiment on the demo "
        "base model, request a dynamic int8 compression run, propose a release and evaluate it, then print the "
        "gate (green, amber or red: int8 kernels differ between CPUs) and what to do next. "
        "Needs `load_demo` and a worker."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("--url", default="http://127.0.0.1:8000", help="Base URL of the running server.")
        parser.add_argument("--timeout", type=float, default=900, help="Seconds to wait for each job.")
        parser.add_argument(
            "--model",
            choices=["teacher", "tiny", "smollm2"],
            default=None,
            help="smollm2: the chat-model demo (two compressions of SmolLM2, two releases); otherwise the "
            "classifier demo. Default: $SAFESHRINK_DEMO_MODEL.",
        )

    def handle(self, *args, url: str, timeout: float, model: str | None = None, **options) -> None:
        import os

        if (model or os.environ.get("SAFESHRINK_DEMO_MODEL")) == "smollm2":
            from governance.management.commands.chat_demo_pipeline import run_chat_demo

            return run_chat_demo(self, url=url, timeout=timeout)
        password = dict((u, p) for u, _, p in DEMO_USERS)["engineer"]
        started = time.perf_counter()
        try:
            api = Client(url, username="engineer", password=password)
            base = next(a for a in api.get("/api/artifacts/?kind=classifier")["results"] if a["parent"] is None)
            suite_version = next(s for s in api.get("/api/suites/")["results"] if s["name"] == DEMO_SUITE)["versions"][
                0
            ]
            policy = next(p for p in api.get("/api/policies/")["results"] if p["name"] == DEMO_POLICY)
            experiment = api.create_experiment(
                f"Demo: int8 {base['name']}",
                base["id"],
                ["hatespeech", "offensive"],
                description="Dynamic int8 quantization of the demo safety classifier.",
            )
            run = api.request_run(experiment["id"], "dynamic_int8", seed=0)
            self.stdout.write(f"compression run {run['id']} queued")
            run = api.wait(
                f"/api/runs/{run['id']}/",
                done=lambda r: r["status"] in ("succeeded", "failed", "cancelled"),
                timeout=timeout,
                on_progress=self._progress("compression"),
            )
            if run["status"] != "succeeded":
                raise CommandError(f"compression run {run['id']} {run['status']}: {run['failure_reason']}")
            t_compress = time.perf_counter() - started
            release = api.create_release(run["id"], suite_version["id"], policy["id"])
            api.evaluate_release(release)
            release = api.wait(
                f"/api/releases/{release['id']}/",
                done=lambda r: r["status"] != "evaluating",
                timeout=timeout,
                on_progress=self._progress("evaluation"),
            )
        except ApiError as exc:
            raise CommandError(f"API refused: {exc}") from exc
        except (TimeoutError, OSError) as exc:
            raise CommandError(f"the demo did not finish: {exc} (see var/log/worker.log)") from exc
        total = time.perf_counter() - started
        escalations = []
        with contextlib.suppress(ApiError):  # the outcome is still worth printing without them
            escalations = api.get(f"/api/escalations/?release={release['id']}")["results"]
        self.stdout.write("")
        self.stdout.write(
            self.style.SUCCESS(
                f"demo pipeline done in {total:.1f} s (compression {t_compress:.1f} s, evaluation and gate "
                f"{total - t_compress:.1f} s): release {release['id']}"
            )
        )
        for line in demo_outcome(release, url=url, escalations=escalations):
            self.stdout.write(line)
        if release["status"] == "draft":
            raise CommandError(f"release {release['id']} evaluation failed: {release['failure_reason']}")

    def _progress(self, what: str):
        last = {"text": ""}

        def show(obj: dict) -> None:
            progress = obj.get("progress") or {}
            text = f"{what}: {obj['status']} {progress.get('stage', '')} {progress.get('percent', '')}".rstrip()
            if text != last["text"]:
                self.stdout.write(f"  {text}")
                last["text"] = text

        return show
