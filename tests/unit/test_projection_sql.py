"""SQL templates: declared table names become quoted physical names, ``?``
becomes the driver's placeholder, and nothing inside quotes or comments changes."""

from __future__ import annotations

import pytest

from eventfold import InvalidArgument
from eventfold.subscriptions.sqltemplate import check_name, expand_lists, quote_sqlite, render

TABLES = {"orders": '"orders_v2"'}


def test_tables_and_placeholders() -> None:
    sql = "SELECT * FROM {orders} WHERE id = ? AND n > ?"
    assert render(sql, TABLES, "sqlite") == 'SELECT * FROM "orders_v2" WHERE id = ? AND n > ?'
    assert render(sql, TABLES, "postgresql") == (
        'SELECT * FROM "orders_v2" WHERE id = %s AND n > %s'
    )


def test_quotes_and_comments_pass_through() -> None:
    sql = "SELECT '{orders}?', \"a?\" FROM {orders} -- why? {x}\nWHERE b = 'it''s ?' /* {y}? */"
    out = render(sql, TABLES, "sqlite")
    assert out == (
        "SELECT '{orders}?', \"a?\" FROM \"orders_v2\" -- why? {x}\nWHERE b = 'it''s ?' /* {y}? */"
    )


def test_percent_is_escaped_for_psycopg() -> None:
    sql = "SELECT * FROM {orders} WHERE name LIKE 'a%' AND x % 2 = ?"
    assert render(sql, TABLES, "postgresql") == (
        "SELECT * FROM \"orders_v2\" WHERE name LIKE 'a%%' AND x %% 2 = %s"
    )
    assert render(sql, TABLES, "sqlite").count("%") == 2


@pytest.mark.parametrize(
    "sql", ["SELECT * FROM {users}", "SELECT * FROM {orders", "SELECT '{orders}", "{}"]
)
def test_undeclared_or_malformed_names_are_refused(sql: str) -> None:
    with pytest.raises(InvalidArgument):
        render(sql, TABLES, "sqlite")


@pytest.mark.parametrize(
    "name", ["", "A", "1abc", "a-b", "a b", 'a"', "x" * 41, "drop;table", None, 3]
)
def test_names_are_checked(name: object) -> None:
    with pytest.raises(InvalidArgument):
        check_name(name)


def test_quote_checks_generated_names() -> None:
    assert quote_sqlite("orders_v1_2") == '"orders_v1_2"'
    with pytest.raises(InvalidArgument):
        quote_sqlite('orders"; drop')


def test_a_list_parameter_gets_one_placeholder_per_item() -> None:
    sql = "SELECT '?' FROM {orders} WHERE sku IN (?) AND n > ? -- (?)\nAND s IN (?)"
    out, args = expand_lists(sql, [("a", "b", "c"), 3, []])
    assert (
        out == "SELECT '?' FROM {orders} WHERE sku IN (?, ?, ?) AND n > ? -- (?)\nAND s IN (NULL)"
    )
    assert args == ("a", "b", "c", 3)
    assert render(out, TABLES, "postgresql").count("%s") == 4
    assert expand_lists("SELECT ?", [1]) == ("SELECT ?", (1,))  # no list: unchanged
    with pytest.raises(InvalidArgument):
        expand_lists("SELECT ? IN (?)", [[1]])
