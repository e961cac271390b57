"""synthgraph: agent teams that synthesize verified LLM training data into DuckDB."""

__version__ = "0.1.0"
