"""The runner drives many seeds into DuckDB; reruns resume; the CLI reads the store back."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import duckdb
import pytest
from fakes import ReasoningScript, ScriptedPool
from readback import rows
from typer.testing import CliRunner

from synthgraph.graphs import cli
from synthgraph.graphs.cli import app
from synthgraph.graphs.recipe import RecipeBase, load_recipe, load_seeds, parse_recipe
from synthgraph.graphs import runner as runner_module
from synthgraph.graphs.runner import Runner
from synthgraph.store.rows import AgentCallRow

SEEDS = [{"id": f"gold-{i}", "problem": f"What is {i} times 7?", "answer": str(7 * i)} for i in range(1, 6)]


def make_recipe(**fields) -> RecipeBase:
    return parse_recipe({
        "name": "unit", "graph": "reasoning", "seeds": {"inline": SEEDS},
        "roles": {"solver": {"samples": 2}}, "concurrency": 3, **fields,
    })


def solver_reply(messages) -> str:
    number = int(messages[-1].content.split()[2])
    return f"{number} times 7 is {7 * number}.\n#### {7 * number}"


def run(db: Path, script: ReasoningScript, *, limit=None, recipe=None, retry_errors=False):
    recipe = recipe or make_recipe()
    seeds = load_seeds(recipe, base=Path("."), where="test")
    runner = Runner(recipe, seeds, store_path=db, limit=limit, pool=ScriptedPool(script), retry_errors=retry_errors)
    return asyncio.run(runner.run())


def test_run_writes_samples_turns_verdicts_and_lineage(tmp_path):
    db = tmp_path / "s.duckdb"
    result = run(db, ReasoningScript(solver=solver_reply))
    assert result.tally.accepted == 10 and result.tally.seeds_done == 5
    assert rows(db, "SELECT status, count(*) FROM samples GROUP BY 1") == [("accepted", 10)]
    assert rows(db, "SELECT role, count(*) FROM messages GROUP BY 1 ORDER BY 1") == [("assistant", 10), ("user", 10)]
    assert rows(db, "SELECT verifier, outcome, count(*) FROM verdicts GROUP BY ALL ORDER BY 1") == [
        ("critic", "passed", 10), ("math_verify", "passed", 10)]
    # every solver and critic call is linked to the sample it produced or judged
    assert rows(db, "SELECT role, count(*), count(sample_id) FROM agent_calls GROUP BY 1 ORDER BY 1") == [
        ("critic", 10, 10), ("solver", 10, 10)]
    assert rows(db, "SELECT count(*) FROM seeds WHERE status = 'done'") == [(5,)]


def test_rerun_resumes_without_duplicates_or_new_model_calls(tmp_path):
    db = tmp_path / "s.duckdb"
    run(db, ReasoningScript(solver=solver_reply), limit=2)
    assert rows(db, "SELECT count(DISTINCT seed_id) FROM samples") == [(2,)]
    again = ReasoningScript(solver=solver_reply)
    result = run(db, again)
    assert result.tally.seeds_skipped == 2 and result.tally.seeds_done == 3
    assert again.calls["solver"] == 6  # only the three new seeds were solved
    assert rows(db, "SELECT count(*), count(DISTINCT sample_id) FROM samples") == [(10, 10)]
    finished = ReasoningScript(solver=solver_reply)
    run(db, finished)
    assert sum(finished.calls.values()) == 0


def test_changed_recipe_is_a_new_run(tmp_path):
    db = tmp_path / "s.duckdb"
    first = run(db, ReasoningScript(solver=solver_reply))
    second = run(db, ReasoningScript(solver=solver_reply), recipe=make_recipe(roles={"solver": {"samples": 1}}))
    assert first.run_id != second.run_id
    assert rows(db, "SELECT count(*) FROM runs") == [(2,)]


def test_crashing_seed_is_recorded_and_the_run_goes_on(tmp_path):
    db = tmp_path / "s.duckdb"

    def solver(messages):
        if "3 times 7" in messages[-1].content:
            raise KeyError("bug in a tool")
        return solver_reply(messages)

    result = run(db, ReasoningScript(solver=solver))
    assert result.tally.seeds_done == 4 and result.tally.seeds_failed == 1
    assert rows(db, "SELECT kind, status, reason LIKE '%bug in a tool%' FROM samples WHERE kind = 'seed_error'") == [
        ("seed_error", "error", True)]
    assert rows(db, "SELECT seeds_done, seeds_crashed FROM run_stats") == [(4, 1)]
    # a rerun without --retry-errors says the crashed seed is waiting for it, not that it was done
    again = run(db, ReasoningScript(solver=solver_reply))
    assert (again.tally.seeds_skipped, again.tally.seeds_crashed_before) == (5, 1)
    width, cli.out.width = cli.out.width, 400  # the row on one line
    try:
        with cli.out.capture() as captured:
            cli.print_run_summary(again, "r", rerun="synthgraph run r.yaml")
    finally:
        cli.out.width = width
    assert "0 done, 0 crashed, 4 already done earlier, 1 crashed earlier (--retry-errors redoes them), of 5" in \
        captured.get()
    run(db, ReasoningScript(solver=solver_reply), retry_errors=True)
    assert rows(db, "SELECT count(*) FROM samples WHERE kind = 'seed_error'") == [(0,)]
    assert rows(db, "SELECT count(*) FROM seeds WHERE status = 'done'") == [(5,)]


def test_token_budget_stops_new_seeds(tmp_path):
    db = tmp_path / "s.duckdb"
    result = run(db, ReasoningScript(solver=solver_reply), recipe=make_recipe(concurrency=1, budget={"max_tokens": 1}))
    assert result.budget_exhausted and result.tally.seeds_done == 1
    assert rows(db, "SELECT count(*) FROM seeds WHERE status = 'pending'") == [(4,)]


@pytest.fixture
def filled_store(tmp_path) -> Path:
    db = tmp_path / "s.duckdb"

    def solver(messages):  # seed 5 is answered wrongly, so the store holds rejected samples too
        return "#### 1" if "5 times 7" in messages[-1].content else solver_reply(messages)

    run(db, ReasoningScript(solver=solver), recipe=make_recipe(revise={"rounds": 0}))
    return db


def test_cli_sql_answers_read_only_in_three_formats(filled_store):
    cli = CliRunner()
    result = cli.invoke(app, ["sql", "SELECT status, count(*) AS n FROM samples GROUP BY 1 ORDER BY 1",
                              "--db", str(filled_store), "--format", "json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == [{"status": "accepted", "n": 8}, {"status": "rejected", "n": 2}]
    csv_out = cli.invoke(app, ["sql", "SELECT count(*) AS n FROM samples", "--db", str(filled_store), "-f", "csv"])
    assert csv_out.stdout.split() == ["n", "10"]
    table = cli.invoke(app, ["sql", "SELECT count(*) AS n FROM samples", "--db", str(filled_store)])
    assert "10" in table.stdout
    write = cli.invoke(app, ["sql", "DELETE FROM samples", "--db", str(filled_store)])
    assert write.exit_code == 2 and "read-only" in write.output


def test_cli_export_jsonl_is_openai_chat_format(filled_store, tmp_path):
    out = tmp_path / "accepted.jsonl"
    result = CliRunner().invoke(app, ["export", "--format", "jsonl", "--status", "accepted", "--out", str(out),
                                      "--db", str(filled_store)])
    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(records) == 8
    first = records[0]
    assert [m["role"] for m in first["messages"]] == ["user", "assistant"]
    assert set(first["messages"][0]) == {"role", "content"}
    assert first["status"] == "accepted" and first["metadata"]["reference"]


def test_cli_export_parquet_has_typed_messages(filled_store, tmp_path):
    out = tmp_path / "all.parquet"
    result = CliRunner().invoke(app, ["export", "--format", "parquet", "--status", "rejected", "--out", str(out),
                                      "--db", str(filled_store)])
    assert result.exit_code == 0, result.output
    got = duckdb.sql(f"SELECT status, messages[2].role, len(messages) FROM '{out}'").fetchall()
    assert got == [("rejected", "assistant", 2)] * 2


def test_cli_stats_shows_yield_verdicts_and_roles(filled_store):
    result = CliRunner().invoke(app, ["stats", "--db", str(filled_store)])
    assert result.exit_code == 0, result.output
    for expected in ["yield per run", "verdict mix", "model calls per role", "math_verify", "solver", "0.8"]:
        assert expected in result.stdout


def test_cli_reports_missing_store(tmp_path):
    result = CliRunner().invoke(app, ["sql", "SELECT 1", "--db", str(tmp_path / "none.duckdb")])
    assert result.exit_code == 2 and "no store at" in result.output


def test_a_server_that_answers_every_sample_of_a_prompt_alike_is_reported_as_decoding_greedily(tmp_path):
    # transformers serve without "do_sample" in generation_config.json: the k samples come back word for word
    recipe = make_recipe(roles={"solver": {"samples": 4}})
    alike = run(tmp_path / "alike.duckdb", ReasoningScript(solver=solver_reply), recipe=recipe).tally
    assert alike.sampled_repeats >= 15 and alike.identical_repeats == alike.sampled_repeats  # 3 repeats a seed
    assert "seems to decode greedily" in alike.greedy_warning
    draws = iter(range(1000))
    drawn = ReasoningScript(solver=lambda messages: f"Draw {next(draws)}: {solver_reply(messages)}")
    sampled = run(tmp_path / "sampled.duckdb", drawn, recipe=recipe).tally
    assert sampled.sampled_repeats >= 15 and sampled.identical_repeats == 0 and sampled.greedy_warning is None


def test_the_answers_kept_to_spot_greedy_decoding_stay_bounded(monkeypatch):
    monkeypatch.setattr(runner_module, "GREEDY_PROMPTS_KEPT", 4)
    tally = runner_module.RunTally()
    for i in range(40):
        tally.add_call(AgentCallRow.model_construct(model="m", prompt_hash=f"p{i // 2}", completion="same",
                                                    sampling={"temperature": 0.7}, latency_s=0.1,
                                                    prompt_tokens=None, completion_tokens=None))
    assert len(tally._first_answers) <= 4 and tally.sampled_repeats == 20 == tally.identical_repeats


def test_a_recipes_store_is_found_beside_it_wherever_the_run_starts(tmp_path, monkeypatch):
    """As its seed files are, and as the Studio has it: run from another folder, the recipe writes the same store."""
    folder = tmp_path / "recipes"
    folder.mkdir()
    (folder / "r.yaml").write_text(json.dumps({"name": "unit", "graph": "reasoning", "seeds": {"inline": SEEDS[:1]},
                                               "store": "data.duckdb"}))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    recipe, seeds = load_recipe(Path("../recipes/r.yaml"))
    result = asyncio.run(Runner(recipe, seeds, pool=ScriptedPool(ReasoningScript(solver=solver_reply))).run())
    assert result.store_path.resolve() == (folder / "data.duckdb").resolve()
    assert rows(folder / "data.duckdb", "SELECT count(*) FROM seeds WHERE status = 'done'") == [(1,)]
    assert not (elsewhere / "data.duckdb").exists()


def test_sql_shows_stored_text_as_it_is_not_as_markup(tmp_path):
    db = tmp_path / "s.duckdb"
    run(db, ReasoningScript(solver=solver_reply), limit=1)
    result = CliRunner().invoke(app, ["sql", "SELECT 'list[int] x' AS t, '<s>[INST] hi [/INST]' AS \"c[1]\"",
                                      "--db", str(db)], terminal_width=200)
    assert result.exit_code == 0, result.output
    assert "list[int] x" in result.output and "<s>[INST] hi [/INST]" in result.output and "c[1]" in result.output


def test_a_changed_seed_list_is_a_new_run_and_the_result_names_the_earlier_one(tmp_path):
    db = tmp_path / "s.duckdb"
    first = run(db, ReasoningScript(solver=solver_reply), recipe=make_recipe(seeds={"inline": SEEDS[:2]}))
    assert first.earlier is None
    grown = run(db, ReasoningScript(solver=solver_reply), recipe=make_recipe(seeds={"inline": SEEDS[:3]}))
    assert grown.run_id != first.run_id and grown.earlier == (first.run_id, 2)
    again = run(db, ReasoningScript(solver=solver_reply), recipe=make_recipe(seeds={"inline": SEEDS[:3]}))
    assert again.earlier is None   # the same run resumed: nothing new to say
