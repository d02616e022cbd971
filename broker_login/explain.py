"""`broker-login --explain`: the portal's "How did I get here?" for this sign-in, as text on the terminal.

The portal keeps the story of the sign-in that approved this command-line session (the upstream's
answer and each check's outcome, the Identity and where each field came from, the entitlement decision,
each credential request's assertion and STS exchange, the workload path) and answers it as JSON at
`GET /token/explain` with the access token. Nothing in it is a secret; everything in it is shown with its
control characters removed, since it comes from the portal (and, through it, from an identity provider).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from broker_login.portal import LoginError, NotSignedIn, Portal, Token

PATH = "/token/explain"
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u200b-\u200f\u2028-\u202e\u2066-\u2069]")
STEPS = (
    ("1. The upstream answer", ("transaction", "upstream")),
    ("2. The Identity", ("identity", "person")),
)
MARKS = {"passed": "passed", "failed": "FAILED", "not reached": "not reached", "skipped": "skipped"}


def fetch(portal: Portal, token: Token, timeout: float = 20) -> dict:
    """The story as the portal answers it; NotSignedIn when the token is no longer good, LoginError else."""
    import requests

    try:
        answer = requests.get(
            portal.url + PATH,
            headers={"x-amz-sso_bearer_token": token.access_token, "Accept": "application/json"},
            timeout=timeout,
            allow_redirects=False,
        )
    except requests.RequestException as error:
        raise LoginError(f"the portal at {portal.url} cannot be reached ({type(error).__name__})") from None
    if answer.status_code == 401:
        raise NotSignedIn("UnauthorizedException: the sign-in has ended")
    if answer.status_code == 404:
        raise LoginError("the portal keeps no explanation for this sign-in (it may have expired)")
    try:
        document = answer.json()
    except ValueError:
        document = None
    if answer.status_code != 200 or not isinstance(document, dict):
        raise LoginError(f"the portal's explanation could not be read (HTTP {answer.status_code})")
    return document


def clean(value: Any) -> str:
    """Text from the portal, safe for a terminal: no control or invisible formatting characters."""
    return _CONTROL.sub("", str(value))


def _time(epoch: Any) -> str:
    try:
        return datetime.fromtimestamp(float(epoch), UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    except (TypeError, ValueError, OverflowError, OSError):
        return "?"


def _section(section: dict, indent: str) -> Iterable[str]:
    yield f"{indent}{clean(section.get('title', ''))}"
    if section.get("summary"):
        yield f"{indent}  {clean(section['summary'])}"
    for check in section.get("checks", []):
        mark = MARKS.get(check.get("outcome"), clean(check.get("outcome")))
        line = f"{indent}  [{mark:>11}] {clean(check.get('name'))}  ({clean(check.get('by'))})"
        yield line
        for label in ("expected", "received", "detail"):
            if check.get(label):
                yield f"{indent}                {label}: {clean(check[label])}"
    for fact in section.get("facts", []):
        source = f"  ({clean(fact['source'])})" if fact.get("source") else ""
        yield f"{indent}  {clean(fact.get('label'))}: {clean(fact.get('value'))}{source}"
    for document in section.get("documents", []):
        yield f"{indent}  {clean(document.get('label'))}:"
        for text_line in str(document.get("text", "")).splitlines():
            yield f"{indent}    | {clean(text_line)}"


def render(document: dict) -> str:
    """The story as text, in the portal page's order."""
    lines = ["How did I get here?"]
    owner = document.get("owner") or {}
    who = f"{clean(owner.get('display_name'))} ({clean(owner.get('email'))})" if owner else "someone not yet known"
    lines.append(
        f"{who}, through {clean(document.get('upstream_name'))}: {clean(document.get('outcome'))} at "
        f"{_time(document.get('created'))}"
    )
    if document.get("reason"):
        lines.append(f"Refused: {clean(document['reason'])}")
    sections = {section.get("key"): section for section in document.get("sections", [])}
    for title, keys in STEPS:
        lines += ["", title]
        found = [sections[key] for key in keys if key in sections]
        for section in found:
            lines += _section(section, "  ")
        if not found:
            lines.append("  not reached")
    for group in document.get("groups", []):
        lines.append(
            f"  group {clean(group.get('upstream_group'))} -> {clean(group.get('broker_group') or 'dropped')}"
            f" ({clean(group.get('rule'))})"
        )
    lines += ["", "3. The entitlement decision"]
    for decision in document.get("decisions", []):
        lines.append(
            f"  [{clean(decision.get('outcome')):>9}] {clean(decision.get('permission_set'))} in "
            f"{clean(decision.get('account_name'))} ({clean(decision.get('account_id'))}), group "
            f"{clean(decision.get('group'))}: {clean(decision.get('why'))}"
        )
    if not document.get("decisions"):
        lines.append("  not reached")
    lines += ["", "4. The way to AWS"]
    for number, issuance in enumerate(document.get("issuances", []), 1):
        lines.append(
            f"  Request {number}: {clean(issuance.get('permission_set'))} in {clean(issuance.get('account_name'))}, "
            f"{clean(issuance.get('outcome'))} at {_time(issuance.get('time'))} ({clean(issuance.get('channel'))})"
        )
        if issuance.get("reason"):
            lines.append(f"    {clean(issuance['reason'])}")
        for section in issuance.get("sections", []):
            lines += _section(section, "    ")
        if issuance.get("request_body"):
            lines.append(f"    request body (the signature value withheld): {clean(issuance['request_body'])}")
        elif issuance.get("request_body_withheld"):
            lines.append(
                f"    request body: shown once the assertion expired ({_time(issuance.get('assertion_expires'))})"
            )
    if not document.get("issuances"):
        lines.append("  no credentials asked for yet with this sign-in")
    lines += ["", "5. The workload path"]
    if document.get("workload"):
        lines += _section(document["workload"], "  ")
    return "\n".join(lines)
