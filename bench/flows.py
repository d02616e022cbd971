"""What one simulated person (or client) does, step by step, over real HTTP.

Each flow class is built once per load thread from plain JSON parameters; `setup()` runs once (not
timed), `op(item)` is one timed operation and raises on anything a working system would not answer.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
from urllib.parse import parse_qs, urlencode, urljoin, urlsplit

from bench.browser import Browser, FlowError, forms

OIDC_UPSTREAM = "example-corp-oidc"
DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"
SAML_UPSTREAM = "example-corp-saml"


def _expect(condition: bool, what: str, answer=None) -> None:
    if not condition:
        detail = f" (HTTP {answer.status} at {urlsplit(answer.url).path})" if answer is not None else ""
        raise FlowError(what + detail)


def _login_form(page) -> dict | None:
    return next((f for f in forms(page.text) if "csrf_token" in f["fields"] and "continue" in f["fields"]), None)


def sign_in_at_idp(browser: Browser, login_page, username: str, password: str):
    """Fill the IdP's login form wherever it is shown (its own page, or the authorization request's address) and
    post it where the form says; the answer leaves the IdP: a redirect (to the client, or on to where the request
    is finished) or a SAML Response auto-posted to the client. Returned, not followed."""
    form = _login_form(login_page)
    _expect(login_page.status == 200 and form is not None, "no IdP login form", login_page)
    idp = "{0.scheme}://{0.netloc}".format(urlsplit(login_page.url))
    answer = browser.post(
        urljoin(login_page.url, form["action"] or login_page.url),
        {**form["fields"], "username": username, "password": password},
    )
    leaves = (answer.is_redirect and not urljoin(answer.url, answer.location).startswith(f"{idp}/login")) or (
        answer.status == 200 and b"SAMLResponse" in answer.body
    )
    _expect(leaves, f"IdP login refused for {username}", answer)
    return answer


def credential_forms(page) -> list[dict]:
    return [f for f in forms(page.text) if f["action"] == "/credentials" and "account_id" in f["fields"]]


# Credentials are asked for as portal.js asks: for the role's panel alone (broker/http/portal.py, PANEL_HEADER).
AS_THE_SCRIPT_ASKS = {"X-Portal-Fragment": "panel"}


def _credentials_page_ok(answer) -> bool:
    return answer.status == 200 and b"AWS_ACCESS_KEY_ID" in answer.body and b"AWS_SESSION_TOKEN" in answer.body


class PortalLogin:
    """Scenarios 1, 2, 6, 7: a new browser signs in through the IdP (password at full hash cost) and
    gets credentials for its first role (the broker's STS exchange). Item: a username."""

    def __init__(self, portal: str, password: str, upstream: str = OIDC_UPSTREAM, credentials: bool = True):
        self.portal, self.password, self.upstream, self.credentials = portal, password, upstream, credentials

    def setup(self) -> None:
        pass

    def op(self, item) -> None:
        username, upstream = (item, self.upstream) if isinstance(item, str) else item
        browser = Browser()
        try:
            login_page = browser.follow(browser.get(f"{self.portal}/login/{upstream}"))
            accounts = browser.follow(sign_in_at_idp(browser, login_page, username, self.password))
            _expect(
                accounts.status == 200 and accounts.url.rstrip("/") == self.portal and b"AWS accounts" in accounts.body,
                "no accounts page after sign-in",
                accounts,
            )
            if self.credentials:
                roles = credential_forms(accounts)
                _expect(bool(roles), f"{username} has no role to ask credentials for", accounts)
                issued = browser.post(f"{self.portal}/credentials", roles[0]["fields"], headers=AS_THE_SCRIPT_ASKS)
                _expect(_credentials_page_ok(issued), "no credentials", issued)
        finally:
            browser.close()


class Reissue:
    """Scenario 3: a signed-in person asks again for credentials (portal POST /credentials). One login
    per thread in setup, each thread its own person (the IdP counts logins in flight per user against
    its throttle); item: ignored."""

    def __init__(self, portal: str, password: str, usernames: list[str]):
        self.portal, self.password, self.username = portal, password, usernames[0]
        self.browser = Browser()
        self.form: dict | None = None

    def setup(self) -> None:
        browser = self.browser
        login_page = browser.follow(browser.get(f"{self.portal}/login/{OIDC_UPSTREAM}"))
        accounts = browser.follow(sign_in_at_idp(browser, login_page, self.username, self.password))
        roles = credential_forms(accounts)
        _expect(bool(roles), "setup: no role", accounts)
        self.form = roles[0]["fields"]

    def op(self, item) -> None:
        issued = self.browser.post(f"{self.portal}/credentials", self.form, headers=AS_THE_SCRIPT_ASKS)
        _expect(_credentials_page_ok(issued), "no credentials", issued)


class ApiReissue:
    """Scenario 3, Identity Center API variant: GetRoleCredentials (GET /federation/credentials with the
    x-amz-sso_bearer_token header), as `aws sso` and the SDKs call it. Setup, once per thread: sign in
    to the portal, get an access token through the device flow (register, device authorization,
    approval in the signed-in browser, token), and take the first role of the accounts page."""

    def __init__(self, portal: str, password: str, usernames: list[str]):
        self.portal, self.password, self.username = portal, password, usernames[0]
        self.api = Browser()  # the CLI's connection: no cookies
        self.token = self.account_id = self.role_name = None

    def _json(self, path: str, body: dict) -> dict:
        answer = self.api.request(
            "POST",
            f"{self.portal}{path}",
            body=json.dumps(body).encode(),
            headers={"Content-Type": "application/json", "Accept": "application/json"},
        )
        _expect(answer.status == 200, f"setup: {path} refused", answer)
        return json.loads(answer.body)

    def setup(self) -> None:
        browser = Browser()
        try:
            login_page = browser.follow(browser.get(f"{self.portal}/login/{OIDC_UPSTREAM}"))
            accounts = browser.follow(sign_in_at_idp(browser, login_page, self.username, self.password))
            roles = credential_forms(accounts)
            _expect(bool(roles), "setup: no role", accounts)
            self.account_id, self.role_name = roles[0]["fields"]["account_id"], roles[0]["fields"]["permission_set"]
            client = self._json(
                "/client/register",
                {"clientName": "sso-bench", "clientType": "public", "grantTypes": [DEVICE_GRANT, "refresh_token"]},
            )
            secret = {"clientId": client["clientId"], "clientSecret": client["clientSecret"]}
            device = self._json("/device_authorization", {**secret, "startUrl": self.portal})
            page = browser.get(f"{self.portal}/device?{urlencode({'user_code': device['userCode']})}")
            form = next((f for f in forms(page.text) if f["action"] == "/device"), None)
            _expect(form is not None, "setup: no device approval form", page)
            approved = browser.post(f"{self.portal}/device", {**form["fields"], "decision": "approve"})
            _expect(approved.status == 200, "setup: device approval refused", approved)
            self.token = self._json(
                "/token", {**secret, "grantType": DEVICE_GRANT, "deviceCode": device["deviceCode"]}
            )["accessToken"]
        finally:
            browser.close()

    def op(self, item) -> None:
        query = urlencode({"role_name": self.role_name, "account_id": self.account_id})
        answer = self.api.get(
            f"{self.portal}/federation/credentials?{query}",
            headers={"x-amz-sso_bearer_token": self.token, "Accept": "application/json"},
        )
        _expect(answer.status == 200 and b"accessKeyId" in answer.body, "no role credentials", answer)


class StsDirect:
    """Scenario 3 baseline: the same AssumeRoleWithSAML call the broker makes, sent straight to the AWS
    emulator with boto3 (SigV4-signed with a session in the role's account, as the broker signs it)."""

    def __init__(
        self,
        endpoint: str,
        region: str,
        access_key: str,
        secret_key: str,
        account_id: str,
        role_arn: str,
        provider_arn: str,
        assertion: str,
        duration: int,
        call: str = "saml",
    ):
        self.args = dict(RoleArn=role_arn, PrincipalArn=provider_arn, SAMLAssertion=assertion, DurationSeconds=duration)
        self.call = call  # "saml": AssumeRoleWithSAML; "caller": GetCallerIdentity (signed with the session's keys)
        self.endpoint, self.region, self.account_id = endpoint, region, account_id
        self.keys = (access_key, secret_key)
        self.client = None

    def setup(self) -> None:
        import boto3

        from broker.aws.accounts import AccountSessions

        management = boto3.Session(
            aws_access_key_id=self.keys[0], aws_secret_access_key=self.keys[1], region_name=self.region
        )
        session = AccountSessions(management, self.region, self.endpoint).session(self.account_id)
        self.client = session.client("sts", endpoint_url=self.endpoint, region_name=self.region)
        self.client.meta.events.register_first("choose-signer.sts.AssumeRoleWithSAML", lambda **_: "v4")

    def op(self, item) -> None:
        if self.call == "caller":
            _expect("Arn" in self.client.get_caller_identity(), "no caller identity from STS")
            return
        answer = self.client.assume_role_with_saml(**self.args)
        _expect("Credentials" in answer, "no credentials from STS")


def _pkce() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    return verifier, challenge


class IdPCodeFlow:
    """Scenario 4: the IdP's protocol work for a user who already has an IdP session: the authorization
    request (answered with a code at once) and the code exchange (client_secret_basic, PKCE S256) that
    returns the signed ID token. The same steps for this project's IdP and for the peer provider.

    `login` says how the one-off session is made in setup: "form" (this IdP's login page, one password
    verification) or "auto" (the peer's interaction endpoint signs the bench user in without a form)."""

    def __init__(
        self,
        authorize_url: str,
        token_url: str,
        client_id: str,
        client_secret: str,
        redirect_uri: str,
        scope: str,
        login: str,
        usernames: list[str] = ("",),
        password: str = "",
    ):
        self.authorize_url, self.token_url = authorize_url, token_url
        self.client_id, self.redirect_uri, self.scope = client_id, redirect_uri, scope
        self.basic = "Basic " + base64.b64encode(f"{client_id}:{client_secret}".encode()).decode()
        self.login, self.username, self.password = login, usernames[0], password
        self.browser = Browser()
        self.tokens = Browser()  # the client's back channel: its own connection, no cookies

    def _authorize(self) -> tuple[object, str, str]:
        verifier, challenge = _pkce()
        state, nonce = secrets.token_urlsafe(16), secrets.token_urlsafe(16)
        query = urlencode(
            {
                "response_type": "code",
                "client_id": self.client_id,
                "redirect_uri": self.redirect_uri,
                "scope": self.scope,
                "state": state,
                "nonce": nonce,
                "code_challenge": challenge,
                "code_challenge_method": "S256",
            }
        )
        return self.browser.get(f"{self.authorize_url}?{query}"), verifier, state

    def setup(self) -> None:
        answer, verifier, state = self._authorize()
        if self.login == "form":
            page = self.browser.follow(answer)
            answer = sign_in_at_idp(self.browser, page, self.username, self.password)
        answer = self.browser.follow(answer, stop_at=self.redirect_uri)
        self._redeem(answer, verifier, state)

    def _redeem(self, answer, verifier: str, state: str) -> None:
        _expect(
            answer.is_redirect and answer.location.startswith(self.redirect_uri), "no redirect to the client", answer
        )
        params = parse_qs(urlsplit(answer.location).query)
        _expect(params.get("state") == [state] and "code" in params, "no code in the redirect", answer)
        token = self.tokens.post(
            self.token_url,
            {
                "grant_type": "authorization_code",
                "code": params["code"][0],
                "redirect_uri": self.redirect_uri,
                "code_verifier": verifier,
            },
            headers={"Authorization": self.basic, "Accept": "application/json"},
        )
        _expect(token.status == 200, "token request refused", token)
        _expect("id_token" in json.loads(token.body), "no ID token", token)

    def op(self, item) -> None:
        answer, verifier, state = self._authorize()
        self._redeem(answer, verifier, state)


FLOWS = {cls.__name__: cls for cls in (PortalLogin, Reissue, ApiReissue, StsDirect, IdPCodeFlow)}
