"""The dataset card of an export (README.md with Hugging Face YAML metadata): what the data is and how it was made —
the recipe, the models, the verifiers and their verdict mix, the yield — so a pushed dataset explains itself."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import yaml

from synthgraph.store.db import connect

_RUNS = """
SELECT r.run_id, r.name, r.graph, r.recipe, r.recipe_path, s.samples, s.accepted, s.rejected, s.errors, s.yield
FROM runs r JOIN run_stats s USING (run_id) WHERE list_contains($runs, r.run_id) ORDER BY r.created_at
"""
_MODELS = "SELECT DISTINCT model FROM agent_calls WHERE run_id = $run ORDER BY model"
_VERDICTS = """
SELECT v.verifier, v.outcome, count(*) FROM verdicts v JOIN samples s USING (sample_id)
WHERE s.run_id = $run GROUP BY ALL ORDER BY 1, 2
"""

_DESCRIBE = {
    "chat": "chat records in OpenAI `messages` format (with `tools` where tools were offered)",
    "dpo": "preference pairs in TRL's conversational format (`prompt`, `chosen`, `rejected` message lists)",
    "kto": "unpaired preference records in TRL's conversational format (`prompt`, `completion`, `label`)",
}


def size_category(n: int) -> str:
    """The Hub's `size_categories` bucket for n rows."""
    bounds = [(1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M"),
              (10_000_000, "1M<n<10M")]
    return next((label for bound, label in bounds if n < bound), "10M<n<100M")


def run_facts(db: Path, run_ids: list[str]) -> list[dict[str, Any]]:
    con = connect(Path(db), read_only=True)
    try:
        cursor = con.execute(_RUNS, {"runs": run_ids})
        columns = [d[0] for d in cursor.description]
        runs = []
        for row in cursor.fetchall():
            run = dict(zip(columns, row))
            run["recipe"] = json.loads(run["recipe"])
            run["yield"] = float(run["yield"]) if run["yield"] is not None else None
            run["models"] = [m for (m,) in con.execute(_MODELS, {"run": run["run_id"]}).fetchall()]
            verdicts: dict[str, dict[str, int]] = {}
            for verifier, outcome, n in con.execute(_VERDICTS, {"run": run["run_id"]}).fetchall():
                verdicts.setdefault(verifier, {})[outcome] = n
            run["verdicts"] = verdicts
            runs.append(run)
        return runs
    finally:
        con.close()


# What a card says of chat records that are not the accepted ones (status None: every status).
_NOT_KEPT = {"rejected": "rejected (not training data as they stand: negatives, or material to review)",
             "error": "could not judge: their seeds or calls failed", None: "judged, whatever they decided (the "
             "`status` column says which were kept)"}


def dataset_card(db: Path, *, records: str, rows: list[dict[str, Any]], run_id: str | None, status: str | None,
                 license: str, features: list[str]) -> str:
    """README.md text: YAML metadata the Hub reads (license, task_categories, size_categories, tags) plus
    `synthgraph:` facts per run, then a human summary of the same."""
    run_ids = sorted({r["run_id"] for r in rows}) if rows else ([run_id] if run_id else [])
    runs = run_facts(db, run_ids)
    graphs = sorted({run["graph"] for run in runs})
    sources = Counter(r.get("source") for r in rows) if records != "chat" else Counter()
    meta: dict[str, Any] = {
        "license": license,
        "task_categories": ["text-generation"],
        "size_categories": [size_category(len(rows))],
        # Rejected or error samples are not SFT data: only accepted chat records are tagged so.
        "tags": ["synthetic", "synthgraph", *([] if records == "chat" and status != "accepted" else
                                               [{"chat": "sft", "dpo": "dpo", "kto": "kto"}[records]]), *graphs],
        "pretty_name": " + ".join(run["name"] for run in runs) or "synthgraph export",
        "synthgraph": {
            "records": records, "rows": len(rows), "status": (status or "all") if records == "chat" else None,
            **({"pairs_per_source": dict(sorted(sources.items()))} if sources else {}),
            "runs": [{"run_id": run["run_id"], "name": run["name"], "graph": run["graph"], "models": run["models"],
                      "samples": run["samples"], "accepted": run["accepted"], "rejected": run["rejected"],
                      "errors": run["errors"], "yield": run["yield"], "verifiers": sorted(run["verdicts"]),
                      "verdict_mix": run["verdicts"], "recipe": run["recipe"]} for run in runs],
        },
    }
    kept = ("every sample was checked by the verifiers below before it was kept" if records != "chat" or
            status == "accepted" else f"these are the samples the verifiers below {_NOT_KEPT.get(status, 'judged')}")
    lines = [f"# {meta['pretty_name']}", "",
             f"{len(rows)} {_DESCRIBE[records]}, generated with synthgraph by LangGraph agent "
             f"teams on local models; {kept}.", "",
             "Columns: " + ", ".join(f"`{f}`" for f in features) + ".", ""]
    if sources:
        lines += ["| pair source | records |", "|---|---|", *(f"| {s} | {n} |" for s, n in sorted(sources.items())), ""]
    for run in runs:
        lines += [f"## Run `{run['run_id']}`: {run['name']} ({run['graph']})", "",
                  f"- models: {', '.join(run['models']) or 'none recorded'}",
                  f"- samples: {run['samples']} ({run['accepted']} accepted, {run['rejected']} rejected, "
                  f"{run['errors']} errors); yield {run['yield']}", "",
                  "| verifier | passed | failed | unchecked |", "|---|---|---|---|",
                  *(f"| {v} | {mix.get('passed', 0)} | {mix.get('failed', 0)} | {mix.get('unchecked', 0)} |"
                    for v, mix in sorted(run["verdicts"].items())), "",
                  "Recipe as run:", "", "```yaml", yaml.safe_dump(run["recipe"], sort_keys=False).strip(), "```", ""]
    lines += ["## Loading", "", "```python", "from datasets import load_from_disk",
              "dataset = load_from_disk(\"THIS_FOLDER\")   # or load_dataset(\"USER/REPO\") once pushed", "```", ""]
    return "---\n" + yaml.safe_dump(meta, sort_keys=False, allow_unicode=True) + "---\n\n" + "\n".join(lines)
