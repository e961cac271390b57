"""The cleaning stage of every run (graphs/cleaning.py) and `synthgraph dedup` / `decontaminate` over a store."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path

import pytest
from fakes import ReasoningScript, ScriptedPool
from readback import rows
from typer.testing import CliRunner

from synthgraph.graphs.cli import app
from synthgraph.graphs.recipe import RecipeError, load_recipe, load_seeds, parse_recipe
from synthgraph.graphs.runner import Runner

TASK = "What is 3 times 7? Show every step of the multiplication clearly, please."
SAME_TASK = "what is 3 times 7 -- show EVERY step of the multiplication clearly please"  # re-cased, re-punctuated
OTHER = "What is 5 times 9? Show every step of the multiplication clearly, please."
MT_BENCH_81 = ("Compose an engaging travel blog post about a recent trip to Hawaii, highlighting cultural "
               "experiences and must-see attractions.")


def seed(seed_id: str, problem: str) -> dict:
    a, b = map(int, re.findall(r"\d+", problem)[:2])
    return {"id": seed_id, "problem": problem, "answer": str(a * b)}


def solver(messages) -> str:
    a, b = map(int, re.findall(r"\d+", messages[-1].content)[:2])
    return f"{a} times {b} is {a * b}.\n#### {a * b}"


def run(db: Path, seeds: list[dict], *, limit=None, script=None, **fields):
    recipe = parse_recipe({"name": "clean", "graph": "reasoning", "seeds": {"inline": seeds},
                           "roles": {"solver": {"samples": 1}}, "revise": {"rounds": 0}, "concurrency": 1, **fields})
    loaded = load_seeds(recipe, base=Path("."), where="test")
    script = script or ReasoningScript(solver=solver)
    runner = Runner(recipe, loaded, store_path=db, limit=limit, pool=ScriptedPool(script))
    return asyncio.run(runner.run()), script


def statuses(db: Path) -> dict[str, str]:
    return dict(rows(db, "SELECT seed_id, status FROM samples WHERE kind = 'reasoning_trace'"))


def test_duplicate_across_two_seeds_is_rejected_with_a_verdict_naming_the_other_sample(tmp_path):
    db = tmp_path / "s.duckdb"
    result, _ = run(db, [seed("a", TASK), seed("b", SAME_TASK), seed("c", OTHER)])
    assert statuses(db) == {"a": "accepted", "b": "rejected", "c": "accepted"}
    [(kept,)] = rows(db, "SELECT sample_id FROM samples WHERE seed_id = 'a'")
    [(verifier, outcome, detail)] = rows(db, "SELECT v.verifier, v.outcome, v.detail FROM verdicts v "
                                             "JOIN samples s USING (sample_id) WHERE s.seed_id = 'b' "
                                             "AND v.verifier = 'dedup'")
    assert (verifier, outcome) == ("dedup", "failed") and f"sample {kept} (seed a)" in detail
    assert rows(db, "SELECT reason LIKE 'dedup: exact-duplicate of sample%' FROM samples WHERE seed_id = 'b'") == [
        (True,)]
    assert result.tally.cleaning.duplicates == 1 and result.tally.rejected == 1


def test_samples_of_one_seed_share_their_task_and_are_not_duplicates_of_each_other(tmp_path):
    db = tmp_path / "s.duckdb"
    run(db, [seed("a", TASK)], roles={"solver": {"samples": 3}})
    assert rows(db, "SELECT status, count(*) FROM samples GROUP BY 1") == [("accepted", 3)]


def test_every_sample_of_a_seed_that_copies_an_earlier_task_is_rejected_naming_the_first_kept(tmp_path):
    db = tmp_path / "s.duckdb"
    result, _ = run(db, [seed("a", TASK), seed("b", SAME_TASK), seed("c", OTHER)], roles={"solver": {"samples": 3}})
    assert rows(db, "SELECT seed_id, status, count(*) FROM samples GROUP BY ALL ORDER BY ALL") == [
        ("a", "accepted", 3), ("b", "rejected", 3), ("c", "accepted", 3)]
    details = rows(db, "SELECT v.sample_id, v.detail FROM verdicts v JOIN samples s USING (sample_id) "
                       "WHERE s.seed_id = 'b' AND v.verifier = 'dedup'")
    assert len({sample_id for sample_id, _ in details}) == 3
    named = {re.search(r"of sample (\S+) \(seed a\)", detail).group(1) for _, detail in details}
    assert len(named) == 1 and named <= set(r[0] for r in rows(db, "SELECT sample_id FROM samples WHERE seed_id = 'a'"))
    assert result.tally.cleaning.duplicates == 3


def test_an_answer_rejected_as_a_copy_of_its_sibling_makes_no_preference_pair(tmp_path):
    db = tmp_path / "s.duckdb"
    run(db, [seed("a", TASK)], roles={"solver": {"samples": 2}}, dedup={"text": "assistant"})
    assert rows(db, "SELECT status, count(*) FROM samples GROUP BY 1 ORDER BY 1") == [("accepted", 1), ("rejected", 1)]
    assert rows(db, "SELECT count(*) FROM preference_pairs") == [(0,)]


def test_resume_keeps_what_was_kept_and_checks_new_seeds_against_the_store(tmp_path):
    db = tmp_path / "s.duckdb"
    seeds = [seed("a", TASK), seed("c", OTHER), seed("b", SAME_TASK)]
    run(db, seeds, limit=2)  # a and c are written; the "killed" run never reached b
    assert statuses(db) == {"a": "accepted", "c": "accepted"}
    result, script = run(db, seeds)
    assert statuses(db) == {"a": "accepted", "c": "accepted", "b": "rejected"}
    assert script.calls["solver"] == 1  # only b was generated; a was not redone, so it could not be dropped
    again, script = run(db, seeds)
    assert sum(script.calls.values()) == 0 and statuses(db) == {"a": "accepted", "c": "accepted", "b": "rejected"}


def test_scope_store_compares_with_other_runs_and_scope_run_does_not(tmp_path):
    db = tmp_path / "s.duckdb"
    run(db, [seed("a", TASK)], dedup={"scope": "store"})
    result, _ = run(db, [seed("b", SAME_TASK)], dedup={"scope": "store"})
    assert statuses(db) == {"a": "accepted", "b": "rejected"}
    [(first_run,)] = rows(db, "SELECT run_id FROM samples WHERE seed_id = 'a'")
    assert rows(db, f"SELECT count(*) FROM verdicts WHERE verifier = 'dedup' AND detail LIKE '%run {first_run}%'") \
        == [(1,)]
    other_db = tmp_path / "t.duckdb"
    run(other_db, [seed("a", TASK)])
    run(other_db, [seed("b", SAME_TASK)])
    assert statuses(other_db) == {"a": "accepted", "b": "accepted"}


def test_flag_keeps_the_sample_accepted_and_export_can_leave_it_out(tmp_path):
    db = tmp_path / "s.duckdb"
    result, _ = run(db, [seed("a", TASK), seed("b", SAME_TASK)], dedup={"action": "flag"})
    assert statuses(db) == {"a": "accepted", "b": "accepted"}
    assert result.tally.cleaning.flagged == 1
    cli = CliRunner()
    everything, clean = tmp_path / "all.jsonl", tmp_path / "clean.jsonl"
    assert cli.invoke(app, ["export", "--out", str(everything), "--db", str(db)]).exit_code == 0
    result = cli.invoke(app, ["export", "--out", str(clean), "--db", str(db), "--exclude-flagged"])
    assert result.exit_code == 0, result.output
    assert len(everything.read_text().splitlines()) == 2
    assert [json.loads(line)["seed_id"] for line in clean.read_text().splitlines()] == ["a"]


def test_contaminated_seed_is_recorded_and_skipped_before_any_model_call(tmp_path):
    db = tmp_path / "s.duckdb"
    seeds = [{"id": "blog", "topic": f"Travel writing. Example task: {MT_BENCH_81}"}, {"id": "math", "topic": "fractions"}]
    result, script = run(db, seeds, script=ReasoningScript(solver=lambda m: "#### 42"))
    assert script.calls["proposer"] == 1  # only the clean seed reached the model
    assert result.tally.cleaning.contaminated_seeds == 1
    assert rows(db, "SELECT s.kind, s.status, v.verifier, v.detail LIKE '%mt-bench 81%' FROM samples s "
                    "JOIN verdicts v USING (sample_id) WHERE s.seed_id = 'blog'") == [
        ("seed_contaminated", "rejected", "decontamination", True)]
    assert rows(db, "SELECT seed_id, status FROM seeds ORDER BY 1") == [("blog", "done"), ("math", "done")]
    again, script = run(db, seeds, script=ReasoningScript(solver=lambda m: "#### 42"))
    assert sum(script.calls.values()) == 0 and again.tally.cleaning.contaminated_seeds == 0


def test_a_target_that_cycles_the_seeds_never_runs_a_contaminated_one_again(tmp_path):
    db = tmp_path / "s.duckdb"
    seeds = [{"id": "blog", "topic": f"Travel writing. Example task: {MT_BENCH_81}"}, {"id": "math", "topic": "fractions"}]
    result, script = run(db, seeds, script=ReasoningScript(solver=lambda m: "#### 42"), dedup=False,
                         budget={"target_accepted": 3})
    assert result.tally.accepted >= 3 and result.tally.cleaning.contaminated_seeds == 1
    assert rows(db, "SELECT count(*) FROM seeds WHERE seed_id LIKE 'blog%'") == [(1,)]
    assert script.calls["proposer"] == rows(db, "SELECT count(*) FROM seeds WHERE seed_id LIKE 'math%'")[0][0] >= 3


def test_sample_that_reproduces_a_benchmark_item_is_rejected_naming_it(tmp_path):
    db = tmp_path / "s.duckdb"

    def leaky(messages):
        return f"Before we start, here is a writing exercise: {MT_BENCH_81}\n" + solver(messages)

    run(db, [seed("a", TASK)], script=ReasoningScript(solver=leaky))
    assert rows(db, "SELECT s.status, v.verifier, v.detail LIKE '%mt-bench 81%' FROM samples s JOIN verdicts v "
                    "USING (sample_id) WHERE v.verifier = 'decontamination'") == [
        ("rejected", "decontamination", True)]


def test_cleaning_can_be_switched_off(tmp_path):
    db = tmp_path / "s.duckdb"
    seeds = [{"id": "blog", "topic": MT_BENCH_81}, seed("a", TASK), seed("b", SAME_TASK)]
    run(db, seeds, dedup=False, decontaminate=False, script=ReasoningScript(solver=solver))
    assert rows(db, "SELECT count(*) FROM verdicts WHERE verifier IN ('dedup', 'decontamination')") == [(0,)]


def test_recipe_names_a_bad_benchmark_plainly(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("name: r\ngraph: reasoning\nseeds: {inline: [{topic: x}]}\n"
                      "decontaminate: {benchmarks: [humaneval, gsm8k]}\n")
    with pytest.raises(RecipeError, match=r"decontaminate.benchmarks: benchmark 'gsm8k' is neither built in"):
        load_recipe(recipe)


def test_benchmark_file_is_relative_to_the_recipe_and_a_missing_one_fails_before_the_model(tmp_path):
    (tmp_path / "evals").mkdir()
    (tmp_path / "evals" / "mine.jsonl").write_text(json.dumps({"id": "e1", "q": TASK}) + "\n")
    recipe = tmp_path / "r.yaml"
    recipe.write_text("name: r\ngraph: reasoning\nroles: {solver: {samples: 1}}\n"
                      f"seeds: {{inline: [{json.dumps(seed('a', TASK))}, {json.dumps(seed('c', OTHER))}]}}\n"
                      "decontaminate: {benchmarks: ['evals/mine.jsonl:q']}\n")
    loaded, seeds = load_recipe(recipe)
    script = ReasoningScript(solver=solver)
    result = asyncio.run(Runner(loaded, seeds, store_path=tmp_path / "s.duckdb", pool=ScriptedPool(script)).run())
    assert result.tally.cleaning.contaminated_seeds == 1 and script.calls["solver"] == 1
    recipe.write_text(recipe.read_text().replace("mine.jsonl", "gone.jsonl"))
    cli = CliRunner().invoke(app, ["run", str(recipe), "--db", str(tmp_path / "s.duckdb")])
    said = " ".join(cli.output.split())  # rich wraps long lines
    assert cli.exit_code == 2 and "gone.jsonl does not exist" in said.replace("\n", "")


@pytest.fixture
def uncleaned_store(tmp_path) -> Path:
    """A store written with the stage off: two copies of one task, a sample quoting MT-Bench, a clean one."""
    db = tmp_path / "s.duckdb"

    def answer(messages):
        if "5 times 9" in messages[-1].content:
            return f"{MT_BENCH_81}\n" + solver(messages)
        return solver(messages)

    run(db, [seed("a", TASK), seed("b", SAME_TASK), seed("c", OTHER)], dedup=False, decontaminate=False,
        script=ReasoningScript(solver=answer))
    return db


def test_cli_dedup_writes_verdicts_once_and_rejects_when_asked(uncleaned_store):
    cli = CliRunner()
    first = cli.invoke(app, ["dedup", "--db", str(uncleaned_store)])
    assert first.exit_code == 0, first.output
    assert "1 of 3 accepted samples (1 new verdicts, flag)" in first.stdout
    assert rows(uncleaned_store, "SELECT s.seed_id, s.status FROM verdicts v JOIN samples s USING (sample_id) "
                                 "WHERE v.verifier = 'dedup'") == [("b", "accepted")]
    again = cli.invoke(app, ["dedup", "--db", str(uncleaned_store)])
    assert "0 of 2 accepted samples (0 new verdicts" in again.stdout
    assert rows(uncleaned_store, "SELECT count(*) FROM verdicts WHERE verifier = 'dedup'") == [(1,)]


def test_cli_dedup_reject_turns_the_copy_rejected_and_keeps_its_data(uncleaned_store):
    result = CliRunner().invoke(app, ["dedup", "--db", str(uncleaned_store), "--action", "reject", "--run",
                                      rows(uncleaned_store, "SELECT run_id FROM runs")[0][0]])
    assert result.exit_code == 0, result.output
    assert statuses(uncleaned_store) == {"a": "accepted", "b": "rejected", "c": "accepted"}
    assert rows(uncleaned_store, "SELECT count(*) FROM messages JOIN samples USING (sample_id) "
                                 "WHERE seed_id = 'b'") == [(2,)]


def test_cli_reject_also_rejects_what_an_earlier_pass_flagged(uncleaned_store):
    cli = CliRunner()
    assert cli.invoke(app, ["dedup", "--db", str(uncleaned_store)]).exit_code == 0  # flags b, keeps it accepted
    result = cli.invoke(app, ["dedup", "--db", str(uncleaned_store), "--action", "reject"])
    assert result.exit_code == 0, result.output
    assert "0 of 2 accepted samples (0 new verdicts, reject, 1 samples rejected)" in result.stdout
    assert statuses(uncleaned_store) == {"a": "accepted", "b": "rejected", "c": "accepted"}
    assert rows(uncleaned_store, "SELECT reason LIKE 'dedup: exact-duplicate of sample %' FROM samples "
                                 "WHERE seed_id = 'b'") == [(True,)]


def test_cli_decontaminate_checks_the_samples_dedup_flagged(tmp_path):
    db = tmp_path / "s.duckdb"
    run(db, [seed("a", TASK), seed("b", SAME_TASK)], dedup=False, decontaminate=False,
        script=ReasoningScript(solver=lambda messages: f"{MT_BENCH_81}\n" + solver(messages)))
    cli = CliRunner()
    assert cli.invoke(app, ["dedup", "--db", str(db)]).exit_code == 0  # b: a copy of a, flagged
    result = cli.invoke(app, ["decontaminate", "--db", str(db), "--benchmarks", "mt-bench", "--action", "reject"])
    assert result.exit_code == 0, result.output
    assert "2 of 2 accepted samples (2 new verdicts, reject, 2 samples rejected)" in result.stdout
    assert statuses(db) == {"a": "rejected", "b": "rejected"}


def test_cli_decontaminate_says_which_items_of_a_file_are_too_short_to_check(uncleaned_store, tmp_path):
    evals = tmp_path / "evals.jsonl"
    evals.write_text(json.dumps({"q": "What is 3 times 7?"}) + "\n" + json.dumps({"q": MT_BENCH_81}) + "\n")
    result = CliRunner().invoke(app, ["decontaminate", "--db", str(uncleaned_store), "--benchmarks", f"{evals}:q"])
    assert result.exit_code == 0, result.output
    assert f"not checked: 1 of the 2 items of {evals}:q have fewer than 8 words" in " ".join(result.output.split())
    assert "1 of 3 accepted samples" in result.stdout  # the long item is still found
    ran, _ = run(tmp_path / "r.duckdb", [seed("a", TASK)], decontaminate={"benchmarks": [f"{evals}:q"]})
    assert [hint.split(" have ")[0] for hint in ran.tally.cleaning.unchecked_items] == [
        f"1 of the 2 items of {evals}:q"]


def test_cli_decontaminate_writes_a_verdict_naming_the_item(uncleaned_store):
    result = CliRunner().invoke(app, ["decontaminate", "--db", str(uncleaned_store), "--benchmarks",
                                      "humaneval,mt-bench"])
    assert result.exit_code == 0, result.output
    assert "mt-bench 81" in result.stdout
    assert rows(uncleaned_store, "SELECT s.seed_id, s.status, v.outcome FROM verdicts v JOIN samples s "
                                 "USING (sample_id) WHERE v.verifier = 'decontamination'") == [
        ("c", "accepted", "failed")]


@pytest.mark.parametrize("command", [["export", "--out", "x.jsonl"], ["export", "--format", "dpo", "--out", "x.jsonl"],
                                     ["stats"], ["pairs"], ["dedup"], ["decontaminate"]])
def test_a_run_the_store_does_not_hold_is_one_clear_line(uncleaned_store, tmp_path, command):
    (run_id,) = rows(uncleaned_store, "SELECT run_id FROM runs")[0]
    result = CliRunner().invoke(app, [*command, "--db", str(uncleaned_store), "--run", "nosuchrun"])
    assert result.exit_code == 2, result.output
    assert f"no run 'nosuchrun' in {uncleaned_store}; runs: {run_id}" in " ".join(result.output.split())
    assert not (tmp_path / "x.jsonl").exists()


def test_cli_cleaning_commands_report_bad_input_plainly(uncleaned_store, tmp_path):
    cli = CliRunner()
    bad = cli.invoke(app, ["decontaminate", "--db", str(uncleaned_store), "--benchmarks", "gsm8k"])
    assert bad.exit_code == 2 and "neither built in" in bad.output
    missing = cli.invoke(app, ["dedup", "--db", str(tmp_path / "none.duckdb")])
    assert missing.exit_code == 2 and "no store at" in missing.output
