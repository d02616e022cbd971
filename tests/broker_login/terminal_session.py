"""A process run in a real pseudo-terminal, as a person would run it: the pty is its controlling
terminal (/dev/tty), standard input and standard error; standard output is a pipe, as in
`eval "$(broker-login)"`. Every wait has a deadline; nothing sleeps."""

from __future__ import annotations

import fcntl
import os
import select
import subprocess
import termios
import time


def _take_the_terminal() -> None:
    """In the child, after setsid: make standard input (the pty) the controlling terminal."""
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


class TerminalSession:
    def __init__(self, argv: list[str], env: dict[str, str]):
        master, slave = os.openpty()
        self.process = subprocess.Popen(
            argv,
            stdin=slave,
            stdout=subprocess.PIPE,
            stderr=slave,
            env=env,
            start_new_session=True,
            preexec_fn=_take_the_terminal,
        )
        os.close(slave)
        self._master = master
        self.screen = ""  # everything the terminal has shown (the pty echoes what is typed)
        self._seen = 0  # where the next `expect` starts looking

    def _read(self, deadline: float) -> bool:
        """Read what the terminal shows until the deadline; False once the terminal is closed."""
        ready, _, _ = select.select([self._master], [], [], max(0.0, deadline - time.monotonic()))
        if not ready:
            return True
        try:
            chunk = os.read(self._master, 4096)
        except OSError:  # EIO: every process holding the pty has exited
            return False
        self.screen += chunk.decode("utf-8", "replace")
        return bool(chunk)

    def expect(self, text: str, timeout: float = 30) -> str:
        """Wait until the terminal shows `text` (after what earlier calls matched); what came before it."""
        deadline = time.monotonic() + timeout
        while text not in self.screen[self._seen :]:
            if time.monotonic() > deadline or not self._read(deadline):
                raise AssertionError(f"the terminal never showed {text!r}; it shows:\n{self.screen}")
        start = self._seen
        self._seen = self.screen.index(text, self._seen) + len(text)
        return self.screen[start : self._seen]

    def type(self, keys: str) -> None:
        os.write(self._master, keys.encode())

    def finish(self, timeout: float = 60) -> tuple[int, str]:
        """(exit code, standard output) once the process ends; what it showed meanwhile is in `screen`."""
        try:
            out, _ = self.process.communicate(timeout=timeout)
            # What it showed before it ended: once it has, the pty reads until EIO without waiting.
            while select.select([self._master], [], [], 5)[0] and self._read(time.monotonic()):
                pass
            return self.process.returncode, out.decode()
        finally:
            self.close()

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)
        if self.process.stdout:
            self.process.stdout.close()
        os.close(self._master)
