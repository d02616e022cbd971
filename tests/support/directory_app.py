"""Sign in to the Employee Directory through the IdP with plain HTTP, as a browser would go."""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import urljoin

import requests

from tests.support.idp_client import submit_login

KEY_SHAPE = re.compile(rb"(AKIA|ASIA)[A-Z0-9]{16}")


def sign_in_to_directory(app: str, idp: str, username: str) -> requests.Session:
    http = requests.Session()
    answer = http.get(app + "/", allow_redirects=False)
    assert answer.status_code == 302 and answer.headers["Location"].startswith("/login")
    answer = http.get(urljoin(app, answer.headers["Location"]), allow_redirects=False)
    assert answer.headers["Location"].startswith(idp + "/oidc/authorize?"), answer.headers.get("Location")
    login_page = http.get(answer.headers["Location"])
    answer = submit_login(http, idp, login_page, username)
    while answer.is_redirect and not answer.headers["Location"].startswith(app):
        answer = http.get(urljoin(answer.url, answer.headers["Location"]), allow_redirects=False)
    assert answer.headers["Location"].startswith(app + "/auth/callback?code="), answer.headers.get("Location")
    home = http.get(answer.headers["Location"])
    assert home.status_code == 200 and home.url == app + "/", home.text[:2000]
    return http


def csrf(page: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert found, page[:2000]
    return found.group(1)


def environ_of(pid: int) -> dict[bytes, bytes]:
    """A running process's environment, as /proc shows it."""
    entries = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    return dict(entry.split(b"=", 1) for entry in entries if b"=" in entry)
