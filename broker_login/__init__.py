"""`broker-login`, the command-line sign-in to the SSO login broker (see commands.py for usage)."""

from broker_login.commands import main

__all__ = ["main"]
