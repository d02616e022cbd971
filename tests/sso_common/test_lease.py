"""One worker at a time through a lease in the state store (sso_common/lease.py): among many contenders one
holds it, it renews while it works, another takes over only once it has expired, and a stalled holder notices."""

from __future__ import annotations

import threading
import time

from sso_common.lease import Lease, SingleWorker
from sso_common.store.conformance import FakeClock, run_together
from sso_common.store.memory import MemoryStateStore
from sso_common.store.sqlite import SQLiteStateStore


def test_of_many_contenders_exactly_one_holds_the_lease(tmp_path):
    store = SQLiteStateStore(str(tmp_path / "state.db"))  # shared as worker processes share it
    leases = [Lease(SQLiteStateStore(str(tmp_path / "state.db")), "job", ttl=10) for _ in range(20)]
    held = run_together(20, lambda index: leases[index].hold())
    assert held.count(True) == 1
    holder = leases[held.index(True)]
    assert store.get("lease", "job") == {"owner": holder.owner}
    assert holder.hold() and holder.keep() and holder.tenure == 1
    assert not any(lease.hold() for lease in leases if lease is not holder)


def test_another_takes_over_only_when_the_lease_has_expired_and_the_old_holder_notices():
    state_clock = FakeClock()
    store = MemoryStateStore(clock=state_clock)
    monotonic = [0.0]
    first = Lease(store, "job", ttl=10, clock=lambda: monotonic[0])
    second = Lease(store, "job", ttl=10, clock=lambda: monotonic[0])
    assert first.hold() and not second.hold()
    state_clock.now += 6
    monotonic[0] += 6
    assert first.keep()  # more than a third of the lease gone: renewed
    state_clock.now += 9
    assert not second.hold()  # still renewed
    state_clock.now += 11  # the holder stalled past its lease
    assert second.hold() and second.tenure == 1
    monotonic[0] += 6
    assert not first.keep()  # at its next renewal it finds it lost the lease, and stops
    second.release()
    assert first.hold() and first.tenure == 2  # a new tenure: start afresh (e.g. sync everything again)


def test_a_single_worker_runs_its_step_only_while_holding_the_lease():
    store = MemoryStateStore()
    ran = {"a": 0, "b": 0}
    ran_event = threading.Event()

    def step(name):
        def run(lease):
            ran[name] += 1
            ran_event.set()
            return 0.01

        return run

    workers = [SingleWorker(name, Lease(store, "job", ttl=5.0), step(name)).start() for name in ("a", "b")]
    try:
        assert ran_event.wait(5)
        deadline = time.monotonic() + 5
        while max(ran.values()) < 20 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert max(ran.values()) >= 20 and min(ran.values()) == 0  # one of them does it all
    finally:
        for worker in workers:
            worker.stop()
    assert store.get("lease", "job") is None  # released at stop


def test_a_lease_made_before_a_fork_has_another_owner_in_each_child(tmp_path):
    """The apps build their leases before granian forks its workers: each worker must be a contender of its own."""
    import os

    store = SQLiteStateStore(str(tmp_path / "state.db"))
    lease = Lease(store, "job", ttl=10)
    assert lease.hold()  # the parent (a worker that forked first, say) holds it
    parent_owner = lease.owner
    read, write = os.pipe()
    child = os.fork()
    if child == 0:  # the worker
        os.close(read)
        held = lease.hold()  # the parent holds it: the child must not think it does
        os.write(write, f"{lease.owner != parent_owner} {held}".encode())
        os._exit(0)
    os.close(write)
    os.waitpid(child, 0)
    assert os.read(read, 100).decode() == "True False"
    assert lease.hold()  # still the parent's


def test_a_failing_step_logs_its_traceback_once_and_then_one_line_per_retry(caplog):
    """A peer down (AWS without credentials, a store restarting) logged a traceback every `retry` seconds."""
    from sso_common.store.errors import StoreUnavailable

    failures = iter([RuntimeError("no credentials")] * 3 + [StoreUnavailable("the state store (Redis)", "refused")] * 2)
    done = threading.Event()

    def step(lease):
        failure = next(failures, None)
        if failure is None:
            done.set()
            return 60.0
        raise failure

    worker = SingleWorker("retrying-job", Lease(MemoryStateStore(), "job", ttl=5.0), step, retry=0.01).start()
    try:
        assert done.wait(5)
    finally:
        worker.stop()
    # this worker's records only: other tests' workers may still be logging from their threads
    failed = [record for record in caplog.records if record.getMessage().startswith("retrying-job: ")]
    assert [bool(record.exc_info) for record in failed] == [True, False, False, False, False]
    assert "RuntimeError: no credentials" in failed[1].getMessage()
    assert "StoreUnavailable" in failed[3].getMessage()
