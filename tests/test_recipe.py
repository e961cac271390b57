"""Recipes and seed files are checked before any model loads, with messages that name the field."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from synthgraph.graphs.cli import app
from synthgraph.graphs.family import families
from synthgraph.graphs.recipe import RecipeError, load_recipe

DEMOS = Path(__file__).resolve().parents[1] / "demos"


@pytest.mark.parametrize("name", ["reasoning.yaml", "reasoning_gold.yaml"])
def test_demo_recipes_are_valid(name):
    recipe, seeds = load_recipe(DEMOS / name)
    assert recipe.graph == "reasoning" and len(seeds) >= 8


def write(tmp_path: Path, text: str, seeds: str | None = None) -> Path:
    if seeds is not None:
        (tmp_path / "seeds.jsonl").write_text(seeds)
    path = tmp_path / "r.yaml"
    path.write_text(text)
    return path


BASE = "name: t\ngraph: reasoning\nseeds: {file: seeds.jsonl}\n"


def test_out_of_range_field_is_named_with_what_is_allowed(tmp_path):
    path = write(tmp_path, BASE + "roles: {solver: {samples: 0}}\n", '{"topic": "x"}\n')
    with pytest.raises(RecipeError) as err:
        load_recipe(path)
    assert str(err.value) == f"recipe {path}: roles.solver.samples: Input should be greater than or equal to 1 (got 0)"


def test_unknown_graph_lists_the_known_ones(tmp_path):
    path = write(tmp_path, BASE.replace("reasoning", "poetry"), '{"topic": "x"}\n')
    assert str(pytest.raises(RecipeError, load_recipe, path).value).endswith(
        f"graph: must be one of {', '.join(families())} (got 'poetry')")
    assert {"reasoning", "code", "tool_use"} <= set(families())


def test_unknown_field_is_reported(tmp_path):
    path = write(tmp_path, BASE + "concurency: 3\n", '{"topic": "x"}\n')
    assert "concurency: unknown field" in str(pytest.raises(RecipeError, load_recipe, path).value)


def test_bad_model_spec_is_reported(tmp_path):
    path = write(tmp_path, BASE + "model: llama\n", '{"topic": "x"}\n')
    assert "model spec 'llama' must look like" in str(pytest.raises(RecipeError, load_recipe, path).value)


def test_bad_seed_line_names_file_and_line(tmp_path):
    path = write(tmp_path, BASE, '{"topic": "x"}\n{"problem": "1+1?"}\n')
    message = str(pytest.raises(RecipeError, load_recipe, path).value)
    assert "seeds.jsonl:2" in message and "needs its gold `answer`" in message


def test_seed_line_that_is_not_json(tmp_path):
    path = write(tmp_path, BASE, '{"topic": "x"}\n{topic: y}\n')
    assert "seeds.jsonl:2: not valid JSON" in str(pytest.raises(RecipeError, load_recipe, path).value)


def test_missing_seed_file(tmp_path):
    path = write(tmp_path, BASE)
    assert "seeds.file" in str(pytest.raises(RecipeError, load_recipe, path).value)


def test_run_id_ignores_speed_settings_but_not_sampling(tmp_path):
    seeds_text = '{"topic": "x"}\n'
    a = load_recipe(write(tmp_path, BASE + "concurrency: 4\n", seeds_text))
    b = load_recipe(write(tmp_path, BASE + "concurrency: 64\n", seeds_text))
    c = load_recipe(write(tmp_path, BASE + "roles: {solver: {temperature: 0.2}}\n", seeds_text))
    assert a[0].run_id(a[1]) == b[0].run_id(b[1]) != c[0].run_id(c[1])


def test_validate_command_checks_without_loading_a_model(tmp_path):
    good = CliRunner().invoke(app, ["validate", str(DEMOS / "reasoning.yaml")])
    assert good.exit_code == 0 and "ok" in good.stdout
    bad = CliRunner().invoke(app, ["validate", str(write(tmp_path, BASE + "concurrency: 0\n", '{"topic": "x"}\n'))])
    assert bad.exit_code == 2 and "concurrency: Input should be greater than or equal to 1" in bad.output


def test_max_tokens_past_the_engines_context_is_refused_naming_the_role(tmp_path):
    path = write(tmp_path, BASE + "roles: {critic: {max_tokens: 4096}}\n", '{"topic": "x"}\n')
    assert str(pytest.raises(RecipeError, load_recipe, path).value) == (
        f"recipe {path}: roles.critic.max_tokens 4096 leaves no room for the prompt in engine.max_model_len 4096 "
        "(the model's context): raise engine.max_model_len or lower max_tokens")
    roomy = write(tmp_path, BASE + "roles: {critic: {max_tokens: 4096}}\nengine: {max_model_len: 8192}\n")
    load_recipe(roomy)
    served = write(tmp_path, BASE + "roles: {critic: {max_tokens: 4096, model: 'openai:http://h:8000/v1:m'}}\n")
    load_recipe(served)   # a server's context is its own


def test_a_blank_csv_cell_under_a_family_field_is_not_given(tmp_path):
    """`apples,,` is a topic seed, not a gold problem whose problem and answer are empty."""
    (tmp_path / "mixed.csv").write_text("topic,problem,answer\napples,,\n,What is 2+2?,4\n")
    path = write(tmp_path, "name: t\ngraph: reasoning\nseeds: {file: mixed.csv}\n")
    topic, gold = load_recipe(path)[1]
    assert (topic.topic, topic.problem, topic.generative) == ("apples", None, True)
    assert (gold.topic, gold.problem, gold.answer) == (None, "What is 2+2?", "4")
