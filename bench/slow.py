"""Slow clients: connections that send a request head one byte a second and never finish it (the
"slowloris" pattern), held open against a server while the benchmark measures it. Loopback only, bounded
in number and in time: every connection is closed by `close()` or when the time is up."""

from __future__ import annotations

import socket
import threading
import time
from urllib.parse import urlsplit


class Drippers:
    def __init__(self, url: str, count: int, max_seconds: float = 120.0):
        parts = urlsplit(url)
        host, port = parts.hostname or "127.0.0.1", parts.port or 80
        if host not in ("127.0.0.1", "localhost", "::1"):
            raise ValueError("slow clients are for loopback servers only")
        self.sockets = []
        for _ in range(count):
            sock = socket.create_connection(("127.0.0.1" if host == "localhost" else host, port), timeout=5)
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: slow\r\n")
            self.sockets.append(sock)
        self._until = time.monotonic() + max_seconds
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._drip, daemon=True)
        self._thread.start()

    def _drip(self) -> None:
        while not self._stop.wait(1.0) and time.monotonic() < self._until:
            for sock in self.sockets:
                try:
                    sock.send(b"X")
                except OSError:
                    pass

    def open(self) -> int:
        """How many the server still keeps open (a closed one reads as end of file)."""
        count = 0
        for sock in self.sockets:
            sock.setblocking(False)
            try:
                count += sock.recv(1) != b""
            except BlockingIOError:
                count += 1
            except OSError:
                pass
            finally:
                sock.setblocking(True)
        return count

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        for sock in self.sockets:
            sock.close()
