"""Config files: YAML with ${VAR:-default} interpolation, and errors that name file, key and problem.

Every service loads and validates its config once at start-up. A bad file stops the service with a
`ConfigError` whose message reads like ``config/directory.yaml: users.bob.groups[1]: unknown group 'x'``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

# ${NAME} or ${NAME:-default}; a default may itself hold ${...} (resolved innermost first).
_ENV_PATTERN = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^${}]*))?\}")
_PLACEHOLDER = re.compile(r"\x00(\d+)\x00")
# The variables ${...} reads: the process environment, unless `environment` names another for this context.
_ENVIRONMENT: ContextVar[Mapping[str, str] | None] = ContextVar("config_environment", default=None)


@contextmanager
def environment(variables: Mapping[str, str]) -> Iterator[None]:
    """Within the block (this thread or task only), config files read `variables` instead of the process
    environment: a launcher loading a service's config as the service's own process would see it."""
    token = _ENVIRONMENT.set(variables)
    try:
        yield
    finally:
        _ENVIRONMENT.reset(token)


class ConfigError(Exception):
    """A config file is invalid. The message names the file, the key and what is wrong."""

    def __init__(self, source: str, key: str, problem: str):
        self.source, self.key, self.problem = source, key, problem
        super().__init__(f"{source}: {key}: {problem}" if key else f"{source}: {problem}")


def _interpolate(text: str, source: str) -> str:
    """Replace ${NAME:-default}, nested defaults included. Values from the environment are set aside
    as placeholders until the end, so a value that happens to contain "${" is never expanded."""
    values: list[str] = []
    variables = _ENVIRONMENT.get()
    variables = os.environ if variables is None else variables

    def replace(match: re.Match) -> str:
        name, default = match.group(1), match.group(2)
        value = variables.get(name, default)
        if value is None:  # before the YAML is read, so no key yet: the line says where
            line = match.string.count("\n", 0, match.start()) + 1
            raise ConfigError(source, "", f"line {line}: environment variable {name} is not set and has no default")
        values.append(value)
        return f"\x00{len(values) - 1}\x00"

    while (expanded := _ENV_PATTERN.sub(replace, text)) != text:
        text = expanded
    while _PLACEHOLDER.search(text):  # a default may hold placeholders of the inner names
        text = _PLACEHOLDER.sub(lambda match: values[int(match.group(1))], text)
    return text


_SafeLoader: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _StrictLoader(_SafeLoader):  # type: ignore[valid-type,misc]  # chosen at import: libyaml's when present
    """SafeLoader that refuses duplicate keys (plain YAML keeps the last one silently). libyaml's parser
    when PyYAML has it: the pure-Python one took 4.5 s for a directory of 5,000 employees, libyaml 1.3 s."""


class DuplicateKeyError(yaml.YAMLError):
    def __init__(self, key, mark):
        self.key, self.problem_mark = key, mark
        self.problem = f"duplicate key {key!r}"


def _construct_mapping(loader, node, deep=False):
    seen = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise DuplicateKeyError(key, key_node.start_mark)
        seen.add(key)
    return yaml.SafeLoader.construct_mapping(loader, node, deep)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def load_yaml(path: str | Path) -> Node:
    """Read a YAML file (with env interpolation) into a `Node` rooted at the file."""
    path = Path(path)
    source = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(source, "", f"cannot read file ({exc.strerror})") from None
    try:
        data = yaml.load(_interpolate(text, source), Loader=_StrictLoader)  # noqa: S506 (safe loader)
    except DuplicateKeyError as exc:
        raise ConfigError(source, str(exc.key), f"duplicate key at line {exc.problem_mark.line + 1}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigError(source, "", f"not valid YAML{where}: {getattr(exc, 'problem', exc)}") from None
    return Node(source, "", data if data is not None else {})


_MISSING = object()


@dataclass(frozen=True)
class Node:
    """A value inside a config file, with the path that leads to it, for precise error messages."""

    source: str
    key: str
    value: Any

    def error(self, problem: str) -> ConfigError:
        return ConfigError(self.source, self.key or "(top level)", problem)

    def _child_key(self, name: str | int) -> str:
        if isinstance(name, int):
            return f"{self.key}[{name}]"
        return f"{self.key}.{name}" if self.key else str(name)

    def mapping(self) -> dict:
        if not isinstance(self.value, dict):
            raise self.error(f"must be a mapping, not {_type_name(self.value)}")
        return self.value

    def child(self, name: str, default: Any = _MISSING) -> Node:
        mapping = self.mapping()
        if name not in mapping:
            if default is _MISSING:
                raise ConfigError(self.source, self._child_key(name), "is required")
            return Node(self.source, self._child_key(name), default)
        return Node(self.source, self._child_key(name), mapping[name])

    def items(self) -> Iterable[tuple[str, Node]]:
        for name, value in self.mapping().items():
            if not isinstance(name, str):
                raise self.error(f"key {name!r} must be a string")
            yield name, Node(self.source, self._child_key(name), value)

    def elements(self) -> list[Node]:
        if not isinstance(self.value, list):
            raise self.error(f"must be a list, not {_type_name(self.value)}")
        return [Node(self.source, self._child_key(i), v) for i, v in enumerate(self.value)]

    def only_keys(self, *allowed: str) -> Node:
        """Refuse unknown keys, so a typo cannot silently disable a setting."""
        for name in self.mapping():
            if name not in allowed:
                raise ConfigError(
                    self.source, self._child_key(str(name)), f"unknown key (allowed: {', '.join(allowed)})"
                )
        return self

    def string(self, pattern: str | None = None, what: str = "") -> str:
        if not isinstance(self.value, str) or not self.value:
            raise self.error(f"must be a non-empty string, not {_type_name(self.value)}")
        if pattern and not re.fullmatch(pattern, self.value):
            raise self.error(f"{self.value!r} is not {what or 'valid'}")
        return self.value

    def secret(self, public_url: str, min_length: int = 16) -> str:
        """A shared secret. The shipped config falls back to public `demo-...` values so the demo runs
        without setup; a service on https is a real deployment and must have secrets of its own."""
        value = self.string()
        if len(value) < min_length:
            raise self.error(f"must be at least {min_length} characters")
        if value.lower().startswith(DEMO_SECRET_PREFIX) and public_url.lower().startswith("https://"):
            raise self.error(
                "is the public demo value; set your own secret (see the ${...} variable in the file) "
                "before serving over https"
            )
        return value

    def boolean(self) -> bool:
        if not isinstance(self.value, bool):
            raise self.error(f"must be true or false, not {_type_name(self.value)}")
        return self.value

    def integer(self, minimum: int | None = None, maximum: int | None = None) -> int:
        value = self.value
        if isinstance(value, str) and re.fullmatch(r"-?\d+", value):
            value = int(value)  # env-interpolated numbers arrive as strings
        if not isinstance(value, int) or isinstance(value, bool):
            raise self.error(f"must be a whole number, not {_type_name(self.value)}")
        if minimum is not None and value < minimum or maximum is not None and value > maximum:
            raise self.error(f"{value} is out of range ({minimum} to {maximum})")
        return value

    def strings(self) -> list[str]:
        return [element.string() for element in self.elements()]


def _type_name(value: Any) -> str:
    if value is None:
        return "empty"
    return {
        dict: "a mapping",
        list: "a list",
        str: "a string",
        bool: "a boolean",
        int: "a number",
        float: "a number",
    }.get(type(value), type(value).__name__)


DEMO_SECRET_PREFIX = "demo-"
EMAIL_PATTERN = r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+"
NAME_PATTERN = r"[a-z][a-z0-9._-]{0,63}"
URL_PATTERN = r"https?://[^\s/?#]+(/[^\s?#]*)?"
