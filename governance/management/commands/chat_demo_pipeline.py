"""The chat-model demo pipeline (`SAFESHRINK_DEMO_MODEL=smollm2 make run`), through the REST API as an engineer
would: an experiment on SmolLM2 with its safety system prompt, dynamic int8 and 30% magnitude pruning, one
release of each on the chat suite under the default chat policy, evaluated and gated. Not a command itself:
`demo_pipeline --model smollm2` runs it."""

import contextlib
import time

from django.core.management.base import CommandError

from governance.demo import DEMO_USERS, demo_outcome
from governance.demo_chat import (
    CHAT_DEMO_GENERATION,
    DISTILL_DEMO_GENERATION,
    DISTILL_DEMO_PARAMETERS,
    DISTILL_HELDBACK_SUITE,
    DISTILL_STRESS_SUITE,
    SAFETY_TEACHER_NAME,
)
from governance.management.commands.load_chat_demo import CHAT_POLICY, CHAT_SUITE
from safeshrink_client import ApiError, Client

# The compressions the demo gates: (method, parameters, what it is).
CHAT_DEMO_RUNS = (
    ("dynamic_int8", {}, "dynamic int8 (lm_head kept in fp32)"),
    ("magnitude_prune", {"sparsity": 0.3}, "30% magnitude pruning"),
)


# The distillation run's stated budget on a busy 2-core machine is about 20 minutes (BENCHMARKS.md "distill"):
# wait for it longer than for the other jobs, within the worker's soft time limit.
DISTILL_WAIT_SECONDS = 3000


def _distilled_release(command, api: Client, suite_version: dict, policy: dict, timeout: float):
    """The behavioural distillation demo: a 15-layer student of the context-distilled safety teacher, 2 rounds
    against the held-back split, released on the same evaluation suite. None when load_chat_demo built no
    safety teacher (`--no-distill`)."""
    teacher = next(
        (
            a
            for a in api.get("/api/artifacts/?kind=causal-lm&page_size=100")["results"]
            if a["name"] == SAFETY_TEACHER_NAME
        ),
        None,
    )
    if teacher is None:
        command.stdout.write("no safety teacher (load_chat_demo --no-distill): the distillation demo is skipped")
        return None
    suites = {s["name"]: s for s in api.get("/api/suites/?page_size=100")["results"]}
    experiment = api.create_experiment(
        f"Demo: distil a smaller student of {teacher['name']}",
        teacher["id"],
        description="Behavioural safety distillation: half the layers, rejection-sampled teacher answers, the "
        "student's failures on a held-back adversarial split fed back for a second round.",
        generation=DISTILL_DEMO_GENERATION,
    )
    parameters = {
        **DISTILL_DEMO_PARAMETERS,
        "judge": suites[DISTILL_STRESS_SUITE]["versions"][0]["judge"],  # the chat suites' refusal judge
        "stress_set": suites[DISTILL_STRESS_SUITE]["versions"][0]["id"],
        "heldback_split": suites[DISTILL_HELDBACK_SUITE]["versions"][0]["id"],
    }
    title = f"behavioural distillation ({parameters['layers_kept']} layers, {parameters['rounds']} rounds)"
    run = api.request_run(experiment["id"], "behavioural_distill", parameters, seed=0)
    command.stdout.write(f"compression run {run['id']} queued: {title}")
    run = api.wait(
        f"/api/runs/{run['id']}/",
        done=lambda r: r["status"] in ("succeeded", "failed", "cancelled"),
        timeout=max(timeout, DISTILL_WAIT_SECONDS),
        on_progress=command._progress("distillation"),
    )
    if run["status"] != "succeeded":
        raise CommandError(f"compression run {run['id']} {run['status']}: {run['failure_reason']}")
    for record in run["rounds"]:
        heldout = record["heldout"]
        command.stdout.write(
            f"  round {record['round']}: {record['training_examples']} accepted answers trained "
            f"({record['rejected']} rejected, {record['dropped_prompts']} prompts dropped); held-back split: "
            f"harmful compliance {_percent(heldout['harmful_compliance_rate'])}, over-refusal "
            f"{_percent(heldout['over_refusal_rate'])}, degenerate {_percent(heldout['degenerate_rate'])}"
        )
    release = api.create_release(run["id"], suite_version["id"], policy["id"])
    api.evaluate_release(release)
    return title, release


def _percent(value) -> str:
    return "n/a" if value is None else f"{100 * value:.0f}%"


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
        distilled = _distilled_release(command, api, suite_version, policy, timeout)
        if distilled is not None:
            releases.append(distilled)
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
