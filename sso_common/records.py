"""Typed records that travel through stores as JSON: one `to_record` / `from_record` for all of them.

A record is a frozen dataclass that subclasses `Record`. Its fields hold JSON values, nested records,
frozensets (stored as sorted lists), tuples and lists (stored as lists), and `X | None` of those. A
union of records is told apart by a tag each member declares (`TAG = ("protocol", "saml")`), written
into its record. A field marked `field(metadata=NOT_STORED)` stays out of the record (an ID that is
the store's key, say) and is passed to `from_record` by keyword instead.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Callable, Mapping
from typing import Any, ClassVar, Self

NOT_STORED: Mapping[str, bool] = types.MappingProxyType({"stored": False})

Converter = Callable[[Any], Any]


class Record:
    """Base of frozen dataclasses with a JSON form (see the module docstring)."""

    TAG: ClassVar[tuple[str, str] | None] = None

    def to_record(self) -> dict[str, Any]:
        record = {self.TAG[0]: self.TAG[1]} if self.TAG else {}
        for name in _stored_names(type(self)):
            record[name] = _dump(getattr(self, name))
        return record

    @classmethod
    def from_record(cls, record: Mapping[str, Any], **not_stored: Any) -> Self:
        """The record back; a field missing from `record` takes its default (records written before the
        field existed), and a field without a default must be there (KeyError otherwise)."""
        values = dict(not_stored)
        for name, load, has_default in _plan(cls):
            if name in record:
                values[name] = load(record[name])
            elif not has_default and name not in values:
                raise KeyError(name)
        return cls(**values)


_SCALARS = frozenset({str, int, float, bool, type(None)})
_STORED: dict[type, tuple[str, ...]] = {}


def _stored_names(cls: type) -> tuple[str, ...]:
    """The names of the fields a record of `cls` stores, found once per class."""
    names = _STORED.get(cls)
    if names is None:
        names = _STORED[cls] = tuple(item.name for item in dataclasses.fields(cls) if item.metadata.get("stored", True))
    return names


def _dump(value: Any) -> Any:
    if type(value) in _SCALARS:  # most values: nothing to convert
        return value
    if hasattr(value, "to_record"):
        return value.to_record()
    if isinstance(value, (frozenset, set)):
        return sorted(_dump(item) for item in value)
    if isinstance(value, (tuple, list)):
        return [_dump(item) for item in value]
    if isinstance(value, dict):
        return {key: _dump(item) for key, item in value.items()}
    return value


_PLANS: dict[type, tuple[tuple[str, Converter, bool], ...]] = {}


def _plan(cls: type) -> tuple[tuple[str, Converter, bool], ...]:
    """Per field: its name, how to load it, whether it has a default. Built once per class (a race
    between threads builds the same plan twice, harmlessly)."""
    if cls not in _PLANS:
        _PLANS[cls] = _build_plan(cls)
    return _PLANS[cls]


def _build_plan(cls: type) -> tuple[tuple[str, Converter, bool], ...]:
    hints = typing.get_type_hints(cls)
    return tuple(
        (
            item.name,
            _loader(hints[item.name]),
            item.default is not dataclasses.MISSING or item.default_factory is not dataclasses.MISSING,
        )
        for item in dataclasses.fields(cls)
        if item.metadata.get("stored", True)
    )


def _loader(hint: Any) -> Converter:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        members = [arg for arg in args if arg is not type(None)]
        tagged: dict[str, type[Record]] = {
            arg.TAG[1]: arg for arg in members if isinstance(arg, type) and issubclass(arg, Record) and arg.TAG
        }
        if len(tagged) > 1:
            key = next(iter(tagged.values())).TAG[0]  # type: ignore[index]  # every member has a TAG
            return lambda value: None if value is None else tagged[value[key]].from_record(value)
        inner = _loader(members[0]) if len(members) == 1 else _as_is
        return lambda value: None if value is None else inner(value)
    if isinstance(hint, type) and issubclass(hint, Record):
        return hint.from_record
    if origin in (frozenset, set):
        item = _loader(args[0]) if args else _as_is
        return lambda value: origin(item(element) for element in value)
    if origin is tuple:
        item = _loader(args[0]) if args else _as_is
        return lambda value: tuple(item(element) for element in value)
    if origin is list:
        item = _loader(args[0]) if args else _as_is
        return lambda value: [item(element) for element in value]
    return _as_is


def _as_is(value: Any) -> Any:
    return value
