"""A real recipe on a real two-node Ray cluster (local processes, one CPU each) with the small shipped model:
one worker's process is killed with SIGKILL mid-run; every seed still ends up in the store exactly once."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
import yaml
from ray_cluster import local_cluster
from readback import rows

from synthgraph.store.db import connect
from synthgraph.tools.retrieval import search

pytestmark = [pytest.mark.model, pytest.mark.ray]

DEMOS = Path(__file__).resolve().parents[1] / "demos"

TOPICS = ["apples", "trains", "coins", "books", "birds", "pencils", "boats", "cookies", "marbles", "buses",
          "stamps", "kites", "shells", "candles", "ropes", "tiles"]
RECIPE = {
    "name": "ray-two-step", "graph": "pipeline", "model": "vllm:smollm2-135m",
    # Two engines (three while the killed one restarts) share the machine: a small KV cache each.
    "engine": {"kv_cache_gib": 1, "max_model_len": 1024, "max_num_seqs": 8},
    "roles": {"writer": {"temperature": 0.7, "max_tokens": 48, "seed": 7},
              "solver": {"temperature": 0.7, "max_tokens": 48, "seed": 7}},
    "seeds": {"inline": [{"id": topic, "topic": topic} for topic in TOPICS]},
    "nodes": {"write": {"llm": {"role": "writer", "at_max_tokens": "keep",
                                "user": "Write one short math word problem about {{ topic }}."}},
              "solve": {"llm": {"role": "solver", "at_max_tokens": "keep", "user": "Solve: {{ write.text }}"}}},
    "edges": ["write -> solve -> accept"],
    "emit": {"messages": ["write.text", "solve.text"]},
    "concurrency": 2,
    "dedup": False,   # every seed's sample is accepted, so the count below says nothing was lost
}


def test_a_worker_killed_mid_run_on_a_two_node_cluster_loses_nothing_and_duplicates_nothing(tmp_path):
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(yaml.safe_dump(RECIPE, sort_keys=False))
    db = tmp_path / "ray.duckdb"
    with local_cluster(nodes=2, cpus_per_node=1) as cluster:
        command = [str(Path(sys.executable).with_name("synthgraph")), "run", str(recipe), "--db", str(db),
                   "--ray", cluster.address]
        run = subprocess.Popen(command, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               env={**os.environ, **cluster.env, "COLUMNS": "200"})
        try:
            victim, engines = wait_for_a_worker_running_seeds(cluster, run)
            os.kill(victim.pid, signal.SIGKILL)
            output, _ = run.communicate(timeout=900)
        finally:
            if run.poll() is None:
                run.kill()
                run.wait()
        # The killed worker's engine processes went with it (engine_lifetime), none left holding a model.
        assert not [p for p in engines if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]

    print(output)  # the run's summary, shown with -rP
    assert run.returncode == 0, output
    assert "2 workers" in output
    redone = int(output.split(" redone after their Ray worker died")[0].rsplit(";", 1)[1].split()[0])
    assert redone >= 1, output
    # Every seed exactly once, done, with its one accepted sample and the lineage of its two calls.
    assert rows(db, "SELECT seed_id, status FROM seeds ORDER BY seed_id") == [(t, "done") for t in sorted(TOPICS)]
    assert rows(db, "SELECT count(*), count(DISTINCT sample_id), count(DISTINCT seed_id) FROM samples "
                    "WHERE status = 'accepted'") == [(len(TOPICS), len(TOPICS), len(TOPICS))]
    assert rows(db, "SELECT count(*) FROM samples WHERE status <> 'accepted'") == [(0,)]
    calls = rows(db, "SELECT seed_id, count(*), count(DISTINCT call_id), count(DISTINCT node), "
                     "count(sample_id) FROM agent_calls GROUP BY seed_id ORDER BY seed_id")
    assert calls == [(t, 2, 2, 2, 2) for t in sorted(TOPICS)]


def test_grounded_qa_on_a_two_node_cluster_searches_the_stores_corpus_as_the_store_ranks_it(tmp_path):
    """The worker holds no store: it searches a copy of the run's corpus, and finds for each query the very
    passages a search of the run's store finds (BM25 over the same chunks), citing chunks the store holds."""
    db = tmp_path / "qa.duckdb"
    with local_cluster(nodes=2, cpus_per_node=1) as cluster:
        command = [str(Path(sys.executable).with_name("synthgraph")), "run", str(DEMOS / "domain_qa.yaml"),
                   "--db", str(db), "--ray", cluster.address, "--ray-workers", "1", "--limit", "2"]
        run = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=900,
                             env={**os.environ, **cluster.env, "COLUMNS": "200"})
    output = run.stdout + run.stderr
    print(output)
    assert run.returncode == 0, output
    assert "1 worker" in output
    assert rows(db, "SELECT seed_id, status FROM seeds ORDER BY seed_id") == [("q1", "done"), ("q2", "done")]
    trajectories = rows(db, "SELECT payload->>'corpus', payload->'queries'->>0, payload->'retrieved', "
                            "payload->'citations' FROM samples WHERE kind = 'grounded_qa'")
    assert trajectories, output
    con = connect(db, read_only=True)
    try:
        stored = {chunk_id for (chunk_id,) in con.execute("SELECT chunk_id FROM chunks").fetchall()}
        for corpus, query, retrieved, citations in trajectories:
            retrieved, citations = json.loads(retrieved), json.loads(citations or "[]")
            assert retrieved[:3] == [hit.chunk_id for hit in search(con, query, 3, corpus=corpus)]
            assert set(retrieved) | set(citations) <= stored
    finally:
        con.close()


def wait_for_a_worker_running_seeds(cluster, run: subprocess.Popen, timeout_s: float = 600):
    """The first worker process seen running a seed (its title `ray::SeedWorker.run_seed`) once both workers are
    up, with its engine processes."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if run.poll() is not None:
            pytest.fail(f"the run ended before a worker could be killed:\n{run.stdout.read()}")
        workers = cluster.worker_processes()
        busy = [w for w in workers if "run_seed" in " ".join(w.cmdline())]
        if len(workers) == 2 and busy:
            return busy[0], busy[0].children(recursive=True)
        time.sleep(0.2)
    pytest.fail("no worker ran a seed in time")
