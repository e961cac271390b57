"""The family contract: one registry that recipes, the runner, Studio and plugins derive from; prompts a recipe
can override and that are all part of the run id; the Python API."""

from __future__ import annotations

import json
import sys
import textwrap
from pathlib import Path

import pytest
from fakes import ReasoningScript, ScriptedPool
from readback import rows

import synthgraph
from synthgraph.agents import reasoning_roles
from synthgraph.agents.models import ModelServerDown
from synthgraph.agents.prompting import shipped_template
from synthgraph.graphs.family import Family, families, family
from synthgraph.graphs.recipe import RecipeError, load_recipe, load_seeds
from synthgraph.store.db import StoreError

REPOSITORY = Path(__file__).resolve().parent.parent
GOLD = [{"id": "g1", "problem": "What is 6 times 7?", "answer": "42"}]


def recipe_file(tmp_path: Path, **fields) -> Path:
    path = tmp_path / "r.yaml"
    path.write_text(json.dumps({"name": "t", "graph": "reasoning", "seeds": {"inline": GOLD},
                                "roles": {"solver": {"samples": 1}}, **fields}))
    return path


# ------------------------------------------------------------------------------------------ the registry


def test_every_builtin_family_is_registered_with_its_recipe_and_prompts():
    for name in ("reasoning", "code", "tool_use", "dialogue", "domain"):
        fam = family(name)
        assert isinstance(fam, Family) and fam.name == name
        assert fam.recipe.model_fields["graph"].annotation.__args__ == (name,)
        for prompt in fam.prompts:
            assert prompt.startswith(f"{name}_") and all(shipped_template(prompt))


def test_langgraph_json_lists_a_studio_graph_per_registered_family_and_demo_pipeline():
    from synthgraph.graphs import studio

    config = json.loads((REPOSITORY / "langgraph.json").read_text())
    assert set(config["graphs"]) == set(families()) | set(studio.demo_pipelines())
    for name, target in config["graphs"].items():
        assert target == f"synthgraph.graphs.studio:{name}" and callable(getattr(studio, name))


def test_unknown_graph_names_the_registered_families(tmp_path):
    path = recipe_file(tmp_path, graph="poetry")
    with pytest.raises(RecipeError, match=r"graph: must be one of reasoning, code, tool_use, dialogue, domain"):
        load_recipe(path)


PLUGIN = '''
from typing import Literal, TypedDict
from langgraph.graph import END, START, StateGraph
from synthgraph.graphs.family import Family, Rows
from synthgraph.graphs.recipe import RecipeBase, SeedBase
from synthgraph.store.rows import MessageRow, SampleRow, stable_id

class EchoSeed(SeedBase):
    text: str

class EchoRecipe(RecipeBase):
    seed_model = EchoSeed
    graph: Literal["echo"]

class State(TypedDict):
    seed: EchoSeed
    reply: str

def shout(state):
    return {"reply": state["seed"].text.upper()}

def build():
    g = StateGraph(State)
    g.add_node(shout)
    g.add_edge(START, "shout")
    g.add_edge("shout", END)
    return g

def to_rows(state, *, run_id, seed_id, context):
    sample = SampleRow(sample_id=stable_id(run_id, seed_id), run_id=run_id, seed_id=seed_id,
                       group_id=stable_id(run_id, seed_id), kind="echo", status="accepted",
                       payload={"reply": state["reply"]})
    turns = [MessageRow(sample_id=sample.sample_id, turn=0, role="user", content=state["seed"].text),
             MessageRow(sample_id=sample.sample_id, turn=1, role="assistant", content=state["reply"])]
    return Rows([sample], turns, [], {})

FAMILY = Family(name="echo", recipe=EchoRecipe, build=build, make_context=lambda recipe, pool, store: None,
                initial_state=lambda seed: {"seed": seed}, to_rows=to_rows)
'''


@pytest.fixture
def echo_plugin(tmp_path, monkeypatch):
    """An installed distribution that registers a family through the entry point group, as `pip install` would."""
    site = tmp_path / "site"
    (site / "echo_family").mkdir(parents=True)
    (site / "echo_family" / "__init__.py").write_text(textwrap.dedent(PLUGIN))
    dist = site / "echo_family-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: echo-family\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[synthgraph.families]\necho = echo_family:FAMILY\n")
    monkeypatch.syspath_prepend(str(site))
    families.cache_clear()
    yield
    families.cache_clear()
    sys.modules.pop("echo_family", None)


def test_an_installed_plugin_family_runs_with_no_edit_to_synthgraph(echo_plugin, tmp_path):
    path = tmp_path / "echo.yaml"
    path.write_text("name: e\ngraph: echo\nseeds: {inline: [{text: hello}, {text: plugins}]}\n")
    result = synthgraph.run(path, db=tmp_path / "e.duckdb", pool=ScriptedPool(ReasoningScript()))
    assert result.tally.accepted == 2
    assert sorted(result.samples()["metadata"].map(lambda m: json.loads(m)["reply"])) == ["HELLO", "PLUGINS"]


# --------------------------------------------------------------------------------------------- prompts


def test_a_recipe_overrides_one_prompt_inline_and_the_role_sees_it(tmp_path):
    path = recipe_file(tmp_path, prompts={"solver": {"user": "Answer with working. {problem}{feedback_block}"}})
    recipe, seeds = load_recipe(path)
    script = ReasoningScript(solver="6 times 7 is 42.\n#### 42")
    synthgraph.run(recipe, seeds=seeds, db=tmp_path / "s.duckdb", pool=ScriptedPool(script))
    solver_prompt = script.prompts["solver"][0]
    assert solver_prompt[-1].content == "Answer with working. What is 6 times 7?"
    assert solver_prompt[0].content == shipped_template("reasoning_solver")[0]  # the system part stays shipped


def test_a_prompt_file_override_is_read_relative_to_the_recipe(tmp_path):
    (tmp_path / "critic.md").write_text("## system\nYou grade.\n\n## user\n{problem}\n{solution}\n{reference}\n")
    recipe, _ = load_recipe(recipe_file(tmp_path, prompts={"critic": {"file": "critic.md"}}))
    assert family("reasoning").prompt_set(recipe).template("reasoning_critic")[0] == "You grade."


@pytest.mark.parametrize("override, message", [
    ({"solver": {"user": "{probem}"}},
     r"prompts.solver.user: unknown field \{probem\}; this prompt is filled with \{feedback_block\}, \{problem\}"),
    ({"solver": {"user": "Solve it."}}, r"prompts.solver: must use \{problem\}"),
    ({"poet": {"user": "x"}}, r"prompts.poet: the reasoning family has no such prompt \(its prompts: critic, "
                              r"diagnose, proposer, reference, solver, tir\)"),
    ({"critic": {"file": "nope.md"}}, r"prompts.critic.file: cannot read .*nope.md"),
    ({"solver": {"user": "{problem"}}, r"prompts.solver.user: .*brace"),
])
def test_a_prompt_override_that_does_not_fit_fails_at_load(tmp_path, override, message):
    with pytest.raises(RecipeError, match=message):
        load_recipe(recipe_file(tmp_path, prompts=override))


@pytest.mark.parametrize("fields, key, why", [
    ({"prompts": {"tir": {"user": "{problem}"}}}, "tir", "solver.mode: cot; tir or both uses it"),
    ({"prompts": {"solver": {"user": "{problem}"}}, "roles": {"solver": {"mode": "tir"}}}, "solver",
     "solver.mode: tir; cot or both uses it"),
    ({"prompts": {"diagnose": {"user": "{problem} {solution}"}}, "revise": {"rounds": 0}}, "diagnose",
     "revise.rounds: 0"),
    ({"prompts": {"reference": {"user": "{problem}"}}, "validate_references": False}, "reference",
     "validate_references: false"),
])
def test_overriding_a_prompt_the_recipe_never_shows_is_refused(tmp_path, fields, key, why):
    message = str(pytest.raises(RecipeError, load_recipe, recipe_file(tmp_path, **fields)).value)
    assert f"prompts.{key}: this recipe never shows the prompt to a model ({why}); remove the override or change " \
           "that setting" in message


def test_tool_use_native_and_structured_prompts_are_each_refused_in_the_other_mode(tmp_path):
    path = tmp_path / "t.yaml"
    native = {"user": "{request}"}
    path.write_text(json.dumps({"name": "t", "graph": "tool_use", "seeds": {"inline": [{"kind": "single"}]},
                                "prompts": {"native": native}}))
    with pytest.raises(RecipeError, match=r"prompts.native: .*\(solver.mode: structured; native uses it\)"):
        load_recipe(path)
    path.write_text(json.dumps({"name": "t", "graph": "tool_use", "seeds": {"inline": [{"kind": "single"}]},
                                "roles": {"solver": {"mode": "native"}}, "prompts": {"native": native}}))
    load_recipe(path)


def test_a_tir_setting_with_cot_solutions_is_refused(tmp_path):
    with pytest.raises(RecipeError, match=r"roles.solver: tir_steps bounds the code of tir solutions, and mode: cot"):
        load_recipe(recipe_file(tmp_path, roles={"solver": {"samples": 1, "tir_steps": 2}}))


def run_id_of(tmp_path, **fields) -> str:
    recipe, seeds = load_recipe(recipe_file(tmp_path, **fields))
    return recipe.run_id(seeds)


def test_every_word_of_prompt_text_is_part_of_the_run_id(tmp_path, monkeypatch):
    base = run_id_of(tmp_path)
    assert run_id_of(tmp_path) == base
    assert run_id_of(tmp_path, prompts={"critic": {"system": "Be strict."}}) != base
    # text kept in Python beside the templates
    monkeypatch.setitem(reasoning_roles.PROMPT_TEXT, "feedback_block", "\nTry again: {feedback}")
    assert run_id_of(tmp_path) != base
    monkeypatch.undo()
    assert run_id_of(tmp_path) == base
    # a shipped template file
    original = shipped_template("reasoning_solver")
    monkeypatch.setattr("synthgraph.agents.prompting.shipped_template",
                        lambda name: (original[0] + " Be brief.", original[1]) if name == "reasoning_solver"
                        else shipped_template(name))
    assert run_id_of(tmp_path) != base


def test_python_prompt_text_is_collected_where_the_roles_use_it():
    """PROMPT_TEXT holds the very objects the roles format, so editing one edits both."""
    assert reasoning_roles.PROMPT_TEXT["feedback_block"] is reasoning_roles.FEEDBACK_BLOCK
    assert family("reasoning").prompt_text is reasoning_roles.PROMPT_TEXT


# ---------------------------------------------------------------------------------------------- the API


def test_run_returns_the_run_and_its_samples_as_dataframe_and_arrow(tmp_path):
    result = synthgraph.run(recipe_file(tmp_path), db=tmp_path / "s.duckdb",
                            pool=ScriptedPool(ReasoningScript(solver="6 times 7 is 42.\n#### 42")))
    frame = result.samples()
    assert list(frame["status"]) == ["accepted"]
    assert [turn["role"] for turn in frame["messages"][0]] == ["user", "assistant"]
    table = synthgraph.load_samples(tmp_path / "s.duckdb", format="arrow", status="all")
    assert table.num_rows == 1 and "messages" in table.column_names
    # which file made the run, as the command records it
    assert rows(tmp_path / "s.duckdb", "SELECT recipe_path FROM runs") == [(str(recipe_file(tmp_path)),)]


def test_the_api_says_what_the_command_says_about_a_run(tmp_path):
    """A dead server raises (the command exits 3); a crash shows in exit_code; a bad limit, an unknown run id and
    samples without turns are not answered with nothing."""
    db = tmp_path / "s.duckdb"

    def down(messages):
        raise ModelServerDown("http://127.0.0.1:9/v1", 5, "Connection refused")

    with pytest.raises(synthgraph.ModelServerStopped, match="the model server is down: .*127.0.0.1:9") as stopped:
        synthgraph.run(recipe_file(tmp_path), db=db, pool=ScriptedPool(ReasoningScript(solver=down)))
    assert stopped.value.run.pending == 1 and stopped.value.run.exit_code == 3

    def crash(messages):
        raise KeyError("bug in a tool")

    crashed = synthgraph.run(recipe_file(tmp_path), db=db, pool=ScriptedPool(ReasoningScript(solver=crash)))
    assert crashed.exit_code == 1 and [seed for seed, _ in crashed.crashed] == ["g1"]
    with pytest.warns(UserWarning, match="1 error samples have no chat turns") as heard:
        assert synthgraph.load_samples(db, status="error").empty
    assert heard[0].filename == __file__   # the warning points at the caller's line
    with pytest.raises(ValueError, match="limit must be 1 or more"):
        synthgraph.run(recipe_file(tmp_path), db=db, limit=0)
    with pytest.raises(StoreError, match="no run 'nope' in"):
        synthgraph.load_samples(db, run_id="nope")


def test_run_overrides_fields_and_resumes_like_the_command(tmp_path):
    pool = ScriptedPool(ReasoningScript(solver="6 times 7 is 42.\n#### 42"))
    first = synthgraph.run(recipe_file(tmp_path), db=tmp_path / "s.duckdb", pool=pool, concurrency=2)
    again = synthgraph.run(recipe_file(tmp_path), db=tmp_path / "s.duckdb", pool=pool, concurrency=5)
    assert first.recipe.concurrency == 2 and again.run_id == first.run_id  # concurrency is not the data
    assert again.tally.seeds_skipped == 1 and again.tally.calls == 0


def test_overrides_keep_paths_relative_to_the_recipe(tmp_path):
    (tmp_path / "seeds.jsonl").write_text(json.dumps(GOLD[0]) + "\n")
    path = tmp_path / "r.yaml"
    path.write_text("name: t\ngraph: reasoning\nseeds: {file: seeds.jsonl}\n")
    recipe, _ = load_recipe(path)
    changed = recipe.with_overrides(concurrency=2, model="vllm:other")
    assert [s.seed_id for s in load_seeds(changed, base=changed._base, where="t")] == ["g1"]
    assert {str(changed.role_model(r)) for r in ("proposer", "solver", "critic")} == {"vllm:other"}


def test_the_api_runs_inside_a_running_event_loop(tmp_path):
    import asyncio

    async def notebook_cell():
        return synthgraph.run(recipe_file(tmp_path), db=tmp_path / "s.duckdb",
                              pool=ScriptedPool(ReasoningScript(solver="#### 42")))

    assert asyncio.run(notebook_cell()).tally.seeds_done == 1


def test_dataset_format_names_the_package_when_missing(tmp_path, monkeypatch):
    synthgraph.run(recipe_file(tmp_path), db=tmp_path / "s.duckdb", pool=ScriptedPool(ReasoningScript()))
    monkeypatch.setitem(sys.modules, "datasets", None)
    with pytest.raises(ImportError, match="pip install datasets"):
        synthgraph.load_samples(tmp_path / "s.duckdb", format="datasets")


@pytest.mark.parametrize("demo", sorted(p.name for p in (REPOSITORY / "demos").glob("*.yaml")))
def test_every_demo_recipe_validates_with_its_models_checked(demo):
    """`synthgraph validate` loads the recipe and pre-flights every model its roles use, whatever the family
    keeps its roles in (named roles, a list of responders, a pipeline's role map)."""
    from typer.testing import CliRunner

    from synthgraph.graphs.cli import app

    result = CliRunner().invoke(app, ["validate", str(REPOSITORY / "demos" / demo)], env={"COLUMNS": "250"})
    assert result.exit_code == 0 and ": ok (" in result.output, result.output


@pytest.mark.parametrize("demo", ["judged_pairs.yaml", "two_step.yaml", "reasoning.yaml"])
def test_one_model_for_every_role_reaches_roles_however_a_family_keeps_them(demo):
    recipe, _ = load_recipe(REPOSITORY / "demos" / demo)
    assert {str(spec) for spec in recipe.with_overrides(model="vllm:other").model_specs()} == {"vllm:other"}
