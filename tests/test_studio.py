"""Studio (`langgraph dev`) entry points: a seed sent as JSON runs through the family's graph with the context
built from a recipe, so a user can invoke one seed and step through it."""

from __future__ import annotations

import asyncio
import json

from fakes import ReasoningScript, ScriptedPool

from synthgraph.graphs import studio


def test_a_studio_graph_runs_one_json_seed_with_the_context_built_from_its_recipe(tmp_path):
    path = tmp_path / "r.yaml"
    path.write_text(json.dumps({"name": "t", "graph": "reasoning", "store": str(tmp_path / "s.duckdb"),
                                "seeds": {"inline": [{"topic": "apples"}]}, "roles": {"solver": {"samples": 2}}}))
    script = ReasoningScript()
    graph = studio.studio_graph("reasoning", {"configurable": {"recipe": str(path)}}, pool=ScriptedPool(script))
    assert set(graph.get_graph().nodes) >= {"seed", "reasoning"}
    # what the server does with the run's JSON: context_schema(**context), then the input seed as plain JSON
    context = graph.context_schema(**{})
    state = asyncio.run(graph.ainvoke({"seed": {"topic": "pears"}}, context=context))
    assert state["outcome"] == "accepted" and len(state["attempts"]) == 2
    assert script.calls["proposer"] == 1
    # a plain field sent with the run replaces the recipe's
    assert graph.context_schema(**{"samples": 3}).samples == 3


def test_each_registered_family_has_a_studio_factory():
    for name in ("reasoning", "code", "tool_use", "dialogue", "domain"):
        assert callable(getattr(studio, name))


def test_the_served_factory_builds_its_graph_off_the_event_loop(tmp_path):
    """langgraph dev calls the factory on its event loop for each run and refuses blocking file IO there."""
    path = tmp_path / "r.yaml"
    path.write_text(json.dumps({"name": "t", "graph": "reasoning", "store": str(tmp_path / "s.duckdb"),
                                "seeds": {"inline": [{"topic": "apples"}]}}))
    assert asyncio.iscoroutinefunction(studio.reasoning)
    graph = asyncio.run(studio.reasoning({"configurable": {"recipe": str(path)}}))
    assert set(graph.get_graph().nodes) >= {"seed", "reasoning"}
