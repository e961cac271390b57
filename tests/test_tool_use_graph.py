"""The tool-use graph's stages and routing, driven by a scripted chat model; its rows in DuckDB through the runner."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from fakes import ScriptedPool, ToolUseScript, answer, call_tools, solver_step
from readback import rows
from typer.testing import CliRunner

from synthgraph.agents.tool_use_roles import decision_schema, names_tools
from synthgraph.graphs import tool_use
from synthgraph.graphs.cli import app
from synthgraph.graphs.recipe import RecipeError, load_recipe, parse_recipe
from synthgraph.graphs.tool_use import ToolUseSeed
from synthgraph.graphs.runner import Runner
from synthgraph.store.db import Store
from synthgraph.store.rows import CheckOutcome
from synthgraph.tools.tool_use_checks import trajectory_checks

ROOT = Path(__file__).resolve().parents[1]

# The README's query: which tools are called most, and what share of their calls failed each stage.
TOOL_FAILURES_SQL = """
WITH calls AS (
    SELECT s.sample_id, c->>'name' AS tool, c->>'execution' AS execution,
           json_array_length(c->'format_problems') > 0 AS invalid
    FROM samples s, unnest(from_json(s.payload->'calls', '["json"]')) AS t(c)
    WHERE s.kind = 'tool_trajectory')
SELECT tool, count(*) AS calls,
       round(avg(invalid::int), 3) AS failed_format,
       round(avg((execution = 'failed')::int), 3) AS failed_execution,
       round(avg(coalesce(v.outcome = 'failed', false)::int), 3) AS failed_critic
FROM calls LEFT JOIN verdicts v ON v.sample_id = calls.sample_id AND v.verifier = 'critic'
GROUP BY tool ORDER BY calls DESC, tool
"""


def make_context(script: ToolUseScript, **limits) -> tool_use.ToolUseContext:
    recipe = parse_recipe({"name": "t", "graph": "tool_use", "seeds": {"inline": [{"kind": "single"}]}})
    context = tool_use.make_context(recipe, ScriptedPool(script))
    for name, value in {"samples": 1, "max_steps": 4, "critic_threshold": 6, **limits}.items():
        setattr(context, name, value)
    return context


def run_graph(seed: ToolUseSeed, context) -> dict:
    return asyncio.run(tool_use.graph.ainvoke(tool_use.initial_state(seed), context=context))


def rows_of(state, context):
    return tool_use.to_rows(state, run_id="r", seed_id="s", context=context)


def verdicts_of(verdicts) -> dict[str, str]:
    return {v.verifier: v.outcome for v in verdicts}


CONVERT = ToolUseSeed(kind="single", tools=["convert_units"])


def test_single_call_runs_the_tool_feeds_the_result_back_and_is_accepted():
    script = ToolUseScript()
    state = run_graph(CONVERT, make_context(script))
    assert state["outcome"] == "accepted"
    (trajectory,) = state["trajectories"]
    (call,) = trajectory.calls
    assert call.execution == "passed" and json.loads(call.result)["result"] == pytest.approx(42.16, abs=0.01)
    # the real result is what the assistant saw on its next step
    second_prompt = script.prompts["solver"][1]
    assert call.result in second_prompt[-1].content
    samples, messages, verdicts, _ = rows_of(state, make_context(script))
    assert [s.status for s in samples] == ["accepted"]
    assert [m.role for m in messages] == ["user", "assistant", "tool", "assistant"]
    assert messages[1].tool_calls[0]["function"]["name"] == "convert_units"
    assert json.loads(messages[1].tool_calls[0]["function"]["arguments"]) == {"value": 26.2, "from_unit": "mi",
                                                                              "to_unit": "km"}
    assert messages[2].tool_call_id == messages[1].tool_calls[0]["id"] and messages[2].content == call.result
    assert verdicts_of(verdicts) == {"format": "passed", "execution": "passed", "results_used": "passed",
                                     "tool_choice": "passed", "critic": "passed"}
    assert samples[0].payload["tools"][0]["function"]["name"] == "convert_units"
    assert samples[0].payload["shape"] == "single"


def test_verify_keeps_the_checks_in_the_state_and_the_rows_write_what_it_kept():
    script = ToolUseScript()
    state = run_graph(CONVERT, make_context(script))
    assert "verify" in tool_use.graph.get_graph().nodes
    (trajectory,) = state["trajectories"]
    assert {name: check.outcome for name, check in trajectory.checks.items()} == {
        "format": "passed", "execution": "passed", "results_used": "passed", "tool_choice": "passed"}
    # to_rows reads the verdicts from the state, it does not compute them again
    edited = trajectory.model_copy(update={"checks": {**trajectory.checks, "format": CheckOutcome("failed", "edited")}})
    samples, _, verdicts, _ = rows_of({**state, "trajectories": [edited]}, make_context(script))
    assert samples[0].status == "rejected" and samples[0].reason == "format: edited"
    assert verdicts_of(verdicts)["format"] == "failed"


@pytest.mark.parametrize("threshold, status", [(9, "accepted"), (9.5, "rejected")])
def test_a_critic_score_exactly_at_the_threshold_is_accepted_by_the_router_and_the_rows(threshold, status):
    context = make_context(ToolUseScript(), critic_threshold=threshold)  # the scripted critic gives 9
    state = run_graph(CONVERT, context)
    assert state["outcome"] == status
    samples, _, verdicts, _ = rows_of(state, context)
    assert [s.status for s in samples] == [status]
    assert verdicts_of(verdicts)["critic"] == ("passed" if status == "accepted" else "failed")


def test_invalid_arguments_fail_stage_one_are_not_run_and_skip_the_critic():
    script = ToolUseScript(solver=[call_tools(("convert_units", {"value": "a lot", "from_unit": "mi"})),
                                   answer("Roughly 42 km.")])
    state = run_graph(CONVERT, make_context(script))
    assert state["outcome"] == "rejected"
    call = state["trajectories"][0].calls[0]
    assert call.execution == "skipped"
    assert any("value" in p for p in call.format_problems) and any("to_unit" in p for p in call.format_problems)
    assert script.calls["critic"] == 0
    samples, _, verdicts, _ = rows_of(state, make_context(script))
    assert samples[0].status == "rejected" and samples[0].reason.startswith("format:")
    assert verdicts_of(verdicts)["format"] == "failed"


def test_call_of_a_tool_not_on_offer_fails_stage_one():
    script = ToolUseScript(solver=[call_tools(("calculate", {"expression": "26.2*1.609"})), answer("42.2 km")])
    state = run_graph(CONVERT, make_context(script))
    problems = state["trajectories"][0].calls[0].format_problems
    assert problems and "unknown function 'calculate'" in problems[0]


def test_tool_that_fails_when_run_fails_stage_two_and_the_error_is_fed_back():
    script = ToolUseScript(
        proposer=json.dumps({"request": "What does my notes.txt file say? I need it for the meeting."}),
        solver=[call_tools(("read_file", {"path": "notes.txt"})), answer("The file is empty.")])
    state = run_graph(ToolUseSeed(kind="single", tools=["read_file", "write_file"]), make_context(script))
    call = state["trajectories"][0].calls[0]
    assert call.execution == "failed" and "notes.txt" in call.error
    assert call.error in script.prompts["solver"][1][-1].content
    samples, messages, verdicts, _ = rows_of(state, make_context(script))
    assert samples[0].status == "rejected" and samples[0].reason.startswith("execution:")
    assert verdicts_of(verdicts)["execution"] == "failed"
    assert "error" in json.loads(messages[2].content)


def test_answer_that_ignores_the_tool_results_fails_results_used_before_the_critic():
    script = ToolUseScript(solver=[call_tools(("convert_units", {"value": 26.2, "from_unit": "mi", "to_unit": "km"})),
                                   answer("26.2 miles is about 50 km.")])
    state = run_graph(CONVERT, make_context(script))
    assert state["outcome"] == "rejected" and script.calls["critic"] == 0
    samples, _, verdicts, _ = rows_of(state, make_context(script))
    assert samples[0].reason == "results_used: the answer uses none of the values the tools returned"


def test_tools_share_one_session_within_a_trajectory_and_not_across_trajectories():
    script = ToolUseScript(solver=[call_tools(("write_file", {"path": "a.txt", "content": "hi"})),
                                   call_tools(("read_file", {"path": "a.txt"})), answer("It says hi.")])
    state = run_graph(ToolUseSeed(kind="multi_step", tools=["write_file", "read_file"]), make_context(script, samples=2))
    for trajectory in state["trajectories"]:  # each branch writes then reads its own file
        assert [c.execution for c in trajectory.calls] == ["passed", "passed"]
        assert json.loads(trajectory.calls[1].result)["content"] == "hi"
        assert tool_use.observed_shape(trajectory) == "multi_step"


def test_parallel_calls_in_one_step_each_get_a_tool_turn():
    script = ToolUseScript(solver=[call_tools(("convert_units", {"value": 1, "from_unit": "mi", "to_unit": "km"}),
                                              ("convert_units", {"value": 5, "from_unit": "mi", "to_unit": "km"})),
                                   answer("1.61 km and 8.05 km.")])
    state = run_graph(ToolUseSeed(kind="parallel", tools=["convert_units"]), make_context(script))
    _, messages, _, _ = rows_of(state, make_context(script))
    assert [m.role for m in messages] == ["user", "assistant", "tool", "tool", "assistant"]
    assert [m.tool_call_id for m in messages[2:4]] == [c["id"] for c in messages[1].tool_calls]
    assert state["trajectories"][0].calls[0].id != state["trajectories"][0].calls[1].id


def test_no_tool_request_answered_directly_passes_and_calling_a_tool_fails_tool_choice():
    direct = ToolUseScript(proposer=json.dumps({"request": "What is a good way to remember a new language?"}),
                           solver=[answer("Practise a little every day.")])
    state = run_graph(ToolUseSeed(kind="no_tool", tools=["convert_units"]), make_context(direct))
    assert state["outcome"] == "accepted"
    assert verdicts_of(rows_of(state, make_context(direct))[2])["tool_choice"] == "passed"

    calls = ToolUseScript(proposer=json.dumps({"request": "What is a good way to remember a new language?"}))
    state = run_graph(ToolUseSeed(kind="no_tool", tools=["convert_units"]), make_context(calls))
    samples, _, verdicts, _ = rows_of(state, make_context(calls))
    assert verdicts_of(verdicts)["tool_choice"] == "failed"
    assert samples[0].reason == "tool_choice: called tools for a request that needs none"


def test_request_that_needs_tools_answered_without_any_fails_tool_choice():
    script = ToolUseScript(solver=[answer("About 42 km.")])
    state = run_graph(CONVERT, make_context(script))
    assert state["outcome"] == "rejected"
    assert verdicts_of(rows_of(state, make_context(script))[2])["tool_choice"] == "failed"


def test_last_step_may_only_answer_so_every_trajectory_ends():
    def keeps_calling(messages, kwargs):
        if "call_tools" in json.dumps(kwargs["json_schema"]):
            return call_tools(("convert_units", {"value": solver_step(messages), "from_unit": "mi", "to_unit": "km"}))
        return answer("Here are the conversions.")

    script = ToolUseScript(solver=keeps_calling)
    state = run_graph(CONVERT, make_context(script, max_steps=3))
    (trajectory,) = state["trajectories"]
    assert len(trajectory.decisions) == 3 and len(trajectory.calls) == 2
    assert trajectory.stopped == "answered" and trajectory.forced_answer


def test_solver_grammar_holds_names_and_arguments_to_the_offered_tools():
    specs = make_context(ToolUseScript()).registry.specs(["convert_units"])
    grammar = decision_schema(specs, max_calls=3)
    call_form = grammar["anyOf"][0]["properties"]["calls"]["items"]["anyOf"][0]
    assert call_form["properties"]["name"] == {"const": "convert_units"}
    assert call_form["properties"]["arguments"]["additionalProperties"] is False
    assert set(call_form["properties"]["arguments"]["required"]) == {"value", "from_unit", "to_unit"}
    loose = decision_schema(specs, max_calls=3, constrain_arguments=False)
    assert loose["anyOf"][0]["properties"]["calls"]["items"]["anyOf"][0]["properties"]["arguments"] == {"type": "object"}
    assert decision_schema([], max_calls=3)["anyOf"][0]["properties"]["action"] == {"const": "answer"}


def test_spec_only_tool_call_is_the_whole_reply_and_execution_is_unchecked():
    script = ToolUseScript(proposer=json.dumps({"request": "Book me a table for two at Luigi's at 7pm tonight."}),
                           solver=[call_tools(("book_table", {"restaurant": "Luigi's", "people": 2, "time": "19:00"}))])
    context = make_context(script)
    context.registry.register({"name": "book_table", "description": "Book a restaurant table.",
                               "parameters": {"type": "object", "properties": {
                                   "restaurant": {"type": "string"}, "people": {"type": "integer"},
                                   "time": {"type": "string"}}, "required": ["restaurant", "people"]}})
    state = run_graph(ToolUseSeed(kind="single", tools=["book_table"]), context)
    (trajectory,) = state["trajectories"]
    assert trajectory.stopped == "calls_only" and trajectory.calls[0].execution == "unchecked"
    assert state["outcome"] == "accepted"
    samples, messages, verdicts, _ = rows_of(state, context)
    assert [m.role for m in messages] == ["user", "assistant"]
    assert verdicts_of(verdicts)["execution"] == "unchecked"


def test_critic_unsatisfied_rejects_with_its_reason():
    script = ToolUseScript(critic=json.dumps({"reason": "The answer drops the decimals.", "satisfied": False,
                                              "score": 7}))
    state = run_graph(CONVERT, make_context(script))
    samples, _, verdicts, _ = rows_of(state, make_context(script))
    assert samples[0].status == "rejected" and "drops the decimals" in samples[0].reason
    assert verdicts_of(verdicts)["critic"] == "failed"


def test_refused_solver_output_is_an_error_sample_not_a_crash():
    script = ToolUseScript(solver=["{not json"])
    state = run_graph(CONVERT, make_context(script))
    samples, messages, _, _ = rows_of(state, make_context(script))
    assert samples[0].status == "error" and "malformed structured output" in samples[0].reason
    assert messages == []


def test_request_in_the_assistants_voice_or_copying_the_example_is_refused():
    tools = [{"function": {"name": "weekday"}}]
    assert "assistant's voice" in names_tools("Please provide the date you want converted.", tools)
    assert "copies the prompt's example" in names_tools(
        "I fly out on 2026-05-03 and stay 12 nights. On what date do I fly back?", tools)
    assert names_tools("My exam is on 2026-06-02. What weekday is that?", tools) is None
    searching = [{"function": {"name": "search_documents", "description": "Search the Python language reference "
                                                                          "(full text); returns the passages."}}]
    assert "copies a tool's description" in names_tools(
        "I search the Python language reference (full text); returns what?", searching)


def test_no_tool_request_is_written_without_the_tools_in_view():
    script = ToolUseScript(proposer=json.dumps({"request": "Why is the sky blue during the day?"}),
                           solver=[answer("Sunlight scatters off air molecules; blue scatters most.")])
    run_graph(ToolUseSeed(kind="no_tool", tools=["convert_units"]), make_context(script))
    assert "convert_units" not in script.prompts["proposer"][0][1].content


def test_request_naming_a_tool_is_refused_and_retried():
    drafts = iter([json.dumps({"request": "Please call convert_units on 26.2 miles to km."}),
                   json.dumps({"request": "How far is 26.2 miles in kilometres, roughly?"})])
    script = ToolUseScript(proposer=lambda messages: next(drafts))
    state = run_graph(ToolUseSeed(kind="single", tools=["convert_units"]), make_context(script))
    assert state["request"] == "How far is 26.2 miles in kilometres, roughly?"
    assert names_tools("use get_stock for apples", [{"function": {"name": "get_stock"}}]) is not None
    assert names_tools("how much stock of apples is there", [{"function": {"name": "get_stock"}}]) is None


def test_proposer_that_never_writes_a_usable_request_is_a_request_error():
    script = ToolUseScript(proposer="nothing useful")
    state = run_graph(CONVERT, make_context(script))
    assert script.calls["solver"] == 0
    samples, _, _, ids = rows_of(state, make_context(script))
    assert [s.kind for s in samples] == ["tool_request"] and samples[0].status == "error"
    assert "request" in ids


def test_seed_with_a_ready_request_skips_the_proposer():
    script = ToolUseScript()
    state = run_graph(ToolUseSeed(kind="single", tools=["convert_units"], request="26.2 mi in km?"),
                      make_context(script))
    assert script.calls["proposer"] == 0 and state["request"] == "26.2 mi in km?"


def test_a_ready_request_naming_no_kind_is_never_given_one_from_the_mix():
    context = make_context(ToolUseScript())
    context.mix = {"no_tool": 1.0}  # the proposer's share; a user's own request is not the proposer's to shape
    kinds = {tool_use.plan_request(ToolUseSeed(id=f"q{i}", tools=["convert_units"], request="26.2 mi in km?"),
                                   context)[0] for i in range(10)}
    assert kinds == {None}
    # such a request is about its tools: answered with a call it passes tool_choice, without one it fails
    call = tool_use.ExecutedCall(id="c", step=0, name="convert_units", arguments={"value": 26.2}, execution="passed")
    assert trajectory_checks([call], "42.2 km", kind=None, request="26.2 mi in km?")["tool_choice"].outcome == "passed"
    unused = trajectory_checks([], "About 42 km.", kind=None, request="26.2 mi in km?")["tool_choice"]
    assert (unused.outcome, unused.detail) == ("failed", "a tool request answered without calling a tool")


def test_kind_and_tools_are_drawn_from_the_seed_id_reproducibly():
    context = make_context(ToolUseScript())
    seed = ToolUseSeed(id="seed-7")
    first, second = tool_use.plan_request(seed, context), tool_use.plan_request(seed, context)
    assert first == second
    kind, tools = first
    low, high = context.tools_per_request
    assert kind in context.mix and low <= len(tools) <= high
    kinds = {tool_use.plan_request(ToolUseSeed(id=f"s{i}"), context)[0] for i in range(60)}
    assert kinds == {"single", "parallel", "multi_step", "no_tool"}


def test_unknown_tool_in_a_seed_fails_when_the_recipe_loads(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("name: t\ngraph: tool_use\nseeds:\n  inline:\n    - {kind: single, tools: [convert_unit]}\n")
    with pytest.raises(RecipeError, match="unknown tools convert_unit"):
        load_recipe(recipe)


def test_spec_files_add_spec_only_tools_relative_to_the_recipe(tmp_path):
    (tmp_path / "tools.json").write_text(json.dumps([{"type": "function", "function": {
        "name": "book_table", "description": "Book a table.",
        "parameters": {"type": "object", "properties": {"people": {"type": "integer"}}}}}]))
    recipe = tmp_path / "r.yaml"
    recipe.write_text("name: t\ngraph: tool_use\ntools: {builtin: false, files: [tools.json]}\n"
                      "seeds:\n  inline:\n    - {kind: single, tools: [book_table]}\n")
    loaded, _ = load_recipe(recipe)
    registry = loaded.registry()
    assert registry.names() == ["book_table"] and not registry.get("book_table").executable


def test_recipe_needs_some_tools_and_a_sensible_mix():
    with pytest.raises(ValueError, match="positive share"):
        parse_recipe({"name": "t", "graph": "tool_use", "mix": {"single": 0}, "seeds": {"inline": [{}]}})
    with pytest.raises(ValueError, match="builtin tools, name spec files, or set from_seeds"):
        parse_recipe({"name": "t", "graph": "tool_use", "tools": {"builtin": False}, "seeds": {"inline": [{}]}})


def test_tool_use_demo_recipe_is_valid():
    recipe, seeds = load_recipe(ROOT / "demos" / "tool_use.yaml")
    assert recipe.graph == "tool_use" and len(seeds) >= 8


# ------------------------------------------------------------------------------------ through the runner


@pytest.fixture
def tool_store(tmp_path) -> Path:
    def solver(messages, kwargs):
        request = messages[1].content
        if "file" in request:
            return [call_tools(("read_file", {"path": "missing.txt"})), answer("Empty.")][min(solver_step(messages), 1)]
        if "stock" in request:
            return [call_tools(("get_stock", {"item": 3})), answer("None.")][min(solver_step(messages), 1)]
        return [call_tools(("convert_units", {"value": 2, "from_unit": "km", "to_unit": "m"})),
                answer("2 km is 2000 m.")][min(solver_step(messages), 1)]

    requests = iter(["How long is 2 km in metres?", "What does my file todo.txt say?",
                     "How much stock of apples do we have?"] * 3)
    script = ToolUseScript(proposer=lambda messages: json.dumps({"request": next(requests)}), solver=solver)
    recipe = parse_recipe({"name": "tools", "graph": "tool_use", "roles": {"solver": {"samples": 1}},
                           "seeds": {"inline": [{"id": "units", "kind": "single", "tools": ["convert_units"]},
                                                {"id": "files", "kind": "single", "tools": ["read_file"]},
                                                {"id": "stock", "kind": "single", "tools": ["get_stock"]}]}})
    seeds = [recipe.seed_model.model_validate(s) for s in recipe.seeds.inline]
    db = tmp_path / "tools.duckdb"
    asyncio.run(Runner(recipe, seeds, store_path=db, pool=ScriptedPool(script), recipe_path=None).run())
    return db


def test_runner_writes_trajectories_turns_verdicts_and_lineage(tool_store):
    statuses = dict(rows(tool_store, "SELECT seed_id, status FROM samples WHERE kind = 'tool_trajectory'"))
    assert statuses == {"units": "accepted", "files": "rejected", "stock": "rejected"}
    (tool_calls,) = rows(tool_store, "SELECT tool_calls FROM messages m JOIN samples s USING (sample_id) "
                                     "WHERE s.seed_id = 'units' AND m.role = 'assistant' AND tool_calls IS NOT NULL")
    assert json.loads(tool_calls[0])[0]["function"]["name"] == "convert_units"
    roles = dict(rows(tool_store, "SELECT role, count(*) FROM agent_calls GROUP BY role"))
    assert roles == {"proposer": 3, "solver": 6, "critic": 1}
    assert rows(tool_store, "SELECT count(*) FROM agent_calls WHERE sample_id IS NULL AND role <> 'proposer'") == [(0,)]


def test_sql_answers_which_tools_are_called_most_and_how_their_calls_fail(tool_store):
    result = CliRunner().invoke(app, ["sql", TOOL_FAILURES_SQL, "--db", str(tool_store), "--format", "json"])
    assert result.exit_code == 0, result.output
    by_tool = {r["tool"]: r for r in json.loads(result.output)}
    assert by_tool["get_stock"]["failed_format"] == 1.0     # item must be a string
    assert by_tool["read_file"]["failed_execution"] == 1.0  # no such file
    assert by_tool["convert_units"] == {"tool": "convert_units", "calls": 1, "failed_format": 0.0,
                                        "failed_execution": 0.0, "failed_critic": 0.0}


def test_exports_carry_tools_and_tool_calls_in_openai_and_sharegpt_form(tool_store, tmp_path):
    openai, sharegpt = tmp_path / "openai.jsonl", tmp_path / "sharegpt.jsonl"
    for out, form in [(openai, "jsonl"), (sharegpt, "sharegpt")]:
        result = CliRunner().invoke(app, ["export", "--format", form, "--out", str(out), "--db", str(tool_store)])
        assert result.exit_code == 0, result.output
    (record,) = map(json.loads, openai.read_text().splitlines())
    assert record["tools"][0]["function"]["name"] == "convert_units"
    assert [m["role"] for m in record["messages"]] == ["user", "assistant", "tool", "assistant"]
    assert record["messages"][2]["tool_call_id"] == record["messages"][1]["tool_calls"][0]["id"]
    (shared,) = map(json.loads, sharegpt.read_text().splitlines())
    assert [t["from"] for t in shared["conversations"]] == ["human", "function_call", "observation", "gpt"]
    assert json.loads(shared["tools"])[0]["name"] == "convert_units"


def test_readme_shows_the_tool_failure_query():
    readme = " ".join((ROOT / "README.md").read_text().replace('\\"', '"').split())
    assert " ".join(TOOL_FAILURES_SQL.split()) in readme


# ------------------------------------------------------------------------------------------- BFCL seeds

TRIANGLE = {"type": "function", "function": {
    "name": "calculate_triangle_area", "description": "Area of a triangle.",
    "parameters": {"type": "object", "properties": {"base": {"type": "integer"}, "height": {"type": "integer"},
                                                    "unit": {"type": "string"}}, "required": ["base", "height"]}}}
BFCL_LINE = {"id": "simple_python_0", "category": "simple_python",
             "messages": [{"role": "user", "content": "Find the area of a triangle with base 10 and height 5."}],
             "tools": [TRIANGLE],
             "ground_truth": [{"name": "calculate_triangle_area",
                               "arguments": {"base": [10], "height": [5], "unit": ["units", ""]}}]}


def test_bfcl_line_loads_as_a_ready_request_with_inline_spec_only_tools():
    seed = ToolUseSeed.model_validate(BFCL_LINE)
    assert seed.request.startswith("Find the area") and seed.kind == "single"
    assert ToolUseSeed.model_validate({**BFCL_LINE, "category": "parallel_multiple"}).kind == "parallel"
    script = ToolUseScript(solver=[call_tools(("calculate_triangle_area", {"base": 10, "height": 5}))])
    state = run_graph(seed, make_context(script))
    assert script.calls["proposer"] == 0
    (trajectory,) = state["trajectories"]
    assert trajectory.stopped == "calls_only" and trajectory.calls[0].execution == "unchecked"
    assert state["outcome"] == "accepted"
    verdicts = verdicts_of(rows_of(state, make_context(script))[2])
    assert verdicts["reference_calls"] == "passed" and verdicts["format"] == "passed"
    assert script.calls["critic"] == 0 and "critic" not in verdicts  # the ground truth is the semantic stage


def test_wrong_reference_values_reject_the_call_before_the_critic():
    script = ToolUseScript(solver=[call_tools(("calculate_triangle_area", {"base": 5, "height": 10}))])
    state = run_graph(ToolUseSeed.model_validate(BFCL_LINE), make_context(script))
    assert state["outcome"] == "rejected" and script.calls["critic"] == 0
    samples = rows_of(state, make_context(script))[0]
    assert samples[0].reason.startswith("reference_calls: calculate_triangle_area: base=5")


def test_inline_spec_sharing_a_builtin_name_is_not_run_by_the_builtin():
    impostor = {"type": "function", "function": {"name": "calculate", "description": "Something else.",
                                                 "parameters": {"type": "object", "properties": {
                                                     "expression": {"type": "string"}}}}}
    script = ToolUseScript(solver=[call_tools(("calculate", {"expression": "1+1"}))])
    state = run_graph(ToolUseSeed(kind="single", tools=[impostor], request="What is 1+1 in the other system?"),
                      make_context(script))
    assert state["trajectories"][0].calls[0].execution == "unchecked"


def test_bfcl_demo_recipe_loads_its_seed_file():
    recipe, seeds = load_recipe(ROOT / "demos" / "tool_use_bfcl.yaml")
    assert len(seeds) == 400 and all(s.request and s.ground_truth and s.inline_specs for s in seeds)


# -------------------------------------------------------------------------------- native tool calling


def test_native_mode_reads_hermes_calls_and_shows_results_as_tool_turns():
    from fakes import hermes_calls

    script = ToolUseScript(solver=[hermes_calls(("convert_units", {"value": 26.2, "from_unit": "mi", "to_unit": "km"})),
                                   "26.2 miles is about 42.16 km."])
    context = make_context(script)
    context.solver.mode = "native"
    state = run_graph(CONVERT, context)
    assert state["outcome"] == "accepted"
    first, second = script.kwargs["solver"]
    assert first["tools"][0]["function"]["name"] == "convert_units" and "json_schema" not in first
    assert "tools" not in second or second["tools"] is not None  # a middle step still offers the tools
    tool_turn = script.prompts["solver"][1][-1]
    assert tool_turn.type == "tool" and tool_turn.tool_call_id == "call_0_0" and "42.1" in tool_turn.content
    (trajectory,) = state["trajectories"]
    assert trajectory.calls[0].execution == "passed" and trajectory.answer.startswith("26.2 miles")


def test_native_mode_offers_no_tools_on_the_last_step():
    from fakes import hermes_calls

    def solver(messages, kwargs):
        if kwargs.get("tools"):
            return hermes_calls(("convert_units", {"value": 1, "from_unit": "mi", "to_unit": "km"}))
        return "1 mile is 1.609 km."

    script = ToolUseScript(solver=solver)
    context = make_context(script, max_steps=2)
    context.solver.mode = "native"
    (trajectory,) = run_graph(CONVERT, context)["trajectories"]
    assert trajectory.forced_answer and [d.action for d in trajectory.decisions] == ["call_tools", "answer"]


def test_malformed_native_tool_call_is_refused_and_retried():
    from fakes import hermes_calls

    replies = iter(["<tool_call>\n{not json}\n</tool_call>",
                    hermes_calls(("convert_units", {"value": 2, "from_unit": "mi", "to_unit": "km"})), "3.22 km"])
    script = ToolUseScript(solver=lambda messages, kwargs: next(replies))
    context = make_context(script)
    context.solver.mode = "native"
    (trajectory,) = run_graph(CONVERT, context)["trajectories"]
    assert trajectory.calls[0].arguments == {"value": 2, "from_unit": "mi", "to_unit": "km"}
    assert script.calls["solver"] == 3


def test_hermes_parser_splits_text_calls_and_problems():
    from synthgraph.agents.models import parse_hermes_tool_calls

    content, calls, problems = parse_hermes_tool_calls(
        'Let me check.\n<tool_call>\n{"name": "weekday", "arguments": {"date": "2026-01-01"}}\n</tool_call>\n'
        '<tool_call>{"arguments": {}}</tool_call>')
    assert content == "Let me check."
    assert calls == [{"name": "weekday", "args": {"date": "2026-01-01"}, "id": "call_0", "type": "tool_call"}]
    assert problems and "not a JSON object with a name" in problems[0]
    assert parse_hermes_tool_calls("no calls here") == ("no calls here", [], [])


def test_bare_json_call_of_an_offered_tool_is_a_call_not_an_answer():
    from synthgraph.agents.models import parse_hermes_tool_calls

    bare = '{"name": "get_stock", "arguments": {"item": "apples"}}'
    assert parse_hermes_tool_calls(bare, ["get_stock"])[1] == [
        {"name": "get_stock", "args": {"item": "apples"}, "id": "call_0", "type": "tool_call"}]
    assert len(parse_hermes_tool_calls(f"[{bare}, {bare}]", ["get_stock"])[1]) == 2
    assert parse_hermes_tool_calls(bare, ["weekday"]) == (bare, [], [])  # not a tool on offer: plain text


def test_native_last_step_that_calls_again_instead_of_answering_is_refused():
    from fakes import hermes_calls

    call = {"value": 1, "from_unit": "mi", "to_unit": "km"}
    replies = iter([hermes_calls(("convert_units", call)), json.dumps({"name": "convert_units", "arguments": call}),
                    "1 mile is 1.609 km."])
    script = ToolUseScript(solver=lambda messages, kwargs: next(replies))
    context = make_context(script, max_steps=2)
    context.solver.mode = "native"
    (trajectory,) = run_graph(CONVERT, context)["trajectories"]
    assert trajectory.answer == "1 mile is 1.609 km." and script.calls["solver"] == 3


def test_critic_sees_spec_only_calls_as_the_whole_reply_not_as_missing_results():
    call = tool_use.ExecutedCall(id="c", step=0, name="book_table", arguments={"people": 2}, execution="unchecked")
    text = tool_use.transcript(tool_use.Trajectory(key="k0", calls=[call], stopped="calls_only",
                                                   decisions=[tool_use.Decision(action="call_tools", calls=[
                                                       {"name": "book_table", "arguments": {"people": 2}}])]))
    assert text.splitlines()[0] == 'Called book_table({"people": 2})'
    assert "no result" not in text and "the right calls" in text


# ---------------------------------------------------------------------------- search over the store's corpus


def test_search_documents_tool_searches_the_runs_own_corpus(tmp_path):
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "kettle.md").write_text("# Kettle guide\n\n## Boiling\n\nThe Aurora kettle boils one litre of water in "
                                    "210 seconds and switches itself off.\n")
    (docs / "toaster.md").write_text("# Toaster guide\n\n## Browning\n\nThe Zephyr toaster has seven browning "
                                     "levels; level 4 gives golden toast.\n")
    recipe_path = tmp_path / "r.yaml"
    recipe_path.write_text("name: t\ngraph: tool_use\ntools:\n  corpus: {name: appliances, paths: [docs]}\n"
                           "roles: {solver: {samples: 1}}\n"
                           "seeds:\n  inline:\n    - {id: boil, kind: single, tools: [search_documents]}\n")
    recipe, seeds = load_recipe(recipe_path)
    script = ToolUseScript(
        proposer=json.dumps({"request": "How long does my Aurora kettle take to boil a litre?"}),
        solver=[call_tools(("search_documents", {"query": "Aurora kettle boil litre"})),
                answer("It takes 210 seconds, says the Kettle guide.")])
    db = tmp_path / "tools.duckdb"
    asyncio.run(Runner(recipe, seeds, store_path=db, pool=ScriptedPool(script)).run())
    (payload, status), = rows(db, "SELECT payload, status FROM samples WHERE kind = 'tool_trajectory'")
    (call,) = json.loads(payload)["calls"]
    passages = json.loads(call["result"])["passages"]
    assert call["execution"] == "passed" and passages[0]["title"] == "Kettle guide" and "210 seconds" in passages[0]["text"]
    assert status == "accepted"
    assert rows(db, "SELECT count(*) FROM chunks WHERE corpus = 'appliances'")[0][0] == 2
    described = json.loads(payload)["tools"][0]["function"]["description"]
    assert described.startswith("Search the appliances documents")


def test_a_ray_workers_copy_of_the_store_searches_the_corpus_as_the_run_ingested_it(tmp_path):
    """A Ray worker holds no store: its context searches a copy of the corpus the run's store holds, and never
    reads the corpus files again (they may have changed since, or be elsewhere on its node)."""
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "kettle.md").write_text("# Kettle guide\n\nThe Aurora kettle boils one litre of water in 210 seconds.\n")
    recipe = parse_recipe({"name": "t", "graph": "tool_use",
                           "tools": {"corpus": {"name": "appliances", "paths": [str(docs)]}},
                           "seeds": {"inline": [{"kind": "single", "tools": ["search_documents"]}]}})
    store = Store(tmp_path / "run.duckdb")
    reads = tool_use.FAMILY.store_reads(recipe, store)     # what the run's process does before workers start
    copy = Store.holding(store.rows(reads))
    (docs / "kettle.md").write_text("# Kettle guide\n\nEdited after the run started: nothing about boiling.\n")

    context = tool_use.make_context(recipe, ScriptedPool(ToolUseScript()), copy)

    passages = context.registry.get("search_documents").impl(query="how long to boil a litre")["passages"]
    assert "210 seconds" in passages[0]["text"]
    assert reads and tool_use.FAMILY.store_reads(parse_recipe({
        "name": "t", "graph": "tool_use", "seeds": {"inline": [{"kind": "single"}]}}), store) == {}
    store.close()


def test_a_corpus_setting_only_the_domain_family_reads_is_refused(tmp_path):
    recipe_path = tmp_path / "r.yaml"
    recipe_path.write_text("name: t\ngraph: tool_use\ntools:\n  corpus: {name: pydoc-topics, min_chunk_chars: 800}\n"
                           "seeds:\n  inline:\n    - {kind: single}\n")
    with pytest.raises(RecipeError, match=r"tools.corpus.min_chunk_chars: unknown field"):
        load_recipe(recipe_path)


def test_corpus_tool_needs_the_runs_store():
    recipe = parse_recipe({"name": "t", "graph": "tool_use", "tools": {"corpus": {"name": "pydoc-topics"}},
                           "seeds": {"inline": [{"kind": "single", "tools": ["search_documents"]}]}})
    from synthgraph.tools.retrieval import RetrievalError

    with pytest.raises(RetrievalError, match="needs the run's store"):
        tool_use.make_context(recipe, ScriptedPool(ToolUseScript()))


@pytest.mark.parametrize("setting", ["max_calls_per_step: 2", "constrain_arguments: false"])
def test_a_grammar_setting_with_native_tool_calls_is_refused(setting, tmp_path):
    recipe_path = tmp_path / "r.yaml"
    recipe_path.write_text(f"name: n\ngraph: tool_use\nroles: {{solver: {{mode: native, {setting}}}}}\n"
                           "seeds: {inline: [{id: a, kind: single}]}\n")
    with pytest.raises(RecipeError, match=r"roles.solver: .* the JSON grammar of mode: structured, and mode: native"):
        load_recipe(recipe_path)


def test_a_native_recipe_takes_a_command_line_model(tmp_path):
    """--model revalidates the recipe from its own dump: every field then counts as given, defaults included."""
    recipe_path = tmp_path / "r.yaml"
    recipe_path.write_text("name: n\ngraph: tool_use\nroles: {solver: {mode: native}}\n"
                           "seeds: {inline: [{id: a, kind: single}]}\n")
    recipe, _ = load_recipe(recipe_path)
    assert recipe.with_overrides(model="vllm:smollm2-135m").roles.solver.mode == "native"


def test_tools_per_request_with_tools_from_the_seeds_is_refused(tmp_path):
    recipe_path = tmp_path / "r.yaml"
    recipe_path.write_text("name: n\ngraph: tool_use\ntools: {builtin: false, from_seeds: true}\n"
                           "tools_per_request: [2, 3]\nseeds: {inline: [{id: a, kind: single}]}\n")
    with pytest.raises(RecipeError, match="tools_per_request sizes the tools drawn for a request, and with "
                                          "tools.from_seeds every seed brings its own"):
        load_recipe(recipe_path)


def test_one_step_trajectories_are_refused():
    """The last step may only answer: with one step no request could ever call a tool."""
    with pytest.raises(ValueError, match=r"roles.solver.max_steps\n  Input should be greater than or equal to 2"):
        parse_recipe({"name": "n", "graph": "tool_use", "roles": {"solver": {"max_steps": 1}},
                      "seeds": {"inline": [{"id": "a", "kind": "single"}]}})


def test_a_starting_state_without_the_builtin_tools_is_refused():
    with pytest.raises(ValueError, match="tools.state is what the builtin stateful tools start from, and tools.builtin "
                                         "is off"):
        parse_recipe({"name": "n", "graph": "tool_use", "seeds": {"inline": [{"id": "a", "kind": "single"}]},
                      "tools": {"builtin": False, "from_seeds": True, "state": {"inventory": {"apples": 3}}}})
