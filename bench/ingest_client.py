"""The client side of bench/ingest.py: one process of THREADS threads logging to one run with the real MLflow client
(`MlflowClient`, mlflow-skinny from requirements.txt), the same script against either server.

python -m bench.ingest_client '{"mode": "batch"|"single", "run_id": ..., "threads": 4, "process": 0, "per_call": 1000}'
with MLFLOW_TRACKING_URI (and MLFLOW_TRACKING_TOKEN for SafeShrink) in the environment. Each thread makes two
warm-up calls, then the process prints READY and waits for a line `GO <seconds>` on stdin; every thread then
calls back to back until the seconds have passed and the process prints one JSON line: each call's start and
end (time.monotonic, comparable across processes on this machine), failed calls, and its CPU seconds from GO to the end.
"""

import json
import sys
import threading
import time


def main() -> None:
    config = json.loads(sys.argv[1])
    from mlflow.entities import Metric
    from mlflow.tracking import MlflowClient

    client = MlflowClient()
    run_id, threads, per_call = config["run_id"], config["threads"], config.get("per_call", 1000)
    keys = [f"train/metric_{i}" for i in range(10)]
    calls: list[list[tuple[float, float]]] = [[] for _ in range(threads)]
    failures = [0] * threads
    errors: list[str] = []
    go = threading.Event()
    stop_at = [0.0]

    def worker(index: int) -> None:
        # Steps unique to this process and thread, so no two calls ever log the same (key, step, time, value).
        step = (config["process"] * threads + index) * 10**9

        def call() -> None:
            nonlocal step
            if config["mode"] == "batch":
                now = int(time.time() * 1000)
                metrics = [Metric(keys[j % 10], step * 0.5 + j, now, step + j // 10) for j in range(per_call)]
                client.log_batch(run_id, metrics=metrics, synchronous=True)
                step += per_call // 10
            else:
                client.log_metric(run_id, keys[step % 10], step * 0.25, step=step, synchronous=True)
                step += 1

        for _ in range(2):
            call()
        ready.wait()
        go.wait()
        while time.monotonic() < stop_at[0]:
            began = time.monotonic()
            try:
                call()
            except Exception as exc:  # noqa: BLE001 - counted and reported, the load goes on
                failures[index] += 1
                if len(errors) < 3:
                    errors.append(repr(exc)[:300])
                continue
            calls[index].append((began, time.monotonic()))

    ready = threading.Barrier(threads + 1)
    pool = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(threads)]
    for thread in pool:
        thread.start()
    ready.wait()
    print("READY", flush=True)
    command = sys.stdin.readline().split()
    assert command and command[0] == "GO", command
    cpu_at_go = time.process_time()
    stop_at[0] = time.monotonic() + float(command[1])
    go.set()
    for thread in pool:
        thread.join()
    print(
        json.dumps(
            {
                "calls": [c for per_thread in calls for c in per_thread],
                "failures": sum(failures),
                "errors": errors,
                "cpu_s": time.process_time() - cpu_at_go,
            }
        ),
        flush=True,
    )


if __name__ == "__main__":
    main()
