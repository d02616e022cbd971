"""Just enough of an HTML reader to walk sign-in pages without a browser: forms, links, headings.

Built on html.parser, so attribute quoting, entities and odd whitespace are handled as browsers do.
Pure: tests feed it page text.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from html.parser import HTMLParser


@dataclass
class Form:
    action: str
    method: str
    inputs: dict[str, str] = field(default_factory=dict)  # name -> value, every named input
    types: dict[str, str] = field(default_factory=dict)  # name -> input type
    buttons: list[tuple[str, str]] = field(default_factory=list)  # (name, value) of submit buttons

    def has_type(self, kind: str) -> bool:
        return kind in self.types.values()

    @property
    def only_hidden(self) -> bool:
        """An auto-posting form (SAML's HTTP-POST binding): nothing for a person to fill in."""
        return bool(self.types) and set(self.types.values()) == {"hidden"}


@dataclass
class Page:
    forms: list[Form] = field(default_factory=list)
    links: list[str] = field(default_factory=list)
    marker: str | None = None  # the first data-device-page attribute: which portal page this is
    heading: str = ""
    paragraphs: list[str] = field(default_factory=list)
    alerts: list[str] = field(default_factory=list)  # text of each role="alert" element: why a form was refused

    @property
    def summary(self) -> str:
        """Heading and first meaningful paragraph: what a person would read first."""
        text = next((p for p in self.paragraphs if p), "")
        return f"{self.heading}: {text}" if text else self.heading


# Elements without an end tag: they do not open a level inside an alert.
VOID_ELEMENTS = frozenset({"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "wbr"})


class _Reader(HTMLParser):
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.page = Page()
        self._form: Form | None = None
        self._text_target: str | None = None
        self._text: list[str] = []
        self._alert_depth = 0  # elements open inside the current role="alert" element, itself included
        self._alert: list[str] = []

    def handle_starttag(self, tag, attrs):
        attributes = {name: value or "" for name, value in attrs}
        self._track_alert(tag, attributes)
        if self.page.marker is None and "data-device-page" in attributes:
            self.page.marker = attributes["data-device-page"]
        if tag == "form":
            self._form = Form(attributes.get("action", ""), attributes.get("method", "get").lower())
            self.page.forms.append(self._form)
        elif tag == "input" and self._form is not None and attributes.get("name"):
            kind = attributes.get("type", "text").lower()
            if kind in ("submit", "button", "image"):
                self._form.buttons.append((attributes["name"], attributes.get("value", "")))
            elif kind not in ("checkbox", "radio") or "checked" in attributes:
                self._form.inputs[attributes["name"]] = attributes.get("value", "")
                self._form.types[attributes["name"]] = kind
        elif tag == "button" and self._form is not None and attributes.get("type", "submit") == "submit":
            self._form.buttons.append((attributes.get("name", ""), attributes.get("value", "")))
        elif tag == "a" and attributes.get("href"):
            self.page.links.append(attributes["href"])
        elif tag in ("h1", "p"):
            self._text_target, self._text = tag, []

    def _track_alert(self, tag: str, attributes: dict[str, str]) -> None:
        if self._alert_depth:
            self._alert.append(" ")  # a tag inside the alert separates words (<p>, <br>), as browsers show it
        if tag in VOID_ELEMENTS:
            return
        if self._alert_depth:
            self._alert_depth += 1
        elif attributes.get("role") == "alert":
            self._alert_depth, self._alert = 1, []

    def _end_alert(self) -> None:
        if self._alert_depth:
            self._alert.append(" ")
            self._alert_depth -= 1
            if not self._alert_depth:
                self.page.alerts.append(" ".join("".join(self._alert).split()))

    def handle_endtag(self, tag):
        if tag not in VOID_ELEMENTS:
            self._end_alert()
        if tag == "form":
            self._form = None
        elif tag == self._text_target:
            text = " ".join("".join(self._text).split())
            if tag == "h1" and not self.page.heading:
                self.page.heading = text
            elif tag == "p":
                self.page.paragraphs.append(text)
            self._text_target = None

    def handle_data(self, data):
        if self._text_target:
            self._text.append(data)
        if self._alert_depth:
            self._alert.append(data)


def read_page(html: str) -> Page:
    reader = _Reader()
    reader.feed(html)
    reader.close()
    return reader.page
