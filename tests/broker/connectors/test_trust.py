"""The trust boundary's pure rules: domain patterns, group mappings and what access.yaml may assign."""

from __future__ import annotations

from types import MappingProxyType

import pytest

from broker.connectors.trust import GroupCatalogue, GroupMapping, domain_allowed, patterns_overlap
from tests.broker.connectors.trusts import trust


@pytest.mark.parametrize(
    "domain, pattern, allowed",
    [
        ("example.com", "example.com", True),
        ("EXAMPLE.com", "example.com", True),
        ("eu.example.com", "example.com", False),
        ("eu.example.com", "*.example.com", True),
        ("a.b.example.com", "*.example.com", True),
        ("example.com", "*.example.com", False),
        ("badexample.com", "*.example.com", False),
    ],
)
def test_domain_patterns(domain, pattern, allowed):
    assert domain_allowed(domain, pattern) is allowed


@pytest.mark.parametrize(
    "a, b, overlap",
    [
        ("example.com", "example.com", True),
        ("example.com", "partner.example", False),
        ("example.com", "*.example.com", False),
        ("eu.example.com", "*.example.com", True),
        ("*.example.com", "*.eu.example.com", True),
        ("*.example.com", "*.example.org", False),
        ("*.ample.com", "*.example.com", False),
    ],
)
def test_domain_pattern_overlap_is_symmetric(a, b, overlap):
    assert patterns_overlap(a, b) is overlap and patterns_overlap(b, a) is overlap


def test_a_group_mapping_maps_keeps_prefixes_and_drops():
    mapping = GroupMapping(MappingProxyType({"CN=AWS Admins": "aws-admins", "engineering": "engineering"}), None)
    assert mapping.apply(["CN=AWS Admins", "engineering", "other"]) == ({"aws-admins", "engineering"}, {"other"})
    assert mapping.can_produce("aws-admins") and not mapping.can_produce("CN=AWS Admins")
    assert mapping.describe() == [
        "CN=AWS Admins -> aws-admins",
        "engineering (kept)",
        "any other group: dropped (audited)",
    ]
    prefixed = GroupMapping(MappingProxyType({}), "partner-")
    assert prefixed.apply(["x"]) == ({"partner-x"}, frozenset())
    assert prefixed.can_produce("partner-x") and not prefixed.can_produce("partner-") and not prefixed.can_produce("x")


def test_the_catalogue_is_what_the_mappings_can_produce():
    catalogue = GroupCatalogue(
        [trust("corp", keep=("engineering", "aws-admins")), trust("partner", keep=(), prefix="p-")]
    )
    assert "engineering" in catalogue and "p-anything" in catalogue
    assert "finance" not in catalogue and "p-" not in catalogue and 3 not in catalogue
    assert list(catalogue) == ["aws-admins", "engineering"] and len(catalogue) == 2
    assert (
        str(catalogue)
        == "the upstreams' group mappings produce: aws-admins, engineering, or any name starting with 'p-'"
    )
