"""One load-generating process: `python -m bench.load` reads a JSON spec on stdin, prints JSON results.

Spec (one JSON line): {"flow": name in bench.flows.FLOWS, "params": {...}, "items": [...], "threads": N,
"duration": seconds}. Each thread builds its own flow object and runs its untimed `setup()`; then the
process prints "ready" and waits for a "go" line, so that every load process of a scenario starts at
once. Threads take items from a shared queue until it is empty or `duration` has passed since "go"
(items left then are reported as not done).
"""

from __future__ import annotations

import json
import queue
import sys
import threading
import time
import traceback

from bench.flows import FLOWS


def run(spec: dict, wait_for_go=lambda: None) -> dict:
    flow_class = FLOWS[spec["flow"]]
    work: queue.SimpleQueue = queue.SimpleQueue()
    for item in spec["items"]:
        work.put(item)
    threads = int(spec["threads"])
    go = threading.Event()
    deadline = float("inf")
    ready = threading.Barrier(threads + 1)
    results: list[list] = [[] for _ in range(threads)]
    errors: list[str] = []
    setup_errors: list[str] = []

    def worker(index: int) -> None:
        flow = None
        try:
            params = dict(spec["params"])
            if "usernames" in params:  # one person per client thread, across all load processes
                params["usernames"] = (
                    params["usernames"][spec.get("first_slot", 0) + index :][:1] or params["usernames"][:1]
                )
            flow = flow_class(**params)
            flow.setup()
        except Exception as error:  # noqa: BLE001 - reported, the thread does no work
            setup_errors.append(f"{type(error).__name__}: {error}")
            flow = None
        try:
            ready.wait(timeout=120)
        except threading.BrokenBarrierError:
            return
        go.wait()
        if flow is None:
            return
        mine = results[index]
        while time.time() < deadline:
            try:
                item = work.get_nowait()
            except queue.Empty:
                return
            began = time.perf_counter()
            started = time.time()
            try:
                flow.op(item)
                mine.append((started, time.perf_counter() - began, True))
            except Exception as error:  # noqa: BLE001 - every failure is counted and a few are shown
                mine.append((started, time.perf_counter() - began, False))
                if len(errors) < 20:
                    errors.append(f"{type(error).__name__}: {error}"[:300])

    pool = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(threads)]
    for thread in pool:
        thread.start()
    ready.wait(timeout=120)
    wait_for_go()
    cpu_at_go = time.process_time()  # the client's CPU per operation leaves out start-up, imports and setup
    began = time.time()
    deadline = began + float(spec["duration"])
    go.set()
    for thread in pool:
        thread.join(max(0.0, deadline - time.time()) + 30)
    ended = time.time()
    ops = [op for mine in results for op in mine]
    not_done = 0
    while True:
        try:
            work.get_nowait()
            not_done += 1
        except queue.Empty:
            break
    return {
        "began": began,
        "ended": ended,
        "cpu_seconds": time.process_time() - cpu_at_go,
        "latencies": [round(duration, 6) for _, duration, ok in ops if ok],
        "finished": [round(start + duration, 4) for start, duration, ok in ops],
        "ok": sum(1 for op in ops if op[2]),
        "failed": sum(1 for op in ops if not op[2]),
        "not_done": not_done,
        "errors": errors,
        "setup_errors": setup_errors,
    }


def main() -> int:
    spec = json.loads(sys.stdin.readline())

    def wait_for_go() -> None:
        print("ready", flush=True)
        sys.stdin.readline()

    try:
        result = run(spec, wait_for_go)
    except Exception:  # noqa: BLE001
        result = {"crash": traceback.format_exc()}
    json.dump(result, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
