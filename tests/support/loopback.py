"""A scripted HTTP server on 127.0.0.1 for tests that play the other side of a call (an STS, a relying party, an
IdP, a portal): the handler class says what it answers; this starts it on a free port in a thread and stops it."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class LoopbackServer:
    """`handler` served on 127.0.0.1 (`port` 0: a free one), from `start()` until `close()`; a context manager."""

    def __init__(self, handler: type[BaseHTTPRequestHandler], port: int = 0, poll_interval: float = 0.5):
        self.server = ThreadingHTTPServer(("127.0.0.1", port), handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": poll_interval}, daemon=True
        )

    def start(self) -> LoopbackServer:
        self._thread.start()
        return self

    def close(self) -> None:
        if self._thread.is_alive():
            self.server.shutdown()
        self.server.server_close()

    def __enter__(self) -> LoopbackServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()


class Quiet(BaseHTTPRequestHandler):
    """A handler that does not print a line per request on stderr."""

    def log_message(self, *args: object) -> None:
        pass
