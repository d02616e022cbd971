"""Memory and CPU of the servers, read from /proc: each server is a process tree (granian's main process and
its workers, the moto process, the node peer), summed.

RSS is sampled every `interval` seconds in a background thread; the peak of the sum over each tree
is kept per scenario, and the largest single process (a worker) separately. A worker's RSS counts the pages it
still shares with the main process it forked from (the app loaded before the fork), so the soak also reads each
process's private memory (what it alone holds: what one more worker costs) and PSS (shared pages divided among
their sharers: the sum over a tree is the memory the server really takes). CPU time is
utime+stime of every process of the tree, read at the start and end of a scenario. Where a server's CPU
goes, by endpoint, comes from its own metrics (`request_cpu`).
"""

from __future__ import annotations

import os
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from devstack.processes import children_by_parent, process_tree

REQUEST_CPU = "sso_http_request_cpu_seconds"

T = TypeVar("T")
PAGE = os.sysconf("SC_PAGE_SIZE")
TICK = os.sysconf("SC_CLK_TCK")


def rss_bytes(pid: int) -> int:
    try:
        return int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * PAGE
    except (OSError, IndexError, ValueError):
        return 0


def private_and_pss_bytes(pid: int) -> tuple[int, int]:
    """(private, proportional) bytes of a process, from /proc/PID/smaps_rollup; (0, 0) when it is gone."""
    try:
        fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()[1:])
        kib = {name: int(value.split()[0]) for name, value in fields.items()}
    except (OSError, IndexError, ValueError):
        return 0, 0
    return (kib.get("Private_Clean", 0) + kib.get("Private_Dirty", 0)) * 1024, kib.get("Pss", 0) * 1024


def cpu_seconds(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / TICK  # utime, stime
    except (OSError, IndexError, ValueError):
        return 0.0


def machine_busy_seconds() -> float:
    """CPU seconds spent by everything on the machine so far (all cores, not idle or iowait)."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    return (sum(fields[:8]) - idle) / TICK


def argon2_verify_ms(seconds: float = 1.0) -> float:
    """What one argon2id verification at the IdP's cost takes on this machine now (one thread): the
    benchmark's yardstick, since a password login cannot be cheaper."""
    from idp_mock.passwords import HASHER

    encoded = HASHER.hash("calibration-password")
    count, began = 0, time.process_time()
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline or count < 3:
        HASHER.verify(encoded, "calibration-password")
        count += 1
    return (time.process_time() - began) * 1000 / count


class Monitor:
    def __init__(self, servers: dict[str, int], interval: float = 0.25):
        self.servers = dict(servers)  # name -> root pid
        self.interval = interval
        self._lock = threading.Lock()
        self._peak_total: dict[str, int] = {}
        self._peak_process: dict[str, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._pids: dict[str, list[int]] = {}
        self._refresh_pids()
        self._thread.start()

    def add(self, name: str, pid: int) -> None:
        with self._lock:
            self.servers[name] = pid
        self._refresh_pids()

    def _refresh_pids(self) -> None:
        children = children_by_parent()
        with self._lock:
            self._pids = {name: process_tree(pid, children) for name, pid in self.servers.items()}

    def _run(self) -> None:
        rounds = 0
        while not self._stop.wait(self.interval):
            rounds += 1
            if rounds % 8 == 0:  # workers restarted or forked meanwhile
                self._refresh_pids()
            self.sample()

    def sample(self) -> dict[str, tuple[int, int]]:
        """{server: (sum of RSS over its processes, largest single process RSS)}; also updates peaks."""
        with self._lock:
            pids = dict(self._pids)
        now = {}
        for name, members in pids.items():
            sizes = [rss_bytes(pid) for pid in members]
            now[name] = (sum(sizes), max(sizes, default=0))
        with self._lock:
            for name, (total, largest) in now.items():
                self._peak_total[name] = max(self._peak_total.get(name, 0), total)
                self._peak_process[name] = max(self._peak_process.get(name, 0), largest)
        return now

    def reset_peaks(self) -> None:
        with self._lock:
            self._peak_total.clear()
            self._peak_process.clear()
        self.sample()

    def peaks(self) -> tuple[dict[str, int], dict[str, int]]:
        self.sample()
        with self._lock:
            return dict(self._peak_total), dict(self._peak_process)

    def _each_process(self, read: Callable[[int], T]) -> dict[str, list[T]]:
        """`read(pid)` of every process of each server, its processes listed again first."""
        self._refresh_pids()
        with self._lock:
            pids = dict(self._pids)
        return {name: [read(pid) for pid in members] for name, members in pids.items()}

    def per_process_rss(self) -> dict[str, list[int]]:
        return self._each_process(rss_bytes)

    def per_process_private_and_pss(self) -> dict[str, list[tuple[int, int]]]:
        return self._each_process(private_and_pss_bytes)

    def cpu(self) -> dict[str, float]:
        return {name: sum(seconds) for name, seconds in self._each_process(cpu_seconds).items()}

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(2)


def request_cpu(base_url: str, timeout: float = 5.0) -> dict[str, float]:
    """CPU seconds of a server's request threads so far, by "METHOD endpoint", from its `/metrics`
    (`sso_http_request_cpu_seconds_total`, summed over its workers); {} when it has none to give (an edge in
    front of replicas does not pass /metrics on)."""
    from prometheus_client.parser import text_string_to_metric_families

    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(f"{base_url}/metrics", timeout=timeout) as answer:
            text = answer.read().decode()
    except (urllib.error.URLError, OSError, ValueError):
        return {}
    found: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        if family.name == REQUEST_CPU:
            for sample in family.samples:
                if sample.name.endswith("_total"):
                    key = f"{sample.labels['method']} {sample.labels['endpoint']}"
                    found[key] = found.get(key, 0.0) + sample.value
    return found


def request_cpu_spent(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    """What each endpoint spent between two `request_cpu` readings (endpoints that spent nothing left out)."""
    spent = {key: value - before.get(key, 0.0) for key, value in after.items()}
    return {key: value for key, value in spent.items() if value > 0}
