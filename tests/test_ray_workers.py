"""Seeds spread over Ray workers, on a real Ray started on this machine and the scripted fake model: a worker
killed mid-seed loses only its seeds in flight, which are redone; the store ends up as a local run leaves it."""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import tempfile
from pathlib import Path

import pytest
import ray
import yaml
from ray_fakes import (SEEDS, SELF_INSTRUCT_PROPOSAL, ScriptedDomainWorker, ScriptedSeedWorker,
                       ScriptedSelfInstructWorker, script, self_instruct_pool)
from readback import rows
from typer.testing import CliRunner

from fakes import DomainScript, ScriptedPool
from synthgraph.graphs.cli import app
from synthgraph.graphs.ray_workers import RayOptions, RayWorkers
from synthgraph.graphs.recipe import load_seeds, parse_recipe
from synthgraph.graphs.runner import Runner
from synthgraph.store.db import Store
from synthgraph.tools.retrieval import ingest

pytestmark = pytest.mark.ray


@pytest.fixture(scope="module")
def die_dir():
    """A Ray of two CPUs inside this test process (its own temp dir: socket paths must stay short); its workers
    import the test doubles and read the folder where a test leaves its `die-N` orders."""
    root = Path(tempfile.mkdtemp(prefix="sgray-"))
    orders = root / "orders"
    orders.mkdir()
    paths = [str(Path(__file__).parent), *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
    ray.init(num_cpus=2, include_dashboard=False, logging_level="ERROR", log_to_driver=False,
             _temp_dir=str(root / "ray"), object_store_memory=80 * 2**20,
             runtime_env={"env_vars": {"PYTHONPATH": os.pathsep.join(paths),
                                       "SYNTHGRAPH_TEST_DIE_DIR": str(orders)}})
    try:
        yield orders
    finally:
        ray.shutdown()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def scripted_workers(monkeypatch):
    monkeypatch.setattr(RayWorkers, "worker_class", ScriptedSeedWorker)


def recipe():
    return parse_recipe({"name": "ray-unit", "graph": "reasoning", "seeds": {"inline": SEEDS},
                         "roles": {"solver": {"samples": 2}}, "concurrency": 2})


def run(db: Path, options: RayOptions | None):
    r = recipe()
    seeds = load_seeds(r, base=Path("."), where="test")
    pool = None if options else ScriptedPool(script())
    # A run that waits for ever (a worker that never comes back) fails its test rather than hanging the suite.
    return asyncio.run(asyncio.wait_for(Runner(r, seeds, store_path=db, pool=pool, ray=options).run(), timeout=300))


def store_rows(db: Path) -> dict[str, list[tuple]]:
    return {
        "seeds": rows(db, "SELECT seed_id, status FROM seeds ORDER BY seed_id"),
        "samples": rows(db, "SELECT sample_id, seed_id, status FROM samples ORDER BY sample_id"),
        "calls": rows(db, "SELECT call_id, seed_id, sample_id, node FROM agent_calls ORDER BY call_id"),
        "verdicts": rows(db, "SELECT verdict_id FROM verdicts ORDER BY verdict_id"),
    }


def test_a_worker_killed_mid_seed_loses_only_its_seeds_which_are_redone(tmp_path, die_dir, scripted_workers):
    local = run(tmp_path / "local.duckdb", None)
    (die_dir / "die-3").touch()   # the worker that meets seed 3 kills its own process (SIGKILL)

    result = run(tmp_path / "ray.duckdb", RayOptions(workers=2, max_restarts=1))

    assert not (die_dir / "die-3").exists(), "no worker met seed 3: nothing was killed"
    assert result.tally.workers == 2
    assert result.tally.seeds_requeued >= 1
    assert result.tally.seeds_done == len(SEEDS) and result.tally.seeds_failed == 0
    assert result.exit_code == 0 and result.pending == 0
    # Every seed once, with the very rows and lineage ids a run on one machine writes: nothing lost, nothing twice.
    ray_rows, local_rows = store_rows(tmp_path / "ray.duckdb"), store_rows(tmp_path / "local.duckdb")
    assert ray_rows["seeds"] == [(s["id"], "done") for s in sorted(SEEDS, key=lambda s: s["id"])]
    assert ray_rows == local_rows
    assert result.tally.calls == local.tally.calls


def test_with_every_worker_gone_the_run_stops_as_on_a_dead_server_and_a_rerun_resumes(tmp_path, die_dir,
                                                                                      scripted_workers):
    (die_dir / "die-2").touch()
    db = tmp_path / "ray.duckdb"

    stopped = run(db, RayOptions(workers=1, max_restarts=0))

    assert stopped.stop is not None and stopped.stop.kind == "server"
    assert "every Ray worker died" in stopped.stop.message
    assert stopped.exit_code == 3 and stopped.pending > 0
    assert not rows(db, "SELECT seed_id FROM seeds WHERE status = 'error'")  # the lost seeds are not crashes

    resumed = run(db, RayOptions(workers=1))

    assert resumed.tally.seeds_skipped == len(SEEDS) - stopped.pending
    assert resumed.exit_code == 0 and resumed.pending == 0
    run(tmp_path / "local.duckdb", None)
    assert store_rows(db) == store_rows(tmp_path / "local.duckdb")


def test_a_worker_that_cannot_start_again_after_a_restart_stops_the_run_instead_of_hanging(tmp_path, die_dir,
                                                                                           scripted_workers):
    (die_dir / "die-for-good-2").touch()   # the worker dies at seed 2; restarted, it cannot start
    db = tmp_path / "ray.duckdb"
    try:
        stopped = run(db, RayOptions(workers=1, max_restarts=3))   # it waited for ever before
    finally:
        (die_dir / "fail-start").unlink(missing_ok=True)

    assert stopped.stop is not None and stopped.stop.kind == "server"
    assert "worker 0, restarted, could not start: RuntimeError: the engine could not load" in stopped.stop.message
    assert stopped.exit_code == 3 and stopped.pending > 0
    resumed = run(db, RayOptions(workers=1))
    assert resumed.exit_code == 0 and resumed.pending == 0


def test_a_seed_whose_worker_dies_on_every_try_is_recorded_as_crashed(tmp_path, die_dir, scripted_workers):
    (die_dir / "die-5").touch()

    result = run(tmp_path / "ray.duckdb", RayOptions(workers=2, max_restarts=3, seed_attempts=1))

    # One try each: seed 5 and any seed beside it on the worker that died are crashes, the rest are done.
    errors = rows(tmp_path / "ray.duckdb", "SELECT seed_id, error FROM seeds WHERE status = 'error'")
    assert "gold-5" in {seed_id for seed_id, _ in errors}
    assert all(error.startswith("WorkerDied: the seed's worker died on each of 1 tries") for _, error in errors)
    assert result.tally.seeds_failed == len(errors) and result.tally.seeds_requeued == 0
    assert result.tally.seeds_done + result.tally.seeds_failed == len(SEEDS)
    assert result.exit_code == 1


def test_an_address_where_no_cluster_answers_is_one_line_and_exit_2(tmp_path):
    recipe_file = tmp_path / "recipe.yaml"
    recipe_file.write_text(yaml.safe_dump({"name": "ray-unit", "graph": "reasoning", "seeds": {"inline": SEEDS}}))
    with socket.socket() as probe:   # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]

    result = CliRunner().invoke(app, ["run", str(recipe_file), "--db", str(tmp_path / "s.duckdb"),
                                      "--ray", f"127.0.0.1:{port}"])

    assert result.exit_code == 2
    assert f"error: --ray 127.0.0.1:{port}: no Ray cluster answers there" in " ".join(result.output.split())
    assert "Traceback" not in result.output


def test_ray_settings_without_ray_are_refused(tmp_path):
    result = CliRunner().invoke(app, ["run", "any.yaml", "--ray-workers", "2"])
    assert result.exit_code == 2
    assert "--ray-workers and --ray-tensor-parallel-size go with --ray ADDRESS" in " ".join(result.output.split())


CORPUS = {
    "kettle.md": "# Kettle guide\n\n## Boiling\n\nThe Aurora kettle boils one litre of water in 210 seconds. Its "
                 "heating element is rated at 2200 watts.\n\n## Cleaning\n\nDescale the Aurora kettle every 4 "
                 "weeks with white vinegar, then rinse it three times.\n",
    "toaster.md": "# Toaster guide\n\n## Browning\n\nThe Zephyr toaster has seven browning levels. Level 4 gives "
                  "golden toast in 150 seconds.\n\n## Safety\n\nUnplug the Zephyr toaster before removing stuck "
                  "bread.\n",
}
OTHER_CORPUS = {"boiling.md": "# Boiling\n\nWater boils at 100 degrees at sea level; a kettle boils water faster "
                              "than a pan. Boiling water kills most germs.\n"}


def folder_of(path: Path, files: dict[str, str]) -> Path:
    path.mkdir()
    for name, text in files.items():
        (path / name).write_text(text)
    return path


def qa_recipe(docs: Path, seeds: int):
    return parse_recipe({"name": "qa-ray", "graph": "domain", "concurrency": 1,
                         "seeds": {"inline": [{"id": f"q{i}", "kind": "factual"} for i in range(seeds)]},
                         "corpus": {"name": "appliances", "paths": [str(docs)], "min_chunk_chars": 0}})


def test_a_grounded_qa_run_on_ray_searches_a_copy_of_the_stores_corpora_and_writes_what_a_local_run_writes(
        tmp_path, die_dir, monkeypatch):
    """The worker holds no store: it searches a copy of the run's corpora (every corpus the store holds, so BM25
    ranks as it does in the store), and the rows it sends back are those a run on one machine writes."""
    docs, other = folder_of(tmp_path / "docs", CORPUS), folder_of(tmp_path / "other", OTHER_CORPUS)
    recipe = qa_recipe(docs, seeds=4)
    seeds = load_seeds(recipe, base=Path("."), where="test")
    for db in ("local.duckdb", "ray.duckdb"):
        store = Store(tmp_path / db)
        ingest(store.con, [other], corpus="physics")   # another corpus in the store weighs on every BM25 score
        store.close()

    local = asyncio.run(Runner(recipe, seeds, store_path=tmp_path / "local.duckdb",
                               pool=ScriptedPool(DomainScript())).run())
    monkeypatch.setattr(RayWorkers, "worker_class", ScriptedDomainWorker)
    on_ray = asyncio.run(Runner(recipe, seeds, store_path=tmp_path / "ray.duckdb", ray=RayOptions(workers=1)).run())

    assert on_ray.tally.workers == 1 and on_ray.exit_code == 0 and on_ray.tally.seeds_done == 4
    samples = "SELECT sample_id, status, reason, payload FROM samples ORDER BY sample_id"
    assert rows(tmp_path / "ray.duckdb", samples) == rows(tmp_path / "local.duckdb", samples)
    assert store_rows(tmp_path / "ray.duckdb") == store_rows(tmp_path / "local.duckdb")
    assert on_ray.tally.accepted == local.tally.accepted > 0
    # what the worker cited is in the run's store: the copy was of the store's corpus, not another ingest
    cited = rows(tmp_path / "ray.duckdb", "SELECT count(*) FROM (SELECT unnest(from_json(payload->'citations', "
                 "'[\"varchar\"]')) AS chunk_id FROM samples WHERE status = 'accepted') JOIN chunks USING (chunk_id)")
    assert cited[0][0] >= on_ray.tally.accepted


def test_a_grounded_qa_worker_restarted_after_a_kill_searches_its_copy_of_the_corpus_again(tmp_path, die_dir,
                                                                                          monkeypatch):
    docs = folder_of(tmp_path / "docs", CORPUS)
    recipe = qa_recipe(docs, seeds=3)
    seeds = load_seeds(recipe, base=Path("."), where="test")
    asyncio.run(Runner(recipe, seeds, store_path=tmp_path / "local.duckdb", pool=ScriptedPool(DomainScript())).run())
    monkeypatch.setattr(RayWorkers, "worker_class", ScriptedDomainWorker)
    (die_dir / "die-domain").touch()   # the only worker dies at its first answer; Ray restarts it

    on_ray = asyncio.run(Runner(recipe, seeds, store_path=tmp_path / "ray.duckdb",
                                ray=RayOptions(workers=1, max_restarts=1)).run())

    assert not (die_dir / "die-domain").exists(), "the worker never answered: nothing was killed"
    assert on_ray.tally.seeds_requeued == 1 and on_ray.tally.seeds_done == 3 and on_ray.exit_code == 0
    assert store_rows(tmp_path / "ray.duckdb") == store_rows(tmp_path / "local.duckdb")


def test_self_instruct_on_ray_checks_novelty_against_what_earlier_runs_kept(tmp_path, die_dir, monkeypatch):
    db = tmp_path / "si.duckdb"

    def si_recipe(seed: dict):
        return parse_recipe({"name": "si", "graph": "self_instruct", "seeds": {"inline": [seed]},
                             "growth": {"rounds": 1, "per_round": 1, "examples": 1}})

    first = si_recipe({"id": "t1", "instruction": "Write a short poem about autumn leaves falling in a quiet park."})
    asyncio.run(Runner(first, load_seeds(first, base=Path("."), where="test"), store_path=db,
                       pool=self_instruct_pool()).run())
    assert rows(db, "SELECT payload->>'instruction' FROM samples WHERE kind = 'self_instruct'") == [
        (SELF_INSTRUCT_PROPOSAL,)]
    monkeypatch.setattr(RayWorkers, "worker_class", ScriptedSelfInstructWorker)
    second = si_recipe({"id": "t2", "instruction": "Name three rivers in South America and where they flow."})

    asyncio.run(Runner(second, load_seeds(second, base=Path("."), where="test"), store_path=db,
                       ray=RayOptions(workers=1)).run())

    # the worker's pool held the instruction the first run kept: the same proposal is not novel there
    assert rows(db, "SELECT seed_id, kind, status, left(reason, 26) FROM samples WHERE seed_id = 't2'") == [
        ("t2", "instruction_candidate", "rejected", "not novel: ROUGE-L 1 >= 0.")]
