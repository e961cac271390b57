"""The Python API, one call deep, for notebooks and scripts:

    import synthgraph
    result = synthgraph.run("demos/reasoning.yaml", limit=4)          # or a recipe object; overrides as keywords
    frame = result.samples()                                           # accepted samples: pandas DataFrame
    table = synthgraph.load_samples("synthgraph.duckdb", format="arrow", status="all")

The same runner, store and resume as `synthgraph run`: calling it again with the same recipe continues the run.
"""

from __future__ import annotations

import asyncio
import threading
import warnings
from collections.abc import Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypeVar

from synthgraph.agents.models import ModelPool
from synthgraph.graphs.ray_workers import RayOptions
from synthgraph.graphs.recipe import RecipeBase, SeedBase, load_recipe, load_seeds
from synthgraph.graphs.runner import RunResult, Runner
from synthgraph.store.db import DEFAULT_STORE
from synthgraph.store.export import samples_table

SampleFormat = Literal["pandas", "arrow", "datasets"]
T = TypeVar("T")


@dataclass
class Run(RunResult):
    """A finished (or stopped) run: what `synthgraph run` reports of it (`RunResult`: its id, counters, why it
    stopped early, the seeds it left pending or that crashed — `retry_errors=True` redoes them — and
    `exit_code`, what the command would exit with), the recipe it ran, and its samples on demand."""

    recipe: RecipeBase | None = None

    @property
    def store(self) -> Path:
        return self.store_path

    def samples(self, *, status: str = "accepted", format: SampleFormat = "pandas"):
        """This run's samples (`status`: accepted, rejected, error or all) with their chat `messages`."""
        return load_samples(self.store, run_id=self.run_id, status=status, format=format)


def run(recipe: RecipeBase | str | Path, *, seeds: list[SeedBase] | None = None, limit: int | None = None,
        db: str | Path | None = None, retry_errors: bool = False, pool: ModelPool | None = None,
        ray: RayOptions | str | None = None, **overrides: Any) -> Run:
    """Run a recipe given as a path or a recipe object (its seeds loaded from its `seeds:` source unless given),
    with any recipe field replaced by a keyword (`model=`, `concurrency=`, `roles=`...). `pool` shares loaded
    engines between runs (it is left running). `ray` spreads the seeds over Ray workers: a cluster's address
    (as `--ray` takes it) or `RayOptions`. Works inside a notebook's running event loop too."""
    recipe_path = None
    if isinstance(recipe, (str, Path)):
        recipe_path = Path(recipe)
        recipe, loaded = load_recipe(recipe_path)
        seeds = seeds or loaded
    if overrides:
        recipe = recipe.with_overrides(**overrides)
    if seeds is None:
        seeds = load_seeds(recipe, base=recipe._base, where=f"recipe {recipe.name}")
    if isinstance(ray, str):
        ray = RayOptions(address=ray)
    if limit is not None and limit < 1:
        raise ValueError(f"limit must be 1 or more (got {limit})")
    runner = Runner(recipe, seeds, store_path=Path(db) if db else None, recipe_path=recipe_path, limit=limit,
                    retry_errors=retry_errors, pool=pool, ray=ray)
    result: RunResult = _run_to_completion(runner.run())
    finished = Run(**vars(result), recipe=recipe)
    if result.stop is not None and result.stop.kind == "server":
        raise ModelServerStopped(finished)
    return finished


class ModelServerStopped(RuntimeError):
    """The model server stopped answering mid-run. `run` is what was done; the seeds it could not answer are
    left pending, and calling `run` again resumes them."""

    def __init__(self, run: Run):
        super().__init__(f"the model server is down: {run.stop.message}; {run.pending} seeds left pending "
                         "(call run again to resume them)")
        self.run = run


def load_samples(db: str | Path = DEFAULT_STORE, *, run_id: str | None = None, status: str = "accepted",
                 format: SampleFormat = "pandas"):
    """Samples of a store as a pandas DataFrame, a pyarrow Table or a `datasets.Dataset`; read-only."""
    if status not in ("accepted", "rejected", "error", "all"):
        raise ValueError(f"status must be accepted, rejected, error or all (got {status!r})")
    notes: list[str] = []
    table = samples_table(Path(db), status=None if status == "all" else status, run_id=run_id, notice=notes.append)
    for note in notes:
        warnings.warn(note, stacklevel=2)
    if format == "arrow":
        return table
    if format == "pandas":
        return table.to_pandas()
    if format == "datasets":
        try:
            import datasets
        except ImportError:
            raise ImportError("format='datasets' needs the `datasets` package: pip install datasets") from None
        return datasets.Dataset(table)
    raise ValueError(f"format must be pandas, arrow or datasets (got {format!r})")


def _run_to_completion(coroutine: Coroutine[Any, Any, T]) -> T:
    """asyncio.run, or — inside a running loop (Jupyter) — the same on a thread with a loop of its own."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coroutine)
    outcome: dict[str, Any] = {}

    def target() -> None:
        try:
            outcome["value"] = asyncio.run(coroutine)
        except BaseException as exc:  # re-raised in the caller's thread
            outcome["error"] = exc

    thread = threading.Thread(target=target, name="synthgraph-run")
    thread.start()
    thread.join()
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]
