"""A small scripted browser for load generation: keep-alive connections, a cookie jar, HTML forms.

`requests` costs the load generator more CPU per call than the servers it measures spend on some of
the pages, and every process here shares two cores, so the load client uses `http.client` directly:
one keep-alive connection per site and browser, cookies kept per host name (as browsers do, ports
are ignored), redirects and SAML auto-post forms followed by the flows, never automatically.
"""

from __future__ import annotations

import http.client
import re
from dataclasses import dataclass
from html import unescape
from urllib.parse import urlencode, urljoin, urlsplit

_INPUT = re.compile(r"<input\b[^>]*>", re.IGNORECASE)
_ATTR = re.compile(r'(\w[\w-]*)="([^"]*)"')
_FORM = re.compile(r"<form\b([^>]*)>(.*?)</form>", re.IGNORECASE | re.DOTALL)


class FlowError(Exception):
    """A step of a flow did not answer what a working system answers."""


@dataclass
class Answer:
    status: int
    headers: http.client.HTTPMessage
    body: bytes
    url: str

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")

    @property
    def location(self) -> str | None:
        value = self.headers.get("Location")
        return urljoin(self.url, value) if value else None

    @property
    def is_redirect(self) -> bool:
        return self.status in (301, 302, 303, 307, 308) and "Location" in self.headers


def forms(html: str) -> list[dict]:
    """Every form: {"action", "method", "fields"} with the inputs that have a name and a value."""
    found = []
    for attributes, inner in _FORM.findall(html):
        attrs = dict(_ATTR.findall(attributes))
        fields = {}
        for tag in _INPUT.findall(inner):
            input_attrs = {k: unescape(v) for k, v in _ATTR.findall(tag)}
            if "name" in input_attrs:
                fields[input_attrs["name"]] = input_attrs.get("value", "")
        found.append(
            {
                "action": unescape(attrs.get("action", "")),
                "method": attrs.get("method", "get").lower(),
                "fields": fields,
            }
        )
    return found


def _resolve(host: str) -> str:
    # The portal is "localhost" on purpose (another site than the IdP); connect over IPv4 like the servers bind.
    return "127.0.0.1" if host == "localhost" else host


class Browser:
    """One person's browser: its own cookies and connections."""

    def __init__(self, timeout: float = 30.0):
        self.timeout = timeout
        self.cookies: dict[str, dict[str, str]] = {}
        self._connections: dict[tuple[str, int], http.client.HTTPConnection] = {}
        self.requests = 0

    def close(self) -> None:
        for connection in self._connections.values():
            connection.close()
        self._connections.clear()

    def _connection(self, host: str, port: int) -> http.client.HTTPConnection:
        key = (host, port)
        connection = self._connections.get(key)
        if connection is None:
            connection = http.client.HTTPConnection(_resolve(host), port, timeout=self.timeout)
            self._connections[key] = connection
        return connection

    def request(
        self, method: str, url: str, form: dict | None = None, headers: dict | None = None, body: bytes | None = None
    ) -> Answer:
        parts = urlsplit(url)
        host, port = parts.hostname, parts.port or 80
        target = parts.path or "/"
        if parts.query:
            target += "?" + parts.query
        all_headers = {"Host": parts.netloc, "Accept": "text/html,application/json;q=0.9", "User-Agent": "sso-bench/1"}
        jar = self.cookies.get(host)
        if jar:
            all_headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in jar.items())
        if form is not None:
            body = urlencode(form).encode()
            all_headers["Content-Type"] = "application/x-www-form-urlencoded"
        all_headers.update(headers or {})
        for attempt in (1, 2):  # a keep-alive connection the server closed meanwhile: reconnect once
            connection = self._connection(host, port)
            try:
                connection.request(method, target, body=body, headers=all_headers)
                response = connection.getresponse()
                data = response.read()
                break
            except (
                http.client.RemoteDisconnected,
                ConnectionResetError,
                BrokenPipeError,
                http.client.CannotSendRequest,
                http.client.ResponseNotReady,
            ):
                connection.close()
                self._connections.pop((host, port), None)
                if attempt == 2:
                    raise
            except (TimeoutError, OSError):
                connection.close()
                self._connections.pop((host, port), None)
                raise
        self.requests += 1
        if response.will_close:
            connection.close()
            self._connections.pop((host, port), None)
        for header in response.msg.get_all("Set-Cookie") or ():
            self._set_cookie(host, header)
        return Answer(response.status, response.msg, data, url)

    def get(self, url: str, **kwargs) -> Answer:
        return self.request("GET", url, **kwargs)

    def post(self, url: str, form: dict | None = None, **kwargs) -> Answer:
        return self.request("POST", url, form=form, **kwargs)

    def _set_cookie(self, host: str, header: str) -> None:
        first, _, attributes = header.partition(";")
        name, _, value = first.strip().partition("=")
        lowered = attributes.lower()
        jar = self.cookies.setdefault(host, {})
        if "max-age=0" in lowered.replace(" ", "") or "expires=thu, 01 jan 1970" in lowered:
            jar.pop(name, None)
        else:
            jar[name] = value.strip('"') if value.startswith('"') else value

    def follow(self, answer: Answer, stop_at: str | None = None, limit: int = 15) -> Answer:
        """Follow redirects and SAML auto-post forms until a page that is neither, or a redirect whose
        target starts with `stop_at` (returned, not followed)."""
        for _ in range(limit):
            if answer.is_redirect:
                target = answer.location
                if stop_at and target.startswith(stop_at):
                    return answer
                answer = self.get(target)
                continue
            if answer.status == 200 and (b"SAMLResponse" in answer.body or b"SAMLRequest" in answer.body):
                posted = [
                    f for f in forms(answer.text) if "SAMLResponse" in f["fields"] or "SAMLRequest" in f["fields"]
                ]
                if posted:
                    answer = self.post(urljoin(answer.url, posted[0]["action"]), posted[0]["fields"])
                    continue
            return answer
        raise FlowError("too many redirects")
