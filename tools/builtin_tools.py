"""The shipped tools: pure Python with fixed data, no network, no clock (date tools take dates as arguments),
no randomness, so the same calls always give the same results.

`builtin_registry()` gives a new registry of all of them; `register_document_search` adds retrieval over a
store's corpus as one more tool.
"""

from __future__ import annotations

import ast
import datetime as dt
import math
import operator
import posixpath
from collections.abc import Callable
from typing import Any

from synthgraph.tools.registry import Tool, ToolRegistry

__all__ = ["CATALOG", "EXCHANGE_RATES", "builtin_registry", "register_document_search", "search_documents_spec"]


def _spec(name: str, description: str, properties: dict[str, Any], required: list[str] | None = None
          ) -> dict[str, Any]:
    required = list(properties) if required is None else required
    parameters = {"type": "object", "properties": properties, "required": required}
    return {"type": "function", "function": {"name": name, "description": description, "parameters": parameters}}


# -- math: calculator

_MAX_EXPRESSION = 500
_MAX_INT_BITS = 10_000  # a result of about 3,000 digits; beyond that an "exponent" is a denial of service
_BINARY = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
           ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod, ast.Pow: operator.pow}
_UNARY = {ast.UAdd: operator.pos, ast.USub: operator.neg}
_FUNCTIONS: dict[str, Callable[..., Any]] = {"sqrt": math.sqrt, "abs": abs, "round": round, "min": min, "max": max,
                                            "floor": math.floor, "ceil": math.ceil, "log": math.log}
_CONSTANTS = {"pi": math.pi, "e": math.e}


def calculate(expression: str) -> dict[str, Any]:
    if len(expression) > _MAX_EXPRESSION:
        raise ValueError(f"expression is too long ({len(expression)} characters, at most {_MAX_EXPRESSION})")
    try:
        tree = ast.parse(expression.strip(), mode="eval")
    except SyntaxError as error:
        raise ValueError(f"cannot parse {expression!r}: {error.msg}") from None
    try:
        result = _evaluate(tree.body)
    except OverflowError:
        raise ValueError("the result is too large for a floating-point number") from None
    if isinstance(result, float) and not math.isfinite(result):
        raise ValueError("the result is not a finite number")
    return {"expression": expression, "result": result}


def _evaluate(node: ast.AST) -> int | float:
    if isinstance(node, ast.Constant) and type(node.value) in (int, float):
        return node.value
    if isinstance(node, ast.Name) and node.id in _CONSTANTS:
        return _CONSTANTS[node.id]
    if isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
        return _UNARY[type(node.op)](_evaluate(node.operand))
    if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
        left, right = _evaluate(node.left), _evaluate(node.right)
        if isinstance(node.op, ast.Pow):
            _check_power(left, right)
        return _BINARY[type(node.op)](left, right)
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in _FUNCTIONS:
        if node.keywords:
            raise ValueError(f"{node.func.id}() takes no keyword arguments")
        arguments = [_evaluate(argument) for argument in node.args]
        try:
            return _FUNCTIONS[node.func.id](*arguments)
        except (TypeError, ValueError) as error:
            raise ValueError(f"{node.func.id}({', '.join(map(str, arguments))}) is undefined: {error}") from None
    allowed = "numbers, + - * / // % **, parentheses, pi, e and " + ", ".join(_FUNCTIONS)
    raise ValueError(f"unsupported expression {ast.unparse(node)!r}: only {allowed} are allowed")


def _check_power(base: int | float, exponent: int | float) -> None:
    if abs(exponent) > 10_000:
        raise ValueError(f"exponent {exponent} is too large (at most 10000)")
    if isinstance(base, int) and isinstance(exponent, int) and exponent > 0:
        if abs(base).bit_length() * exponent > _MAX_INT_BITS:
            raise ValueError(f"{base} ** {exponent} is too large to compute exactly")


# -- math: unit conversion

# Factor to the dimension's base unit (metre, kilogram, litre, second); temperature is affine, handled apart.
_UNITS: dict[str, tuple[str, float]] = {
    "mm": ("length", 0.001), "cm": ("length", 0.01), "m": ("length", 1.0), "km": ("length", 1000.0),
    "in": ("length", 0.0254), "ft": ("length", 0.3048), "yd": ("length", 0.9144), "mi": ("length", 1609.344),
    "mg": ("mass", 1e-6), "g": ("mass", 0.001), "kg": ("mass", 1.0), "t": ("mass", 1000.0),
    "oz": ("mass", 0.028349523125), "lb": ("mass", 0.45359237),
    "ml": ("volume", 0.001), "l": ("volume", 1.0), "m3": ("volume", 1000.0), "tsp": ("volume", 0.00492892159375),
    "tbsp": ("volume", 0.01478676478125), "fl_oz": ("volume", 0.0295735295625), "cup": ("volume", 0.2365882365),
    "pt": ("volume", 0.473176473), "qt": ("volume", 0.946352946), "gal": ("volume", 3.785411784),
    "s": ("time", 1.0), "min": ("time", 60.0), "h": ("time", 3600.0), "day": ("time", 86400.0),
    "week": ("time", 604800.0),
    "C": ("temperature", 1.0), "F": ("temperature", 1.0), "K": ("temperature", 1.0),
}
_TO_KELVIN = {"C": lambda v: v + 273.15, "F": lambda v: (v - 32) * 5 / 9 + 273.15, "K": lambda v: v}
_FROM_KELVIN = {"C": lambda k: k - 273.15, "F": lambda k: (k - 273.15) * 9 / 5 + 32, "K": lambda k: k}


def convert_units(value: float, from_unit: str, to_unit: str) -> dict[str, Any]:
    source, target = _UNITS[from_unit][0], _UNITS[to_unit][0]
    if source != target:
        raise ValueError(f"cannot convert {source} ({from_unit}) to {target} ({to_unit})")
    if source == "temperature":
        kelvin = _TO_KELVIN[from_unit](value)
        if kelvin < 0:
            raise ValueError(f"{value} {from_unit} is below absolute zero")
        result = _FROM_KELVIN[to_unit](kelvin)
    else:
        result = value * _UNITS[from_unit][1] / _UNITS[to_unit][1]
    # Ten significant digits: exact enough for any question, and free of binary noise like 0.30000000000000004.
    return {"value": value, "from_unit": from_unit, "to_unit": to_unit, "result": float(f"{result:.10g}")}


# -- dates

# Not strftime("%A"): that follows the process locale.
_WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")

_DATE = {"type": "string", "pattern": r"^\d{4}-\d{2}-\d{2}$", "description": "A calendar date, YYYY-MM-DD."}


def _date(text: str) -> dt.date:
    try:
        return dt.date.fromisoformat(text)
    except ValueError as error:
        raise ValueError(f"invalid date {text!r}: {error}") from None


def add_days(date: str, days: int) -> dict[str, Any]:
    try:
        result = _date(date) + dt.timedelta(days=days)
    except OverflowError:
        raise ValueError(f"{date} plus {days} days is outside the years 1-9999") from None
    return {"date": result.isoformat(), "weekday": _WEEKDAYS[result.weekday()]}


def days_between(start_date: str, end_date: str) -> dict[str, Any]:
    return {"start_date": start_date, "end_date": end_date, "days": (_date(end_date) - _date(start_date)).days}


def weekday(date: str) -> dict[str, Any]:
    return {"date": date, "weekday": _WEEKDAYS[_date(date).weekday()]}


# -- money

# Illustrative rates, units of the currency per 1 USD. Fixed on purpose so conversions are reproducible;
# they are not market data and must not be used as such.
EXCHANGE_RATES: dict[str, float] = {
    "USD": 1.0, "EUR": 0.92, "GBP": 0.79, "JPY": 150.0, "CHF": 0.88, "CAD": 1.36, "AUD": 1.52, "CNY": 7.2,
    "INR": 83.0, "MXN": 17.0, "BRL": 5.0, "SEK": 10.5,
}
_CURRENCY = {"type": "string", "pattern": "^[A-Z]{3}$", "description": "ISO 4217 code, e.g. USD, EUR, JPY."}


def _rate(from_currency: str, to_currency: str) -> float:
    for code in (from_currency, to_currency):
        if code not in EXCHANGE_RATES:
            raise ValueError(f"unknown currency '{code}'; known: {', '.join(EXCHANGE_RATES)}")
    return EXCHANGE_RATES[to_currency] / EXCHANGE_RATES[from_currency]


def get_exchange_rate(from_currency: str, to_currency: str) -> dict[str, Any]:
    rate = _rate(from_currency, to_currency)
    return {"from_currency": from_currency, "to_currency": to_currency, "rate": round(rate, 6)}


def convert_currency(amount: float, from_currency: str, to_currency: str) -> dict[str, Any]:
    rate = _rate(from_currency, to_currency)
    return {"amount": amount, "from_currency": from_currency, "to_currency": to_currency,
            "rate": round(rate, 6), "result": round(amount * rate, 2)}


# -- files (state: {"files": {path: content}})

_MAX_FILES = 200
_MAX_FILE_CHARS = 100_000
_PATH = {"type": "string", "minLength": 1, "description": "File path, e.g. 'notes/todo.txt'."}


def _normal_path(path: str) -> str:
    normal = posixpath.normpath("/" + path.strip()).lstrip("/")
    if not normal or normal == ".":
        raise ValueError(f"{path!r} is not a file path")
    return normal


def _files(state: dict[str, Any]) -> dict[str, str]:
    return state.setdefault("files", {})


def _existing(state: dict[str, Any], path: str) -> str:
    normal = _normal_path(path)
    if normal not in _files(state):
        known = ", ".join(sorted(_files(state))) or "none"
        raise FileNotFoundError(f"no such file: '{normal}' (files: {known})")
    return normal


def write_file(state: dict[str, Any], path: str, content: str, append: bool = False) -> dict[str, Any]:
    files, normal = _files(state), _normal_path(path)
    text = files.get(normal, "") + content if append else content
    if len(text) > _MAX_FILE_CHARS:
        raise ValueError(f"'{normal}' would hold {len(text)} characters; the limit is {_MAX_FILE_CHARS}")
    if normal not in files and len(files) >= _MAX_FILES:
        raise ValueError(f"the file system is full ({_MAX_FILES} files); delete one first")
    files[normal] = text
    return {"path": normal, "size": len(text)}


def read_file(state: dict[str, Any], path: str) -> dict[str, Any]:
    normal = _existing(state, path)
    return {"path": normal, "content": _files(state)[normal]}


def list_files(state: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    start = prefix.strip().lstrip("/")
    return {"files": [{"path": path, "size": len(content)}
                      for path, content in sorted(_files(state).items()) if path.startswith(start)]}


def delete_file(state: dict[str, Any], path: str) -> dict[str, Any]:
    normal = _existing(state, path)
    del _files(state)[normal]
    return {"deleted": normal}


# -- inventory (state: {"inventory": {item: count}})

_ITEM = {"type": "string", "minLength": 1, "description": "Item name, matched exactly (e.g. 'blue pen')."}
_QUANTITY = {"type": "integer", "minimum": 1, "description": "How many units."}


def _stock(state: dict[str, Any]) -> dict[str, int]:
    return state.setdefault("inventory", {})


def _stocked(state: dict[str, Any], item: str) -> int:
    if item not in _stock(state):
        known = f"items: {', '.join(sorted(_stock(state)))}" if _stock(state) else "it is empty"
        raise KeyError(f"no item '{item}' in the inventory ({known})")
    return _stock(state)[item]


def add_item(state: dict[str, Any], item: str, quantity: int) -> dict[str, Any]:
    stock = _stock(state)
    stock[item] = stock.get(item, 0) + quantity
    return {"item": item, "stock": stock[item]}


def remove_item(state: dict[str, Any], item: str, quantity: int) -> dict[str, Any]:
    have = _stocked(state, item)
    if quantity > have:
        raise ValueError(f"cannot remove {quantity} of '{item}': only {have} in stock")
    _stock(state)[item] = have - quantity
    return {"item": item, "stock": have - quantity}


def get_stock(state: dict[str, Any], item: str) -> dict[str, Any]:
    return {"item": item, "stock": _stocked(state, item)}


def list_items(state: dict[str, Any]) -> dict[str, Any]:
    return {"items": [{"item": item, "stock": count} for item, count in sorted(_stock(state).items())]}


# -- shopping: a fixed catalog (illustrative products and USD prices) and a cart (state: {"cart": {id: qty}})

CATALOG: dict[str, dict[str, Any]] = {
    "P100": {"name": "Trail running shoes", "category": "sports", "price_usd": 89.99, "in_stock": True},
    "P101": {"name": "Yoga mat", "category": "sports", "price_usd": 24.5, "in_stock": True},
    "P102": {"name": "Steel water bottle", "category": "sports", "price_usd": 18.0, "in_stock": False},
    "P200": {"name": "Noise-cancelling headphones", "category": "electronics", "price_usd": 199.0, "in_stock": True},
    "P201": {"name": "USB-C charger 65W", "category": "electronics", "price_usd": 39.99, "in_stock": True},
    "P202": {"name": "E-book reader", "category": "electronics", "price_usd": 129.0, "in_stock": True},
    "P300": {"name": "Espresso beans 1kg", "category": "kitchen", "price_usd": 21.75, "in_stock": True},
    "P301": {"name": "Chef's knife", "category": "kitchen", "price_usd": 64.0, "in_stock": True},
    "P302": {"name": "Cast iron skillet", "category": "kitchen", "price_usd": 45.5, "in_stock": False},
    "P400": {"name": "Notebook A5 dotted", "category": "office", "price_usd": 12.0, "in_stock": True},
    "P401": {"name": "Fountain pen", "category": "office", "price_usd": 35.0, "in_stock": True},
    "P402": {"name": "Desk lamp", "category": "office", "price_usd": 49.9, "in_stock": True},
}
_CATEGORIES = sorted({product["category"] for product in CATALOG.values()})
_PRODUCT_ID = {"type": "string", "description": "Catalog product id, e.g. 'P100' (see search_products)."}


def _product(product_id: str) -> dict[str, Any]:
    if product_id not in CATALOG:
        raise KeyError(f"no product '{product_id}' in the catalog; search_products lists the ids")
    return {"product_id": product_id, **CATALOG[product_id]}


def search_products(query: str = "", category: str | None = None, max_price_usd: float | None = None
                    ) -> dict[str, Any]:
    words = query.lower().split()
    return {"products": [_product(product_id) for product_id, product in CATALOG.items()
                         if all(word in product["name"].lower() for word in words)
                         and (category is None or product["category"] == category)
                         and (max_price_usd is None or product["price_usd"] <= max_price_usd)]}


def get_product(product_id: str) -> dict[str, Any]:
    return _product(product_id)


def add_to_cart(state: dict[str, Any], product_id: str, quantity: int = 1) -> dict[str, Any]:
    product = _product(product_id)
    if not product["in_stock"]:
        raise ValueError(f"'{product['name']}' ({product_id}) is out of stock")
    cart = state.setdefault("cart", {})
    cart[product_id] = cart.get(product_id, 0) + quantity
    return {"product_id": product_id, "quantity": cart[product_id]}


def view_cart(state: dict[str, Any]) -> dict[str, Any]:
    lines = [{"product_id": product_id, "name": CATALOG[product_id]["name"], "quantity": quantity,
              "subtotal_usd": round(CATALOG[product_id]["price_usd"] * quantity, 2)}
             for product_id, quantity in state.get("cart", {}).items()]
    return {"items": lines, "total_usd": round(sum(line["subtotal_usd"] for line in lines), 2)}


def search_documents_spec(about: str) -> dict[str, Any]:
    return _spec("search_documents",
                 f"Search {about} (full text); returns the best-matching passages with their ids, titles and text.",
                 {"query": {"type": "string", "minLength": 1, "description": "Keywords to look for."},
                  "k": {"type": "integer", "minimum": 1, "maximum": 8, "description": "How many passages (default 3)."}},
                 required=["query"])


def register_document_search(registry: ToolRegistry, search: Callable[[str, int], list[Any]], *, about: str,
                             passage_chars: int = 400) -> Tool:
    """Offer retrieval over a store's corpus as a tool. `search(query, k)` returns hits with `chunk_id`, `title`,
    `heading` and `text` (tools/retrieval.py's `Retriever.search`); passages are cut to `passage_chars`."""
    def search_documents(query: str, k: int = 3) -> dict[str, Any]:
        hits = search(query, k)
        return {"passages": [{"id": h.chunk_id, "title": h.title, "heading": h.heading,
                              "text": h.text[:passage_chars]} for h in hits]}

    return registry.register(search_documents_spec(about), search_documents, group="documents", replace=True)


def builtin_registry() -> ToolRegistry:
    """A new registry of the shipped tools (a new one per call, so registering more never leaks)."""
    registry = ToolRegistry()
    add = registry.register

    add(_spec("calculate",
              "Evaluate an arithmetic expression exactly as a calculator would. Supports numbers, + - * / // % **, "
              "parentheses, the constants pi and e, and sqrt, abs, round, min, max, floor, ceil, log.",
              {"expression": {"type": "string", "minLength": 1,
                              "description": "The expression, e.g. '(3 + 4) * 2 ** 3' or 'sqrt(2) * 10'."}}),
        calculate, group="math")
    add(_spec("convert_units",
              "Convert a value between units of the same kind: length (mm cm m km in ft yd mi), mass (mg g kg t oz "
              "lb), volume (ml l m3 tsp tbsp fl_oz cup pt qt gal, US measures), time (s min h day week), "
              "temperature (C F K).",
              {"value": {"type": "number", "description": "The quantity to convert."},
               "from_unit": {"type": "string", "enum": list(_UNITS), "description": "Unit of the value."},
               "to_unit": {"type": "string", "enum": list(_UNITS), "description": "Unit wanted."}}),
        convert_units, group="math")

    add(_spec("add_days", "Add days to a date (negative days go back); returns the new date and its weekday.",
              {"date": _DATE, "days": {"type": "integer", "description": "Days to add; negative goes back."}}),
        add_days, group="dates")
    add(_spec("days_between", "Count the days from start_date to end_date (negative when end_date is earlier).",
              {"start_date": _DATE, "end_date": _DATE}),
        days_between, group="dates")
    add(_spec("weekday", "The day of the week (Monday ... Sunday) of a date.", {"date": _DATE}),
        weekday, group="dates")

    add(_spec("get_exchange_rate",
              "Exchange rate between two currencies from the fixed rate table (units of to_currency per 1 "
              f"from_currency). Known currencies: {', '.join(EXCHANGE_RATES)}.",
              {"from_currency": _CURRENCY, "to_currency": _CURRENCY}),
        get_exchange_rate, group="money")
    add(_spec("convert_currency",
              "Convert an amount of money between currencies with the fixed rate table; the result is rounded to "
              f"2 decimals. Known currencies: {', '.join(EXCHANGE_RATES)}.",
              {"amount": {"type": "number", "minimum": 0, "description": "Amount in from_currency."},
               "from_currency": _CURRENCY, "to_currency": _CURRENCY}),
        convert_currency, group="money")

    add(_spec("write_file", "Create or overwrite a text file (or append to it) in the user's workspace.",
              {"path": _PATH, "content": {"type": "string", "description": "Text to write."},
               "append": {"type": "boolean", "description": "Append instead of overwriting. Default false."}},
              ["path", "content"]),
        write_file, group="files", stateful=True)
    add(_spec("read_file", "Read the full text of a file in the user's workspace.", {"path": _PATH}),
        read_file, group="files", stateful=True)
    add(_spec("list_files", "List the files in the user's workspace with their sizes in characters.",
              {"prefix": {"type": "string", "description": "Only paths starting with this, e.g. 'notes/'."}}, []),
        list_files, group="files", stateful=True)
    add(_spec("delete_file", "Delete a file from the user's workspace.", {"path": _PATH}),
        delete_file, group="files", stateful=True)

    add(_spec("add_item", "Add units of an item to the inventory (creating the item if new); returns the new stock.",
              {"item": _ITEM, "quantity": _QUANTITY}),
        add_item, group="inventory", stateful=True)
    add(_spec("remove_item", "Take units of an item out of the inventory; fails if there are not enough.",
              {"item": _ITEM, "quantity": _QUANTITY}),
        remove_item, group="inventory", stateful=True)
    add(_spec("get_stock", "How many units of an item the inventory holds.", {"item": _ITEM}),
        get_stock, group="inventory", stateful=True)
    add(_spec("list_items", "List every item in the inventory with its stock.", {}),
        list_items, group="inventory", stateful=True)

    add(_spec("search_products", "Search the store catalog by words in the product name, category and maximum price.",
              {"query": {"type": "string", "description": "Words that must all appear in the name; '' for all."},
               "category": {"type": "string", "enum": _CATEGORIES, "description": "Only this category."},
               "max_price_usd": {"type": "number", "minimum": 0, "description": "Only products at most this price."}},
              []),
        search_products, group="shopping")
    add(_spec("get_product", "Details of one catalog product: name, category, price in USD, availability.",
              {"product_id": _PRODUCT_ID}),
        get_product, group="shopping")
    add(_spec("add_to_cart", "Put a catalog product in the shopping cart; fails if it is out of stock.",
              {"product_id": _PRODUCT_ID, "quantity": {**_QUANTITY, "description": "How many. Default 1."}},
              ["product_id"]),
        add_to_cart, group="shopping", stateful=True)
    add(_spec("view_cart", "The shopping cart: each product with quantity and subtotal, and the total in USD.", {}),
        view_cart, group="shopping", stateful=True)
    return registry
