"""The SCIM filters the broker evaluates, translated into the store's typed queries (never into query text).

scim2-models has already parsed and type-checked the filter; here its syntax tree is walked, and only these
shapes are accepted, which cover what Entra ID and Okta send:
- Users: `userName`, `externalId`, `id` and `displayName` compared with `eq` to a string;
- Groups: `displayName`, `externalId` and `id` with `eq`, and `members[value eq "<user id>"]` (or
  `members.value eq "<user id>"`);
- any number of those joined with `and`.
Anything else (`or`, `not`, `pr`, other operators, other attributes) is a 400 `invalidFilter` that says what
is supported: the broker never evaluates a filter partly, which would make totalResults and paging wrong.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from scim2_models import InvalidFilterException
from scim2_models.path import CompareOperator, Comparison, FilterNode, LogicalExpr, LogicalOperator, ValuePath

from sso_common.json_input import is_text

USER_SCHEMA = "urn:ietf:params:scim:schemas:core:2.0:User"
GROUP_SCHEMA = "urn:ietf:params:scim:schemas:core:2.0:Group"

# attribute (lower case) -> the query field it fills, per resource type
USER_FIELDS = {"username": "user_name", "externalid": "subject", "id": "scim_id", "displayname": "display_name"}
GROUP_FIELDS = {"displayname": "display_name", "externalid": "external_id", "id": "id", "members.value": "member"}
SUPPORTED = {
    "User": 'eq on userName, externalId, id or displayName, joined with "and"',
    "Group": 'eq on displayName, externalId or id, members[value eq "..."], joined with "and"',
}
NOTHING = object()  # a filter that cannot match (the same attribute asked equal to two values)


def translate(node: FilterNode | None, resource_type: str) -> dict[str, Any] | None:
    """{query field: value} for the filter's tree (empty without a filter), or None when it can match nothing.
    InvalidFilterException for any other shape."""
    if node is None:
        return {}
    fields: dict[str, Any] = {}
    for name, value in _terms(node, resource_type):
        if fields.get(name, value) != value:
            return None
        fields[name] = value
    return fields


def _terms(node: FilterNode, resource_type: str) -> list[tuple[str, Any]]:
    if isinstance(node, LogicalExpr) and node.op == LogicalOperator.and_:
        return [term for child in node.terms for term in _terms(child, resource_type)]
    if isinstance(node, Comparison):
        return [_comparison(node, resource_type, prefix="")]
    if (
        isinstance(node, ValuePath)
        and resource_type == "Group"
        and node.attr_path.attr.lower() == "members"
        and node.attr_path.uri in (None, GROUP_SCHEMA)
        and node.sub_attr is None
        and isinstance(node.val_filter, Comparison)
    ):
        return [_comparison(node.val_filter, resource_type, prefix="members.")]
    raise _unsupported(resource_type)


def _comparison(node: Comparison, resource_type: str, prefix: str) -> tuple[str, Any]:
    fields: Mapping[str, str] = USER_FIELDS if resource_type == "User" else GROUP_FIELDS
    schema = USER_SCHEMA if resource_type == "User" else GROUP_SCHEMA
    path = node.attr_path
    name = prefix + path.attr.lower() + (f".{path.sub_attr.lower()}" if path.sub_attr else "")
    if path.uri not in (None, schema) or name not in fields or node.op != CompareOperator.eq:
        raise _unsupported(resource_type)
    if not isinstance(node.value, str):
        raise InvalidFilterException(detail=f"{path.attr} must be compared to a string")
    if not is_text(node.value):  # the filter's "\ud800" escape: no store can look it up
        raise InvalidFilterException(detail=f"{path.attr} must be compared to Unicode text")
    return fields[name], node.value


def _unsupported(resource_type: str) -> InvalidFilterException:
    return InvalidFilterException(detail=f"This service filters {resource_type}s with {SUPPORTED[resource_type]} only")
