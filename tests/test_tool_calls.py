"""Tool calls: parsing any call shape and validating one against its tool's JSON schema."""

from __future__ import annotations

import json

from calls import WEATHER, call

from synthgraph.tools.tool_calls import parse_call, validate_call


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


def test_closing_the_schema_leaves_data_keywords_alone():
    spec = {"name": "f", "parameters": {"type": "object", "properties": {
        "config": {"type": "object", "default": {"properties": {"x": 1}}, "properties": {"a": {"type": "string"}}},
        "choice": {"anyOf": [{"type": "object", "properties": {"b": {"type": "integer"}}}, {"type": "string"}]}}}}
    assert validate_call(call("f", config={"a": "x"}, choice={"b": 1}), spec) == []
    assert "unexpected argument 'config.z'" in validate_call(call("f", config={"z": 1}), spec)[0]
    [problem] = validate_call(call("f", choice={"c": 1}), spec)  # closed inside anyOf too
    assert problem.startswith("argument 'choice' matches none of its allowed forms (closest: ")
