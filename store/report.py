"""A run report: one self-contained HTML file of plots and browsable samples, read from the store.

Everything comes from the tables (runs, seeds, samples, messages, verdicts, agent_calls), so a report can be
written for any store, finished or not, and for several runs at once. plotly draws the figures; its JavaScript
is embedded once, so the file opens offline. Model output is untrusted: every text goes through Jinja2's
autoescaping, and plotly's JSON escapes `<`, `>` and `/` inside its <script> blocks.
"""

from __future__ import annotations

import json
import math
import os
import re
import time
from collections import Counter, defaultdict
from datetime import datetime, timezone
from importlib import resources
from pathlib import Path
from typing import Any

import duckdb
import jinja2
import plotly.graph_objects as go
from plotly.subplots import make_subplots
from pydantic import BaseModel

from synthgraph.store.db import connect, is_store_file, unknown_run

OUTCOME_COLORS = {"passed": "#2e7d32", "failed": "#c62828", "unchecked": "#9e9e9e"}
STATUS_COLORS = {"accepted": "#2e7d32", "rejected": "#ef6c00", "error": "#c62828"}
ROLE_COLORS = ["#1565c0", "#6a1b9a", "#00838f", "#ad1457", "#558b2f", "#4e342e", "#37474f"]
# Verdicts written by the cleaning stages (tools/dedup.py); counted apart from the family's own checks.
CLEANING_VERIFIERS = ("dedup", "decontamination")
# The longest text of one chat turn or payload the sample table embeds; the rest is one query away.
MAX_TEXT_CHARS = 20_000
# Plotly's default config minus the parts that reach for the network or clutter a static report.
PLOT_CONFIG = {"displaylogo": False, "responsive": True, "modeBarButtonsToRemove": ["select2d", "lasso2d"]}


class ReportError(ValueError):
    """A report that cannot be written as asked (the file exists, its folder is missing, no such run)."""


class ReportExists(ReportError):
    """The destination is a file the user already has; callers say how to replace it."""


class ReportSummary(BaseModel):
    path: Path
    runs: int
    samples: int
    accepted: int
    samples_shown: int
    figures: list[str]          # the ids of the figure <div>s, in page order
    html_bytes: int
    seconds: float


def check_destination(out: Path, *, overwrite: bool = False, db: Path | None = None) -> None:
    """Refuse a destination that would lose a user's file or cannot be written; callers check before long work."""
    out = Path(out)
    if db is not None and is_store_file(db, out):
        raise ReportError(f"{out} is the store itself (or its WAL, snapshot or checkpoints): writing the report there "
                          "would destroy it; choose another file")
    if out.is_dir():
        raise ReportError(f"{out} is a folder: name the HTML file to write, e.g. {out / 'report.html'}")
    if out.exists() and not overwrite:
        raise ReportExists(f"{out} already exists")
    if not out.parent.is_dir():
        raise ReportError(f"cannot write {out}: folder {out.parent} does not exist (create it first)")


def write_report(db: Path, out: Path, *, run_id: str | None = None, max_samples: int = 500,
                 overwrite: bool = False) -> ReportSummary:
    """Write the report of one run (or every run in the store) to `out`; returns what went into it."""
    started = time.perf_counter()
    out = Path(out)
    check_destination(out, overwrite=overwrite, db=db)
    con = connect(Path(db), read_only=True)
    try:
        data = _ReportData(con, run_id)
        page = _build_page(data, db=Path(db), max_samples=max_samples)
    finally:
        con.close()
    html = _render(page)
    # Write beside the destination and rename, so an interrupted report never leaves half a file behind.
    tmp = out.with_name(f".{out.name}.{os.getpid()}.{time.monotonic_ns()}.tmp")
    # Created as any new file is (0666 less the umask), or with the mode of the report it replaces
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, out.stat().st_mode & 0o777 if out.exists() else 0o666)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(html)
        os.replace(tmp, out)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    totals = page["totals"]
    return ReportSummary(path=out, runs=totals["runs"], samples=totals["samples"], accepted=totals["accepted"],
                         samples_shown=len(page["samples"]), figures=[f["id"] for f in page["figures_order"]],
                         html_bytes=len(html.encode()), seconds=time.perf_counter() - started)


class _ReportData:
    """Read-only queries over the runs in scope (one run, or all)."""

    def __init__(self, con: duckdb.DuckDBPyConnection, run_id: str | None):
        self.con = con
        self.run_id = run_id
        known = [r[0] for r in con.execute("SELECT run_id FROM runs ORDER BY created_at").fetchall()]
        if not known:
            raise ReportError("no runs in this store yet: run a recipe first (synthgraph run RECIPE)")
        if (problem := unknown_run(run_id, known)) is not None:
            raise ReportError(problem)

    def rows(self, sql: str, **params: Any) -> list[tuple]:
        return self._execute(sql, params).fetchall()

    def dicts(self, sql: str, **params: Any) -> list[dict[str, Any]]:
        cursor = self._execute(sql, params)
        columns = [d[0] for d in cursor.description]
        return [dict(zip(columns, row)) for row in cursor.fetchall()]

    def _execute(self, sql: str, params: dict[str, Any]) -> duckdb.DuckDBPyConnection:
        # Every query may filter on $run; DuckDB refuses parameters a statement does not use.
        params = {"run": self.run_id, **params}
        return self.con.execute(sql, {name: value for name, value in params.items() if f"${name}" in sql})


# --- the page ---------------------------------------------------------------------------------------------


def _build_page(data: _ReportData, *, db: Path, max_samples: int) -> dict[str, Any]:
    calls = data.rows("""
        SELECT run_id, epoch(started_at) AS start, epoch(started_at) + latency_s AS finish,
               coalesce(completion_tokens, 0) FROM agent_calls WHERE $run IS NULL OR run_id = $run""")
    busy = _busy_spans(calls)
    runs = _runs(data, busy)
    totals = {
        "runs": len(runs),
        "seeds": sum(r["seeds"] for r in runs),
        "samples": sum(r["samples"] for r in runs),
        "accepted": sum(r["accepted"] for r in runs),
        "completion_tokens": sum(r["completion_tokens"] or 0 for r in runs),
        "calls": sum(r["calls"] for r in runs),
    }
    totals["yield"] = totals["accepted"] / totals["samples"] if totals["samples"] else None
    busy_s = sum(r["busy_s"] or 0 for r in runs)
    totals["tokens_per_s"] = totals["completion_tokens"] / busy_s if busy_s else None

    sections = [
        _funnel_section(data),
        _verdict_section(data),
        _score_section(data),
        _length_section(data),
        _diversity_section(data),
        _cleaning_section(data),
        _throughput_section(data, calls, busy),
        _role_section(data),
    ]
    figures_order = [fig for section in sections for fig in section["figures"]]
    # plotly.js goes into the page once, inside the first figure; the others reuse it.
    for i, fig in enumerate(figures_order):
        fig["html"] = fig.pop("figure").to_html(full_html=False, include_plotlyjs=(i == 0), div_id=fig["id"],
                                                config=PLOT_CONFIG)
    samples, sample_note = _samples(data, max_samples)
    return {
        "title": runs[0]["name"] if len(runs) == 1 else f"{len(runs)} runs",
        "scope": f"run {data.run_id}" if data.run_id else "all runs in the store",
        "db": str(db.resolve()),
        "generated_at": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "runs": runs, "totals": totals, "sections": sections, "figures_order": figures_order,
        "samples": samples, "sample_note": sample_note,
        "statuses": sorted({s["status"] for s in samples}), "kinds": sorted({s["kind"] for s in samples}),
    }


def _render(page: dict[str, Any]) -> str:
    env = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    env.filters["num"] = _format_number
    template = env.from_string(resources.files("synthgraph.store").joinpath("report.html.j2").read_text())
    return template.render(**page)


def _format_number(value: Any, digits: int = 0) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if digits:
        return f"{value:,.{digits}f}"
    return f"{value:,.0f}" if isinstance(value, float) else f"{value:,}"


IDLE_GAP_S = 60.0  # no model call in flight for longer than this: the run was stopped (or resumed later), not busy


def _busy_spans(calls: list[tuple]) -> dict[str, list[tuple[float, float]]]:
    """Per run, the stretches in which its model calls follow each other at most IDLE_GAP_S apart: (start, end) in
    order. A run stopped and resumed the next day is busy for its two stretches, not for the day between."""
    spans: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for run_id, begun, finish, _tokens in sorted(calls, key=lambda call: (call[0], call[1])):
        run = spans[run_id]
        if run and begun <= run[-1][1] + IDLE_GAP_S:
            run[-1] = (run[-1][0], max(run[-1][1], finish))
        else:
            run.append((begun, finish))
    return spans


def _busy_clock(spans: list[tuple[float, float]], t: float) -> float:
    """Busy seconds of a run before time t: its clock with the idle gaps taken out."""
    clock = 0.0
    for start, end in spans:
        if t < start:
            break
        if t <= end:
            return clock + t - start
        clock += end - start
    return clock


def _runs(data: _ReportData, busy: dict[str, list[tuple[float, float]]]) -> list[dict[str, Any]]:
    runs = data.dicts("""
        WITH calls AS (
            SELECT run_id, count(*) AS calls, sum(prompt_tokens) AS prompt_tokens,
                   sum(completion_tokens) AS completion_tokens
            FROM agent_calls GROUP BY run_id),
        seed_counts AS (
            SELECT run_id, count(*) AS seeds, count(*) FILTER (WHERE status = 'done') AS seeds_done,
                   count(*) FILTER (WHERE status = 'error') AS seeds_crashed
            FROM seeds GROUP BY run_id)
        SELECT s.run_id, s.name, s.graph, strftime(s.created_at, '%Y-%m-%d %H:%M') AS created,
               coalesce(x.seeds, 0) AS seeds, coalesce(x.seeds_done, 0) AS seeds_done,
               coalesce(x.seeds_crashed, 0) AS seeds_crashed, s.samples, s.accepted, s.rejected, s.errors, s.yield,
               coalesce(c.calls, 0) AS calls, c.prompt_tokens, c.completion_tokens
        FROM run_stats s LEFT JOIN seed_counts x USING (run_id) LEFT JOIN calls c USING (run_id)
        WHERE $run IS NULL OR s.run_id = $run
        ORDER BY s.created_at, s.run_id""")
    for run in runs:
        busy_s = sum(end - start for start, end in busy.get(run["run_id"], []))
        run["busy_s"] = busy_s or None
        run["tokens_per_s"] = (run["completion_tokens"] or 0) / busy_s if busy_s else None
    return runs


def _section(id: str, title: str, intro: str, figures: list[dict] | None = None, **extra: Any) -> dict[str, Any]:
    return {"id": id, "title": title, "intro": intro, "figures": figures or [], "note": None, "tables": [], **extra}


def _figure(id: str, figure: go.Figure, caption: str = "", *, height: int = 380) -> dict[str, Any]:
    figure.update_layout(height=height, margin={"l": 60, "r": 20, "t": 50, "b": 50}, template="plotly_white",
                         font={"size": 12}, legend={"orientation": "h", "y": -0.18})
    return {"id": id, "figure": figure, "caption": caption}


def _table(title: str, columns: list[str], rows: list[list[Any]]) -> dict[str, Any]:
    return {"title": title, "columns": columns, "rows": rows}


# --- funnel: where samples were lost ------------------------------------------------------------------------


def _funnel_section(data: _ReportData) -> dict[str, Any]:
    section = _section("funnel", "Funnel: where samples were lost",
                       "Seeds, then every sample the graphs wrote, through each verifier in the order the family "
                       "applies them. A rejected sample is lost at its first failed check (else its first "
                       "unchecked one); one that passed every check but was still rejected is lost to the "
                       "family's acceptance rule (its reason says which).")
    seeds = data.dicts("""
        SELECT r.graph, count(*) AS registered, count(*) FILTER (WHERE x.status <> 'pending') AS processed,
               count(*) FILTER (WHERE x.status = 'done') AS finished,
               count(*) FILTER (WHERE EXISTS (SELECT 1 FROM samples s WHERE s.run_id = x.run_id
                                               AND s.seed_id = x.seed_id AND s.status <> 'error')) AS with_samples,
               count(*) FILTER (WHERE EXISTS (SELECT 1 FROM samples s WHERE s.run_id = x.run_id
                                               AND s.seed_id = x.seed_id AND s.status = 'accepted')) AS with_accepted
        FROM seeds x JOIN runs r USING (run_id) WHERE $run IS NULL OR x.run_id = $run
        GROUP BY r.graph ORDER BY r.graph""")
    # One row per (sample, verifier): per-turn verdicts (dialogues) fold into their worst outcome, placed where
    # the first of them was written. rowid is insertion order, and a family writes a sample's verdicts in the
    # order it checks them, so positions within a sample give the stage order without naming any verifier.
    checks = data.rows("""
        SELECT s.sample_id, r.graph, s.kind, s.status, s.reason, v.verifier,
               CASE WHEN bool_or(v.outcome = 'failed') THEN 'failed'
                    WHEN bool_or(v.outcome = 'unchecked') THEN 'unchecked' ELSE 'passed' END AS outcome,
               min(v.rowid) AS position
        FROM samples s JOIN runs r USING (run_id) LEFT JOIN verdicts v USING (sample_id)
        WHERE $run IS NULL OR s.run_id = $run
        GROUP BY ALL ORDER BY s.sample_id, position""")
    by_graph: dict[str, dict[str, dict]] = defaultdict(dict)
    for sample_id, graph, kind, status, reason, verifier, outcome, _position in checks:
        sample = by_graph[graph].setdefault(sample_id, {"kind": kind, "status": status, "reason": reason,
                                                        "checks": []})
        if verifier is not None:
            sample["checks"].append((verifier, outcome))
    seeds_by_graph = {row["graph"]: row for row in seeds}
    for graph in sorted(set(by_graph) | set(seeds_by_graph)):
        samples = by_graph.get(graph, {})
        stages = _stage_order(samples.values())
        lost: Counter[str] = Counter()
        reasons: dict[str, Counter[str]] = defaultdict(Counter)
        for sample in samples.values():
            stage = _lost_at(sample, stages)
            if stage is not None:
                lost[stage] += 1
                reasons[stage][_short(sample["reason"] or "no reason recorded", 140)] += 1
        seed_row = seeds_by_graph.get(graph, {"registered": 0, "processed": 0, "finished": 0, "with_samples": 0,
                                              "with_accepted": 0})
        seed_labels = ["seeds", "seeds run", "seeds finished (no crash)", "seeds with a non-error sample",
                       "seeds with an accepted sample"]
        seed_values = [seed_row["registered"], seed_row["processed"], seed_row["finished"],
                       seed_row["with_samples"], seed_row["with_accepted"]]
        sample_labels = ["samples written", "generated (no error)"] + [f"passed {v}" for v in stages] + ["accepted"]
        remaining, sample_values = len(samples), [len(samples)]
        for stage in ["generation error", *stages, "acceptance rule"]:
            remaining -= lost[stage]
            sample_values.append(remaining)
        fig = make_subplots(rows=1, cols=2, subplot_titles=("seeds", "samples"), horizontal_spacing=0.22)
        fig.add_trace(go.Funnel(y=seed_labels, x=seed_values, textinfo="value+percent initial",
                                marker={"color": "#1565c0"}, name="seeds"), row=1, col=1)
        fig.add_trace(go.Funnel(y=sample_labels, x=sample_values, textinfo="value+percent initial",
                                marker={"color": "#2e7d32"}, name="samples"), row=1, col=2)
        fig.update_layout(showlegend=False, title=f"{graph}")
        section["figures"].append(_figure(f"fig-funnel-{_slug(graph)}", fig,
                                          f"{graph}: stage order derived from the verdicts' order within samples",
                                          height=max(320, 60 + 42 * len(sample_labels))))
        rows = []
        for stage in ["generation error", *stages, "acceptance rule"]:
            if lost[stage]:
                top = "; ".join(f"{n}× {reason}" for reason, n in reasons[stage].most_common(3))
                rows.append([stage, lost[stage], f"{lost[stage] / len(samples):.0%}", top])
        if rows:
            section["tables"].append(_table(f"{graph}: samples lost per stage (top reasons)",
                                            ["stage", "lost", "of all samples", "most common reasons"], rows))
    return section


def _stage_order(samples) -> list[str]:
    """Verifiers in the order the family applies them, from where each sits among a sample's verdicts.

    Task-level checks (a proposed problem's reference program) sit on a kind with fewer samples than the
    attempts that follow it (k per task), so kinds with fewer samples come first; within a kind, a verifier's
    mean position among its sample's verdicts orders it.
    """
    kind_sizes = Counter(sample["kind"] for sample in samples)
    positions: dict[str, list[int]] = defaultdict(list)
    kinds: dict[str, Counter[str]] = defaultdict(Counter)
    for sample in samples:
        for index, (verifier, _outcome) in enumerate(sample["checks"]):
            positions[verifier].append(index)
            kinds[verifier][sample["kind"]] += 1

    def key(verifier: str):
        main_kind = kinds[verifier].most_common(1)[0][0]
        return kind_sizes[main_kind], main_kind, sum(positions[verifier]) / len(positions[verifier]), verifier

    return sorted(positions, key=key)


def _lost_at(sample: dict[str, Any], stages: list[str]) -> str | None:
    if sample["status"] == "accepted":
        return None
    if sample["status"] == "error" and not sample["checks"]:
        return "generation error"
    outcomes = dict(sample["checks"])
    for wanted in ("failed", "unchecked"):
        for stage in stages:
            if outcomes.get(stage) == wanted:
                return stage
    return "acceptance rule"


# --- verdicts and scores -------------------------------------------------------------------------------------


def _verdict_section(data: _ReportData) -> dict[str, Any]:
    section = _section("verdicts", "Verdict mix per verifier",
                       "Every verdict row: passed, failed, or could not be checked (timeouts, unparseable "
                       "answers). Per-turn checks count once per turn.")
    rows = data.rows("""
        SELECT r.graph, v.verifier, v.outcome, count(*) FROM verdicts v JOIN samples s USING (sample_id)
        JOIN runs r USING (run_id) WHERE $run IS NULL OR s.run_id = $run GROUP BY ALL ORDER BY 1, 2""")
    if not rows:
        section["note"] = "No verdicts in scope."
        return section
    several = len({r[0] for r in rows}) > 1
    labels = sorted({_verifier_label(g, v, several) for g, v, _, _ in rows})
    counts = {(_verifier_label(g, v, several), o): n for g, v, o, n in rows}
    fig = go.Figure()
    for outcome, color in OUTCOME_COLORS.items():
        fig.add_trace(go.Bar(y=labels, x=[counts.get((label, outcome), 0) for label in labels], name=outcome,
                             orientation="h", marker={"color": color}))
    fig.update_layout(barmode="stack", xaxis_title="verdicts", yaxis={"autorange": "reversed"},
                      legend={"traceorder": "normal"})
    section["figures"].append(_figure("fig-verdicts", fig, height=max(260, 90 + 34 * len(labels))))
    return section


def _verifier_label(graph: str, verifier: str, several_graphs: bool) -> str:
    return f"{graph} · {verifier}" if several_graphs else verifier


def _score_section(data: _ReportData) -> dict[str, Any]:
    section = _section("scores", "Critic scores",
                       "Scores of every verifier that grades on a scale (not just 0/1), split by whether the "
                       "verdict passed its threshold.")
    rows = data.rows("""
        SELECT v.verifier, v.outcome, v.score FROM verdicts v JOIN samples s USING (sample_id)
        WHERE ($run IS NULL OR s.run_id = $run) AND v.score IS NOT NULL""")
    scores: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for verifier, outcome, score in rows:
        scores[verifier][outcome].append(score)
    graded = sorted(v for v, by in scores.items() if any(s not in (0.0, 1.0) for xs in by.values() for s in xs))
    if not graded:
        section["note"] = "No graded scores in scope (only pass/fail checks)."
        return section
    fig = make_subplots(rows=1, cols=len(graded), subplot_titles=graded)
    for col, verifier in enumerate(graded, 1):
        values = [s for xs in scores[verifier].values() for s in xs]
        integral = all(float(s).is_integer() for s in values)
        bins = {"start": min(values) - 0.5, "end": max(values) + 0.5, "size": 1} if integral else None
        for outcome in ("passed", "failed"):
            if scores[verifier][outcome]:
                fig.add_trace(go.Histogram(x=scores[verifier][outcome], name=outcome, xbins=bins,
                                           marker={"color": OUTCOME_COLORS[outcome]}, legendgroup=outcome,
                                           showlegend=col == 1), row=1, col=col)
        if integral and 0 <= min(values) and max(values) <= 10:  # the usual 0-10 rubric: show the whole scale
            fig.update_xaxes(range=[-0.5, 10.5], dtick=1, row=1, col=col)
    fig.update_layout(barmode="stack", yaxis_title="verdicts")
    section["figures"].append(_figure("fig-scores", fig))
    return section


# --- lengths -------------------------------------------------------------------------------------------------


def _length_section(data: _ReportData) -> dict[str, Any]:
    section = _section("lengths", "Lengths",
                       "Words per chat turn by role and per sample by status (whitespace-separated), and the "
                       "model's generated tokens per call by role.")
    turns = data.rows("""
        SELECT m.role, s.status, m.sample_id,
               CASE WHEN trim(coalesce(m.content, '')) = '' THEN 0
                    ELSE len(string_split_regex(trim(m.content), '\\s+')) END AS words
        FROM messages m JOIN samples s USING (sample_id) WHERE $run IS NULL OR s.run_id = $run""")
    calls = data.rows("""
        SELECT role, completion_tokens FROM agent_calls
        WHERE ($run IS NULL OR run_id = $run) AND completion_tokens IS NOT NULL""")
    if not turns and not calls:
        section["note"] = "No chat turns or model calls in scope."
        return section
    per_role: dict[str, list[int]] = defaultdict(list)
    per_sample: dict[str, int] = Counter()
    sample_status: dict[str, str] = {}
    for role, status, sample_id, words in turns:
        per_role[role].append(words)
        per_sample[sample_id] += words
        sample_status[sample_id] = status
    per_status: dict[str, list[int]] = defaultdict(list)
    for sample_id, words in per_sample.items():
        per_status[sample_status[sample_id]].append(words)
    tokens: dict[str, list[int]] = defaultdict(list)
    for role, n in calls:
        tokens[role].append(n)
    fig = make_subplots(rows=1, cols=3, subplot_titles=("words per turn", "words per sample",
                                                        "generated tokens per model call"))
    panels = [
        [(f"{role} turns", values, ROLE_COLORS[i % len(ROLE_COLORS)])
         for i, (role, values) in enumerate(sorted(per_role.items()))],
        [(f"{status} samples", values, STATUS_COLORS.get(status, "#555"))
         for status, values in sorted(per_status.items())],
        [(f"{role} calls", values, ROLE_COLORS[(i + 3) % len(ROLE_COLORS)])
         for i, (role, values) in enumerate(sorted(tokens.items()))],
    ]
    for col, traces in enumerate(panels, 1):
        if not traces:
            continue
        # One set of bins per panel, so overlaid histograms are comparable bar for bar.
        size = max(1, math.ceil(max(max(values) for _, values, _ in traces) / 30))
        for name, values, color in traces:
            fig.add_trace(go.Histogram(x=values, name=name, opacity=0.65, xbins={"start": 0, "size": size},
                                       marker={"color": color}), row=1, col=col)
    fig.update_layout(barmode="overlay")
    section["figures"].append(_figure("fig-lengths", fig, height=420))
    rows = [[f"{role} turns", len(v), _median(v), max(v)] for role, v in sorted(per_role.items())]
    rows += [[f"{status} samples", len(v), _median(v), max(v)] for status, v in sorted(per_status.items())]
    rows += [[f"{role} calls (tokens)", len(v), _median(v), max(v)] for role, v in sorted(tokens.items())]
    section["tables"].append(_table("medians", ["what", "count", "median", "max"], rows))
    return section


def _median(values: list[float]) -> float:
    ordered = sorted(values)
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2


# --- diversity -------------------------------------------------------------------------------------------------


_WORD = re.compile(r"\w+")


def distinct_n(texts: list[str], n: int) -> float | None:
    """Distinct n-grams over all n-grams of the texts together (lower-cased words); None when there are none."""
    seen: set[tuple[str, ...]] = set()
    total = 0
    for text in texts:
        words = _WORD.findall(text.lower())
        grams = zip(*(words[i:] for i in range(n)))
        for gram in grams:
            seen.add(gram)
            total += 1
    return len(seen) / total if total else None


def _diversity_section(data: _ReportData) -> dict[str, Any]:
    section = _section("diversity", "Diversity of accepted samples",
                       "distinct-n: distinct word n-grams over all n-grams of the accepted samples' turns of one "
                       "role, per run (1.0 = no n-gram repeats). Over a whole corpus it falls as the corpus "
                       "grows, so compare runs of similar size.")
    rows = data.rows("""
        SELECT s.run_id, m.role, m.content, s.sample_id FROM messages m JOIN samples s USING (sample_id)
        WHERE ($run IS NULL OR s.run_id = $run) AND s.status = 'accepted' AND m.content IS NOT NULL
              AND m.role IN ('user', 'assistant')
        ORDER BY s.run_id, m.sample_id, m.turn""")
    if not rows:
        section["note"] = "No accepted samples in scope."
        return section
    texts: dict[tuple[str, str], list[str]] = defaultdict(list)
    whole: dict[str, dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
    for run_id, role, content, sample_id in rows:
        texts[(run_id, role)].append(content)
        whole[run_id][sample_id].append(content)
    clusters = _minhash_clusters(whole)
    table_rows, labels, d1, d2 = [], [], [], []
    for (run_id, role), values in sorted(texts.items()):
        one, two = distinct_n(values, 1), distinct_n(values, 2)
        label = f"{run_id[:8]} {role}"
        labels.append(label)
        d1.append(one)
        d2.append(two)
        table_rows.append([run_id, role, len(values), _round(one), _round(two)])
    fig = go.Figure([go.Bar(x=labels, y=d1, name="distinct-1", marker={"color": "#1565c0"}),
                     go.Bar(x=labels, y=d2, name="distinct-2", marker={"color": "#00838f"})])
    fig.update_layout(barmode="group", yaxis={"range": [0, 1], "title": "distinct n-grams / n-grams"})
    section["figures"].append(_figure("fig-diversity", fig, height=340))
    section["tables"].append(_table("distinct-n per run and role", ["run", "role", "turns", "distinct-1",
                                                                     "distinct-2"], table_rows))
    if clusters is None:
        section["note"] = ("Near-duplicate clusters: not computed (install datasketch for MinHash clusters of the "
                           "accepted samples).")
    else:
        section["tables"].append(_table(
            "near-duplicate clusters of accepted samples (MinHash, word 3-shingles, Jaccard ≥ 0.8)",
            ["run", "accepted samples", "clusters", "samples in a cluster of 2+"],
            [[run_id, n, k, dup] for run_id, (n, k, dup) in sorted(clusters.items())]))
    return section


def _minhash_clusters(whole: dict[str, dict[str, list[str]]]) -> dict[str, tuple[int, int, int]] | None:
    """Per run: (samples, clusters, samples sharing a cluster), or None without datasketch."""
    try:
        from datasketch import MinHash, MinHashLSH
    except ImportError:
        return None
    result = {}
    for run_id, samples in whole.items():
        lsh = MinHashLSH(threshold=0.8, num_perm=64)
        parent = {sample_id: sample_id for sample_id in samples}

        def root(x: str) -> str:
            while parent[x] != x:
                parent[x] = parent[parent[x]]
                x = parent[x]
            return x

        shingled = []
        for turns in samples.values():
            words = _WORD.findall(" ".join(turns).lower())
            shingled.append([" ".join(words[i:i + 3]).encode() for i in range(max(1, len(words) - 2))])
        # bulk shares one set of permutations among all signatures instead of drawing them per sample
        for sample_id, signature in zip(samples, MinHash.bulk(shingled, num_perm=64)):
            for other in lsh.query(signature):
                parent[root(other)] = root(sample_id)
            lsh.insert(sample_id, signature)
        sizes = Counter(root(s) for s in samples)
        result[run_id] = (len(samples), len(sizes), sum(n for n in sizes.values() if n > 1))
    return result


# --- duplicates and contamination ----------------------------------------------------------------------------


def _cleaning_section(data: _ReportData) -> dict[str, Any]:
    section = _section("cleaning", "Duplicates and benchmark contamination",
                       "Verdicts of the dedup and decontamination checks: failed means the sample duplicates "
                       "another or overlaps an evaluation benchmark item.")
    rows = data.rows("""
        SELECT v.verifier, v.outcome, count(*) FROM verdicts v JOIN samples s USING (sample_id)
        WHERE ($run IS NULL OR s.run_id = $run) AND list_contains($cleaning, v.verifier) GROUP BY ALL""",
                     cleaning=list(CLEANING_VERIFIERS))
    counts = {(verifier, outcome): n for verifier, outcome, n in rows}
    section["tables"].append(_table("counts", ["check", "passed (clean)", "failed (duplicate / contaminated)",
                                               "unchecked"],
                                    [[v, *(counts.get((v, o), 0) for o in OUTCOME_COLORS)] for v in CLEANING_VERIFIERS]))
    if not rows:
        section["note"] = "No dedup or decontamination verdicts recorded for these runs: every count is zero."
        return section
    fig = go.Figure()
    for outcome, color in OUTCOME_COLORS.items():
        values = [counts.get((v, outcome), 0) for v in CLEANING_VERIFIERS]
        fig.add_trace(go.Bar(x=list(CLEANING_VERIFIERS), y=values, text=values, name=outcome, marker={"color": color}))
    fig.update_layout(barmode="stack", yaxis_title="samples checked", legend={"traceorder": "normal"})
    section["figures"].append(_figure("fig-cleaning", fig, height=300))
    hits = data.rows("""
        SELECT v.verifier, v.detail, count(*) AS n FROM verdicts v JOIN samples s USING (sample_id)
        WHERE ($run IS NULL OR s.run_id = $run) AND list_contains($cleaning, v.verifier) AND v.outcome = 'failed'
        GROUP BY ALL ORDER BY n DESC, 1, 2 LIMIT 15""", cleaning=list(CLEANING_VERIFIERS))
    if hits:
        section["tables"].append(_table("most frequent collisions", ["check", "detail", "samples"],
                                        [[v, _short(d or "", 200), n] for v, d, n in hits]))
    return section


# --- throughput over time --------------------------------------------------------------------------------------


_BIN_WIDTHS_S = [1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 21600, 86400]


def _throughput_section(data: _ReportData, calls: list[tuple], busy: dict[str, list[tuple[float, float]]]
                        ) -> dict[str, Any]:
    section = _section("throughput", "Throughput over the run",
                       "Generated tokens per second and accepted samples per minute, in time bins from each "
                       "run's first model call. A call's tokens are spread evenly over its latency; a sample "
                       "counts when the last model call of its seed finished (both on the calls' clock). "
                       f"Stretches of more than {IDLE_GAP_S:.0f} s without a model call (a run stopped and "
                       "resumed later) are left out of the clock.")
    if not calls:
        section["note"] = "No model calls in scope."
        return section
    accepted = data.rows("""
        WITH seed_end AS (SELECT run_id, seed_id, max(epoch(started_at) + latency_s) AS finish
                          FROM agent_calls GROUP BY ALL)
        SELECT s.run_id, e.finish FROM samples s JOIN seed_end e USING (run_id, seed_id)
        WHERE ($run IS NULL OR s.run_id = $run) AND s.status = 'accepted'""")
    span = max(sum(end - start for start, end in spans) for spans in busy.values())
    width = next((w for w in _BIN_WIDTHS_S if span / w <= 40), _BIN_WIDTHS_S[-1])
    # A call generates its tokens over its whole latency, so they are spread over the bins it spans.
    tokens: dict[str, Counter[int]] = defaultdict(Counter)
    for run_id, begun, finish, n in calls:
        a, b = _busy_clock(busy[run_id], begun), _busy_clock(busy[run_id], finish)
        first, last = int(a // width), int(b // width)
        for bin_ in range(first, last + 1):
            overlap = min(b, (bin_ + 1) * width) - max(a, bin_ * width)
            tokens[run_id][bin_] += n * (overlap / (b - a) if b > a else 1.0)
    done: dict[str, Counter[int]] = defaultdict(Counter)
    for run_id, finish in accepted:
        done[run_id][int(_busy_clock(busy[run_id], finish) // width)] += 1
    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, vertical_spacing=0.12,
                        subplot_titles=("generated tokens / s", "accepted samples / min"))
    for i, run_id in enumerate(sorted(tokens)):
        color = ROLE_COLORS[i % len(ROLE_COLORS)]
        last = max([*tokens[run_id], *done[run_id]])
        bins = list(range(last + 1))
        minutes = [(b + 0.5) * width / 60 for b in bins]
        fig.add_trace(go.Scatter(x=minutes, y=[tokens[run_id][b] / width for b in bins], mode="lines+markers",
                                 name=run_id[:12], line={"color": color}, legendgroup=run_id), row=1, col=1)
        fig.add_trace(go.Bar(x=minutes, y=[done[run_id][b] * 60 / width for b in bins], name=run_id[:12],
                             marker={"color": color}, legendgroup=run_id, showlegend=False), row=2, col=1)
    fig.update_xaxes(title_text=f"busy minutes since the run's first model call (bins of {width} s)", row=2, col=1)
    section["figures"].append(_figure("fig-throughput", fig, height=480))
    return section


# --- model calls per role --------------------------------------------------------------------------------------


def _role_section(data: _ReportData) -> dict[str, Any]:
    section = _section("roles", "Model calls per role",
                       "Calls (refused = output rejected and retried: malformed, runaway, failed a check), "
                       "latency (box: quartiles, whiskers 5th–95th percentile) and tokens per role.")
    rows = data.dicts("""
        SELECT role, count(*) AS calls, count(*) FILTER (WHERE error IS NOT NULL) AS refused,
               coalesce(sum(prompt_tokens), 0) AS prompt_tokens, coalesce(sum(completion_tokens), 0) AS completion_tokens,
               quantile_cont(latency_s, [0.05, 0.25, 0.5, 0.75, 0.95]) AS q, avg(latency_s) AS mean_latency
        FROM agent_calls WHERE $run IS NULL OR run_id = $run GROUP BY role ORDER BY role""")
    if not rows:
        section["note"] = "No model calls in scope."
        return section
    roles = [r["role"] for r in rows]
    fig = make_subplots(rows=1, cols=3, subplot_titles=("calls", "latency (s)", "tokens"), horizontal_spacing=0.08)
    fig.add_trace(go.Bar(x=roles, y=[r["calls"] - r["refused"] for r in rows], name="accepted output",
                         marker={"color": "#1565c0"}), row=1, col=1)
    fig.add_trace(go.Bar(x=roles, y=[r["refused"] for r in rows], name="refused output",
                         marker={"color": "#c62828"}), row=1, col=1)
    fig.add_trace(go.Box(x=roles, q1=[r["q"][1] for r in rows], median=[r["q"][2] for r in rows],
                         q3=[r["q"][3] for r in rows], lowerfence=[r["q"][0] for r in rows],
                         upperfence=[r["q"][4] for r in rows], mean=[r["mean_latency"] for r in rows],
                         name="latency", marker={"color": "#6a1b9a"}, showlegend=False), row=1, col=2)
    fig.add_trace(go.Bar(x=roles, y=[r["prompt_tokens"] for r in rows], name="prompt tokens",
                         marker={"color": "#90a4ae"}), row=1, col=3)
    fig.add_trace(go.Bar(x=roles, y=[r["completion_tokens"] for r in rows], name="generated tokens",
                         marker={"color": "#00838f"}), row=1, col=3)
    fig.update_layout(barmode="stack")
    section["figures"].append(_figure("fig-roles", fig, height=400))
    section["tables"].append(_table("per role", ["role", "calls", "refused", "prompt tokens", "generated tokens",
                                                 "median latency s", "mean latency s"],
                                    [[r["role"], r["calls"], r["refused"], r["prompt_tokens"], r["completion_tokens"],
                                      _round(r["q"][2]), _round(r["mean_latency"])] for r in rows]))
    return section


# --- the samples table ---------------------------------------------------------------------------------------------


def _samples(data: _ReportData, max_samples: int) -> tuple[list[dict[str, Any]], str]:
    """Up to max_samples samples, shared fairly among statuses (sample ids are hashes, so ordering by them is an
    unbiased, repeatable pick), each with its turns and verdicts."""
    counts = dict(data.rows("SELECT status, count(*) FROM samples WHERE $run IS NULL OR run_id = $run GROUP BY 1"))
    quotas = _share(counts, max_samples)
    picked = data.dicts("""
        SELECT * FROM (
            SELECT sample_id, run_id, seed_id, kind, status, reason, score, payload,
                   row_number() OVER (PARTITION BY status ORDER BY sample_id) AS pick
            FROM samples WHERE $run IS NULL OR run_id = $run)
        WHERE pick <= coalesce(json_extract($quotas, '$.' || status)::INTEGER, 0)
        ORDER BY status, run_id, seed_id, sample_id""", quotas=json.dumps(quotas))
    ids = [s["sample_id"] for s in picked]
    turns: dict[str, list[dict]] = defaultdict(list)
    for row in data.dicts("""SELECT sample_id, turn, role, content, tool_calls, tool_call_id, name FROM messages
                             WHERE sample_id IN (SELECT unnest($ids)) ORDER BY sample_id, turn""", ids=ids):
        row["content"] = _clip(_readable_tool_result(row["content"]) if row["role"] == "tool" else row["content"] or "")
        row["tool_calls"] = _clip(json.dumps(json.loads(row["tool_calls"]), indent=2)) if row["tool_calls"] else None
        turns[row["sample_id"]].append(row)
    verdicts: dict[str, list[dict]] = defaultdict(list)
    for row in data.dicts("""SELECT sample_id, verifier, turn, outcome, score, detail FROM verdicts
                             WHERE sample_id IN (SELECT unnest($ids)) ORDER BY sample_id, rowid""", ids=ids):
        row["detail"] = _clip(row["detail"] or "")
        verdicts[row["sample_id"]].append(row)
    for sample in picked:
        sample["turns"] = turns[sample["sample_id"]]
        sample["verdicts"] = verdicts[sample["sample_id"]]
        sample["payload"] = _clip(json.dumps(json.loads(sample["payload"]), indent=2, ensure_ascii=False))
        first_user = next((t["content"] for t in sample["turns"] if t["role"] == "user"), "")
        sample["headline"] = _short(first_user or sample["reason"] or "", 160)
    total = sum(counts.values())
    shown = ", ".join(f"{len([s for s in picked if s['status'] == status])} of {n} {status}"
                      for status, n in sorted(counts.items()))
    note = (f"All {total} samples." if len(picked) == total else
            f"Showing {len(picked)} of {total} samples ({shown}), picked evenly across statuses; "
            "`synthgraph export` or `synthgraph sql` reach the rest.")
    return picked, note


def _readable_tool_result(content: str | None) -> str:
    """A tool's JSON result indented, so retrieved passages and records read as lines, not one long string."""
    try:
        return json.dumps(json.loads(content or ""), indent=2, ensure_ascii=False)
    except ValueError:
        return content or ""


def _share(counts: dict[str, int], budget: int) -> dict[str, int]:
    """Split budget among statuses as evenly as their counts allow (a small status gets all of its samples)."""
    quotas, left = {}, budget
    for i, status in enumerate(sorted(counts, key=counts.get)):
        quotas[status] = min(counts[status], left // (len(counts) - i))
        left -= quotas[status]
    return quotas


# --- small text helpers ------------------------------------------------------------------------------------------


def _clip(text: str, limit: int = MAX_TEXT_CHARS) -> str:
    if len(text) <= limit:
        return text
    return text[:limit] + f"\n… ({len(text) - limit} more characters; see synthgraph sql)"


def _short(text: str, limit: int) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "x"


def _round(value: float | None, digits: int = 3) -> float | None:
    return None if value is None else round(value, digits)

