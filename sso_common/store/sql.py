"""What the SQL backends (sso_common/store/sqlite.py, postgres.py) share: the directory's queries, written once.

Both hold the same tables; they differ only in the placeholder (`?` or `%s`), in how a subquery's rows become
one column (SQLite's `json_group_array`, PostgreSQL's `ARRAY`), and in how a boolean column compares (SQLite
stores 0 or 1). A `Dialect` says those three things; clauses here are written with `?` and read in the
dialect's placeholder, so a filter rule changed here changes for both.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from sso_common.store import DirectoryGroup, GroupQuery, PeopleQuery, Person, user_name_key


@dataclass(frozen=True)
class Dialect:
    mark: str  # the placeholder
    array: Callable[[str, str], str]  # (column, the rest of a subquery) -> one column holding the rows' values
    values: Callable[[Any], Iterable[str]]  # that column as read -> the values
    flag: Callable[[bool], Any]  # a boolean as its column compares

    def sql(self, text: str) -> str:
        """`text`, written with `?`, in this dialect's placeholder."""
        return text if self.mark == "?" else text.replace("?", self.mark)

    def where(self, conditions: Iterable[tuple[str, Any]]) -> tuple[str, list[Any]]:
        """The WHERE clause that ANDs each condition whose value is given (not None), and its parameters (the
        value once per `?` of its clause)."""
        given = [(clause, value) for clause, value in conditions if value is not None]
        if not given:
            return "", []
        clauses = " AND ".join(clause for clause, _ in given)
        return self.sql(f"WHERE {clauses} "), [value for clause, value in given for _ in range(clause.count("?"))]

    # --- the directory ---------------------------------------------------------------------------------

    @cached_property
    def person_select(self) -> str:
        """A person and their groups in one statement, so a concurrent put cannot pair old groups with new
        fields: a provisioned (SCIM) person's groups are those of the SCIM groups they are a member of."""
        return (
            "SELECT upstream, subject, email, display_name, disabled, revoked_at, updated_at, scim_id, user_name, "
            "scim_attributes, created_at, version, "
            "CASE WHEN p.scim_id IS NULL THEN "
            + self.array("group_name", "FROM membership m WHERE m.upstream = p.upstream AND m.subject = p.subject")
            + " ELSE "
            + self.array(
                "DISTINCT g.broker_group",
                "FROM group_member m JOIN directory_group g ON g.upstream = m.upstream AND g.id = m.group_id "
                "WHERE m.upstream = p.upstream AND m.scim_id = p.scim_id AND g.broker_group IS NOT NULL",
            )
            + " END FROM person p "
        )

    @cached_property
    def group_select(self) -> str:
        return (
            "SELECT upstream, id, display_name, external_id, broker_group, created_at, updated_at, version, "
            + self.array("scim_id", "FROM group_member m WHERE m.upstream = g.upstream AND m.group_id = g.id")
            + " FROM directory_group g "
        )

    def person(self, row: Iterable[Any]) -> Person:
        """A row of `person_select`."""
        (upstream, subject, email, display_name, disabled, revoked_at, updated_at, scim_id, user_name,
         scim_attributes, created_at, version, groups) = row  # fmt: skip
        return Person(
            upstream=upstream,
            subject=subject,
            email=email,
            display_name=display_name,
            groups=frozenset(self.values(groups)),
            disabled=bool(disabled),
            revoked_at=revoked_at,
            updated_at=updated_at,
            scim_id=scim_id,
            user_name=user_name,
            scim_attributes=scim_attributes,
            created_at=created_at,
            version=int(version),
        )

    def group(self, row: Iterable[Any]) -> DirectoryGroup:
        """A row of `group_select`."""
        upstream, group_id, display_name, external_id, broker_group, created_at, updated_at, version, members = row
        return DirectoryGroup(
            upstream=upstream,
            id=group_id,
            display_name=display_name,
            members=frozenset(self.values(members)),
            broker_group=broker_group,
            external_id=external_id,
            created_at=created_at,
            updated_at=updated_at,
            version=int(version),
        )

    def people_filters(self, query: PeopleQuery) -> tuple[str, list[Any]]:
        """The WHERE clause over `person p` for `query`."""
        return self.where(
            (
                ("p.upstream = ?", query.upstream),
                ("p.email = ?", query.email),
                (
                    "((p.upstream, p.subject) IN (SELECT upstream, subject FROM membership WHERE group_name = ?) "
                    "OR (p.upstream, p.scim_id) IN (SELECT m.upstream, m.scim_id FROM group_member m "
                    "JOIN directory_group g ON g.upstream = m.upstream AND g.id = m.group_id "
                    "WHERE g.broker_group = ?))",
                    query.group,
                ),
                ("p.disabled = ?", None if query.disabled is None else self.flag(query.disabled)),
                ("p.subject = ?", query.subject),
                ("p.scim_id = ?", query.scim_id),
                (
                    "(p.scim_id IS NOT NULL AND p.user_name_key = ?)",
                    None if query.user_name is None else user_name_key(query.user_name),
                ),
                ("p.display_name = ?", query.display_name),
                ("(p.scim_id IS NOT NULL) = ?", None if query.provisioned is None else self.flag(query.provisioned)),
            )
        )

    def group_filters(self, query: GroupQuery) -> tuple[str, list[Any]]:
        """The WHERE clause over `directory_group g` for `query`."""
        return self.where(
            (
                ("g.upstream = ?", query.upstream),
                ("g.id = ?", query.id),
                ("g.display_key = ?", None if query.display_name is None else user_name_key(query.display_name)),
                ("g.external_id = ?", query.external_id),
                (
                    "g.id IN (SELECT group_id FROM group_member m WHERE m.upstream = g.upstream AND m.scim_id = ?)",
                    query.member,
                ),
            )
        )


SQLITE = Dialect(
    mark="?",
    array=lambda column, rest: f"(SELECT json_group_array({column}) {rest})",
    values=json.loads,
    flag=int,
)
POSTGRES = Dialect(
    mark="%s",
    array=lambda column, rest: f"ARRAY(SELECT {column} {rest})",
    values=lambda values: values,
    flag=bool,
)
