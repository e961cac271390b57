"""`synthgraph ...`: run recipes, query and export the store, inspect runs and the shipped models."""

from __future__ import annotations

import asyncio
import csv
import json
import shlex
import sys
from enum import Enum
from pathlib import Path
from typing import Annotated, get_args

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from synthgraph.store.db import DEFAULT_STORE, StoreError, query, unknown_run
from synthgraph.store.export import ExportFormat, HfRecords, PairFormat

app = typer.Typer(add_completion=False, no_args_is_help=True, help=__doc__)
console = Console(stderr=True)
out = Console()

DbOption = Annotated[Path, typer.Option("--db", help="DuckDB file")]


def _fail(message: str, code: int = 2):
    console.print(f"[red]error:[/red] {message}", highlight=False)
    raise typer.Exit(code)


def _require_run(db: Path, run_id: str | None) -> None:
    """A `--run` that names no run of the store is refused in one line, not answered with nothing."""
    if run_id is None:
        return
    try:
        _, rows = query(db, "SELECT run_id FROM runs ORDER BY created_at")
    except StoreError as exc:
        _fail(str(exc))
    if (problem := unknown_run(run_id, [row[0] for row in rows], where=str(db))) is not None:
        _fail(problem)


def _check_models(recipe) -> None:
    """Every model the recipe's roles use, checked before anything loads (agents.models.preflight)."""
    from synthgraph.agents.models import preflight

    for spec in recipe.model_specs():
        if problem := preflight(spec):
            _fail(problem)


def _one_line(exc: Exception) -> str:
    """A pydantic error as its first message (not the whole dump), anything else as its first line."""
    from pydantic import ValidationError

    if isinstance(exc, ValidationError) and exc.errors():
        return exc.errors()[0]["msg"].removeprefix("Value error, ")
    return (str(exc).splitlines() or [type(exc).__name__])[0]


def _note(message: str) -> None:
    console.print(f"[yellow]note:[/yellow] {message}", highlight=False)


@app.command()
def run(
    ctx: typer.Context,
    recipe_path: Annotated[Path, typer.Argument(help="recipe YAML, e.g. demos/reasoning.yaml")],
    limit: Annotated[int | None, typer.Option(help="process only the first N seeds", min=1)] = None,
    db: Annotated[Path | None, typer.Option("--db", help="DuckDB file (default: the recipe's, else ./synthgraph.duckdb)")] = None,
    model: Annotated[str | None, typer.Option(help="model spec for every role, e.g. vllm:smollm2-135m")] = None,
    concurrency: Annotated[int | None, typer.Option(
        help="most graph instances in flight, per Ray worker with --ray (the memory guard; engines that report "
             "their queue pace admission below it)", min=1)] = None,
    retry_errors: Annotated[bool, typer.Option(help="also redo seeds that crashed in an earlier run")] = False,
    target_accepted: Annotated[int | None, typer.Option(
        help="run until the store holds N accepted samples of this run (topic seeds are run again as needed)",
        min=1)] = None,
    max_seconds: Annotated[float | None, typer.Option(help="stop starting seeds after this many seconds", min=1)] = None,
    max_seeds: Annotated[int | None, typer.Option(help="start at most this many seeds", min=1)] = None,
    max_tokens: Annotated[int | None, typer.Option(help="stop starting seeds past this many tokens", min=1)] = None,
    grace: Annotated[float, typer.Option(help="seconds seeds in flight get to finish after Ctrl-C / SIGTERM",
                                         min=0)] = 10.0,
    report: Annotated[Path | None, typer.Option("--report", help="write the run's HTML report here afterwards")] = None,
    ray: Annotated[str | None, typer.Option(
        "--ray", metavar="ADDRESS", help="spread the seeds over Ray workers, one engine each: the head's HOST:PORT, "
                                         "ray://HOST:PORT, auto (this machine's cluster / RAY_ADDRESS) or local "
                                         "(a Ray of its own here)")] = None,
    ray_workers: Annotated[int | None, typer.Option(
        help="with --ray: workers to start (default: one per node; on GPUs one per tensor-parallel group)",
        min=1)] = None,
    ray_tensor_parallel_size: Annotated[int, typer.Option(
        help="with --ray on a GPU cluster: GPUs per worker's engine (vLLM's tensor_parallel_size)", min=1)] = 1,
):
    """Run a recipe; rerunning the same command resumes where it stopped (a seed in flight from its last step)."""
    from pydantic import ValidationError

    from synthgraph.graphs.ray_workers import RayOptions, RayUnavailable
    from synthgraph.graphs.recipe import RecipeError, load_recipe
    from synthgraph.graphs.runner import Runner
    from synthgraph.tools.dedup import BenchmarkError
    from synthgraph.store.report import ReportError, ReportExists, check_destination, write_report
    from synthgraph.tools.retrieval import RetrievalError

    if report is not None:
        try:  # before the model loads, not after a long run
            check_destination(report)
        except ReportExists as exc:
            _fail(f"--report: {exc}; choose a new path (the report of an earlier run is never replaced)")
        except ReportError as exc:
            _fail(f"--report: {exc}")

    if ray is None and (ray_workers is not None or ray_tensor_parallel_size != 1):
        _fail("--ray-workers and --ray-tensor-parallel-size go with --ray ADDRESS (e.g. --ray auto)")
    ray_options = None if ray is None else RayOptions(address=ray, workers=ray_workers,
                                                      tensor_parallel_size=ray_tensor_parallel_size)
    try:
        recipe, seeds = load_recipe(recipe_path)
    except RecipeError as exc:
        _fail(_one_line(exc))
    overrides = {name: value for name, value in (("model", model), ("concurrency", concurrency)) if value is not None}
    if overrides:
        try:
            recipe = recipe.with_overrides(**overrides)
        except ValidationError as exc:
            problems = []
            for error in exc.errors():  # a whole-recipe check has no field path: it is about the overrides
                name = str(error["loc"][0]) if error["loc"] else ", --".join(overrides)
                problems.append(f"--{name} {overrides.get(name, '')}".rstrip() + ": "
                                + error["msg"].removeprefix("Value error, "))
            _fail("; ".join(problems))
    budget = {"target_accepted": target_accepted, "max_seconds": max_seconds, "max_seeds": max_seeds,
              "max_tokens": max_tokens}
    recipe.budget = recipe.budget.model_copy(update={k: v for k, v in budget.items() if v is not None})
    _check_models(recipe)
    if db is None and recipe.store is not None and not recipe.store.is_absolute():
        beside, here = recipe.resolve(recipe.store), Path.cwd() / recipe.store
        if here.exists() and not beside.exists() and here.resolve() != beside.resolve():
            _note(f"store: {recipe.store} is found beside the recipe ({beside}), and this run starts it there; the "
                  f"store at {here} (where earlier versions looked) is left alone: pass --db {here} to go on with it")

    progress = Progress(
        SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
        TextColumn("[green]{task.fields[accepted]} accepted[/] [yellow]{task.fields[rejected]} rejected[/] "
                   "[red]{task.fields[errors]} errors[/]  {task.fields[tok_s]:.1f} tok/s"),
        TimeElapsedColumn(), console=console, transient=False,
    )
    task = progress.add_task("loading model", total=None, accepted=0, rejected=0, errors=0, tok_s=0.0)

    def on_update(tally):
        description = "generating" if tally.first_call_at is not None else "loading model"
        progress.update(task, description=description, total=tally.seeds_total - tally.seeds_skipped,
                        completed=tally.seeds_done + tally.seeds_failed, accepted=tally.accepted,
                        rejected=tally.rejected, errors=tally.errors, tok_s=tally.tokens_per_s)

    runner = Runner(recipe, seeds, store_path=db, recipe_path=recipe_path, limit=limit,
                    retry_errors=retry_errors, on_update=on_update, handle_signals=True, grace_s=grace,
                    ray=ray_options)
    with progress:
        try:
            result = asyncio.run(runner.run())
        except (StoreError, RetrievalError, BenchmarkError, RayUnavailable) as exc:  # e.g. an unreadable corpus
            _fail(str(exc))
    print_run_summary(result, recipe.name, rerun=_command_line(ctx))
    if report is None:  # one unwrapped line, so it can be copied as it is
        out.print(f"report: synthgraph report --run {result.run_id} --db {result.store_path} --out report.html",
                  soft_wrap=True, markup=False, highlight=False)
    else:
        try:
            written = write_report(result.store_path, report, run_id=result.run_id)
        except (ReportError, StoreError) as exc:
            _fail(f"--report: {exc}")
        out.print(f"report: {written.path} ({written.html_bytes / 1e6:.1f} MB, {written.seconds:.1f} s)",
                  soft_wrap=True, highlight=False)
    if result.exit_code:
        raise typer.Exit(result.exit_code)


def _command_line(ctx: typer.Context) -> str:
    """The command as given, options with their values: what to type to go on. Without `--report`: the report
    this run wrote is never replaced, so the same path would stop the next run before it starts."""
    words = ["synthgraph", ctx.info_name or "run"]
    for param in ctx.command.params:
        value = ctx.params.get(param.name)
        if param.name == "report":
            continue
        if param.param_type_name == "argument":
            words.append(str(value))
        elif value is not None and value != param.default and value is not False:
            words.append(param.opts[0] if value is True else f"{param.opts[0]}={value}")
    return shlex.join(words)


def print_run_summary(result, name: str, *, rerun: str) -> None:
    """The closing table: what was done, why the run stopped, every crashed seed, and the command to go on."""
    tally = result.tally
    summary = Table(title=f"run {result.run_id} ({name})", show_header=False)
    done_before = tally.seeds_skipped - tally.seeds_crashed_before - tally.cleaning.contaminated_seeds
    summary.add_row("seeds", f"{tally.seeds_done} done, {tally.seeds_failed} crashed, "
                             f"{done_before} already done earlier"
                             + (f", {tally.seeds_crashed_before} crashed earlier (--retry-errors redoes them)"
                                if tally.seeds_crashed_before else "")
                             + (f", {tally.cleaning.contaminated_seeds} contaminated (not run)"
                                if tally.cleaning.contaminated_seeds else "")
                             + f", of {tally.seeds_total}"
                             + (f"; {tally.seeds_resumed} resumed mid-seed" if tally.seeds_resumed else "")
                             + (f"; {tally.seeds_abandoned} abandoned (left pending)" if tally.seeds_abandoned else "")
                             + (f"; {tally.seeds_requeued} redone after their Ray worker died"
                                if tally.seeds_requeued else ""))
    if tally.workers:
        summary.add_row("ray", f"{tally.workers} worker{'s' if tally.workers != 1 else ''}")
    summary.add_row("samples", f"{tally.accepted} accepted, {tally.rejected} rejected, {tally.errors} errors")
    cleaning = tally.cleaning
    summary.add_row("cleaning", f"{cleaning.contaminated_seeds} contaminated seeds skipped, {cleaning.contaminated} "
                                f"contaminated and {cleaning.duplicates} duplicate samples ({cleaning.flagged} "
                                "of them flagged, the rest rejected)")
    for hint in cleaning.missing_benchmarks + cleaning.unchecked_items:
        summary.add_row("not checked", f"[yellow]{hint}[/]")
    summary.add_row("tokens", f"{tally.prompt_tokens} prompt, {tally.completion_tokens} generated in {tally.calls} calls")
    summary.add_row("throughput", f"{tally.tokens_per_s:.1f} generated tok/s over {tally.generation_s:.0f} s "
                                  f"(model load {tally.load_s:.0f} s)")
    if tally.greedy_warning:
        summary.add_row("sampling", f"[yellow]{escape(tally.greedy_warning)}[/]")
    if result.target is not None:
        summary.add_row("target", f"{result.accepted_total} of {result.target} accepted samples stored")
    if result.stop is not None:
        colour = "red" if result.exit_code else "yellow"
        summary.add_row("stopped", f"[{colour}]{escape(result.stop.message)}: no new seeds were started[/]")
    if result.target_missed:
        summary.add_row("target", f"[yellow]{escape(result.target_missed)}[/]")
    if result.crashed:
        shown = ", ".join(f"{seed_id} ({(error or '')[:80]})" for seed_id, error in result.crashed[:5])
        more = f" and {len(result.crashed) - 5} more" if len(result.crashed) > 5 else ""
        summary.add_row("crashed", f"[red]{len(result.crashed)} seeds crashed (this run or earlier): "
                                   f"{escape(shown)}{more}[/]")
    summary.add_row("store", str(result.store_path.resolve()))
    out.print(summary)
    if result.earlier is not None:
        earlier, count = result.earlier
        _note(f"this is a new run: the recipe or its seeds changed since run {earlier}, which had done {count} of "
              "these seeds; this run makes them afresh, and both runs' samples stay in the store (export --run "
              "picks one)")
    if result.stop is not None and result.stop.kind == "server":
        console.print(f"[red]error:[/red] the model server is down: {escape(result.stop.message)}; "
                      "the seeds it could not answer are left pending", highlight=False)
    if result.pending and result.stop is not None and result.stop.kind != "target":
        console.print(f"{result.pending} seeds left pending; to resume, run: {rerun}", highlight=False,
                      markup=False, soft_wrap=True)
    if result.crashed:
        retry = rerun if "--retry-errors" in rerun else f"{rerun} --retry-errors"
        console.print(f"to retry the crashed seeds, run: {retry}", highlight=False, markup=False, soft_wrap=True)


class OutputFormat(str, Enum):
    table = "table"
    csv = "csv"
    json = "json"


@app.command()
def sql(
    statement: Annotated[str, typer.Argument(help="SQL, e.g. \"SELECT status, count(*) FROM samples GROUP BY 1\"")],
    db: DbOption = DEFAULT_STORE,
    format: Annotated[OutputFormat, typer.Option("--format", "-f")] = OutputFormat.table,
    write: Annotated[bool, typer.Option("--write", help="open the store read-write (default: read-only)")] = False,
):
    """Query the store. Tables: runs, seeds, samples, messages, verdicts, agent_calls, documents, chunks; views: chat_samples, run_stats, preference_pairs."""
    if write and not db.exists():  # a mistyped --db would otherwise be a new, empty store
        _fail(f"no store at {db}: --write changes a store a run made; check --db")
    try:
        columns, rows = query(db, statement, read_only=not write, notice=_note)
    except StoreError as exc:
        _fail(str(exc))
    if format is OutputFormat.csv:
        writer = csv.writer(sys.stdout)
        writer.writerow(columns)
        writer.writerows(rows)
    elif format is OutputFormat.json:
        out.print_json(json.dumps([dict(zip(columns, row)) for row in rows], default=str))
    else:
        table = Table()
        for column in columns:
            table.add_column(Text(column))
        for row in rows:  # stored text as it is: Text is never read as rich markup ([INST], list[int])
            table.add_row(*(Text("NULL" if v is None else str(v)) for v in row))
        out.print(table)


# The formats are the store's (store/export.py); an Enum of them is what every supported typer lists as choices.
ExportChoice = Enum("ExportChoice", {name: name for name in (*get_args(ExportFormat), *get_args(PairFormat), "hf")},
                    type=str)
HfChoice = Enum("HfChoice", {name: name for name in get_args(HfRecords)}, type=str)


@app.command()
def export(
    out_path: Annotated[Path, typer.Option("--out", help="file to write (a folder for --format hf)")],
    format: Annotated[ExportChoice, typer.Option("--format")] = ExportChoice.jsonl,
    status: Annotated[str | None, typer.Option(help="samples: accepted, rejected, error or all (default: accepted)")
                      ] = None,
    run_id: Annotated[str | None, typer.Option("--run", help="only this run")] = None,
    exclude_flagged: Annotated[bool, typer.Option(
        help="leave out samples (and pairs with a side) flagged by dedup / decontamination")] = False,
    source: Annotated[str | None, typer.Option(help="dpo / kto (and hf of them): only pairs of this source (verified, judged, "
                                                    "critique_revision)")] = None,
    records: Annotated[HfChoice, typer.Option(help="hf: which records the folder holds")] = HfChoice.chat,
    license: Annotated[str | None, typer.Option(help="hf: the card's license (default: the models' own when all "
                                                     "are shipped models that share one, else 'other')")] = None,
    push: Annotated[str | None, typer.Option(metavar="REPO", help="hf: also push to the Hub as this dataset repo "
                                                                  "(needs huggingface_hub and a token)")] = None,
    db: DbOption = DEFAULT_STORE,
    force: Annotated[bool, typer.Option("--force", help="replace --out if it exists (a file; an hf folder never)")
                     ] = False,
):
    """Write samples as chat records: OpenAI {"messages": [...], "tools": [...]} plus metadata (jsonl, parquet),
    or ShareGPT {"conversations": [...], "system", "tools"} (sharegpt, JSON lines); preference pairs as TRL's
    conversational DPO {"prompt", "chosen", "rejected"} or KTO {"prompt", "completion", "label"} JSON lines;
    or any of these as a `datasets` folder with a dataset card (hf; --records chat|dpo|kto)."""
    from synthgraph.store.export import export_hf, export_pairs, export_samples
    from synthgraph.store.pairs import PAIR_SOURCES

    if status not in (None, "accepted", "rejected", "error", "all"):
        _fail(f"--status must be accepted, rejected, error or all (got {status!r})")
    if source is not None and source not in PAIR_SOURCES:
        _fail(f"--source must be one of {', '.join(PAIR_SOURCES)} (got {source!r})")
    if records is not HfChoice.chat and format.value != "hf":
        _fail(f"--records picks what a --format hf folder holds: for {records.value} records in a file, use "
              f"--format {records.value}")
    pairs_wanted = format.value in get_args(PairFormat) or (format.value == "hf" and records.value != "chat")
    if source is not None and not pairs_wanted:
        _fail("--source picks preference pairs: use it with --format dpo or kto, or --format hf --records dpo|kto")
    if status is not None and pairs_wanted:
        _fail("--status picks samples: a preference pair is always an accepted and a rejected one (--source picks "
              "pairs)")
    if push is not None and format.value != "hf":
        _fail("--push needs --format hf (it pushes the dataset folder with its card)")
    if license is not None and format.value != "hf":
        _fail("--license is the dataset card's, and only --format hf writes a card")
    _require_run(db, run_id)
    wanted = None if status == "all" else status or "accepted"
    try:
        if format.value in get_args(PairFormat):
            count = export_pairs(db, out_path, format=format.value, run_id=run_id, source=source,
                                 exclude_flagged=exclude_flagged, force=force)
            out.print(f"wrote {count} {format.value} records to {out_path}")
            return
        if format.value == "hf":
            if out_path.exists() and (not out_path.is_dir() or any(out_path.iterdir())):
                _fail(f"--out {out_path} exists and is not an empty folder: name a new folder for the dataset"
                      + (" (--force never replaces a folder)" if force else ""))
            dataset, _ = export_hf(db, out_path, records=records.value, status=wanted, run_id=run_id, source=source,
                                   exclude_flagged=exclude_flagged, license=license or _models_license(db, run_id),
                                   notice=_note)
            out.print(f"wrote {len(dataset)} {records.value} records to {out_path} (datasets folder + README.md card)")
            if push is not None:
                _push_to_hub(out_path, push)
            return
        count = export_samples(db, out_path, format=format.value, status=wanted, run_id=run_id,
                               exclude_flagged=exclude_flagged, force=force, notice=_note)
    except StoreError as exc:
        _fail(str(exc))
    out.print(f"wrote {count} samples to {out_path}")


def _models_license(db: Path, run_id: str | None) -> str:
    """The license the card states: the models' own, when every model of the run is a shipped model and they agree."""
    from synthgraph.agents.shipped_models import SHIPPED

    _, rows = query(db, "SELECT DISTINCT model FROM agent_calls WHERE $run IS NULL OR run_id = $run", {"run": run_id})
    licenses = {SHIPPED[name].license.lower() if name in SHIPPED else None
                for (model,) in rows for name in [model.removeprefix("vllm:")]}
    return licenses.pop() if len(licenses) == 1 and None not in licenses else "other"


def _push_to_hub(folder: Path, repo: str) -> None:
    """Push the exported folder (data, then its card) to a Hub dataset repo; needs a token (HF_TOKEN or login)."""
    try:
        from datasets import load_from_disk
        from huggingface_hub import DatasetCard, get_token
    except ImportError:
        _fail("--push needs huggingface_hub and datasets: pip install huggingface_hub datasets")
    if get_token() is None:
        _fail("--push needs a Hugging Face token: set HF_TOKEN or run `hf auth login`")
    load_from_disk(str(folder)).push_to_hub(repo, private=True)
    card = DatasetCard((folder / "README.md").read_text())
    pushed = DatasetCard.load(repo, repo_type="dataset")  # push_to_hub wrote dataset_info / configs: keep them
    for key in ("dataset_info", "configs"):
        if key in pushed.data.to_dict():
            setattr(card.data, key, pushed.data.to_dict()[key])
    card.push_to_hub(repo, repo_type="dataset")
    out.print(f"pushed to https://huggingface.co/datasets/{repo} (private)")


@app.command()
def pairs(db: DbOption = DEFAULT_STORE, run_id: Annotated[str | None, typer.Option("--run", help="only this run")] = None):
    """Count the preference pairs in the store per source (verified, judged, critique_revision); the pairs
    themselves are the `preference_pairs` view (synthgraph sql) and `synthgraph export --format dpo|kto`."""
    from synthgraph.store.pairs import pair_counts

    _require_run(db, run_id)
    try:
        columns, rows = pair_counts(db, run_id=run_id)
    except StoreError as exc:
        _fail(str(exc))
    if not rows:
        out.print("no preference pairs" + (f" in run {run_id}" if run_id else "") + ": a pair needs an accepted and "
                  "a rejected sample of the same prompt (reasoning, code, tool_use, judged_pairs, critique_revise)")
        return
    table = Table(*columns, title="preference pairs")
    for row in rows:
        table.add_row(*(Text("" if v is None else str(v)) for v in row))
    out.print(table)


@app.command()
def stats(db: DbOption = DEFAULT_STORE, run_id: Annotated[str | None, typer.Option("--run")] = None):
    """Per run: yield, verdict mix, token totals, mean latency per role."""
    from synthgraph.store.stats import run_statistics

    _require_run(db, run_id)
    try:
        report = run_statistics(db, run_id=run_id, notice=_note)
    except StoreError as exc:
        _fail(str(exc))
    if not report:
        out.print("no runs in this store yet")
    for section, (columns, rows) in report.items():
        table = Table(*columns, title=section)
        for row in rows:
            table.add_row(*(Text("" if v is None else str(v)) for v in row))
        out.print(table)


@app.command()
def models(prepare: Annotated[str | None, typer.Option(help="convert this shipped model now")] = None):
    """List the models whose weights ship as PyPI packages; --prepare NAME converts one for vLLM."""
    from synthgraph.agents import shipped_models

    if prepare is not None:
        try:
            path = shipped_models.prepare_model(prepare, progress=lambda msg: console.print(msg))
        except (ValueError, RuntimeError) as exc:
            _fail(str(exc))
        out.print(f"{prepare} ready at {path}")
        return
    table = Table("name", "installed", "prepared", "path", "description")
    for status in shipped_models.model_status():
        table.add_row(status.name, "yes" if status.installed else "no", "yes" if status.prepared else "no",
                      str(status.path or ""), status.description)
    out.print(table)


@app.command()
def validate(recipe_path: Annotated[Path, typer.Argument(help="recipe YAML")]):
    """Check a recipe, its seeds and its models (installed, in the cache, or served) without loading any model."""
    from synthgraph.graphs.recipe import RecipeError, load_recipe

    try:
        recipe, seeds = load_recipe(recipe_path)
    except RecipeError as exc:
        _fail(str(exc))
    _check_models(recipe)
    out.print(f"recipe {recipe_path}: ok ({recipe.graph}, {len(seeds)} seeds, run id {recipe.run_id(seeds)})")


@app.command()
def ingest(
    paths: Annotated[list[str], typer.Argument(help="files, directories (.txt .md .html .jsonl) or a built-in corpus: pydoc-topics")],
    corpus: Annotated[str | None, typer.Option(help="corpus name (default: the built-in corpus's name)")] = None,
    db: DbOption = DEFAULT_STORE,
    max_chars: Annotated[int, typer.Option(help="largest chunk, in characters", min=100)] = 1200,
    overlap: Annotated[int, typer.Option(help="characters of the previous chunk repeated at the start of the next", min=0)] = 150,
):
    """Load documents into the store's retrieval corpus and rebuild its full-text index; re-running is a no-op."""
    from synthgraph.store.db import connect
    from synthgraph.tools.retrieval import BUILTIN_CORPORA, RetrievalError, builtin_documents, ingest_documents, load_documents

    builtin = [p for p in paths if p in BUILTIN_CORPORA and not Path(p).exists()]
    if corpus is None:
        if len(builtin) != len(paths) or len(set(builtin)) != 1:
            _fail("--corpus NAME is required (it names the document set a recipe retrieves from)")
        corpus = builtin[0]
    if overlap > max_chars // 2:
        _fail(f"--overlap must be at most half of --max-chars ({max_chars // 2}), got {overlap}")

    def documents():
        for path in paths:
            yield from builtin_documents(path) if path in builtin else load_documents([path])

    try:
        con = connect(db, read_only=False)
    except StoreError as exc:
        _fail(str(exc))
    try:
        report = ingest_documents(con, documents(), corpus=corpus, max_chars=max_chars, overlap=overlap)
        chunks, docs = con.execute("SELECT count(*), count(DISTINCT doc_id) FROM chunks WHERE corpus = ?", [corpus]).fetchone()
    except (RetrievalError, ValueError) as exc:
        _fail(str(exc))
    finally:
        con.close()
    summary = Table(title=f"ingest into corpus {corpus!r}", show_header=False)
    summary.add_row("documents", f"{report.documents_added} added, {report.documents_replaced} replaced, "
                                 f"{report.documents_unchanged} unchanged")
    summary.add_row("chunks", f"{report.chunks_added} added, {report.chunks_removed} removed")
    for source in report.replaced_sources[:10]:
        summary.add_row("replaced", source)
    summary.add_row("corpus now", f"{docs} documents, {chunks} chunks")
    summary.add_row("time", f"{report.seconds:.2f} s (full-text index {report.index_seconds:.2f} s)")
    summary.add_row("store", str(Path(db).resolve()))
    out.print(summary)


@app.command()
def search(
    query_text: Annotated[str, typer.Argument(metavar="QUERY", help="words to look for (BM25)")],
    corpus: Annotated[str | None, typer.Option(help="only this corpus")] = None,
    k: Annotated[int, typer.Option("-k", help="how many chunks", min=1)] = 5,
    db: DbOption = DEFAULT_STORE,
):
    """Show the chunks that best match a query, best first (read-only)."""
    from synthgraph.store.db import connect
    from synthgraph.tools.retrieval import RetrievalError, corpora, search as search_chunks

    if not Path(db).exists():
        _fail(f"no store at {db}: ingest documents first (synthgraph ingest PATH... --corpus NAME --db {db})")
    try:
        con = connect(db, read_only=True)
    except StoreError as exc:
        _fail(str(exc))
    try:
        hits = search_chunks(con, query_text, k, corpus=corpus)
        if not hits and corpus is not None and corpus not in (known := corpora(con)):
            _fail(f"no corpus {corpus!r} in {db}; have: {', '.join(known)}")
    except RetrievalError as exc:
        _fail(str(exc))
    finally:
        con.close()
    if not hits:
        out.print("no matching chunks (a query of only stopwords or punctuation matches nothing)")
    for rank, hit in enumerate(hits, 1):
        where = f"{hit.title} > {hit.heading}" if hit.heading and hit.heading != hit.title else hit.title
        out.print(f"[bold]{escape(f'{rank}. {where}')}[/bold]  "
                  f"[dim]{escape(f'{hit.score:.3f}  {hit.corpus}  {hit.source}  {hit.chunk_id}')}[/dim]",
                  highlight=False)
        out.print(hit.text, markup=False, highlight=False)
        out.print()


class CleanText(str, Enum):
    user = "user"
    assistant = "assistant"
    conversation = "conversation"


class CleanAction(str, Enum):
    flag = "flag"
    reject = "reject"


def _print_findings(title: str, found, action: CleanAction, what: str) -> None:
    rejected = f", {found.rejected} samples rejected" if action is CleanAction.reject else ""
    out.print(f"{title}: {len(found.findings)} of {found.checked} accepted samples "
              f"({found.new_verdicts} new verdicts, {action.value}{rejected})", highlight=False, soft_wrap=True)
    if not found.findings:
        return
    table = Table("sample", what, "score")
    for sample_id, other, score in found.findings[:20]:
        table.add_row(sample_id, other, f"{score:.2f}")
    if len(found.findings) > 20:
        table.add_row("...", f"{len(found.findings) - 20} more: synthgraph sql \"SELECT * FROM verdicts WHERE "
                             f"verifier = '{title}'\"", "")
    out.print(table)


@app.command()
def dedup(
    run_id: Annotated[str | None, typer.Option("--run", help="only this run (default: every run, across runs)")] = None,
    db: DbOption = DEFAULT_STORE,
    threshold: Annotated[float, typer.Option(help="estimated Jaccard similarity of word shingles", min=0.01, max=1.0)] = 0.8,
    text: Annotated[CleanText, typer.Option(help="which turns are compared")] = CleanText.user,
    action: Annotated[CleanAction, typer.Option(help="flag: add a verdict only; reject: also reject the sample")] = CleanAction.flag,
):
    """Find near-duplicate accepted samples in a store and record a `dedup` verdict on each later copy, naming the
    first; nothing is deleted, and a rerun adds nothing new. `export --exclude-flagged` then leaves them out;
    `--action reject` also rejects the copies an earlier pass (or the run) flagged."""
    from synthgraph.graphs.cleaning import dedup_store
    from synthgraph.store.db import Store

    if not Path(db).exists():
        _fail(f"no store at {db}: run a recipe first or pass --db PATH")
    _require_run(db, run_id)
    try:
        store = Store(db)
    except StoreError as exc:
        _fail(str(exc))
    try:
        found = dedup_store(store, run_id=run_id, threshold=threshold, text=text.value, action=action.value)
    finally:
        store.close()
    _print_findings("dedup", found, action, "duplicate of")


@app.command()
def decontaminate(
    run_id: Annotated[str | None, typer.Option("--run", help="only this run (default: every run)")] = None,
    db: DbOption = DEFAULT_STORE,
    benchmarks: Annotated[str | None, typer.Option(help="comma-separated: humaneval, mt-bench, bfcl, PATH:FIELD "
                                                        "(default: every built-in set installed)")] = None,
    text: Annotated[CleanText, typer.Option(help="which turns are checked")] = CleanText.conversation,
    action: Annotated[CleanAction, typer.Option(help="flag: add a verdict only; reject: also reject the sample")] = CleanAction.flag,
):
    """Check the accepted samples of a store for n-gram overlap with evaluation sets and record a
    `decontamination` verdict on each that overlaps; nothing is deleted, and a rerun adds nothing new.
    `--action reject` also rejects the samples an earlier pass (or the run) flagged."""
    from synthgraph.graphs.cleaning import decontaminate_store
    from synthgraph.store.db import Store
    from synthgraph.tools.dedup import BenchmarkError, Decontaminator

    if not Path(db).exists():
        _fail(f"no store at {db}: run a recipe first or pass --db PATH")
    _require_run(db, run_id)
    try:
        decontaminator = Decontaminator([b.strip() for b in benchmarks.split(",") if b.strip()]
                                        if benchmarks is not None else None).load()
    except BenchmarkError as exc:
        _fail(str(exc))
    for hint in decontaminator.missing + decontaminator.unchecked:
        console.print(f"[yellow]not checked:[/yellow] {hint}", highlight=False)
    try:
        store = Store(db)
    except StoreError as exc:
        _fail(str(exc))
    try:
        found = decontaminate_store(store, decontaminator, run_id=run_id, text=text.value, action=action.value)
    finally:
        store.close()
    _print_findings("decontamination", found, action, "benchmark item")
@app.command()
def report(
    out_path: Annotated[Path, typer.Option("--out", help="HTML file to write (its folder must exist)")],
    run_id: Annotated[str | None, typer.Option("--run", help="only this run (default: every run in the store)")] = None,
    db: DbOption = DEFAULT_STORE,
    samples: Annotated[int, typer.Option(help="most samples to include in the browsable table", min=0)] = 500,
    force: Annotated[bool, typer.Option("--force", help="replace --out if it exists")] = False,
):
    """Write one self-contained HTML report (plots + browsable samples) that opens offline."""
    from synthgraph.store.report import ReportError, ReportExists, write_report

    try:
        written = write_report(db, out_path, run_id=run_id, max_samples=samples, overwrite=force)
    except ReportExists as exc:
        _fail(f"{exc}: choose another --out, or pass --force to replace it")
    except (ReportError, StoreError) as exc:
        _fail(str(exc))
    out.print(f"wrote {written.path}: {written.runs} run(s), {written.samples} samples ({written.samples_shown} "
              f"shown), {len(written.figures)} plots, {written.html_bytes / 1e6:.1f} MB in {written.seconds:.1f} s",
              soft_wrap=True, highlight=False)


if __name__ == "__main__":
    app()
