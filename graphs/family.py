"""The one contract a recipe family fulfils, and the registry every other part derives from.

A family is its recipe model (with its seed model), a graph builder, a context factory (the roles and limits a
graph instance runs with, built from the recipe), the initial state of one seed, and the rows one finished
instance becomes. The recipe loader, the runner, the CLI, Studio's entry points and the run id all read this
registry; nothing else lists the families. Built-ins live in `graphs/`; a plugin package registers its own
`Family` under the entry point group `synthgraph.families`, so `pip install some-family` makes
`graph: some_family` work without an edit here.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import cache, cached_property
from importlib import import_module
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, Any, NamedTuple

from langgraph.graph import StateGraph

from synthgraph.agents.prompting import Prompts
from synthgraph.graphs.recipe import RecipeBase, RecipeError, SeedBase
from synthgraph.store.rows import MessageRow, SampleRow, VerdictRow, stable_id

if TYPE_CHECKING:
    from langgraph.graph.state import CompiledStateGraph

    from synthgraph.agents.models import ModelPool
    from synthgraph.store.db import Store

ENTRY_POINT_GROUP = "synthgraph.families"
BUILTIN = ("reasoning", "code", "tool_use", "dialogue", "domain", "pipeline", "judged_pairs", "critique_revise",
           "self_instruct", "evol_instruct")


def on_loop(function: Callable) -> Callable:
    """A router (or a node that only sets a field), to run on the event loop. LangGraph runs a plain function in
    a worker thread, as it must one that may block; for a pure function of the state the hop costs more than
    the function (~60 us and several turns of the loop, per seed and router). Register `on_loop(route)` where
    `route` was; the function itself stays plain, for tests to call."""
    @functools.wraps(function)
    async def on_the_loop(*args, **kwargs):
        return function(*args, **kwargs)

    return on_the_loop


class Rows(NamedTuple):
    """What one finished graph instance becomes in the store, plus subject (attempt key) -> sample id, which
    ties each model call to the sample it was made for."""

    samples: list[SampleRow]
    messages: list[MessageRow]
    verdicts: list[VerdictRow]
    sample_ids: dict[str, str]


@dataclass(frozen=True)
class Family:
    name: str
    recipe: type[RecipeBase]
    build: Callable[..., StateGraph]
    """() -> the graph; (recipe) -> the graph when `graph_from_recipe` (a declarative pipeline's nodes and edges
    are the recipe's)."""
    make_context: Callable[[RecipeBase, ModelPool, Store | None], Any]
    initial_state: Callable[[SeedBase], dict[str, Any]]
    to_rows: Callable[..., Rows]
    prompts: tuple[str, ...] = ()
    """Names of the prompt templates (agents/prompts/NAME.md) its roles render; each overridable from the recipe
    under `prompts.<NAME without the family prefix>`."""
    prompts_unused: Callable[[RecipeBase], Mapping[str, str]] | None = None
    """(recipe) -> the prompts its settings never render, each with the setting that would: overriding one of
    those is refused rather than changing nothing (and the run id)."""
    prompt_text: Mapping[str, Any] = field(default_factory=dict)
    """Prompt text the roles keep in Python (instructions per kind, feedback blocks): part of the run id too."""
    studio_recipe: str | None = None
    """The demo recipe (relative to the repository) Studio builds this family's context from."""
    store_reads: Callable[[RecipeBase, Store], Mapping[str, str]] | None = None
    """(recipe, the run's store) -> the rows its context reads from the store, as table -> SELECT (a corpus, the
    instructions earlier runs kept), once the store is ready for the run (a corpus ingested). A Ray worker holds
    no store, the run's process being its only writer: its context reads a copy of these rows taken as the run
    starts (`Store.holding`)."""
    config: Mapping[str, Any] = field(default_factory=dict)
    """Run config every invocation needs (e.g. a recursion limit for a long loop)."""
    graph_from_recipe: bool = False

    @cached_property
    def graph(self) -> CompiledStateGraph:
        """The compiled graph of a family whose shape does not depend on the recipe."""
        return self.build().compile().with_config(**self.config)

    def builder_for(self, recipe: RecipeBase) -> StateGraph:
        return self.build(recipe) if self.graph_from_recipe else self.build()

    def graph_for(self, recipe: RecipeBase) -> CompiledStateGraph:
        return self.builder_for(recipe).compile().with_config(**self.config) if self.graph_from_recipe else self.graph

    def prompt_set(self, recipe: RecipeBase) -> Prompts:
        """The family's prompts with the recipe's overrides applied (validated when the recipe loaded)."""
        unused = self.prompts_unused(recipe) if self.prompts_unused is not None else {}
        for key in recipe.prompts:
            if (why := unused.get(f"{self.name}_{key}")) is not None:
                raise ValueError(f"prompts.{key}: this recipe never shows the prompt to a model ({why}); remove the "
                                 "override or change that setting")
        return Prompts.for_family(self.name, self.prompts, recipe.prompts, base=recipe.resolve)

    def prompts_digest(self, recipe: RecipeBase) -> str:
        """Every word a model is shown, wherever it lives: editing any of it starts a new run."""
        texts = self.prompt_set(recipe).texts()
        return stable_id(json.dumps([texts, self.prompt_text], sort_keys=True, default=str))


def _load_builtin(name: str) -> Family:
    return import_module(f"synthgraph.graphs.{name}").FAMILY


@cache
def families() -> dict[str, Family]:
    """Built-ins first, then plugins in entry-point order; a plugin may not shadow a built-in."""
    registry = {name: _load_builtin(name) for name in BUILTIN}
    for point in entry_points(group=ENTRY_POINT_GROUP):
        try:
            plugin = point.load()
        except Exception as exc:  # a broken plugin must say which one, not take every recipe down
            raise RecipeError(f"plugin family {point.name!r} ({point.value}) failed to load: "
                              f"{type(exc).__name__}: {exc}") from exc
        if not isinstance(plugin, Family):
            raise RecipeError(f"plugin family {point.name!r} ({point.value}) is not a synthgraph Family")
        if plugin.name in registry:
            raise RecipeError(f"plugin family {point.value} is named {plugin.name!r}, which is already taken")
        registry[plugin.name] = plugin
    return registry


def family(name: str) -> Family:
    known = families()
    if name not in known:
        raise RecipeError(f"graph: must be one of {', '.join(known)} (got {name!r})")
    return known[name]
