"""synthgraph: agent teams that synthesize verified LLM training data into DuckDB.

`synthgraph.run(recipe, **overrides)` runs a recipe (a path or a recipe object) and returns the run;
`synthgraph.load_samples(db)` reads samples back as a DataFrame, an Arrow table or a `datasets.Dataset`.
"""

__version__ = "0.1.0"
__all__ = ["run", "load_samples", "ModelServerStopped"]


def __getattr__(name: str):
    # Lazy: `import synthgraph` stays cheap for the CLI and tools that never run a recipe.
    if name in __all__:
        from synthgraph.graphs import api

        return getattr(api, name)
    raise AttributeError(name)
