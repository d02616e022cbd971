"""Talking to the person: on standard error or the terminal itself (/dev/tty), never on standard
output, which carries credentials for a program to read (credential_process, eval "$(broker-login)")."""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from typing import Protocol, TypeVar

from broker_login.portal import LoginError

T = TypeVar("T")


class TerminalLike(Protocol):
    def write(self, text: str, /) -> object: ...

    def flush(self) -> None: ...

    def readline(self) -> str: ...


class Terminal:
    """The controlling terminal, read and written as two text streams. (One `open("/dev/tty", "r+")`
    fails on a terminal: Python's read-write text mode wants a seekable file.)"""

    def __init__(self, path: str = "/dev/tty"):
        self._reader = open(path, encoding="utf-8", errors="replace")
        try:
            self._writer = open(path, "w", encoding="utf-8", errors="replace")
        except OSError:
            self._reader.close()
            raise

    def write(self, text: str, /) -> int:
        return self._writer.write(text)

    def flush(self) -> None:
        self._writer.flush()

    def readline(self) -> str:
        return self._reader.readline()


def _open_tty() -> TerminalLike | None:
    """The terminal of this process, or None when it has none (CI, a program running a credential_process)."""
    try:
        return Terminal()
    except OSError:
        return None


class Console:
    """Messages go to standard error, or to the terminal when `messages_on_tty` (a credential_process's
    standard error is captured by the SDK that runs it). Questions always go to the terminal."""

    def __init__(self, messages_on_tty: bool = False, tty_opener: Callable[[], TerminalLike | None] = _open_tty):
        self._opener, self._opened = tty_opener, False
        self._tty: TerminalLike | None = None
        self._messages_on_tty = messages_on_tty

    def _terminal(self) -> TerminalLike | None:
        if not self._opened:
            self._tty, self._opened = self._opener(), True
        return self._tty

    @property
    def reaches_the_person(self) -> bool:
        """False when messages must go to a terminal and there is none (a credential_process run by
        a program): a sign-in that needs the person cannot happen."""
        return not self._messages_on_tty or self._terminal() is not None

    def say(self, text: str, end: str = "\n") -> None:
        out = (self._terminal() if self._messages_on_tty else None) or sys.stderr
        out.write(text + end)
        out.flush()

    def choose(self, what: str, options: Sequence[T], label: Callable[[T], str] = str, option: str = "") -> T:
        """One of `options`: the only one, or the person's pick from a numbered list on the terminal.
        Without a terminal the error names the choices and the command-line `option` that makes one."""
        if not options:
            raise LoginError(f"you have no {what} to choose from")
        if len(options) == 1:
            return options[0]
        tty = self._terminal()
        if tty is None:
            names = ", ".join(label(choice) for choice in options)
            raise LoginError(f"more than one {what} ({names}) and no terminal to ask on: choose one with {option}")
        for number, choice in enumerate(options, 1):
            tty.write(f"  {number}. {label(choice)}\n")
        return options[_ask_number(tty, what, len(options)) - 1]


def _ask_number(tty: TerminalLike, what: str, count: int) -> int:
    """A number from 1 to `count` typed on the terminal; asked again after anything else. End of input
    (Ctrl-D) is a LoginError: the person chose to stop."""
    while True:
        tty.write(f"Which {what} [1-{count}]? ")
        tty.flush()
        answer = tty.readline()
        if not answer:
            tty.write("\n")
            tty.flush()
            raise LoginError(f"no {what} chosen")
        typed = answer.strip()
        if typed.isascii() and typed.isdigit() and 1 <= int(typed) <= count:
            return int(typed)
        tty.write(f"Type a number from 1 to {count}, then Enter (Ctrl-D to stop).\n")
