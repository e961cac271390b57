"""Admission: targets and budgets stop a run gracefully, signals abandon what is in flight, a dead server stops the run,
crashed seeds are reported with an exit code, and an interrupted seed resumes from its last finished node."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from fakes import ReasoningScript, ScriptedPool
from readback import rows
from typer.testing import CliRunner

from synthgraph.agents.models import ModelServerDown
from synthgraph.graphs import runner as runner_module
from synthgraph.graphs.cli import app
from synthgraph.graphs.recipe import load_seeds, parse_recipe
from synthgraph.graphs.runner import Runner, checkpoint_path
from synthgraph.store.db import Store

GOLD = [{"id": f"gold-{i}", "problem": f"What is {i} times 7?", "answer": str(7 * i)} for i in range(1, 6)]
TOPICS = [{"id": "apples", "topic": "apples in bags"}, {"id": "pears", "topic": "pears in crates"}]


def recipe_of(seeds, **fields):
    # The scripted proposer writes the same problem for every topic: dedup would (rightly) reject the repeats,
    # and these tests are about admission, so it is off.
    return parse_recipe({"name": "unit", "graph": "reasoning", "seeds": {"inline": seeds},
                         "roles": {"solver": {"samples": 2}}, "concurrency": 3, "dedup": False, **fields})


def solver_reply(messages) -> str:
    words = messages[-1].content.split()
    if words[:2] == ["What", "is"]:
        number = int(words[2])
        return f"{number} times 7 is {7 * number}.\n#### {7 * number}"
    return "6 bags times 7 apples is 42 apples.\n#### 42"  # the fake proposer's problem (tests/fakes.py)


def run(db: Path, script, recipe, **kwargs):
    seeds = load_seeds(recipe, base=Path("."), where="test")
    runner = Runner(recipe, seeds, store_path=db, pool=ScriptedPool(script), **kwargs)
    return asyncio.run(runner.run())


# ------------------------------------------------------------------------------------------------ targets


def test_target_stops_admitting_once_enough_accepted_samples_are_stored(tmp_path):
    db = tmp_path / "s.duckdb"
    result = run(db, ReasoningScript(solver=solver_reply),
                 recipe_of(GOLD, concurrency=1, budget={"target_accepted": 3}))
    # two accepted samples per seed: the second seed meets the target, the third never starts
    assert result.stop.kind == "target" and result.tally.seeds_done == 2 and result.accepted_total == 4
    assert result.exit_code == 0
    assert rows(db, "SELECT count(*) FROM seeds WHERE status = 'pending'") == [(3,)]


def test_target_paces_admission_by_the_yield_so_far_instead_of_filling_every_slot(tmp_path):
    result = run(tmp_path / "s.duckdb", ReasoningScript(solver=solver_reply),
                 recipe_of(GOLD, concurrency=5, budget={"target_accepted": 2}))
    # one accepted sample expected per seed until the first finishes: two seeds start, not five
    assert result.tally.seeds_started == 2 and result.accepted_total == 4


def test_target_is_counted_over_the_store_so_a_rerun_goes_on_from_what_is_there(tmp_path):
    db = tmp_path / "s.duckdb"
    run(db, ReasoningScript(solver=solver_reply), recipe_of(GOLD, concurrency=1, budget={"target_accepted": 3}))
    again = ReasoningScript(solver=solver_reply)
    result = run(db, again, recipe_of(GOLD, concurrency=1, budget={"target_accepted": 3}))
    assert result.stop.kind == "target" and sum(again.calls.values()) == 0
    more = run(db, ReasoningScript(solver=solver_reply), recipe_of(GOLD, concurrency=1, budget={"target_accepted": 8}))
    assert more.tally.seeds_done == 2 and more.accepted_total == 8


def test_generative_seeds_are_run_again_as_derived_seeds_until_the_target_is_met(tmp_path):
    db = tmp_path / "s.duckdb"
    recipe = recipe_of(TOPICS, concurrency=2, roles={"solver": {"samples": 1}}, budget={"target_accepted": 5})
    result = run(db, ReasoningScript(solver=solver_reply), recipe)
    assert result.stop.kind == "target" and result.accepted_total >= 5
    seeds = rows(db, "SELECT seed_id, position, status, payload->>'topic' FROM seeds ORDER BY position")
    assert [s[:3] for s in seeds[:5]] == [("apples", 0, "done"), ("pears", 1, "done"), ("apples#2", 2, "done"),
                                          ("pears#2", 3, "done"), ("apples#3", 4, "done")]
    assert seeds[2][3] == "apples in bags"
    # the run id does not depend on the target, and a rerun with a higher one continues the same numbering
    more = run(db, ReasoningScript(solver=solver_reply), recipe_of(
        TOPICS, concurrency=1, roles={"solver": {"samples": 1}}, budget={"target_accepted": len(seeds) + 1}))
    assert more.run_id == result.run_id and more.tally.seeds_done == 1
    assert rows(db, "SELECT count(*), count(DISTINCT sample_id) FROM samples")[0][0] == len(seeds) + 1


def test_fixed_seeds_are_not_run_again_and_the_summary_says_the_target_was_missed(tmp_path):
    result = run(tmp_path / "s.duckdb", ReasoningScript(solver=solver_reply),
                 recipe_of(GOLD, budget={"target_accepted": 100}))
    assert result.tally.seeds_done == 5 and result.stop is None
    assert "seed list ran out at 10 accepted samples of 100" in result.target_missed


def test_cycling_stops_when_a_whole_pass_accepts_nothing(tmp_path):
    recipe = recipe_of(TOPICS, roles={"solver": {"samples": 1}}, revise={"rounds": 0}, budget={"target_accepted": 5},
                       concurrency=1)
    result = run(tmp_path / "s.duckdb", ReasoningScript(solver="#### 41"), recipe)
    assert result.accepted_total == 0 and result.tally.seeds_done == 2  # the list accepted nothing: no second pass
    assert "accepted nothing" in result.target_missed


# ------------------------------------------------------------------------------------------------ budgets


def test_seed_budget_starts_only_that_many_seeds(tmp_path):
    db = tmp_path / "s.duckdb"
    result = run(db, ReasoningScript(solver=solver_reply), recipe_of(GOLD, budget={"max_seeds": 2}))
    assert result.stop.kind == "seeds" and result.budget_exhausted and result.tally.seeds_done == 2
    assert result.exit_code == 0
    assert rows(db, "SELECT count(*) FROM seeds WHERE status = 'pending'") == [(3,)]


def test_time_budget_stops_admitting_and_lets_the_seeds_in_flight_finish(tmp_path):
    def slow_solver(messages):
        import time

        time.sleep(0.5)
        return solver_reply(messages)

    # A seed takes two solver calls (1 s); no benchmark index to build first, so the budget is the seeds' time.
    result = run(tmp_path / "s.duckdb", ReasoningScript(solver=slow_solver),
                 recipe_of(GOLD, concurrency=1, decontaminate=False, budget={"max_seconds": 2}))
    assert result.stop.kind == "seconds" and 1 <= result.tally.seeds_done < 5
    assert result.tally.seeds_abandoned == 0


# ------------------------------------------------------------------------------------------------ signals


def interrupting_solver(runner_box: list, after_calls: int, signame: str = "SIGINT"):
    """A solver that sends the run a signal (as the loop's handler would) once it has been called `after_calls`
    times, and answers correctly."""
    calls = {"n": 0}

    def solver(messages):
        calls["n"] += 1
        if calls["n"] == after_calls:
            asyncio.get_running_loop().call_soon(runner_box[0].interrupt, signame)
        return solver_reply(messages)
    return solver


def test_a_signal_stops_admission_abandons_what_is_in_flight_after_the_grace_and_exits_130(tmp_path):
    db = tmp_path / "s.duckdb"
    recipe = recipe_of(GOLD, concurrency=2)
    seeds = load_seeds(recipe, base=Path("."), where="test")
    box: list = []
    script = ReasoningScript(solver=interrupting_solver(box, 5))
    box.append(Runner(recipe, seeds, store_path=db, pool=ScriptedPool(script), grace_s=0))
    result = asyncio.run(box[0].run())
    assert result.stop.kind == "SIGINT" and result.exit_code == 130
    assert result.tally.seeds_abandoned >= 1 and result.tally.seeds_done + result.tally.seeds_abandoned <= 5
    done = rows(db, "SELECT count(*) FROM seeds WHERE status = 'done'")[0][0]
    assert done == result.tally.seeds_done and rows(db, "SELECT count(*) FROM seeds WHERE status = 'error'") == [(0,)]
    assert checkpoint_path(db).exists()  # the abandoned seeds' checkpoints wait for the rerun
    rerun = run(db, ReasoningScript(solver=solver_reply), recipe)
    assert rerun.tally.seeds_resumed >= 1 and rerun.exit_code == 0
    assert rows(db, "SELECT count(*), count(DISTINCT sample_id) FROM samples") == [(10, 10)]
    assert not checkpoint_path(db).exists()  # every seed is stored: no checkpoint is left


def test_sigterm_exits_143_and_seeds_failing_after_the_signal_stay_pending(tmp_path):
    db = tmp_path / "s.duckdb"
    box: list = []
    fired = {"n": 0}

    def solver(messages):  # after the signal the engine dies with it, as vLLM's does on a terminal's Ctrl-C
        fired["n"] += 1
        if fired["n"] == 3:
            asyncio.get_running_loop().call_soon(box[0].interrupt, "SIGTERM")
        if fired["n"] > 3:
            raise RuntimeError("EngineDeadError")
        return solver_reply(messages)

    recipe = recipe_of(GOLD, concurrency=2)
    box.append(Runner(recipe, load_seeds(recipe, base=Path("."), where="t"), store_path=db,
                      pool=ScriptedPool(ReasoningScript(solver=solver)), grace_s=5))
    result = asyncio.run(box[0].run())
    assert result.exit_code == 143 and not result.crashed
    assert rows(db, "SELECT count(*) FROM seeds WHERE status = 'error'") == [(0,)]


def test_an_engine_that_dies_of_the_ctrl_c_while_loading_ends_the_run_as_interrupted(tmp_path):
    box: list = []

    class DyingPool(ScriptedPool):
        async def start(self):
            box[0].interrupt("SIGINT")  # the terminal's Ctrl-C reaches the engine's processes too
            raise RuntimeError("Engine core initialization failed")

    recipe = recipe_of(GOLD)
    box.append(Runner(recipe, load_seeds(recipe, base=Path("."), where="t"), store_path=tmp_path / "s.duckdb",
                      pool=DyingPool(ReasoningScript())))
    result = asyncio.run(box[0].run())
    assert result.exit_code == 130 and result.pending == 5


# ------------------------------------------------------------------------------------ crashes and the server


def test_crashed_seeds_of_earlier_runs_are_reported_and_the_exit_code_says_so(tmp_path):
    db = tmp_path / "s.duckdb"

    def solver(messages):
        if "3 times 7" in messages[-1].content:
            raise KeyError("bug in a tool")
        return solver_reply(messages)

    first = run(db, ReasoningScript(solver=solver), recipe_of(GOLD))
    assert first.exit_code == 1 and [seed for seed, _ in first.crashed] == ["gold-3"]
    again = run(db, ReasoningScript(solver=solver_reply), recipe_of(GOLD))  # nothing to do, the crash remains
    assert again.tally.seeds_skipped == 5 and again.exit_code == 1
    assert "bug in a tool" in again.crashed[0][1]
    fixed = run(db, ReasoningScript(solver=solver_reply), recipe_of(GOLD), retry_errors=True)
    assert fixed.exit_code == 0 and not fixed.crashed


def test_a_dead_model_server_stops_the_run_and_leaves_its_seeds_pending(tmp_path):
    db = tmp_path / "s.duckdb"

    def solver(messages):
        raise ModelServerDown("http://127.0.0.1:9/v1", 5, "Connection refused")

    result = run(db, ReasoningScript(solver=solver), recipe_of(GOLD, concurrency=2))
    assert result.stop.kind == "server" and result.exit_code == 3
    assert "127.0.0.1:9" in result.stop.message and result.tally.seeds_started <= 2
    assert rows(db, "SELECT status, count(*) FROM seeds GROUP BY 1") == [("pending", 5)]


def test_a_dead_store_writer_stops_admission_and_the_run_raises(tmp_path, monkeypatch):
    from synthgraph.store.db import Store

    def disk_full(self, outcomes):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Store, "write_outcomes", disk_full)
    recipe = recipe_of(GOLD * 1 + [{"id": f"more-{i}", "problem": f"What is {i} times 7?", "answer": str(7 * i)}
                                   for i in range(6, 40)], concurrency=2)
    seeds = load_seeds(recipe, base=Path("."), where="test")
    runner = Runner(recipe, seeds, store_path=tmp_path / "s.duckdb", pool=ScriptedPool(ReasoningScript(solver=solver_reply)))
    with pytest.raises(OSError, match="No space left"):
        asyncio.run(runner.run())
    assert runner.tally.seeds_started < 10  # it did not go on making data it could not save


# ---------------------------------------------------------------------------------------------- lineage ids


def test_call_ids_derive_from_run_seed_and_call_and_a_retried_seed_replaces_its_lineage(tmp_path):
    db = tmp_path / "s.duckdb"
    state = {"crash": True}

    def critic(messages):
        if state["crash"] and "3 times 7" in messages[1].content:
            raise KeyError("critic bug")
        return json.dumps({"reason": "Each step follows.", "score": 8})

    run(db, ReasoningScript(solver=solver_reply, critic=critic), recipe_of(GOLD))
    crashed_calls = rows(db, "SELECT count(*) FROM agent_calls WHERE seed_id = 'gold-3'")[0][0]
    assert crashed_calls >= 2  # the solver calls of the crashed attempt were recorded with its crash
    state["crash"] = False
    run(db, ReasoningScript(solver=solver_reply, critic=critic), recipe_of(GOLD), retry_errors=True)
    calls = rows(db, "SELECT call_id, sample_id FROM agent_calls WHERE seed_id = 'gold-3'")
    assert len(calls) == 4 and all(sample_id is not None for _, sample_id in calls)  # 2 solver + 2 critic
    other = tmp_path / "t.duckdb"
    run(other, ReasoningScript(solver=solver_reply), recipe_of(GOLD))
    assert sorted(rows(other, "SELECT call_id FROM agent_calls")) == sorted(rows(db, "SELECT call_id FROM agent_calls"))


# ------------------------------------------------------------------------------------------------ the CLI


@pytest.fixture
def scripted_cli(monkeypatch):
    """`synthgraph run` with every model replaced by a scripted fake."""
    holder: dict = {}

    def pool(*args, **kwargs):
        return ScriptedPool(holder["script"])

    monkeypatch.setattr(runner_module, "ModelPool", pool)
    return holder


def write_recipe(tmp_path, seeds) -> Path:
    path = tmp_path / "r.yaml"
    path.write_text(json.dumps({"name": "cli", "graph": "reasoning", "seeds": {"inline": seeds},
                                "roles": {"solver": {"samples": 2}}, "concurrency": 2}))
    return path


def test_cli_run_reports_crashed_seeds_with_the_retry_command_and_exits_1(tmp_path, scripted_cli):
    def solver(messages):
        if "3 times 7" in messages[-1].content:
            raise KeyError("bug in a tool")
        return solver_reply(messages)

    recipe, db = write_recipe(tmp_path, GOLD), tmp_path / "s.duckdb"
    scripted_cli["script"] = ReasoningScript(solver=solver)
    first = CliRunner().invoke(app, ["run", str(recipe), "--db", str(db)])
    assert first.exit_code == 1, first.output
    assert "1 seeds crashed" in first.output and "gold-3" in first.output
    assert f"to retry the crashed seeds, run: synthgraph run {recipe} --db={db} --retry-errors" in first.output
    scripted_cli["script"] = ReasoningScript(solver=solver_reply)
    second = CliRunner().invoke(app, ["run", str(recipe), "--db", str(db)])
    said = " ".join(second.output.replace("│", " ").split())
    assert second.exit_code == 1 and "gold-3" in second.output
    assert "4 already done earlier, 1 crashed earlier (--retry-errors redoes them)" in said


def test_cli_target_accepted_stops_and_says_so(tmp_path, scripted_cli):
    recipe, db = write_recipe(tmp_path, GOLD), tmp_path / "s.duckdb"
    scripted_cli["script"] = ReasoningScript(solver=solver_reply)
    result = CliRunner().invoke(app, ["run", str(recipe), "--db", str(db), "--target-accepted", "3"])
    assert result.exit_code == 0, result.output
    assert "target reached: 4 accepted samples stored (target 3)" in result.output
    assert "4 of 3 accepted samples stored" in result.output


def test_cli_run_interrupted_prints_the_summary_and_the_resume_command_and_exits_130(tmp_path, scripted_cli):
    recipe, db = write_recipe(tmp_path, GOLD), tmp_path / "s.duckdb"
    calls = {"n": 0}

    def solver(messages):
        calls["n"] += 1
        if calls["n"] == 3:
            import os
            import signal

            os.kill(os.getpid(), signal.SIGINT)  # the real signal, through the loop's handler
        return solver_reply(messages)

    scripted_cli["script"] = ReasoningScript(solver=solver)
    report = tmp_path / "r.html"
    result = CliRunner().invoke(app, ["run", str(recipe), "--db", str(db), "--grace", "5", "--report", str(report)])
    assert result.exit_code == 130, result.output
    assert "interrupted by SIGINT: no new seeds were started" in result.output
    resume = f"synthgraph run {recipe} --db={db} --grace=5.0"
    assert f"seeds left pending; to resume, run: {resume}\n" in result.output and report.exists()
    # the command as printed goes on (the report of the first run stays where it is)
    resumed = CliRunner().invoke(app, resume.split()[1:])
    assert resumed.exit_code == 0, resumed.output


# ------------------------------------------------------------------------------------------- checkpoints


@pytest.mark.parametrize("family", ["reasoning", "code", "tool_use", "dialogue"])
def test_every_family_state_comes_back_from_a_checkpoint_as_it_went_in(tmp_path, family, caplog):
    """A resumed seed goes on from the state a checkpoint gives back: it must be the state that went in, pydantic
    models and all, with nothing refused by the deserializer's allowlist."""
    from fakes import CodeScript, ToolUseScript
    from test_dialogue_graph import RECIPE as DIALOGUE_RECIPE, DialogueScript

    from synthgraph.graphs import code, dialogue, reasoning, tool_use
    from synthgraph.graphs.runner import SeedCheckpoints

    module, script, raw = {
        "reasoning": (reasoning, ReasoningScript(), {"graph": "reasoning", "seeds": {"inline": [{"topic": "t"}]}}),
        "code": (code, CodeScript(), {"graph": "code", "seeds": {"inline": [{"topic": "strings"}]}}),
        "tool_use": (tool_use, ToolUseScript(), {"graph": "tool_use",
                                                  "seeds": {"inline": [{"kind": "single", "tools": ["convert_units"]}]}}),
        "dialogue": (dialogue, DialogueScript(), {**DIALOGUE_RECIPE, "seeds": {"inline": [{"id": "a"}]}}),
    }[family]
    recipe = parse_recipe({"name": "t", **raw})
    (seed,) = load_seeds(recipe, base=None, where="t")

    async def roundtrip():
        async with SeedCheckpoints(tmp_path / "s.duckdb") as checkpoints:
            graph = checkpoints.attach(module.graph)
            config = checkpoints.config("run", seed.seed_id)
            context = module.make_context(recipe, ScriptedPool(script))
            final = await graph.ainvoke(module.initial_state(seed), config, context=context)
            return final, (await graph.aget_state(config)).values

    final, restored = asyncio.run(roundtrip())
    assert restored == final
    assert "Blocked deserialization" not in caplog.text and "unregistered type" not in caplog.text


def test_a_seed_run_again_gets_a_derived_id_and_moves_planned_coverage_on():
    from synthgraph.graphs.code import CodeSeed
    from synthgraph.graphs.dialogue import DialogueSeed
    from synthgraph.graphs.domain import DomainSeed
    from synthgraph.graphs.reasoning import Seed
    from synthgraph.graphs.tool_use import ToolUseSeed

    assert Seed(id="t", topic="x").generative and not Seed(id="g", problem="1+1?", answer="2").generative
    assert CodeSeed(topic="strings").generative
    assert not CodeSeed(prompt="def f(): ...", test="assert f() is None", entry_point="f").generative
    assert ToolUseSeed(kind="single").generative
    assert not ToolUseSeed(request="hi", tools=["convert_units"]).generative
    assert not DomainSeed(question="What is x?", answerable=True).generative
    again = Seed(id="t", topic="x").again(3, 10)
    assert again.seed_id == "t#3" and again.topic == "x"
    assert DialogueSeed(id="d", cell=4).again(2, 10).cell == 14  # the next pass walks on through the grid
    assert DomainSeed(id="q", slot=1).again(3, 5).slot == 11
    assert DomainSeed(id="q", slot=1).again(3, 5).seed_id == "q#3"


def test_cli_run_says_the_store_is_now_beside_the_recipe_and_names_the_old_one(tmp_path, scripted_cli, monkeypatch):
    (tmp_path / "recipes").mkdir()
    recipe = tmp_path / "recipes" / "r.yaml"
    recipe.write_text(json.dumps({"name": "cli", "graph": "reasoning", "seeds": {"inline": GOLD[:1]},
                                  "roles": {"solver": {"samples": 1}}, "store": "data.duckdb"}))
    monkeypatch.chdir(tmp_path)
    Store(tmp_path / "data.duckdb").close()   # where the store was found before it was read beside the recipe
    scripted_cli["script"] = ReasoningScript(solver=solver_reply)
    result = CliRunner().invoke(app, ["run", str(recipe)])
    said = " ".join(result.output.split())
    assert result.exit_code == 0, result.output
    assert f"the store at {tmp_path / 'data.duckdb'} (where earlier versions looked) is left alone: pass --db" in said
    assert (tmp_path / "recipes" / "data.duckdb").exists()
