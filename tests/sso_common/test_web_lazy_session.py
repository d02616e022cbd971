"""Flask's session cookie is verified and decoded only when a request reads it (sso_common.web.LazySession)."""

from __future__ import annotations

from flask import Flask, session
from itsdangerous.signer import Signer

from sso_common.web import check_csrf, csrf_token, install_common


def _app(monkeypatch) -> tuple[Flask, list[str]]:
    decoded: list[str] = []  # every signature check of a session cookie
    original = Signer.verify_signature

    def counting(self, value, sig):
        decoded.append(value)
        return original(self, value, sig)

    monkeypatch.setattr(Signer, "verify_signature", counting)
    app = Flask(__name__)
    app.secret_key = b"k" * 32
    install_common(app, "Test", secure_cookies=False)

    @app.get("/form")
    def form():
        return csrf_token()

    @app.post("/form")
    def submit():
        check_csrf()
        return "ok"

    @app.get("/api")
    def api():
        return "no session here"

    @app.get("/forget")
    def forget():
        session.clear()
        return "cleared"

    return app, decoded


def test_a_request_that_never_reads_the_session_does_not_decode_it_nor_write_it(monkeypatch):
    app, decoded = _app(monkeypatch)
    client = app.test_client()
    client.get("/form")
    cookie = client.get_cookie("session").value
    answer = client.get("/api")
    assert answer.text == "no session here" and decoded == []
    assert "Set-Cookie" not in answer.headers and "Cookie" not in answer.headers.get("Vary", "")
    assert client.get_cookie("session").value == cookie  # left as it was


def test_a_form_still_reads_and_checks_its_token(monkeypatch):
    app, decoded = _app(monkeypatch)
    client = app.test_client()
    token = client.get("/form").text
    assert client.post("/form", data={"csrf_token": token}).text == "ok" and len(decoded) == 1
    assert client.post("/form", data={"csrf_token": "forged"}).status_code == 400
    assert client.get("/form").text == token  # the same token, read from the cookie


def test_a_tampered_cookie_is_an_empty_session(monkeypatch):
    app, _ = _app(monkeypatch)
    client = app.test_client()
    token = client.get("/form").text
    client.set_cookie("session", client.get_cookie("session").value[:-2] + "xx")
    assert client.post("/form", data={"csrf_token": token}).status_code == 400
    assert client.get("/form").text != token  # a new token


def test_clearing_the_session_deletes_the_cookie(monkeypatch):
    app, _ = _app(monkeypatch)
    client = app.test_client()
    client.get("/form")
    answer = client.get("/forget")
    assert "session=;" in answer.headers["Set-Cookie"] and client.get_cookie("session") is None
