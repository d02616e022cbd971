"""Two IdP and two portal replicas behind nginx, with Redis and PostgreSQL, all real (devstack/replicas.py):
logins whose requests land on both replicas, replays to the other replica refused, a throttle and a device
code shared by both, a key rotation that reaches both, one request ID from the edge to the IdP, and what
the edge does (buffering slow bodies, HSTS under https, the SSO API's underscore header, ops endpoints
hidden). About a minute in all; every wait is bounded."""

from __future__ import annotations

import base64
import json
import socket
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import parse_qs, urljoin, urlsplit

import boto3
import pytest
import requests
from botocore import UNSIGNED
from botocore.config import Config

from broker_login.forms import read_page
from devstack.edge import EdgeConfig, Site, nginx_config
from devstack.engines import NginxServer
from devstack.processes import free_port
from tests.support.idp_client import form_fields, submit_login
from tests.support.oidc_rp import authorization, redeem, register_client, sign_in
from tests.support.portal import credentials_from_page, follow, forms, portal_login, request_credentials
from tests.support.replicas import TaggedSession, served_by, start_replicated

SANDBOX = "111111111111"


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    running = start_replicated(tmp_path_factory.mktemp("replicated"))
    yield running
    running.stop()


def portal(stack) -> str:
    return stack.addresses["PORTAL_URL"]


def idp(stack) -> str:
    return stack.addresses["IDP_URL"]


def direct(stack, name: str, host: str = "127.0.0.1") -> str:
    """A replica's own address, bypassing nginx (`localhost` for the portal: its cookies' site)."""
    replica = next(member for member in stack.members if member.name == name)
    return f"http://{host}:{replica.port}"


def appears(read: Callable[[], str], text: str, timeout: float = 5.0) -> bool:
    """Whether `text` shows in what `read()` returns within `timeout`: a server writes a request's log line after
    it has answered (nginx too), so a test that has its answer may be ahead of the line."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if text in read():
            return True
        time.sleep(0.05)
    return False


def wait_for_log(stack, name: str, text: str, timeout: float = 5.0) -> bool:
    return appears(lambda: stack.logs(name), text, timeout)


class Alternating(TaggedSession):
    """A browser whose requests to the edge go to the replicas in turn instead, by their own addresses: a login
    whose every step lands on the other replica than the step before (deterministic, unlike round robin
    shared with other traffic). Remembers which replica each request was sent to."""

    def __init__(self, stack):
        super().__init__()
        self.routes = {
            portal(stack): [direct(stack, r.name, "localhost") for r in stack.replicas_of("broker")],
            idp(stack): [direct(stack, r.name) for r in stack.replicas_of("idp")],
        }
        self.turn = dict.fromkeys(self.routes, 0)
        self.landed: list[tuple[str, str]] = []  # (request ID, replica address)

    def request(self, method, url, *args, **kwargs):
        for edge, replicas in self.routes.items():
            base = next((b for b in (edge, *replicas) if url.startswith(b + "/")), None)
            if base is not None:  # the edge, or a replica a page was served from: the next replica
                replica = replicas[self.turn[edge] % len(replicas)]
                self.turn[edge] += 1
                url = replica + url[len(base) :]
                self.landed.append((f"{self.prefix}-{len(self.sent) + 1}", replica))
                break
        answer = super().request(method, url, *args, **kwargs)
        for edge, replicas in self.routes.items():  # the replica's redirects name the edge: keep alternating
            location = answer.headers.get("Location", "")
            for replica in replicas:
                if location.startswith(replica):
                    answer.headers["Location"] = edge + location[len(replica) :]
        return answer


@pytest.mark.parametrize("upstream", ["example-corp-oidc", "example-corp-saml"])
def test_a_login_whose_every_step_lands_on_the_other_replica_works_and_gets_credentials(stack, upstream):
    http = Alternating(stack)
    page = portal_login(portal(stack), "bob", upstream, http=http)
    assert page.status_code == 200 and "AWS accounts" in page.text, page.text[:1000]
    answer = request_credentials(http, portal(stack), SANDBOX, "EmployeeDirectoryDeveloper")
    assert answer.status_code == 200, answer.text[:1000]
    caller = boto3.client(
        "sts", endpoint_url=stack.addresses["AWS_URL"], region_name="us-east-1", **credentials_from_page(answer.text)
    ).get_caller_identity()
    assert caller["Account"] == SANDBOX and caller["Arn"].endswith("/bob@example.com")
    time.sleep(0.5)  # the last access lines reach the logs
    served = {}
    for request_id, replica in http.landed:
        name = next(m.name for m in stack.members if replica.endswith(f":{m.port}"))
        served[request_id] = name
        assert served_by(stack, name.split("-")[0], request_id) == {name}, (request_id, name)
    assert set(served.values()) == {"broker-1", "broker-2", "idp-1", "idp-2"}


def test_logins_through_the_edge_are_spread_over_the_replicas(stack):
    sessions = [TaggedSession() for _ in range(3)]
    for http, upstream in zip(sessions, ("example-corp-oidc", "example-corp-saml", "example-corp-oidc"), strict=True):
        assert portal_login(portal(stack), "bob", upstream, http=http).status_code == 200
    time.sleep(0.5)
    sent = [request for http in sessions for request in http.sent]
    portal_ids = [rid for rid, _, url in sent if url.startswith(portal(stack))]
    idp_ids = [rid for rid, _, url in sent if url.startswith(idp(stack))]
    assert all(len(served_by(stack, "broker", rid)) == 1 for rid in portal_ids)  # each request served once
    assert set().union(*(served_by(stack, "broker", rid) for rid in portal_ids)) == {"broker-1", "broker-2"}
    assert set().union(*(served_by(stack, "idp", rid) for rid in idp_ids)) == {"idp-1", "idp-2"}


def test_the_request_id_goes_from_the_edge_through_the_portal_to_the_idp(stack):
    """The browser's callback request and the portal's back-channel token call to the IdP share one ID."""
    http = TaggedSession()
    portal_login(portal(stack), "bob", "example-corp-oidc", http=http)
    callback = next(rid for rid, _, url in http.sent if "/login/example-corp-oidc/callback" in url)
    assert any(wait_for_log(stack, name, f"[{callback}] sso.access") for name in ("broker-1", "broker-2"))
    token_lines = [
        line
        for replica in stack.replicas_of("idp")
        for line in stack.logs(replica.name).splitlines()
        if f"[{callback}]" in line
    ]
    assert any('"POST /oidc/token"' in line for line in token_lines), token_lines
    # An ID the edge made (none sent) is answered, and a malformed one is replaced.
    made = requests.get(f"{portal(stack)}/healthz", timeout=5).headers["X-Request-ID"]
    assert len(made) == 32 and int(made, 16) >= 0
    replaced = requests.get(f"{portal(stack)}/healthz", headers={"X-Request-ID": "bad id\x01"}, timeout=5)
    assert replaced.headers["X-Request-ID"] != "bad id\x01" and len(replaced.headers["X-Request-ID"]) == 32
    kept = requests.get(f"{portal(stack)}/healthz", headers={"X-Request-ID": "client-abc.1"}, timeout=5)
    assert kept.headers["X-Request-ID"] == "client-abc.1"
    assert appears(stack.nginx.access_log, "client-abc.1")


def _saml_response(stack, http: requests.Session, username: str) -> dict:
    """Sign in at the IdP for the portal's SAML upstream and stop before the SAMLResponse is posted."""
    login_page = follow(http, http.get(f"{portal(stack)}/login/example-corp-saml", allow_redirects=False))
    answer = submit_login(http, idp(stack), login_page, username)
    for _ in range(10):
        if answer.is_redirect:
            answer = http.get(urljoin(answer.url, answer.headers["Location"]), allow_redirects=False)
            continue
        posted = [f for f in forms(answer.text) if "SAMLResponse" in f["fields"]]
        assert posted, answer.text[:1000]
        return {"action": urlsplit(urljoin(answer.url, posted[0]["action"])).path, "fields": posted[0]["fields"]}
    raise AssertionError("no SAML response")


def test_a_saml_response_replayed_to_the_other_replica_is_refused(stack):
    http = requests.Session()
    response = _saml_response(stack, http, "carol")
    first = http.post(direct(stack, "broker-1", "localhost") + response["action"], data=response["fields"])
    assert first.status_code == 200 and "carol@example.com" in first.text, first.text[:1000]
    for browser in (http, requests.Session()):  # the same browser, and another one without its cookies
        replayed = browser.post(direct(stack, "broker-2", "localhost") + response["action"], data=response["fields"])
        assert replayed.status_code in (400, 403) and "Sign-in failed" in replayed.text, replayed.text[:1000]
    attacker = requests.Session()
    attacker.post(direct(stack, "broker-2", "localhost") + response["action"], data=response["fields"])
    assert attacker.get(f"{portal(stack)}/", allow_redirects=False).status_code in (302, 303)  # not signed in


def test_an_authorization_code_replayed_to_the_other_replica_is_refused(stack):
    """At the IdP: a code redeemed at one replica is spent at the other (codes are single-use in Redis). The
    client registered itself through the edge: its registration is lasting state, in PostgreSQL."""
    client = register_client(idp(stack))
    request = authorization(client)
    answer = sign_in(TaggedSession(), idp(stack), request, "carol")
    code = parse_qs(urlsplit(answer.headers["Location"]).query)["code"][0]
    assert redeem(direct(stack, "idp-1"), client, request, code).status_code == 200
    replayed = redeem(direct(stack, "idp-2"), client, request, code)
    assert replayed.status_code == 400 and replayed.json()["error"] == "invalid_grant"


def test_an_oidc_callback_replayed_to_the_other_portal_replica_is_refused(stack):
    http = requests.Session()
    login_page = follow(http, http.get(f"{portal(stack)}/login/example-corp-oidc", allow_redirects=False))
    answer = follow(http, submit_login(http, idp(stack), login_page, "carol"), stop_at=portal(stack))
    callback = urlsplit(urljoin(answer.url, answer.headers["Location"]))
    path = f"{callback.path}?{callback.query}"
    first = http.get(direct(stack, "broker-1", "localhost") + path, allow_redirects=False)
    assert first.status_code in (302, 303), first.text[:1000]
    replayed = http.get(direct(stack, "broker-2", "localhost") + path, allow_redirects=False)
    assert replayed.status_code == 400, replayed.text[:1000]


def test_a_throttle_counts_across_replicas(stack):
    """dave's wrong passwords go to the IdP replicas in turn: the per-person limit (5 per 5 minutes from
    one address) is reached as if there were one server, and then even the right password waits."""
    outcomes = []
    for attempt in range(7):
        replica = direct(stack, f"idp-{attempt % 2 + 1}")
        http = requests.Session()
        page = http.get(f"{replica}/login", timeout=10)
        fields = {**form_fields(page.text), "username": "dave", "password": "wrong-password"}
        outcomes.append(http.post(f"{replica}/login", data=fields, allow_redirects=False, timeout=10).status_code)
    assert outcomes[:5] == [401] * 5 and outcomes[5:] == [429, 429], outcomes
    http = requests.Session()
    page = http.get(f"{idp(stack)}/login", timeout=10)
    right = http.post(f"{idp(stack)}/login", data={**form_fields(page.text), "username": "dave",
                      "password": "Welcome-2026"}, allow_redirects=False, timeout=10)  # fmt: skip
    assert right.status_code == 429


def test_a_device_code_approved_through_one_replica_is_polled_through_the_other(stack):
    def sso_oidc(url: str):
        return boto3.client(
            "sso-oidc", endpoint_url=url, region_name="us-east-1", config=Config(signature_version=UNSIGNED)
        )

    one, other = direct(stack, "broker-1", "localhost"), direct(stack, "broker-2", "localhost")
    registration = sso_oidc(one).register_client(clientName="replicas-test", clientType="public")
    device = sso_oidc(one).start_device_authorization(
        clientId=registration["clientId"], clientSecret=registration["clientSecret"], startUrl=portal(stack)
    )
    browser = requests.Session()
    assert portal_login(portal(stack), "bob", http=browser).status_code == 200
    page = browser.get(f"{other}/device?user_code={device['userCode']}", timeout=10)
    form = next(f for f in read_page(page.text).forms if ("decision", "approve") in f.buttons)
    approved = browser.post(urljoin(page.url, form.action), data={**form.inputs, "decision": "approve"}, timeout=10)
    assert "Request approved" in approved.text, approved.text[:1000]
    time.sleep(device["interval"])
    token = sso_oidc(one).create_token(
        clientId=registration["clientId"],
        clientSecret=registration["clientSecret"],
        grantType="urn:ietf:params:oauth:grant-type:device_code",
        deviceCode=device["deviceCode"],
    )
    # The token works through the edge, in the header AWS's SDKs send (with an underscore: nginx must pass it).
    accounts = requests.get(
        f"{portal(stack)}/assignment/accounts",
        headers={"x-amz-sso_bearer_token": token["accessToken"]},
        params={"max_result": 10},
        timeout=10,
    )
    assert accounts.status_code == 200 and {a["accountId"] for a in accounts.json()["accountList"]}, accounts.text


def test_a_key_rotation_reaches_every_idp_replica(stack):
    """One shared key ring: after `idp-mock rotate-keys`, both replicas publish the new key, and an ID token
    signed by one replica carries a key the other publishes."""

    def kids(name: str) -> set[str]:
        keys = requests.get(f"{direct(stack, name)}/oidc/jwks", timeout=5).json()["keys"]
        return {key["kid"] for key in keys}

    before = kids("idp-1")
    assert kids("idp-2") == before
    stack.rotate_idp_keys()
    after = kids("idp-1")
    assert kids("idp-2") == after and after - before
    client = register_client(idp(stack))
    request = authorization(client)
    answer = sign_in(requests.Session(), idp(stack), request, "carol")
    code = parse_qs(urlsplit(answer.headers["Location"]).query)["code"][0]
    token = redeem(direct(stack, "idp-2"), client, request, code).json()["id_token"]
    header = json.loads(base64.urlsafe_b64decode(token.split(".")[0] + "=="))
    assert header["kid"] in after - before


def test_ops_endpoints_answer_on_the_replicas_and_not_at_the_edge(stack):
    assert requests.get(f"{portal(stack)}/metrics", timeout=5).status_code == 404
    assert requests.get(f"{idp(stack)}/readyz", timeout=5).status_code == 404
    assert requests.get(f"{portal(stack)}/healthz", timeout=5).status_code == 200
    ready = requests.get(f"{direct(stack, 'broker-1')}/readyz", timeout=5).json()
    assert ready == {
        "status": "ready",
        "service": "portal",
        "checks": {"state": "ok", "lasting": "ok", "directory": "ok", "audit": "ok"},
    }
    text = "".join(requests.get(f"{direct(stack, n)}/metrics", timeout=5).text for n in ("broker-1", "broker-2"))
    assert 'sso_logins_total{outcome="success",service="portal"}' in text
    assert 'sso_credential_issuances_total{channel="portal",outcome="success"}' in text
    assert "sso_sts_call_seconds_bucket" in text
    idp_text = requests.get(f"{direct(stack, 'idp-1')}/metrics", timeout=5).text
    assert 'sso_logins_total{outcome="ok",service="idp"}' in idp_text


class DripBody:
    """Connections that send a whole request head, then its body a byte at a time."""

    def __init__(self, port: int, count: int, path: str = "/login"):
        self.sockets: list[socket.socket] = []
        for _ in range(count):
            sock = socket.create_connection(("127.0.0.1", port), timeout=5)
            sock.sendall(
                f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/x-www-form-urlencoded\r\n"
                "Content-Length: 1000\r\n\r\n".encode()
            )
            self.sockets.append(sock)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._drip, daemon=True)
        self._thread.start()

    def _drip(self) -> None:
        while not self._stop.wait(1.0):
            for sock in self.sockets:
                try:
                    sock.send(b"a")
                except OSError:
                    pass

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        for sock in self.sockets:
            sock.close()


def test_the_edge_buffers_slow_bodies_so_replicas_keep_answering(stack):
    """40 clients dripping request bodies would hold 40 app threads (granian hands a body to the app's
    thread); the replicas have 2 x 8. nginx reads bodies first: the IdP answers as usual meanwhile."""
    port = int(idp(stack).rsplit(":", 1)[1])
    drip = DripBody(port, 40)
    try:
        time.sleep(1.5)
        began = time.monotonic()
        assert requests.get(f"{idp(stack)}/healthz", timeout=5).status_code == 200
        http = requests.Session()
        page = http.get(f"{idp(stack)}/login", timeout=5)
        answer = submit_login(http, idp(stack), page, "alice")
        elapsed = time.monotonic() - began
    finally:
        drip.close()
    assert answer.status_code == 303 and elapsed < 3.0, (answer.status_code, elapsed)


def test_hsts_under_https_only(stack, tmp_path):
    """An https site of the edge sends Strict-Transport-Security on every answer; an http one does not."""
    from tests.sso_common.test_serving import self_signed

    cert, key = self_signed(tmp_path)
    https_port, http_port = free_port(), free_port()
    upstream = (f"127.0.0.1:{stack.replicas_of('idp')[0].port}",)
    config = EdgeConfig(
        sites=(
            Site("secure", f"127.0.0.1:{https_port}", upstream, tls=(str(cert), str(key))),
            Site("plain", f"127.0.0.1:{http_port}", upstream),
        ),
        prefix=tmp_path / "edge",
        worker_processes=1,
    )
    for folder in ("body", "proxy", "fastcgi", "uwsgi", "scgi"):
        (tmp_path / "edge" / "tmp" / folder).mkdir(parents=True)
    edge = NginxServer.start(tmp_path / "edge", nginx_config(config), [https_port, http_port])
    try:
        secure = requests.get(f"https://127.0.0.1:{https_port}/healthz", verify=str(cert), timeout=5)
        missing = requests.get(f"https://127.0.0.1:{https_port}/no-such-page", verify=str(cert), timeout=5)
        plain = requests.get(f"http://127.0.0.1:{http_port}/healthz", timeout=5)
    finally:
        edge.stop()
    assert secure.status_code == 200 and secure.headers["Strict-Transport-Security"] == "max-age=31536000"
    assert missing.status_code == 404 and missing.headers["Strict-Transport-Security"] == "max-age=31536000"
    assert plain.status_code == 200 and "Strict-Transport-Security" not in plain.headers


def test_with_every_portal_replica_down_the_edge_answers_its_503_page_and_logs_what_was_asked(stack):
    """nginx answers a 502 from the replicas with its own 503 page (an internal redirect): the access line still
    names the path asked for, without its query (it named /edge-unavailable, hiding which request failed)."""
    replicas = stack.replicas_of("broker")
    for replica in replicas:
        stack.kill(replica)
    try:
        answer = requests.get(f"{portal(stack)}/accounts?code=not-logged", timeout=10)
        assert answer.status_code == 503 and answer.headers["Retry-After"], answer.text[:300]
        request_id = answer.headers["X-Request-ID"]
        assert appears(stack.nginx.access_log, f"request_id={request_id} ")
        [line] = [line for line in stack.nginx.access_log().splitlines() if f"request_id={request_id} " in line]
        assert '"GET /accounts" 503' in line and "not-logged" not in line, line
    finally:
        for replica in replicas:
            stack.restart(replica)
        stack.wait_routed()


def test_every_folder_of_the_stack_is_private_and_every_log_0600(stack):
    """The edge's and Redis's folders and logs were world-readable (nginx creates its logs 0644)."""
    instance = stack.instance_dir
    folders = [instance, *(path for path in instance.rglob("*") if path.is_dir())]
    moto = instance / "aws"  # the emulator's folder is ours; what moto writes in it is moto's
    for folder in (path for path in folders if path == moto or not path.is_relative_to(moto)):
        assert folder.stat().st_mode & 0o777 == 0o700, f"{folder} is {oct(folder.stat().st_mode & 0o777)}"
    logs = [log for log in instance.rglob("*.log") if not log.is_relative_to(moto)]
    assert {"access.log", "error.log", "redis.log"} <= {log.name for log in logs}
    for log in logs:
        assert log.stat().st_mode & 0o777 == 0o600, f"{log} is {oct(log.stat().st_mode & 0o777)}"


class Recording(TaggedSession):
    """A browser that adds what each of its requests was answered to `answers`: (request ID, method, URL,
    status, or the exception's name)."""

    def __init__(self, answers: list):
        super().__init__()
        self.answers = answers

    def request(self, method, url, *args, **kwargs):
        try:
            answer = super().request(method, url, *args, **kwargs)
        except requests.RequestException as error:
            self.answers.append((self.sent[-1][0], method, url, type(error).__name__))
            raise
        self.answers.append((self.sent[-1][0], method, url, answer.status_code))
        return answer


def _sign_in(stack, username: str, answers: list) -> int | str:
    """An OIDC sign-in through the edge (the portal sees GETs only: nginx may pass each to the other replica
    if its replica dies under it); the last page's status."""
    try:
        return portal_login(portal(stack), username, "example-corp-oidc", http=Recording(answers)).status_code
    except requests.RequestException as error:
        return type(error).__name__


def test_portal_replicas_restarted_in_turn_under_load_answer_no_5xx(stack):
    """The portal replicas killed and started again one after the other while people sign in through the edge:
    one replica answers at every moment, so no request may get a 5xx. nginx skips a replica for 2 s after a
    failed connection, and counts it failed until a request succeeds on it after that: a replica restarted
    and not asked since, or asked once and still answering, was skipped too when the other died, and every
    request got "no live upstreams" (devstack/edge.py). Twice: a rolling restart under load (each replica
    killed, found down, started, and the other killed as soon as it answers), then the shape first seen
    (broker-1 found down and restarted, nothing asked of it for longer than 2 s, broker-2 killed, then 10
    sign-ins at once)."""
    answers: list = []
    first, second = stack.replicas_of("broker")
    load, stop = threading.Event(), threading.Event()
    busy = {name: False for name in ("alice", "bob", "carol")}

    def person(username: str) -> None:  # one sign-in after another while `load` is set
        while not stop.is_set():
            busy[username] = load.is_set()
            if busy[username]:
                if _sign_in(stack, username, answers) != 200:
                    time.sleep(0.2)  # a person reading the error page, not a loop of instant failures
            else:
                time.sleep(0.02)

    people = [threading.Thread(target=person, args=(name,), daemon=True) for name in busy]
    load.set()
    for thread in people:
        thread.start()
    try:
        for replica in (first, second):  # the rolling restart under load
            stack.kill(replica)
            time.sleep(1.0)  # the load finds it down
            stack.restart(replica)
        load.clear()
        deadline = time.monotonic() + 30
        while any(busy.values()) and time.monotonic() < deadline:  # the sign-ins under way finish
            time.sleep(0.05)
        rolling = len(answers)
        stack.kill(first)
        for _ in range(4):  # round robin passes one of these to the dead replica: nginx finds it down
            Recording(answers).get(f"{portal(stack)}/healthz", timeout=5)
        found_down = time.monotonic()
        stack.restart(first)  # healthy, and asked nothing through the edge since
        time.sleep(max(0.0, found_down + 3.0 - time.monotonic()))  # longer than nginx's fail_timeout
        stack.kill(second)
        with ThreadPoolExecutor(max_workers=10) as pool:
            burst = list(pool.map(lambda i: _sign_in(stack, list(busy)[i % 3], answers), range(10)))
        stack.restart(second)
    finally:
        stop.set()
        for thread in people:
            thread.join(30)
    stack.wait_routed()
    failed = [answer for answer in answers if not isinstance(answer[3], int) or answer[3] >= 500]
    time.sleep(0.5)  # the edge's last access lines
    edge = [
        line
        for line in stack.nginx.access_log().splitlines()
        if any(f"request_id={request_id} " in line for request_id, *_ in failed)
    ]
    phases = f"{sum(answer in failed for answer in answers[:rolling])} in the rolling restart, the others after"
    assert not failed, f"{len(failed)} of {len(answers)} answers ({phases}): {failed[:5]}\n" + "\n".join(edge[:10])
    assert burst == [200] * 10, burst
