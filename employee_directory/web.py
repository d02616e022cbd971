"""What the app's blueprints share: the refusal they raise, the settings and AWS access of the running app,
and the CSRF token of the session."""

from __future__ import annotations

import secrets

from flask import current_app, session

from employee_directory.aws import AwsAccess
from employee_directory.settings import Settings


class PageError(Exception):
    """A refusal whose message is safe to show."""

    def __init__(self, message: str, status: int = 400, title: str = "Something is wrong with this request"):
        super().__init__(message)
        self.message, self.status, self.title = message, status, title


def settings() -> Settings:
    return current_app.extensions["directory_settings"]


def aws() -> AwsAccess:
    return current_app.extensions["directory_aws"]


def csrf_token() -> str:
    if "csrf" not in session:
        session["csrf"] = secrets.token_urlsafe(32)
    return str(session["csrf"])
