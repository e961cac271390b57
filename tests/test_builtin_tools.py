"""The shipped tools: exact, deterministic results and errors the model can act on."""

from __future__ import annotations

import pytest
from calls import run, value

from synthgraph.tools.builtin_tools import EXCHANGE_RATES, builtin_registry


@pytest.fixture
def session():
    return builtin_registry().session()


@pytest.mark.parametrize(("expression", "expected"), [
    ("(3 + 4) * 2 ** 3", 56), ("7 // 2 + 7 % 2", 4), ("-2 ** 2", -4), ("sqrt(16) + abs(-1)", 5.0),
    ("max(1, 5, 3) - min(4, 2)", 3), ("round(2.675, 2)", 2.67), ("10 / 4", 2.5),
])
def test_calculate_evaluates_arithmetic(session, expression, expected):
    assert value(run(session, "calculate", expression=expression))["result"] == expected


@pytest.mark.parametrize(("expression", "message"), [
    ("__import__('os').system('id')", "unsupported expression"),
    ("(1).__class__", "unsupported expression"),
    ("9 ** 9 ** 9", "too large"),
    ("2 ** 100000", "too large"),
    ("10.0 ** 400", "too large"),
    ("1 / 0", "division by zero"),
    ("sqrt(-1)", "sqrt(-1) is undefined"),
    ("1 +", "cannot parse"),
    ("round(x=1)", "takes no keyword arguments"),
])
def test_calculate_refuses_what_is_not_safe_arithmetic(session, expression, message):
    result = run(session, "calculate", expression=expression)
    assert not result.ok and message in result.content


def test_convert_units_within_a_dimension(session):
    assert value(run(session, "convert_units", value=10, from_unit="km", to_unit="mi"))["result"] == 6.213711922
    assert value(run(session, "convert_units", value=100, from_unit="C", to_unit="F"))["result"] == 212
    assert value(run(session, "convert_units", value=1, from_unit="gal", to_unit="l"))["result"] == 3.785411784
    assert value(run(session, "convert_units", value=2, from_unit="h", to_unit="min"))["result"] == 120


def test_convert_units_refuses_mixed_dimensions_and_unknown_units(session):
    result = run(session, "convert_units", value=10, from_unit="km", to_unit="kg")
    assert result.error == "ValueError: cannot convert length (km) to mass (kg)"
    result = run(session, "convert_units", value=10, from_unit="parsec", to_unit="km")
    assert "'from_unit' must be one of" in result.content
    assert "below absolute zero" in run(session, "convert_units", value=-500, from_unit="C", to_unit="K").content


def test_date_tools(session):
    assert value(run(session, "add_days", date="2024-02-28", days=2)) == {"date": "2024-03-01", "weekday": "Friday"}
    assert value(run(session, "add_days", date="2024-01-10", days=-10))["date"] == "2023-12-31"
    assert value(run(session, "days_between", start_date="2024-01-01", end_date="2024-12-25"))["days"] == 359
    assert value(run(session, "weekday", date="1969-07-20"))["weekday"] == "Sunday"


def test_date_tools_refuse_impossible_dates(session):
    assert "invalid date '2023-02-29'" in run(session, "weekday", date="2023-02-29").content
    assert "must match the pattern" in run(session, "weekday", date="July 4th").content
    assert "outside the years" in run(session, "add_days", date="9999-12-31", days=1).content


def test_currency_tools_use_the_fixed_table(session):
    converted = value(run(session, "convert_currency", amount=100, from_currency="USD", to_currency="EUR"))
    assert converted["result"] == round(100 * EXCHANGE_RATES["EUR"], 2)
    rate = value(run(session, "get_exchange_rate", from_currency="EUR", to_currency="GBP"))["rate"]
    assert rate == round(EXCHANGE_RATES["GBP"] / EXCHANGE_RATES["EUR"], 6)


def test_unknown_currency_is_a_tool_error(session):
    result = run(session, "convert_currency", amount=5, from_currency="USD", to_currency="XYZ")
    assert not result.ok and "unknown currency 'XYZ'" in result.content


def test_file_tools_write_read_list_append_delete(session):
    assert value(run(session, "write_file", path="/notes/todo.txt", content="milk")) == {"path": "notes/todo.txt",
                                                                                         "size": 4}
    run(session, "write_file", path="notes/todo.txt", content=", eggs", append=True)
    run(session, "write_file", path="readme.md", content="hi")
    assert value(run(session, "read_file", path="notes/todo.txt"))["content"] == "milk, eggs"
    assert value(run(session, "list_files", prefix="notes/")) == {"files": [{"path": "notes/todo.txt", "size": 10}]}
    assert value(run(session, "delete_file", path="readme.md")) == {"deleted": "readme.md"}
    assert [f["path"] for f in value(run(session, "list_files"))["files"]] == ["notes/todo.txt"]


def test_missing_file_is_a_tool_error_that_lists_the_files(session):
    run(session, "write_file", path="a.txt", content="x")
    for name in ("read_file", "delete_file"):
        result = run(session, name, path="b.txt")
        assert result.error.startswith("FileNotFoundError:")
        assert "'b.txt'" in result.content and "(files: a.txt)" in result.content


def test_inventory_tools(session):
    run(session, "add_item", item="pen", quantity=5)
    assert value(run(session, "add_item", item="pen", quantity=2)) == {"item": "pen", "stock": 7}
    assert value(run(session, "remove_item", item="pen", quantity=3)) == {"item": "pen", "stock": 4}
    run(session, "add_item", item="cup", quantity=1)
    assert value(run(session, "get_stock", item="pen"))["stock"] == 4
    assert value(run(session, "list_items")) == {"items": [{"item": "cup", "stock": 1}, {"item": "pen", "stock": 4}]}


def test_inventory_refuses_overdraw_and_unknown_items(session):
    run(session, "add_item", item="pen", quantity=1)
    assert run(session, "remove_item", item="pen", quantity=2).content == "cannot remove 2 of 'pen': only 1 in stock"
    assert "no item 'ink' in the inventory (items: pen)" in run(session, "get_stock", item="ink").content
    assert "'quantity' must be >= 1" in run(session, "add_item", item="pen", quantity=0).content


def test_shopping_tools_search_add_and_total(session):
    found = value(run(session, "search_products", category="office", max_price_usd=40))["products"]
    assert {p["product_id"] for p in found} == {"P400", "P401"}
    assert value(run(session, "get_product", product_id="P200"))["price_usd"] == 199.0
    run(session, "add_to_cart", product_id="P400", quantity=2)
    run(session, "add_to_cart", product_id="P401")
    assert value(run(session, "view_cart"))["total_usd"] == 59.0


def test_shopping_refuses_unknown_and_out_of_stock_products(session):
    assert "no product 'P999'" in run(session, "get_product", product_id="P999").content
    assert "out of stock" in run(session, "add_to_cart", product_id="P102").content
    assert value(run(session, "view_cart")) == {"items": [], "total_usd": 0}
