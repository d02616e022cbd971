"""sso_common.json_input: JSON a client sent, refused when nothing downstream could store or show it, and
the shared Flask glue that reads every request body with it (sso_common.web.install_common)."""

from __future__ import annotations

import json

import pytest
from flask import Flask, request

from sso_common import json_input
from sso_common.web import install_common

DEEP = "[" * 5000 + "]" * 5000


@pytest.mark.parametrize(
    "data",
    [
        DEEP,
        DEEP.encode(),
        '{"name": "x\\ud800"}',
        '{"x\\udfff": 1}',
        '[[["\\ud800"]]]',
        b'"\xed\xa0\x80"',
        '{"name": "x\\ud800"}'.encode("utf-16"),
        '"x\ud800"'.encode("utf-16-le", "surrogatepass"),
    ],
    ids=[
        "deep",
        "deep-bytes",
        "surrogate-value",
        "surrogate-key",
        "surrogate-nested",
        "surrogate-bytes",
        "escape-in-utf-16",
        "raw-in-utf-16",
    ],
)
def test_what_no_encoder_or_recursion_limit_takes_is_refused_as_a_value_error(data):
    with pytest.raises(json_input.UnusableJSON):
        json_input.loads(data)
    assert issubclass(json_input.UnusableJSON, ValueError)  # every caller's "not valid JSON" answer applies


def test_valid_json_reads_as_json_does():
    text = '{"name": "caf\\u00e9 \\ud83d\\ude00", "n": [1, 2.5, null, true], "deep": ' + "[" * 50 + "]" * 50 + "}"
    assert json_input.loads(text) == json.loads(text)
    assert json_input.loads(text)["name"] == "café 😀"  # a surrogate pair is one character, not refused
    assert json_input.loads('{"a": "café 😀"}'.encode()) == json_input.loads('{"a": "café 😀"}'.encode("utf-16"))
    with pytest.raises(ValueError):
        json_input.loads("{not json")


def test_is_text():
    assert json_input.is_text("café 😀") and not json_input.is_text("x\ud800")


@pytest.fixture
def app() -> Flask:
    app = Flask(__name__)
    install_common(app, "Test", secure_cookies=False)

    @app.post("/echo")
    def echo():
        return {"got": request.get_json()}

    @app.post("/quiet")
    def quiet():
        return {"got": request.get_json(silent=True)}

    @app.get("/stored")
    def stored():
        return "<p>kept before the checks: evil\ud800name</p>"

    return app


@pytest.mark.parametrize("body", [DEEP, '{"a": "\\ud800"}'], ids=["deep", "surrogate"])
def test_every_request_body_read_as_json_is_checked(app, body):
    client = app.test_client()
    answer = client.post("/echo", data=body, content_type="application/json")
    assert answer.status_code == 400
    assert client.post("/quiet", data=body, content_type="application/json").get_json() == {"got": None}
    assert client.post("/echo", json={"a": "é"}).get_json() == {"got": {"a": "é"}}


def test_a_page_holding_a_lone_surrogate_is_sent_not_a_500(app):
    answer = app.test_client().get("/stored")
    assert answer.status_code == 200 and answer.data == b"<p>kept before the checks: evil?name</p>"
