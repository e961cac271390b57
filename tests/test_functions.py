"""The tool registry: call validation, the shipped tools, sessions, sampling, BFCL import."""

from __future__ import annotations

import gzip
import json
import random
from pathlib import Path

import pytest
from jsonschema import Draft202012Validator

from synthgraph.tools.functions import (
    EXCHANGE_RATES,
    ToolRegistry,
    builtin_registry,
    from_bfcl,
    load_tool_specs,
    parse_call,
    validate_call,
)

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather in a city.",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string"},
                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
                "days": {"type": "integer", "minimum": 1},
                "location": {
                    "type": "object",
                    "properties": {"lat": {"type": "number"}, "lon": {"type": "number"}},
                    "required": ["lat", "lon"],
                },
                "tags": {"type": "array", "items": {"type": "string"}},
            },
            "required": ["city"],
        },
    },
}

BFCL_FACTORIAL = {
    "name": "math.factorial",
    "description": "Calculate the factorial of a given number.",
    "parameters": {"type": "dict", "properties": {"number": {"type": "integer"}}, "required": ["number"]},
}
BFCL_NESTED = {
    "name": "geo.route.plan",
    "description": "Plan a route.",
    "parameters": {
        "type": "dict",
        "properties": {
            "points": {"type": "array", "items": {"type": "tuple", "items": {"type": "float"}}},
            "options": {"type": "dict", "properties": {"avoid_tolls": {"type": "Boolean", "optional": True},
                                                        "label": {"type": "String"}}},
            "speed": {"type": "float", "default": 1.5},
            "payload": {"type": "any", "description": "Anything."},
            "weights": {"type": "dict", "additionalProperties": {"type": "float"}},
        },
        "required": ["points"],
    },
}


def call(name: str, **arguments) -> dict:
    return {"name": name, "arguments": arguments}


def run(session, name: str, **arguments):
    return session.execute(call(name, **arguments))


def value(result) -> dict:
    assert result.ok, result.error
    return json.loads(result.content)


# -- validate_call -------------------------------------------------------------------------------------------


def test_valid_call_has_no_problems_in_either_call_form():
    flat = call("get_weather", city="Oslo", unit="celsius", location={"lat": 59.9, "lon": 10.7})
    openai = {"id": "call_1", "type": "function",
              "function": {"name": "get_weather", "arguments": json.dumps(flat["arguments"])}}
    flat_with_string = {"name": "get_weather", "arguments": json.dumps(flat["arguments"])}
    langchain = {"name": "get_weather", "args": flat["arguments"], "id": "call_1", "type": "tool_call"}
    for form in (flat, openai, flat_with_string, langchain):
        assert validate_call(form, WEATHER) == []


def test_call_to_another_function_is_reported_as_unknown():
    [problem] = validate_call(call("get_forecast", city="Oslo"), WEATHER)
    assert "unknown function 'get_forecast'" in problem and "get_weather" in problem


def test_arguments_that_are_not_json_are_reported():
    [problem] = validate_call({"name": "get_weather", "arguments": '{"city": "Oslo"'}, WEATHER)
    assert "not valid JSON" in problem


def test_arguments_that_are_not_an_object_are_reported():
    [problem] = validate_call({"name": "get_weather", "arguments": '["Oslo"]'}, WEATHER)
    assert "must be a JSON object, got array" in problem


def test_missing_required_argument_is_named():
    [problem] = validate_call(call("get_weather", unit="celsius"), WEATHER)
    assert problem == "missing required argument 'city'"


def test_wrong_type_names_argument_expected_and_got():
    [problem] = validate_call(call("get_weather", city="Oslo", days="3"), WEATHER)
    assert "'days'" in problem and "integer" in problem and 'string "3"' in problem


def test_value_outside_enum_lists_the_choices():
    [problem] = validate_call(call("get_weather", city="Oslo", unit="kelvin"), WEATHER)
    assert "'unit'" in problem and '"celsius", "fahrenheit"' in problem and '"kelvin"' in problem


def test_extra_argument_is_an_error_even_without_additional_properties_false():
    assert "additionalProperties" not in WEATHER["function"]["parameters"]
    [problem] = validate_call(call("get_weather", city="Oslo", country="NO"), WEATHER)
    assert "unexpected argument 'country'" in problem and "city" in problem


def test_nested_problems_carry_their_path():
    problems = validate_call(call("get_weather", city="Oslo", location={"lat": "north", "alt": 3},
                                  tags=["a", 2]), WEATHER)
    text = "\n".join(problems)
    assert "missing required argument 'location.lon'" in text
    assert "'location.lat' should be a number" in text
    assert "unexpected argument 'location.alt'" in text
    assert "'tags[1]' should be a string, got integer 2" in text


def test_bound_violation_names_the_bound():
    [problem] = validate_call(call("get_weather", city="Oslo", days=0), WEATHER)
    assert "'days' must be >= 1, got 0" in problem


def test_empty_arguments_string_means_no_arguments():
    assert parse_call({"name": "list_items", "arguments": ""}).arguments == {}


def test_call_without_a_name_is_a_problem_not_an_exception():
    assert validate_call({"arguments": {}}, WEATHER) == ["the tool call has no function name"]


# -- sessions ------------------------------------------------------------------------------------------------


def test_execute_never_raises_and_explains_bad_calls():
    session = builtin_registry().session()
    for bad in (None, {}, {"name": "calculate", "arguments": "{"}, call("calculate"),
                call("calculate", expression="1", extra=1), call("no_such_tool")):
        result = session.execute(bad)
        assert not result.ok and result.error and result.content


def test_unknown_tool_suggests_the_close_name():
    result = run(builtin_registry().session(), "raed_file", path="a")
    assert result.error.startswith("UnknownTool:") and "did you mean 'read_file'" in result.content


def test_session_refuses_tools_that_were_not_offered():
    session = builtin_registry().session(["calculate"])
    assert run(session, "calculate", expression="1+1").ok
    result = run(session, "weekday", date="2024-01-01")
    assert not result.ok and "available: calculate" in result.content


def test_invalid_arguments_are_not_executed():
    session = builtin_registry().session()
    result = run(session, "write_file", path="a.txt")
    assert result.error.startswith("InvalidArguments:") and "'content'" in result.content
    assert value(run(session, "list_files")) == {"files": []}


def test_implementation_exception_becomes_a_failed_result():
    registry = ToolRegistry()
    registry.register({"name": "boom", "description": "Fails.", "parameters": {"type": "object", "properties": {}}},
                      lambda: 1 / 0)
    result = run(registry.session(), "boom")
    assert not result.ok and result.error == "ZeroDivisionError: division by zero"


def test_result_that_is_not_json_is_a_failed_result():
    registry = ToolRegistry()
    registry.register({"name": "odd", "description": "Returns a set.", "parameters": {"type": "object"}},
                      lambda: {1, 2})
    assert not run(registry.session(), "odd").ok


def test_spec_only_tool_is_reported_not_executable():
    registry = ToolRegistry()
    tool = registry.register(WEATHER)
    assert not tool.executable
    result = run(registry.session(), "get_weather", city="Oslo")
    assert result.error.startswith("NotExecutable:")


def test_sessions_do_not_share_files():
    registry = builtin_registry()
    first, second = registry.session(), registry.session()
    assert run(first, "write_file", path="a.txt", content="one").ok
    assert value(run(second, "list_files")) == {"files": []}
    assert not run(second, "read_file", path="a.txt").ok


def test_session_starts_from_a_copy_of_the_given_state():
    state = {"inventory": {"pen": 3}}
    session = builtin_registry().session(state=state)
    assert value(run(session, "remove_item", item="pen", quantity=2)) == {"item": "pen", "stock": 1}
    assert state == {"inventory": {"pen": 3}}


def test_same_calls_give_the_same_results_in_fresh_sessions():
    calls = [call("write_file", path="notes/a.txt", content="x"), call("list_files"),
             call("calculate", expression="0.1 + 0.2"), call("add_item", item="cup", quantity=4),
             call("convert_currency", amount=10, from_currency="EUR", to_currency="JPY"),
             call("add_days", date="2024-02-28", days=1), call("view_cart")]

    def transcript():
        session = builtin_registry().session()
        return [session.execute(c) for c in calls]

    assert transcript() == transcript()


# -- registry ------------------------------------------------------------------------------------------------


def test_get_unknown_tool_raises_key_error_with_the_known_names():
    with pytest.raises(KeyError, match="did you mean 'calculate'"):
        builtin_registry().get("calculat")


def test_register_refuses_a_duplicate_name_and_a_bad_schema():
    registry = ToolRegistry()
    registry.register(WEATHER)
    with pytest.raises(ValueError, match="already registered"):
        registry.register(WEATHER)
    with pytest.raises(ValueError, match="not a valid JSON Schema"):
        registry.register({"name": "bad", "parameters": {"type": "object", "properties": {"x": {"type": "dict"}}}})
    with pytest.raises(ValueError, match="must match"):
        registry.register({"name": "math.factorial", "parameters": {"type": "object"}})


def test_builtin_specs_are_openai_tools_with_valid_schemas():
    registry = builtin_registry()
    specs = registry.specs()
    assert len(specs) == len(registry) >= 15
    for spec in specs:
        assert spec["type"] == "function" and spec["function"]["description"]
        Draft202012Validator.check_schema(spec["function"]["parameters"])
    assert [s["function"]["name"] for s in registry.specs(["read_file", "calculate"])] == ["read_file", "calculate"]
    assert all(registry.get(name).executable for name in registry.names())
    assert "read_file" in registry and "eval" not in registry


def test_specs_are_copies():
    registry = builtin_registry()
    registry.specs()[0]["function"]["name"] = "changed"
    assert registry.specs()[0]["function"]["name"] != "changed"


def test_sample_returns_distinct_tools_reproducibly():
    registry = builtin_registry()
    for n in (1, 3, 6, len(registry)):
        names = [tool.name for tool in registry.sample(random.Random(7), n)]
        assert len(set(names)) == n
        assert names == [tool.name for tool in registry.sample(random.Random(7), n)]


def test_sample_keeps_a_small_draw_within_one_group():
    registry = builtin_registry()
    for seed in range(20):
        tools = registry.sample(random.Random(seed), 2)
        assert tools[0].group == tools[1].group


def test_sample_can_be_limited_to_groups_and_refuses_too_many():
    registry = builtin_registry()
    tools = registry.sample(random.Random(0), 5, groups=["files", "dates"])
    assert {tool.group for tool in tools} == {"files", "dates"}
    with pytest.raises(ValueError, match="cannot sample 99"):
        registry.sample(random.Random(0), 99)


# -- the shipped tools ---------------------------------------------------------------------------------------


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


# -- BFCL ----------------------------------------------------------------------------------------------------


def test_from_bfcl_renames_dotted_names_and_keeps_the_original():
    spec = from_bfcl(BFCL_FACTORIAL)
    assert spec["type"] == "function"
    assert spec["function"]["name"] == "math_factorial"
    assert spec["function"]["x-original-name"] == "math.factorial"
    assert spec["function"]["parameters"]["type"] == "object"
    assert validate_call(call("math_factorial", number=5), spec) == []


def test_from_bfcl_converts_types_all_the_way_down():
    parameters = from_bfcl(BFCL_NESTED)["function"]["parameters"]
    Draft202012Validator.check_schema(parameters)
    properties = parameters["properties"]
    assert parameters["type"] == "object" and parameters["required"] == ["points"]
    assert properties["points"]["items"] == {"type": "array", "items": {"type": "number"}}
    assert properties["options"]["type"] == "object"
    assert properties["options"]["properties"]["avoid_tolls"] == {"type": "boolean"}  # BFCL's "optional" dropped
    assert properties["options"]["properties"]["label"] == {"type": "string"}
    assert properties["speed"] == {"type": "number", "default": 1.5}
    assert properties["payload"] == {"description": "Anything."}
    assert properties["weights"]["additionalProperties"] == {"type": "number"}


def test_from_bfcl_spec_validates_calls():
    spec = from_bfcl(BFCL_NESTED)
    good = call("geo_route_plan", points=[[1.0, 2], [3, 4.5]], payload={"any": ["thing"]}, weights={"a": 1.5})
    assert validate_call(good, spec) == []
    [problem] = validate_call(call("geo_route_plan", points=[[1.0, "x"]]), spec)
    assert "'points[0][1]' should be a number" in problem


def test_from_bfcl_names_an_unknown_type():
    with pytest.raises(ValueError, match="unknown type 'matrix' at 'm'"):
        from_bfcl({"name": "f", "parameters": {"type": "dict", "properties": {"m": {"type": "matrix"}}}})


def test_load_tool_specs_reads_an_openai_list_and_a_tools_object(tmp_path: Path):
    (tmp_path / "list.json").write_text(json.dumps([WEATHER]))
    (tmp_path / "object.json").write_text(json.dumps({"tools": [WEATHER]}))
    assert load_tool_specs(tmp_path / "list.json") == [WEATHER]
    assert load_tool_specs(tmp_path / "object.json") == [WEATHER]


def test_load_tool_specs_reads_bfcl_jsonl_one_spec_per_name(tmp_path: Path):
    questions = [
        {"id": "simple_0", "question": [[{"role": "user", "content": "5!"}]], "function": [BFCL_FACTORIAL]},
        {"id": "multiple_0", "question": [[{"role": "user", "content": "route"}]],
         "function": [BFCL_NESTED, {**BFCL_FACTORIAL, "description": "A variant."}]},
    ]
    path = tmp_path / "bfcl.json"
    path.write_text("".join(json.dumps(q) + "\n" for q in questions))
    specs = load_tool_specs(path)
    assert [s["function"]["name"] for s in specs] == ["math_factorial", "geo_route_plan"]
    assert specs[0]["function"]["description"] == BFCL_FACTORIAL["description"]
    zipped = tmp_path / "bfcl.jsonl.gz"
    zipped.write_bytes(gzip.compress(path.read_bytes()))
    assert load_tool_specs(zipped) == specs


def test_load_tool_specs_reads_bfcl_function_docs(tmp_path: Path):
    path = tmp_path / "docs.json"
    path.write_text(json.dumps(BFCL_FACTORIAL) + "\n" + json.dumps(BFCL_NESTED) + "\n")
    assert [s["function"]["name"] for s in load_tool_specs(path)] == ["math_factorial", "geo_route_plan"]


def test_load_tool_specs_names_the_entry_it_cannot_read(tmp_path: Path):
    path = tmp_path / "odd.json"
    path.write_text(json.dumps({"id": 1}) + "\n" + json.dumps({"id": 2}) + "\n")
    with pytest.raises(ValueError, match=r"odd.json:1: not a tool spec or BFCL entry"):
        load_tool_specs(path)


def test_every_function_of_a_real_bfcl_file_converts_to_a_valid_schema():
    bfcl_eval = pytest.importorskip("bfcl_eval")
    path = Path(bfcl_eval.__file__).parent / "data" / "BFCL_v4_multiple.json"
    specs = load_tool_specs(path)
    assert len(specs) > 100
    for spec in specs:
        Draft202012Validator.check_schema(spec["function"]["parameters"])
        ToolRegistry().register(spec)


def test_shipped_bfcl_seeds_match_their_tools():
    path = Path(__file__).parents[1] / "demos" / "seeds" / "bfcl_simple.jsonl.gz"
    if not path.exists():
        pytest.skip("demos/seeds/bfcl_simple.jsonl.gz not generated")
    with gzip.open(path, "rt", encoding="utf-8") as file:
        seeds = [json.loads(line) for line in file]
    assert len(seeds) >= 300
    for seed in seeds:
        names = {tool["function"]["name"] for tool in seed["tools"]}
        assert seed["messages"] and {truth["name"] for truth in seed["ground_truth"]} <= names


def test_closing_the_schema_leaves_data_keywords_alone():
    spec = {"name": "f", "parameters": {"type": "object", "properties": {
        "config": {"type": "object", "default": {"properties": {"x": 1}}, "properties": {"a": {"type": "string"}}},
        "choice": {"anyOf": [{"type": "object", "properties": {"b": {"type": "integer"}}}, {"type": "string"}]}}}}
    assert validate_call(call("f", config={"a": "x"}, choice={"b": 1}), spec) == []
    assert "unexpected argument 'config.z'" in validate_call(call("f", config={"z": 1}), spec)[0]
    [problem] = validate_call(call("f", choice={"c": 1}), spec)  # closed inside anyOf too
    assert problem.startswith("argument 'choice' matches none of its allowed forms (closest: ")
