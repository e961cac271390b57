"""The tool registry and its sessions: execution never raises, sessions do not share state, sampling."""

from __future__ import annotations

import random

import pytest
from calls import WEATHER, call, run, value
from jsonschema import Draft202012Validator

from synthgraph.tools.builtin_tools import builtin_registry
from synthgraph.tools.registry import ToolRegistry


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
