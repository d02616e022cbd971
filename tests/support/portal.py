"""Sign in to the portal through the real IdP with plain HTTP, as a script would, and read pages."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from urllib.parse import urljoin, urlsplit

import requests

from tests.support.idp_client import DEMO_PASSWORD, ERIN_TOTP_SECRET, submit_login

UPSTREAMS = ["example-corp-oidc", "example-corp-saml"]


class _Forms(HTMLParser):
    def __init__(self):
        super().__init__()
        self.forms: list[dict] = []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "form":
            self.forms.append(
                {"action": attrs.get("action") or "", "method": (attrs.get("method") or "get").lower(), "fields": {}}
            )
        elif tag == "input" and self.forms and attrs.get("name"):
            self.forms[-1]["fields"][attrs["name"]] = attrs.get("value") or ""


def forms(html: str) -> list[dict]:
    parser = _Forms()
    parser.feed(html)
    return parser.forms


def follow(
    http: requests.Session, response: requests.Response, stop_at: str | None = None, limit: int = 15
) -> requests.Response:
    """Follow redirects and SAML auto-post forms (no JavaScript needed) until a page that is neither,
    or until a redirect to a URL that starts with `stop_at`."""
    for _ in range(limit):
        if response.is_redirect:
            target = urljoin(response.url, response.headers["Location"])
            if stop_at and target.startswith(stop_at):
                return response
            response = http.get(target, allow_redirects=False)
            continue
        posted = [f for f in forms(response.text) if "SAMLResponse" in f["fields"] or "SAMLRequest" in f["fields"]]
        if response.status_code == 200 and posted:
            form = posted[0]
            response = http.post(urljoin(response.url, form["action"]), data=form["fields"], allow_redirects=False)
            continue
        return response
    raise AssertionError("too many redirects")


def portal_login(
    portal_url: str,
    username: str,
    upstream: str = "example-corp-oidc",
    password: str = DEMO_PASSWORD,
    http: requests.Session | None = None,
) -> requests.Response:
    """Start at the portal, sign in at the IdP, come back. Returns the last page (the accounts page
    on success); the session's cookies are then signed in."""
    http = http or requests.Session()
    login_page = follow(http, http.get(f"{portal_url}/login/{upstream}", allow_redirects=False))
    totp = ERIN_TOTP_SECRET if username == "erin" else None
    idp_url = "{0.scheme}://{0.netloc}".format(urlsplit(login_page.url))  # the form is shown at the request's address
    answer = submit_login(http, idp_url, login_page, username, password, totp)
    return follow(http, answer)


def signed_in_session(portal_url: str, username: str, upstream: str = "example-corp-oidc") -> requests.Session:
    http = requests.Session()
    page = portal_login(portal_url, username, upstream, http=http)
    assert page.status_code == 200 and "AWS accounts" in page.text, page.text[:2000]
    return http


def request_credentials(
    http: requests.Session, portal_url: str, account_id: str, permission_set: str
) -> requests.Response:
    accounts = http.get(f"{portal_url}/")
    csrf = next(f["fields"]["csrf_token"] for f in forms(accounts.text) if "csrf_token" in f["fields"])
    return http.post(
        f"{portal_url}/credentials",
        data={"csrf_token": csrf, "account_id": account_id, "permission_set": permission_set},
        allow_redirects=False,
    )


def credentials_from_page(html: str) -> dict[str, str]:
    """The three values from the bash export snippet of the credentials page."""
    values = dict(re.findall(r'export (AWS_[A-Z_]+)=(?:&#34;|&quot;|")([^"&]+)', html))
    return {
        "aws_access_key_id": values["AWS_ACCESS_KEY_ID"],
        "aws_secret_access_key": values["AWS_SECRET_ACCESS_KEY"],
        "aws_session_token": values["AWS_SESSION_TOKEN"],
    }
