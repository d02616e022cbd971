"""The choice on the terminal, in a real pseudo-terminal: the terminal is opened (the old code's
read-write text mode fails on one), a number and Enter picks, anything else asks again, Ctrl-D stops
with a message. Against the real stack, the same through `broker-login` is in test_e2e.py."""

from __future__ import annotations

import sys

from tests.broker_login.terminal_session import TerminalSession
from tests.support.identity_center import clean_env

CHOOSER = """
import sys
from broker_login.portal import LoginError
from broker_login.terminal import Console
try:
    print(Console().choose("role", ["Dev", "ReadOnly", "Admin"], option="--role"))
except LoginError as error:
    sys.exit(f"stopped: {error}")
"""


def chooser(tmp_path) -> TerminalSession:
    return TerminalSession([sys.executable, "-c", CHOOSER], clean_env(tmp_path))


def test_typing_a_number_and_enter_chooses(tmp_path):
    terminal = chooser(tmp_path)
    shown = terminal.expect("Which role [1-3]? ")
    assert "  1. Dev\r\n  2. ReadOnly\r\n  3. Admin\r\n" in shown
    terminal.type("2\r")
    code, out = terminal.finish()
    assert (code, out) == (0, "ReadOnly\n")


def test_a_wrong_answer_asks_again(tmp_path):
    terminal = chooser(tmp_path)
    for wrong in ("7", "0", "two", "", "²"):
        terminal.expect("Which role [1-3]? ")
        terminal.type(f"{wrong}\r")
        terminal.expect("Type a number from 1 to 3, then Enter (Ctrl-D to stop).")
    terminal.expect("Which role [1-3]? ")
    terminal.type("3\r")
    assert terminal.finish() == (0, "Admin\n")


def test_ctrl_d_stops_with_a_message(tmp_path):
    terminal = chooser(tmp_path)
    terminal.expect("Which role [1-3]? ")
    terminal.type("\x04")
    code, out = terminal.finish()
    assert code == 1 and out == ""
    assert "stopped: no role chosen" in terminal.screen
