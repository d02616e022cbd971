"""The one JSON form of typed records (sso_common/records.py)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import pytest

from sso_common.records import NOT_STORED, Record


@dataclass(frozen=True)
class Badge(Record):
    TAG = ("kind", "badge")
    number: int


@dataclass(frozen=True)
class Card(Record):
    TAG = ("kind", "card")
    holder: str


@dataclass(frozen=True)
class Person(Record):
    key: str = field(metadata=NOT_STORED)
    name: str
    groups: frozenset[str]
    aliases: tuple[str, ...]
    tokens: list[Badge | Card]
    best: Badge | None
    note: str | None = None


ALICE = Person("k1", "Alice", frozenset({"b", "a"}), ("al",), [Badge(7), Card("Alice")], Badge(1))


def test_the_record_is_json_with_sets_sorted_tags_written_and_the_key_left_out():
    assert ALICE.to_record() == {
        "name": "Alice",
        "groups": ["a", "b"],
        "aliases": ["al"],
        "tokens": [{"kind": "badge", "number": 7}, {"kind": "card", "holder": "Alice"}],
        "best": {"kind": "badge", "number": 1},
        "note": None,
    }


def test_a_record_comes_back_equal_through_json():
    assert Person.from_record(json.loads(json.dumps(ALICE.to_record())), key="k1") == ALICE


def test_a_missing_field_takes_its_default_or_is_an_error():
    record = ALICE.to_record()
    del record["note"]
    assert Person.from_record(record, key="k1").note is None
    del record["name"]
    with pytest.raises(KeyError):
        Person.from_record(record, key="k1")


def test_a_field_kept_out_of_the_record_must_be_given():
    with pytest.raises(TypeError):
        Person.from_record(ALICE.to_record())
