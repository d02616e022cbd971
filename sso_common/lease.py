"""One worker at a time, across worker processes and replicas: a lease in the StateStore, and the loop of a
background job that runs only while its process holds the lease.

Every worker process of every replica runs a `SingleWorker` thread for a job (the IdP's SCIM pusher, the
broker's revoker). Each tries to take the job's lease (`StateStore.add`: of concurrent takers, one wins); the
holder renews it from a heartbeat thread of its own, a third of the lease at a time, whatever its work is
doing (a long request to a slow peer does not lose the lease), and does the work; the others only look again
now and then. When the holder dies or stalls longer than the lease, another takes over. The job's work must
be idempotent: in the rare case that a stalled holder wakes up after its lease was taken over, it sees that at
its next renewal and stops, but one unit of work may have been done twice meanwhile.
"""

from __future__ import annotations

import logging
import os
import secrets
import threading
import time
from collections.abc import Callable

from sso_common.store import StateStore
from sso_common.store.errors import StoreUnavailable

log = logging.getLogger(__name__)

LEASE_KIND = "lease"


class Lease:
    """A named lease of `ttl` seconds in the StateStore, held by one owner at a time."""

    def __init__(self, store: StateStore, name: str, ttl: float = 10.0, clock: Callable[[], float] = time.monotonic):
        self.store, self.name, self.ttl, self._clock = store, name, ttl, clock
        self._owner, self._pid = "", 0
        self._renewed: float | None = None
        self.tenure = 0  # counts the times this owner took the lease (a new tenure: start afresh)

    @property
    def owner(self) -> str:
        """Who holds it when we do: made in the process that uses the lease. The apps build their leases
        before the server forks its workers, and a name made then would be every worker's."""
        if self._pid != os.getpid():
            self._owner, self._pid = f"{os.getpid()}-{secrets.token_hex(8)}", os.getpid()
            self._renewed = None
        return self._owner

    def hold(self) -> bool:
        """Take the lease if it is free, renew it if it is ours; whether we hold it now."""
        current = self.store.get(LEASE_KIND, self.name)
        if current is not None and current.get("owner") == self.owner:
            self.store.put(LEASE_KIND, self.name, {"owner": self.owner}, self.ttl)
        elif current is None and self.store.add(LEASE_KIND, self.name, {"owner": self.owner}, self.ttl):
            self.tenure += 1
            log.info("lease %s taken by process %s", self.name, os.getpid())
        else:
            self._renewed = None
            return False
        self._renewed = self._clock()
        return True

    def keep(self) -> bool:
        """For a holder between units of work: renew when a third of the lease has gone by; whether we still
        hold it (stop working when not)."""
        if self._renewed is None:
            return False
        if self._clock() - self._renewed < self.ttl / 3:
            return True
        return self.hold()

    def release(self) -> None:
        current = self.store.get(LEASE_KIND, self.name)
        if current is not None and current.get("owner") == self.owner:
            self.store.delete(LEASE_KIND, self.name)
        self._renewed = None


class SingleWorker:
    """Runs `step(lease)` in a daemon thread while this process holds the lease, which a heartbeat thread
    renews meanwhile. `step` does what is due (it calls `lease.keep()` between units of work and returns early
    when it is False) and returns how many seconds to wait before the next step; a failing step is logged and
    tried again after `retry` seconds."""

    def __init__(
        self,
        name: str,
        lease: Lease,
        step: Callable[[Lease], float],
        *,
        retry: float = 2.0,
    ):
        self.name, self.lease, self.step, self.retry = name, lease, step, retry
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._heartbeat: threading.Thread | None = None
        self._last_failure: str | None = None

    def start(self) -> SingleWorker:
        if self._thread is None or not self._thread.is_alive():
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
            self._thread.start()
            self._heartbeat = threading.Thread(target=self._beat, name=f"{self.name}-lease", daemon=True)
            self._heartbeat.start()
        return self

    def _beat(self) -> None:
        """While this process holds the lease, renew it every third of its length (the step runs meanwhile)."""
        while not self._stop.wait(self.lease.ttl / 3):
            if self.lease._renewed is not None:
                try:
                    self.lease.hold()
                except Exception as failure:
                    self._failed("the lease could not be renewed", failure)

    def wake(self) -> None:
        """Run the next step now (new work arrived in this process)."""
        self._wake.set()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self._wake.set()
        for thread in (self._thread, self._heartbeat):
            if thread is not None:
                thread.join(timeout)
        self.lease.release()

    def _failed(self, what: str, failure: Exception) -> None:
        """A failure with its traceback once; on one line when it repeats (every `retry` seconds while a peer is
        down, a job logged a traceback each time) or when it is a store outage (expected, named by the store)."""
        summary = f"{type(failure).__name__}: {failure}"
        if isinstance(failure, StoreUnavailable) or summary == self._last_failure:
            log.warning("%s: %s (%s)", self.name, what, summary)
        else:
            log.exception("%s: %s", self.name, what)
        self._last_failure = summary

    def _run(self) -> None:
        while not self._stop.is_set():
            delay = self.lease.ttl / 3
            try:
                if self.lease.hold():
                    delay = min(self.step(self.lease), self.lease.ttl / 3)
                self._last_failure = None
            except Exception as failure:
                self._failed(f"a step failed; trying again in {self.retry} s", failure)
                delay = self.retry
            self._wake.wait(max(0.0, delay))
            self._wake.clear()
