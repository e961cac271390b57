"""`langgraph dev` / LangGraph Studio entry points: one graph factory per registered family.

Studio sends a seed as JSON and the run context as JSON, but a family's graph runs with live roles (model
clients, a retriever) in its context and typed seeds in its state. So each factory builds the context once from a
recipe — the family's demo, or the one a run names in `configurable.recipe` — and returns a graph that validates
the seed (`seed` node) and runs the family's own graph as a subgraph, which Studio draws and steps through.
`langgraph.json` names them by module (`synthgraph.graphs.studio:reasoning`), not by file: the server execs a file
once per graph, which would give every graph its own engine; a module is imported once. `tests/test_family.py`
checks the list against the registry.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
from pathlib import Path
from typing import Any, TypedDict

import platformdirs
import yaml

from langchain_core.runnables import RunnableConfig
from langgraph.graph import END, START, StateGraph
from langgraph.graph.state import CompiledStateGraph

from synthgraph.agents.models import ModelPool
from synthgraph.graphs.family import Family, families, family
from synthgraph.graphs.recipe import RecipeBase, load_recipe
from synthgraph.store.db import Store

REPOSITORY = Path(__file__).resolve().parent.parent
# A graph's retrieval corpus and tool data live in a store; Studio's runs keep theirs out of the repository.
STUDIO_STORES = Path(platformdirs.user_cache_dir("synthgraph")) / "studio"


class StudioInput(TypedDict):
    seed: dict[str, Any]


# Built once per server process: one engine per model for every graph (five engines would not fit in memory).
_contexts: dict[tuple[str, str], Any] = {}  # (family, recipe path) -> context
_pools: dict[str, ModelPool] = {}           # engine settings -> the pool whose engines those contexts share


def demo_pipelines() -> dict[str, Path]:
    """The demo recipes that declare a pipeline (`graph: pipeline`), by file name: each is a graph of its own."""
    demos = sorted((REPOSITORY / "demos").glob("*.yaml"))
    return {path.stem: path for path in demos if (yaml.safe_load(path.read_text()) or {}).get("graph") == "pipeline"}


def recipe_path(fam: Family, config: RunnableConfig | None, default: Path | None = None) -> Path:
    named = ((config or {}).get("configurable") or {}).get("recipe") or os.environ.get("SYNTHGRAPH_RECIPE")
    if named:
        return Path(named)
    if default is not None:
        return default
    if fam.studio_recipe is None:
        raise ValueError(f"family {fam.name!r} has no demo recipe: name one as configurable.recipe")
    return REPOSITORY / fam.studio_recipe


def context_for(fam: Family, path: Path, pool: ModelPool | None = None) -> tuple[RecipeBase, Any]:
    recipe, _ = load_recipe(path)
    key = (fam.name, str(path.resolve()))
    if key not in _contexts:
        if pool is None:
            pool = _pools.setdefault(recipe.engine.model_dump_json(),
                                     ModelPool(recipe.engine, max_attempts=recipe.max_model_attempts))
        STUDIO_STORES.mkdir(parents=True, exist_ok=True)
        store = Store(recipe.resolve(recipe.store) if recipe.store else STUDIO_STORES / f"{path.stem}.duckdb")
        _contexts[key] = fam.make_context(recipe, pool, store)  # engines load on their first call
    return recipe, _contexts[key]


def studio_context_schema(context: Any) -> type:
    """A context schema whose constructor — what the server calls with the JSON context of a run — returns the
    context built from the recipe, with any plain fields the run sent replaced (a threshold, a sample count)."""
    base = type(context)

    class StudioContext(base):  # type: ignore[misc, valid-type]
        def __new__(cls, **fields: Any):
            if fields and dataclasses.is_dataclass(context):
                return dataclasses.replace(context, **fields)
            return context

    StudioContext.__name__ = f"Studio{base.__name__}"
    return StudioContext


def studio_graph(name: str, config: RunnableConfig | None = None, *, pool: ModelPool | None = None,
                 recipe: Path | None = None) -> CompiledStateGraph:
    fam = family(name)
    recipe, context = context_for(fam, recipe_path(fam, config, recipe), pool)
    inner = fam.builder_for(recipe)

    def seed(state: StudioInput) -> dict[str, Any]:
        typed = recipe.seed_model.model_validate(state["seed"])
        recipe.check_seeds([typed])  # fills planned fields (a dialogue's cell, a chunk slot)
        return fam.initial_state(typed)

    outer = StateGraph(inner.state_schema, input_schema=StudioInput, context_schema=studio_context_schema(context))
    outer.add_node("seed", seed)
    outer.add_node(fam.name, inner.compile())
    outer.add_edge(START, "seed")
    outer.add_edge("seed", fam.name)
    outer.add_edge(fam.name, END)
    return outer.compile(name=fam.name).with_config(**fam.config)


def _factory(family_name: str, recipe: Path | None = None):
    async def make_graph(config: RunnableConfig) -> CompiledStateGraph:
        # The server calls a factory on its event loop for every run: reading the recipe and opening the store
        # are file IO, which its blocking-call check refuses there.
        return await asyncio.to_thread(studio_graph, family_name, config, recipe=recipe)

    make_graph.__name__ = recipe.stem if recipe else family_name
    return make_graph


# `synthgraph.graphs.studio:reasoning` in langgraph.json: the server reads the module's own names, so every registered
# family (plugins too) gets one here.
globals().update({name: _factory(name) for name in families()})
globals().update({name: _factory("pipeline", path) for name, path in demo_pipelines().items()})
