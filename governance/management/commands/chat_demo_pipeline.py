"""The chat-model demo pipeline (`SAFESHRINK_DEMO_MODEL=smollm2 make run`), through the REST API as an engineer
would: an experiment on SmolLM2 with its safety system prompt, dynamic int8 and 30% magnitude pruning, one
release of each on the chat suite under the default chat policy, evaluated and gated. Not a command itself:
`demo_pipeline --model smollm2` runs it."""

import contextlib
import time

from django.core.management.base import CommandError

from governance.demo import DEMO_USERS, demo_outcome
from governance.demo_chat import CHAT_DEMO_GENERATION
from governance.management.commands.load_chat_demo import CHAT_POLICY, CHAT_SUITE
from safeshrink_client import ApiError, Client

# The compressions the demo gates: (method, parameters, what it is).
CHAT_DEMO_RUNS = (
    ("dynamic_int8", {}, "dynamic int8 (lm_head kept in fp32)"),
    ("magnitude_prune", {"sparsity": 0.3}, "30% magnitude pruning"),
)


def run_chat_demo(command, *, url: str, timeout: float) -> None:
    password = dict((u, p) for u, _, p in DEMO_USERS)["engineer"]
    started = time.perf_counter()
    out = command.stdout
    try:
        api = Client(url, username="engineer", password=password)
        base = next(a for a in api.get("/api/artifacts/?kind=causal-lm")["results"] if a["parent"] is None)
        suite_version = next(s for s in api.get("/api/suites/")["results"] if s["name"] == CHAT_SUITE)["versions"][0]
        policy = next(p for p in api.get("/api/policies/")["results"] if p["name"] == CHAT_POLICY)
        experiment = api.create_experiment(
            f"Demo: compress {base['name']}",
            base["id"],
            description="Quantization and pruning of SmolLM2-135M-Instruct served with a safety system prompt.",
            generation=CHAT_DEMO_GENERATION,
        )
        releases = []
        for method, parameters, title in CHAT_DEMO_RUNS:
            run = api.request_run(experiment["id"], method, parameters, seed=0)
            out.write(f"compression run {run['id']} queued: {title}")
            run = api.wait(
                f"/api/runs/{run['id']}/",
                done=lambda r: r["status"] in ("succeeded", "failed", "cancelled"),
                timeout=timeout,
                on_progress=command._progress("compression"),
            )
            if run["status"] != "succeeded":
                raise CommandError(f"compression run {run['id']} {run['status']}: {run['failure_reason']}")
            release = api.create_release(run["id"], suite_version["id"], policy["id"])
            api.evaluate_release(release)
            releases.append((title, release))
        done = []
        for title, release in releases:  # the worker evaluates them in turn; the baseline's runs are shared
            release = api.wait(
                f"/api/releases/{release['id']}/",
                done=lambda r: r["status"] != "evaluating",
                timeout=timeout,
                on_progress=command._progress(f"evaluation ({title})"),
            )
            done.append((title, release))
    except ApiError as exc:
        raise CommandError(f"API refused: {exc}") from exc
    except (TimeoutError, OSError) as exc:
        raise CommandError(f"the chat demo did not finish: {exc} (see var/log/worker.log)") from exc
    out.write("")
    out.write(
        command.style.SUCCESS(
            f"chat demo pipeline done in {time.perf_counter() - started:.1f} s: "
            + ", ".join(f"release {r['id']} ({title})" for title, r in done)
        )
    )
    for title, release in done:
        out.write(f"-- {title}")
        escalations = []
        with contextlib.suppress(ApiError):  # the outcome is still worth printing without them
            escalations = api.get(f"/api/escalations/?release={release['id']}")["results"]
        for line in demo_outcome(release, url=url, escalations=escalations):
            out.write(line)
    failed = [r for _, r in done if r["status"] == "draft"]
    if failed:
        raise CommandError(f"release {failed[0]['id']} evaluation failed: {failed[0]['failure_reason']}")
