"""The SQL backends' shared queries (sso_common/store/sql.py): the WHERE builder and the dialects. The queries
themselves run in both engines through the directory conformance suite (test_stores.py, test_shared_stores.py)."""

from __future__ import annotations

from sso_common.store import PeopleQuery
from sso_common.store.sql import POSTGRES, SQLITE


def test_where_ands_the_given_conditions_with_a_parameter_per_placeholder():
    where, params = SQLITE.where((("a = ?", 1), ("b = ?", None), ("(c = ? OR d = ?)", "x")))
    assert where == "WHERE a = ? AND (c = ? OR d = ?) " and params == [1, "x", "x"]
    assert SQLITE.where((("a = ?", None),)) == ("", [])


def test_postgresql_reads_the_same_clauses_with_its_placeholder():
    where, params = POSTGRES.where((("a = ?", 1), ("(c = ? OR d = ?)", "x")))
    assert where == "WHERE a = %s AND (c = %s OR d = %s) " and params == [1, "x", "x"]
    assert "?" not in POSTGRES.person_select + POSTGRES.group_select


def test_booleans_compare_as_each_engine_stores_them():
    assert SQLITE.people_filters(PeopleQuery(disabled=True, provisioned=False))[1] == [1, 0]
    assert POSTGRES.people_filters(PeopleQuery(disabled=True, provisioned=False))[1] == [True, False]


def test_a_group_filter_gives_its_value_to_both_of_its_placeholders():
    where, params = SQLITE.people_filters(PeopleQuery(upstream="up", group="Engineering"))
    assert where.count("?") == len(params) == 3 and params == ["up", "Engineering", "Engineering"]
