"""Talking to the person: on standard error or the terminal itself (/dev/tty), never on standard
output, which carries credentials for a program to read (credential_process, eval "$(broker-login)")."""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from typing import TextIO, TypeVar

from broker_login.portal import LoginError

T = TypeVar("T")


def _open_tty() -> TextIO | None:
    try:
        return open("/dev/tty", "r+", encoding="utf-8")
    except OSError:
        return None


class Console:
    """Messages go to standard error, or to the terminal when `messages_on_tty` (a credential_process's
    standard error is captured by the SDK that runs it). Questions always go to the terminal."""

    def __init__(self, messages_on_tty: bool = False, tty_opener: Callable[[], TextIO | None] = _open_tty):
        self._opener, self._opened = tty_opener, False
        self._tty: TextIO | None = None
        self._messages_on_tty = messages_on_tty

    def _terminal(self) -> TextIO | None:
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

    def choose(self, what: str, options: Sequence[T], label: Callable[[T], str] = str) -> T:
        """One of `options`: the only one, or the person's pick from a numbered list on the terminal."""
        if not options:
            raise LoginError(f"you have no {what} to choose from")
        if len(options) == 1:
            return options[0]
        tty = self._terminal()
        if tty is None:
            names = ", ".join(label(option) for option in options)
            raise LoginError(f"more than one {what} ({names}) and no terminal to ask on: name one with an option")
        for number, option in enumerate(options, 1):
            tty.write(f"  {number}. {label(option)}\n")
        while True:
            tty.write(f"Which {what} [1-{len(options)}]? ")
            tty.flush()
            answer = tty.readline()
            if not answer:
                raise LoginError(f"no {what} chosen")
            if answer.strip().isdigit() and 1 <= int(answer) <= len(options):
                return options[int(answer) - 1]
