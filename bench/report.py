"""Render bench/results.json as BENCHMARKS.md (every figure comes from the JSON, none is typed in)."""

from pathlib import Path

INTRO = """# Benchmarks

Every figure below was measured by a script in `bench/` and is copied here from `bench/results.json`
by `bench/report.py`. Re-run with `make bench` (or `python -m bench <name>`); the machine each
figure came from is listed with it.
"""

DESCRIPTIONS = {
    "pipeline": (
        "Demo pipeline of `make run`",
        "`bin/run-demo` (what `make run` starts, after the virtualenv exists) in a fresh state folder on the "
        "embedded default (SQLite, kombu filesystem broker, one worker): migrate, load demo data (the "
        "MiniLM reference teacher, built once and cached in var/models), start web + worker + beat, then "
        "through the REST API: experiment, dynamic int8 compression run, release, baseline and candidate "
        "evaluation, comparison, until the release is gated. The gate itself depends on the CPU's int8 "
        "kernels (see the instruction sets below), so it is recorded, not targeted.",
    ),
    "ledger": (
        "Audit ledger on PostgreSQL (monthly partitions, split roles)",
        "Events in the monthly-partitioned table (migration 0004). (a) Where an append's time goes "
        "(bench/ledger_breakdown.py), one process at a time: the writer's steps (prepare, Ed25519 signing, "
        "BEGIN + prepared INSERT, COMMIT with its WAL flush) and the CPU of the writer process and of its "
        "PostgreSQL backend per append; the sealer's steps per event (fetch, check the writer signature, chain "
        "hash, one UPDATE per batch) and its CPU and its backend's; a bare psycopg BEGIN/INSERT/COMMIT as the "
        "floor. Their sum is the CPU one append costs; the cores divided by it bound appends/s whatever the "
        "concurrency. (b) 8 writer processes as the application's role (insert only), each append in its own "
        "transaction through `ledger_append`, and one `ledger_sealer` process as the sealer's role "
        "(`setup_db_roles --sealer-role`); 5 trials, median shown, counted until the last event is sealed; one "
        "more trial with the writers' `synchronous_commit = off` for comparison only (not the default). (c) "
        "`ledger_verify` over 1,000,000 events in four monthly partitions, loaded with a valid chain. Targets: "
        ">= 3,000 appends/s (end to end, synchronous commit); verification <= 5 s.",
    ),
    "exports": (
        "Signed export of a release with 5 candidates",
        "`export_build` (bundle, WeasyPrint dossier with charts, PAdES signature, DSSE bundle) for the "
        "last of 5 releases of one experiment, 3 repetitions. Target: <= 5 s.",
    ),
    "stability": (
        "Decision stability of the reference teacher and its dynamic int8",
        "Not a speed target: what issue 12 measures, on this CPU. The MiniLM reference teacher and its dynamic "
        "int8 classify the HateXplain test posts through `predict` (batch 32, suite order, right padding, 64 "
        "tokens, 2 threads) with the stability pass (batches recomposed at random, seeds 0 and 1); int8 also at "
        "batch 1. Counts of decisions that moved with the batches, and of fp32 -> int8 flips and the stable "
        "ones among them.",
    ),
    "evaluation": (
        "Evaluation engine",
        "(a) `predict` (the evaluation task's path) against a bare batched torch loop, same MiniLM-sized "
        "model, batch and texts, interleaved; target ratio >= 0.95. (b) paired bootstrap, 10,000 "
        "resamples over 100,000 examples for 20+ metrics; target <= 5 s. (c) the stability pass: `predict` "
        "on 1,000 texts with the MiniLM classifier in dynamic int8, with and without the second pass in "
        "recomposed batches, interleaved, medians; target with <= 2.1 x without.",
    ),
    "scale": (
        "Scale: a 100,000-example evaluation, a 1,000,000-example comparison, predictions' storage",
        "On PostgreSQL. (a) Suite import and a chunked evaluation of 100,000 examples (tiny model, chunks run "
        "in-process; predictions written as Parquet files). (b) A 1,000,000-example suite version imported through "
        "`suite_version_import`; two evaluations of it with made-up predictions (seeded; about 3 % of decisions "
        "flipped, 2 % unstable) recorded through the workers' chunk path (`evaluation_chunk_record`: one Parquet file "
        "per chunk of 2,000, merged into the run's file when the last is recorded); then `comparison_compute` in a "
        "fresh interpreter (paired bootstrap, 2,000 resamples; McNemar per group; flips by COPY; the paired runtime "
        "measurement, 256 examples through both models, left out): its wall time and the high-water mark of its "
        "resident memory (VmHWM, whole process). (c) Database bytes per million predictions: before, Prediction rows "
        "(100,000 inserted as chunks stored them, pg_total_relation_size with indexes, scaled); now, no Prediction "
        "row, one evaluation row (its chunk files' digests); the Parquet bytes beside it. Targets: comparison <= 30 s "
        "and peak <= 1.5 GiB.",
    ),
    "compression": (
        "Compression methods on the reference teacher",
        "Examples/s (batch 32 × 64 tokens, 2 threads, 500 HateXplain test texts, interleaved "
        "repetitions, median), size on disk, agreement with the teacher's decisions. Two 2-layer "
        "students: the teacher's full feed-forward width, and 1,024 of its 1,536 neurons (kept by "
        "magnitude). `gemm_ceiling` times the teacher's three Linear shapes alone, fp32 against the "
        "dynamic-int8 kernels, and lists the CPU's int8 dot-product extensions: it bounds what int8 "
        "can gain on this machine. `int8_amdahl` times every Linear of the fp32 teacher inside the whole "
        "forward pass (hooks) and combines that share with the GEMM ratios (Amdahl): the end-to-end speed-up "
        "int8 could reach here. Targets: int8 >= 0.9 x that ceiling (a fixed 3x could only be met on some CPUs; "
        "the ceiling and both inputs are reported), structured 50% >= 1.6x, 2-layer student >= 3x (judged on "
        "the 1,024-neuron student).",
    ),
    "artifacts": (
        "Verifying a stored artifact before a job uses it",
        "`verify_manifest` on the packaged MiniLM (~90 MB, the reference teacher's size) in a temporary "
        "store: a full re-hash (empty cache, what each job would pay) against the cached check (one lstat "
        "per file while size, mtime, ctime, inode and device are unchanged), page cache warm.",
    ),
    "suite_import": (
        "Importing a ~50 MiB suite file (PostgreSQL)",
        "A seeded CSV just under the 50 MiB upload limit. (a) `manage.py import_suite` end to end "
        "(read, parse and check every row, content digest, COPY of the examples, ledger event, commit), "
        "3 trials into new suites, median, with the parse and digest phases timed apart; (b) an upload "
        "through the API's services: the request's part (stream the file to the upload folder) and the "
        "worker's part (the import), once. Target: >= 20,000 rows/s for (a).",
    ),
    "approvals": (
        "Concurrent decisions on one release (PostgreSQL)",
        "200 approve/halt attempts with the same expected version, from 90 threads (one PostgreSQL "
        "connection each; the server allows 100) released by a barrier, through `release_decide`. "
        "Exactly one may change the release; every other is refused and leaves a ledger refusal.",
    ),
    "uploads": (
        "Model upload over HTTP under gunicorn",
        "`safeshrink_client.Client.upload_folder` (the `safeshrink upload` command's path) sends a 500 MB model "
        "folder (config.json, tokenizer files, one model.safetensors of random bytes) to gunicorn (2 sync "
        "workers) on loopback: hash the folder, open an upload, PUT 32 MiB chunks with their sha256, finish "
        "(every file re-hashed against the manifest, moved into the content-addressed store, recorded). Each of "
        "3 repetitions changes config.json, so each is a new artifact; median shown, with the client's "
        "hashing, the chunks and the finish timed apart and both sides' CPU seconds. Peak memory is the "
        "highest VmHWM of any gunicorn process. Client and server share the machine. Targets: >= 200 MB/s "
        "end to end, peak web-process memory <= 200 MiB.",
    ),
    "ingest": (
        "Metric ingestion through MLflow's protocol: SafeShrink against a real MLflow server",
        "The same client script (the real `MlflowClient`, mlflow-skinny from requirements.txt) against SafeShrink's "
        "/mlflow (gunicorn, sync workers) and against `mlflow server` (full mlflow of the same release, in "
        ".bench-venv/mlflow, its uvicorn front end), 2 worker processes each, each on its own fresh PostgreSQL "
        "database, interleaved rounds (SafeShrink then MLflow), medians shown. (a) `log_batch` of 1,000 metrics "
        "per call from 2 client processes back to back: metrics/s. (b) single `log_metric` calls from 16 concurrent "
        "clients (4 processes x 4 threads): requests/s and client-side p50/p99. The clients run on the same machine "
        "and take CPU from the server (their CPU seconds are listed beside the servers'). Targets: log_batch >= 5x "
        "MLflow's metrics/s, log_metric >= 2x MLflow's requests/s with p99 <= 50 ms.",
    ),
    "llm": (
        "Chat models: judges and generation throughput",
        "(a) The refusal judge: the packaged MiniLM fine-tuned on the human-labelled XSTest v2 answers of four chat "
        "models, tested on the fifth (held out), beside XSTest's string match on the same rows (refusal = full or "
        "partial refusal); target held-out accuracy >= 0.85. The degeneration detector's false positives on the "
        "2,250 human-written answers and its verdicts on SmolLM2 answers (system-prompted, 30% and 50% magnitude "
        "pruning) labelled by reading them. (b) Generation throughput: SmolLM2-135M-Instruct (fp32, dequantized "
        "from Q4_1), its dynamic int8 (lm_head in fp32) and 30% magnitude pruning answer the same 16 held-out "
        "AdvBench prompts with the demo's safety system prompt through the evaluation's generate path (greedy, "
        "32 new tokens, 1 thread), batch 1 and 8, models interleaved, medians of 3 rounds; speed-ups are "
        "candidate / fp32 in the same run. (c) `generation.heldout_behaviour`: the reference teacher with and "
        "without its safety system prompt and both compressed copies answer the demo's 56 held-out chat-suite "
        "prompts once (batch 8), judged by the demo's refusal judge and the degeneration detector: "
        "harmful-compliance, over-refusal and degenerate rates (issue 14 item 2). Not a target: what this CPU gives.",
    ),
    "distill": (
        "Behavioural safety distillation of SmolLM2",
        "(a) `safety_teacher`: SmolLM2-135M-Instruct with the demo's safety system prompt distilled into its weights "
        "(context distillation on the train split's stress prompts: the copy reads each prompt without the system "
        "prompt and learns the prompted model's token distributions on its own judge-accepted answers), cached by "
        "the digest of its inputs; held-out behaviour of the base without and with the system prompt and of the "
        "distilled teacher without it. (b) `student`: `behavioural_distill` with the demo's parameters (15 of 30 "
        "layers, 2 rounds, rejection sampling with the demo's refusal judge, failures on the held-back split fed "
        "back), 1 torch thread: seconds per training step and per round, peak RSS of the process, size and "
        "parameters. (c) Teacher and student answer the same 16 held-out AdvBench prompts (no system prompt, greedy, "
        "32 new tokens) at batch 1 and 8, interleaved, medians of 3 rounds: speed-up = student / teacher tokens per "
        "second in the same run (target >= 1.8x; the student keeps SmolLM2's tied 49,152 x 576 embedding / "
        "lm_head, so at batch 8, where the matrix products bound the time, the speed-up cannot exceed "
        "teacher_parameter_count / parameter_count, both listed). (d) `heldout_behaviour`: both on the demo's 56 "
        "held-out chat-suite prompts, judged: harmful compliance, over-refusal, degenerate rates (what this CPU "
        "gives).",
    ),
    "api": (
        "API list endpoints under gunicorn (PostgreSQL)",
        "gunicorn (sync workers, 2 per core + 1) on loopback, 50 releases with 9-rule gates and their runs, "
        "artifacts and escalations; per endpoint 100 requests from one client, then 16 concurrent "
        "clients (threads in the benchmark process, on the same machine; gunicorn's sync workers close the "
        "connection after each response) for 8 s after 2 s of "
        "warm-up; page size 50. Release and run list rows are summaries; the release detail (full gate and "
        "decisions) is measured for comparison. The clients share the CPU with the server.",
    ),
    "web": (
        "Web pages: server time and page weight",
        "Django's test client in the benchmark process (no network, no gunicorn), on a database of its own seeded "
        "with 100 releases: two through the real pipeline with the tiny model, one whose suite has 12,000 examples "
        "and whose two stored evaluations disagree on 10,000 of them (comparison, flip set, gate and escalation by "
        "`release_complete_evaluation`), 97 clones in every state. Per page: 3 warm-up requests, then "
        "30 timed (median, p95), then one inside CaptureQueriesContext: queries, their database time, the "
        "slowest, and statements repeated with other literals (an N+1); HTML bytes (raw, gzipped) and the inline "
        "SVG's bytes; `median_cpu_ms` is the benchmark process's CPU time (steadier than wall time when other "
        "processes share the machine: the load average is listed). Pages that answer 404 (not built yet) are "
        "listed as skipped. Once on PostgreSQL (judged) and once on SQLite. Target: the heaviest page's median "
        "<= 200 ms.",
    ),
    "cuda": (
        "The engines on a GPU (tiny models)",
        "Not a speed benchmark: does the code run on CUDA, and does it decide as on the CPU? `bench/cuda_check.py` "
        "(run by hand on the lent GPU machine: torch and transformers of that machine, no Django) builds a tiny "
        "classifier and a tiny chat model, compresses them with every method on device `cuda` (dynamic int8 is "
        "CPU-only and is refused there, as designed), predicts and generates on the GPU and on that machine's CPU "
        "(decisions equal, largest probability difference, share of identical answers, perplexity on both), runs "
        "behavioural_distill twice with one seed (same student digest?) and once on the CPU, and the safety "
        "teacher with its cache. `cuda_peak_mib` 0.0 means the method ran on the CPU copy (fp16, bf16, magnitude "
        "pruning do not move the model). The CPU line below is the GPU machine's host CPU.",
    ),
}


def write_report(results: dict, path: Path) -> None:
    lines = [INTRO, "## Targets at a glance", "", "| benchmark | target | met | measured |", "|---|---|---|---|"]
    for name, entry in results.items():
        for target, outcome in (entry["figures"].get("targets") or {}).items():
            measured = outcome.get("value", outcome.get("measured_speedup", ""))
            if "target_speedup" in outcome and "measured_speedup" in outcome:
                measured = f"{measured} (target {outcome['target_speedup']})"
            lines.append(f"| {name} | {target} | {'yes' if outcome.get('met') else '**no**'} | {measured} |")
    lines.append("")
    for name, entry in results.items():
        title, description = DESCRIPTIONS.get(name, (name, ""))
        m = entry["machine"]
        lines += [
            f"## {title}",
            "",
            description,
            "",
            f"Command: `{entry['command']}` · measured {entry['measured_at']} on {m['cpu']} "
            f"({m['cores']} cores, Python {m['python']}, instruction sets: "
            f"{', '.join(m['isa']) if m.get('isa') else 'not recorded'})",
            "",
            "| figure | value |",
            "|---|---|",
        ]
        lines += [f"| {key} | {value} |" for key, value in _flatten(entry["figures"])]
        lines.append("")
    path.write_text("\n".join(lines))


def _flatten(figures: dict, prefix: str = ""):
    """Dotted keys for nested figures, so every number gets its own table row."""
    for key, value in figures.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            yield from _flatten(value, f"{name}.")
        elif isinstance(value, list) and len(value) > 12:
            yield name, f"{len(value)} values (see bench/results.json)"
        else:
            yield name, value
