"""What the broker's SCIM service announces (/ServiceProviderConfig, /ResourceTypes, /Schemas) and its limits."""

from __future__ import annotations

import functools
from typing import Any

from scim2_models import (
    AuthenticationScheme,
    Bulk,
    ChangePassword,
    ETag,
    Filter,
    Pagination,
    Patch,
    Schema,
    ScimPolicy,
    ScimProvider,
    ServiceProviderConfig,
    Sort,
)
from scim2_server.utils import load_default_resource_types, load_default_schemas

MAX_RESULTS = 200  # a page of a search, at most (filter.maxResults, pagination.maxPageSize)
DEFAULT_PAGE = 100  # a page when the search names no count
MAX_BODY_BYTES = 1024 * 1024  # a request body (a group's members come in PATCHes of a few hundred)
MAX_GROUP_MEMBERS = 20_000  # a group listing more is refused (a GET of it stays under ~2 MB)
MAX_USER_BYTES = 64 * 1024  # a person's stored SCIM attributes, as JSON

DOCUMENTATION = "https://datatracker.ietf.org/doc/html/rfc6750"


def service_provider_config() -> ServiceProviderConfig:
    return ServiceProviderConfig(
        documentation_uri=None,
        patch=Patch(supported=True),
        bulk=Bulk(supported=False, max_operations=0, max_payload_size=0),
        filter=Filter(supported=True, max_results=MAX_RESULTS),
        change_password=ChangePassword(supported=False),
        sort=Sort(supported=False),
        etag=ETag(supported=True),
        pagination=Pagination(
            cursor=False,
            index=True,
            default_pagination_method=Pagination.DefaultPaginationMethod.index,
            default_page_size=DEFAULT_PAGE,
            max_page_size=MAX_RESULTS,
        ),
        authentication_schemes=[
            AuthenticationScheme.model_validate(
                {
                    "type": "oauthbearertoken",
                    "name": "OAuth Bearer Token",
                    "description": "The SCIM token the broker's configuration gives this identity provider "
                    "(one per upstream), in an Authorization: Bearer header.",
                    "specUri": DOCUMENTATION,
                    "primary": True,
                }
            )
        ],
    )


# What the service tolerates: attributes it does not define are refused (400, as the SCIM interoperability
# profile asks), while the two PATCH forms Microsoft Entra ID sends are understood: a `remove` whose value names
# the members to remove, and an `add`/`replace` on a filtered path that matches no entry yet (it creates it).
POLICY = ScimPolicy(
    unknown=ScimPolicy.Unknown.forbid,
    remove_value_as_filter=ScimPolicy.RemoveValue.apply,
    unmatched_path_filter=ScimPolicy.UnmatchedPathFilter.create,
)


def _schemas() -> list[Schema]:
    """RFC 7643's schemas, with one change: a group member's `display` is readOnly here (clients such as Okta
    send it, and it is ignored; the broker keeps the member, not a label for it)."""
    schemas = []
    for schema in load_default_schemas().values():
        if str(schema.id) == "urn:ietf:params:scim:schemas:core:2.0:Group":
            document = schema.model_dump()
            for attribute in document["attributes"]:
                for sub in attribute.get("subAttributes") or []:
                    if attribute["name"] == "members" and sub["name"] == "display":
                        sub["mutability"] = "readOnly"
            schema = Schema.model_validate(document)
        schemas.append(schema)
    return schemas


@functools.cache
def scim_provider() -> ScimProvider:
    """Users (with the enterprise extension) and Groups, as RFC 7643 defines them. Built once per process and
    shared (it is immutable): building it makes pydantic models from the schemas, which parses source with
    `ast` each time (slow, and it once hit CPython 3.11's "AST constructor recursion depth mismatch" in a test
    process that built many apps)."""
    return ScimProvider.from_discovery(
        _schemas(),
        load_default_resource_types().values(),
        config=service_provider_config(),
        policy=POLICY,
    )


def model_for(provider: ScimProvider, name: str) -> Any:
    """The model of the resource type `name` ("User", "Group"), its extensions included."""
    return provider.model_for(next(rt for rt in provider.resource_types if rt.name == name))
