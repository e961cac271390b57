"""The run report: one offline HTML file whose sections, counts and escaping come from the store."""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
import subprocess
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from typer.testing import CliRunner

from synthgraph.graphs.cli import app
from synthgraph.store.db import Store
from synthgraph.store.report import ReportError, distinct_n, write_report
from synthgraph.store.rows import AgentCallRow, MessageRow, RunRow, SampleRow, SeedOutcome, SeedRow, VerdictRow

EVIL = "<script>alert('pwned')</script><img src=x onerror=alert(1)>"
T0 = datetime(2026, 1, 1, 12, 0, tzinfo=timezone.utc)


def call(run_id: str, seed_id: str, sample_id: str | None, role: str, n: int, *, seconds: float) -> AgentCallRow:
    return AgentCallRow(call_id=f"{run_id}-{seed_id}-{role}-{n}", run_id=run_id, seed_id=seed_id, sample_id=sample_id,
                        role=role, node=role, model="fake", prompt_hash="h", prompt=[{"role": "user", "content": "q"}],
                        completion="a", prompt_tokens=50, completion_tokens=20 + n, latency_s=2.0,
                        finish_reason="stop", sampling={}, error=None, started_at=T0 + timedelta(seconds=seconds))


def reasoning_seed(run_id: str, i: int) -> SeedOutcome:
    """Seed i: attempt 0 verified and judged 8 (accepted); attempt 1 fails math_verify; on odd seeds attempt 2
    verifies but the critic gives 3 (rejected at the critic). Seed 3's answer carries a script tag."""
    seed_id = f"s{i}"
    outcome = SeedOutcome(run_id=run_id, seed_id=seed_id, status="done")
    attempts = [("passed", 8.0, "accepted"), ("failed", None, "rejected")] + ([("passed", 3.0, "rejected")] if i % 2 else [])
    for k, (math, score, status) in enumerate(attempts):
        sid = f"{run_id}-{seed_id}-a{k}"
        reason = None if status == "accepted" else ("answer 7 does not match 8" if math == "failed"
                                                     else "critic score 3 < 6: sloppy")
        outcome.samples.append(SampleRow(sample_id=sid, run_id=run_id, seed_id=seed_id, group_id=seed_id,
                                         kind="reasoning_trace", status=status, reason=reason, score=score,
                                         payload={"problem": f"problem {i}", "attempt": k}))
        answer = EVIL if i == 3 and k == 0 else f"The answer to problem {i} is found by adding {k} apples.\n#### {i + k}"
        outcome.messages += [MessageRow(sample_id=sid, turn=0, role="user", content=f"What is {i} plus {k} apples?"),
                             MessageRow(sample_id=sid, turn=1, role="assistant", content=answer)]
        outcome.verdicts.append(VerdictRow(sample_id=sid, verifier="math_verify", outcome=math, detail="compared"))
        if score is not None:
            outcome.verdicts.append(VerdictRow(sample_id=sid, verifier="critic", score=score,
                                               outcome="passed" if score >= 6 else "failed", detail="judged"))
        outcome.agent_calls += [call(run_id, seed_id, sid, "solver", k, seconds=10 * i + k),
                                call(run_id, seed_id, sid, "critic", k, seconds=10 * i + k + 3)]
    outcome.agent_calls.append(call(run_id, seed_id, None, "proposer", 0, seconds=10 * i - 5))
    return outcome


@pytest.fixture
def store(tmp_path) -> Path:
    db = tmp_path / "s.duckdb"
    writer = Store(db)
    run_id = "run-a"
    writer.register_run(RunRow(run_id=run_id, name="unit-report", graph="reasoning", recipe={}),
                        [SeedRow(run_id=run_id, seed_id=f"s{i}", position=i, payload={}) for i in range(6)])
    # seeds 0-3 finish, seed 4 crashes, seed 5 stays pending (a run that was stopped)
    writer.write_outcomes([reasoning_seed(run_id, i) for i in range(4)])
    writer.write_outcomes([SeedOutcome(run_id=run_id, seed_id="s4", status="error", error="boom", samples=[
        SampleRow(sample_id="run-a-s4-err", run_id=run_id, seed_id="s4", group_id="s4", kind="seed_error",
                  status="error", reason="RuntimeError: boom")])])
    writer.close()
    return db


def figure_ids(html: str) -> list[str]:
    return re.findall(r'<div id="(fig-[^"]+)" class="plotly-graph-div"', html)


def figure_traces(html: str, figure_id: str) -> list[dict]:
    """The trace list plotly was handed for one figure (the JSON argument after its div id)."""
    start = re.search(r'Plotly\.newPlot\(\s*"' + re.escape(figure_id) + r'",\s*', html).end()
    traces, _ = json.JSONDecoder().raw_decode(html, start)
    return traces


def test_report_has_every_section_and_one_drawn_figure_per_plot(store, tmp_path):
    summary = write_report(store, tmp_path / "r.html")
    html = (tmp_path / "r.html").read_text()
    for section in ("funnel", "verdicts", "scores", "lengths", "diversity", "cleaning", "throughput", "roles", "samples"):
        assert f'<section id="{section}">' in html
    assert figure_ids(html) == summary.figures
    # no dedup/decontamination verdicts yet: their section is a table of zeros, not an empty plot
    assert summary.figures == ["fig-funnel-reasoning", "fig-verdicts", "fig-scores", "fig-lengths", "fig-diversity",
                               "fig-throughput", "fig-roles"]
    assert summary.html_bytes == len(html.encode())


def test_report_counts_match_the_store(store, tmp_path):
    summary = write_report(store, tmp_path / "r.html")
    # 4 seeds × (2 or 3 attempts) = 10 traces, plus the crashed seed's error record
    assert (summary.runs, summary.samples, summary.accepted, summary.samples_shown) == (1, 11, 4, 11)
    html = (tmp_path / "r.html").read_text()
    assert html.count('<details class="sample"') == 11
    assert html.count('data-status="accepted"') == 4 and html.count('data-status="error"') == 1
    seeds, samples = figure_traces(html, "fig-funnel-reasoning")
    assert dict(zip(seeds["y"], seeds["x"])) == {
        "seeds": 6, "seeds run": 5, "seeds finished (no crash)": 4, "seeds with a non-error sample": 4,
        "seeds with an accepted sample": 4}
    # one sample lost to the crash, four at math_verify, two at the critic
    assert list(zip(samples["y"], samples["x"])) == [
        ("samples written", 11), ("generated (no error)", 10), ("passed math_verify", 6), ("passed critic", 4),
        ("accepted", 4)]
    assert "<td>math_verify</td><td class=\"num\">4</td>" in html
    verdicts = {t["name"]: dict(zip(t["y"], t["x"])) for t in figure_traces(html, "fig-verdicts")}
    assert verdicts == {"passed": {"critic": 4, "math_verify": 6}, "failed": {"critic": 2, "math_verify": 4},
                        "unchecked": {"critic": 0, "math_verify": 0}}
    # every generated token shows up once in the tokens/s curve: the rate times the bin width sums to the total
    tokens = figure_traces(html, "fig-throughput")[0]
    width_s = (tokens["x"][1] - tokens["x"][0]) * 60
    # (4 proposer calls × 20) + solver and critic: 2 × (20 + 21) on seeds 0, 2 and 2 × (20 + 21 + 22) on seeds 1, 3
    assert sum(tokens["y"]) * width_s == pytest.approx(4 * 20 + 2 * 82 + 2 * 126)
    # no cleaning verdicts in this store: the section says so and counts zero
    assert "No dedup or decontamination verdicts recorded" in html


def test_a_run_resumed_a_day_later_is_timed_by_its_busy_stretches(store, tmp_path):
    # seed 5, left pending, is finished by a rerun the next day: 12 s of calls after a day of nothing
    late = reasoning_seed("run-a", 5)
    late.agent_calls = [c.model_copy(update={"started_at": c.started_at + timedelta(days=1)}) for c in late.agent_calls]
    writer = Store(store)
    writer.write_outcomes([late])
    writer.close()
    write_report(store, tmp_path / "r.html")
    html = (tmp_path / "r.html").read_text()
    # busy: 42 s (the first calls, -5 .. 37 s) + 12 s (45 .. 57 s, a day later), not the 86,462 s between
    assert re.search(r'<td class="num">54</td>\s*<td class="num">[\d.,]+</td></tr>', html)
    tokens = figure_traces(html, "fig-throughput")[0]
    assert max(tokens["x"]) < 1  # busy minutes: the day in between is not on the clock
    width_s = (tokens["x"][1] - tokens["x"][0]) * 60
    generated = sum(c.completion_tokens for i in range(4) for c in reasoning_seed("run-a", i).agent_calls)
    assert sum(tokens["y"]) * width_s == pytest.approx(generated + sum(c.completion_tokens for c in late.agent_calls))


def test_report_escapes_model_text(store, tmp_path):
    write_report(store, tmp_path / "r.html")
    html = (tmp_path / "r.html").read_text()
    assert EVIL not in html
    assert "&lt;script&gt;alert(&#39;pwned&#39;)&lt;/script&gt;&lt;img src=x onerror=alert(1)&gt;" in html


def test_report_loads_nothing_from_the_network(store, tmp_path):
    write_report(store, tmp_path / "r.html")
    html = (tmp_path / "r.html").read_text()
    assert not re.search(r"<(script|img|link|iframe)[^>]*\s(src|href)\s*=\s*[\"']?(https?:)?//", html, re.I)
    # plotly's config and plotly.js once, then one per figure, then the sample filter
    assert html.count("<script") == 2 + len(figure_ids(html)) + 1
    assert "Plotly.newPlot" in html and len(html) > 3_000_000  # plotly.js is embedded, not linked


def test_report_of_one_run_leaves_the_others_out(store, tmp_path):
    writer = Store(store)
    writer.register_run(RunRow(run_id="run-b", name="other", graph="reasoning", recipe={}),
                        [SeedRow(run_id="run-b", seed_id="s0", position=0, payload={})])
    writer.write_outcomes([reasoning_seed("run-b", 0)])
    writer.close()
    assert write_report(store, tmp_path / "all.html").samples == 13
    assert write_report(store, tmp_path / "b.html", run_id="run-b").samples == 2
    assert "run-a-s0-a0" not in (tmp_path / "b.html").read_text()
    with pytest.raises(ReportError, match="no run 'nope' in this store; runs: run-a, run-b"):
        write_report(store, tmp_path / "x.html", run_id="nope")


def test_sample_table_is_capped_evenly_across_statuses(store, tmp_path):
    summary = write_report(store, tmp_path / "r.html", max_samples=5)
    html = (tmp_path / "r.html").read_text()
    assert summary.samples_shown == 5
    # error has 1 sample, so it keeps it; accepted (4) and rejected (6) share the other 4
    assert [html.count(f'data-status="{s}"') for s in ("error", "accepted", "rejected")] == [1, 2, 2]
    assert "Showing 5 of 11 samples" in html


def test_cleaning_verdicts_are_counted(store, tmp_path):
    writer = Store(store)
    writer.write_outcomes([SeedOutcome(run_id="run-a", seed_id="s0", status="done", verdicts=[
        VerdictRow(sample_id="run-a-s0-a0", verifier="dedup", outcome="passed"),
        VerdictRow(sample_id="run-a-s1-a0", verifier="dedup", outcome="failed", detail="duplicates run-a-s0-a0"),
        VerdictRow(sample_id="run-a-s2-a0", verifier="decontamination", outcome="failed", detail="humaneval/HumanEval/0"),
    ])])
    writer.close()
    assert "fig-cleaning" in write_report(store, tmp_path / "r.html").figures
    html = (tmp_path / "r.html").read_text()
    assert "<td>dedup</td><td class=\"num\">1</td><td class=\"num\">1</td><td class=\"num\">0</td>" in html
    assert "<td>decontamination</td><td class=\"num\">0</td><td class=\"num\">1</td>" in html
    assert "humaneval/HumanEval/0" in html


def test_distinct_n_counts_repeated_ngrams():
    assert distinct_n(["a b a b"], 1) == 0.5
    assert distinct_n(["a b a b"], 2) == pytest.approx(2 / 3)
    assert distinct_n([""], 2) is None


def test_write_report_never_replaces_a_file_without_being_asked(store, tmp_path):
    out = tmp_path / "r.html"
    out.write_text("mine")
    with pytest.raises(ReportError, match="already exists"):
        write_report(store, out)
    assert out.read_text() == "mine"
    write_report(store, out, overwrite=True)
    assert "synthgraph report" in out.read_text()


def test_cli_report_refuses_existing_file_and_missing_folder(store, tmp_path):
    cli = CliRunner()
    out = tmp_path / "r.html"
    result = cli.invoke(app, ["report", "--db", str(store), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert out.exists() and "wrote" in result.output
    again = cli.invoke(app, ["report", "--db", str(store), "--out", str(out)])
    assert again.exit_code == 2
    assert f"{out} already exists: choose another --out, or pass --force" in " ".join(again.output.split())
    assert cli.invoke(app, ["report", "--db", str(store), "--out", str(out), "--force"]).exit_code == 0
    missing = cli.invoke(app, ["report", "--db", str(store), "--out", str(tmp_path / "no" / "r.html")])
    assert missing.exit_code == 2 and "does not exist (create it first)" in " ".join(missing.output.split())
    no_store = cli.invoke(app, ["report", "--db", str(tmp_path / "none.duckdb"), "--out", str(tmp_path / "n.html")])
    assert no_store.exit_code == 2 and "no store at" in no_store.output and not (tmp_path / "n.html").exists()


def test_report_force_never_writes_over_the_store_and_gives_a_files_usual_mode(store, tmp_path):
    before = store.read_bytes()
    onto = CliRunner().invoke(app, ["report", "--db", str(store), "--out", str(store), "--force"])
    assert onto.exit_code == 2 and "is the store itself" in " ".join(onto.output.split())
    assert store.read_bytes() == before
    old_umask = os.umask(0o022)
    try:
        out = write_report(store, tmp_path / "r.html")
    finally:
        os.umask(old_umask)
    assert stat.S_IMODE(out.path.stat().st_mode) == 0o644   # not mkstemp's private 0600


def chromium() -> str | None:
    return next((path for name in ("chromium", "chromium-browser", "google-chrome")
                 if (path := shutil.which(name))), None)


@pytest.mark.browser
def test_report_draws_every_plot_in_a_real_browser(store, tmp_path):
    browser = chromium()
    if browser is None:
        pytest.skip("no chromium binary on PATH (apt-get install -y chromium)")
    summary = write_report(store, tmp_path / "r.html")
    dom = subprocess.run(
        [browser, "--headless", "--no-sandbox", "--disable-gpu", "--virtual-time-budget=15000", "--dump-dom",
         (tmp_path / "r.html").as_uri()],
        capture_output=True, text=True, timeout=120).stdout
    # plotly marks a div it drew with js-plotly-plot and puts its <svg class="main-svg"> layers inside
    drawn = re.findall(r'<div id="(fig-[^"]+)" class="[^"]*js-plotly-plot', dom)
    assert drawn == summary.figures
    assert dom.count('class="main-svg"') >= 2 * len(summary.figures)
    # the filter script ran: it reports how many samples are shown
    assert f"{summary.samples_shown} of {summary.samples_shown} shown" in dom


def test_run_refuses_a_report_path_before_any_model_loads(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("name: unit\ngraph: reasoning\nseeds: {inline: [{problem: 'What is 2+2?', answer: '4'}]}\n")
    existing = tmp_path / "old.html"
    existing.write_text("mine")
    result = CliRunner().invoke(app, ["run", str(recipe), "--db", str(tmp_path / "s.duckdb"), "--report", str(existing)])
    message = " ".join(result.output.split())
    assert result.exit_code == 2 and f"--report: {existing} already exists; choose a new path" in message
    assert existing.read_text() == "mine" and not (tmp_path / "s.duckdb").exists()


def test_report_of_a_run_that_wrote_nothing_yet(tmp_path):
    db = tmp_path / "empty.duckdb"
    writer = Store(db)
    writer.register_run(RunRow(run_id="run-e", name="empty", graph="dialogue", recipe={}),
                        [SeedRow(run_id="run-e", seed_id="s0", position=0, payload={})])
    writer.close()
    summary = write_report(db, tmp_path / "r.html")
    html = (tmp_path / "r.html").read_text()
    assert (summary.samples, summary.samples_shown, summary.figures) == (0, 0, ["fig-funnel-dialogue"])
    assert "No model calls in scope." in html and "No accepted samples in scope." in html


@pytest.fixture
def scripted_runs(monkeypatch):
    """`synthgraph run` on the scripted fake model: the CLI builds its Runner with a fake pool."""
    import functools

    from fakes import ReasoningScript, ScriptedPool

    from synthgraph.graphs import runner

    monkeypatch.setattr(runner, "Runner", functools.partial(runner.Runner, pool=ScriptedPool(ReasoningScript())))


def inline_recipe(tmp_path) -> Path:
    recipe = tmp_path / "r.yaml"
    recipe.write_text("name: unit\ngraph: reasoning\nroles: {solver: {samples: 2}}\n"
                      "seeds: {inline: [{problem: 'What is 6 times 7?', answer: '42'}]}\n")
    return recipe


def test_run_prints_the_command_that_writes_its_report(scripted_runs, tmp_path):
    db = tmp_path / "s.duckdb"
    result = CliRunner().invoke(app, ["run", str(inline_recipe(tmp_path)), "--db", str(db)])
    assert result.exit_code == 0, result.output
    line = next(line for line in result.output.splitlines() if line.startswith("report: "))
    command = line.removeprefix("report: ").split()
    assert command[:3] == ["synthgraph", "report", "--run"] and command[4:] == ["--db", str(db), "--out", "report.html"]
    assert CliRunner().invoke(app, command[1:-1] + [str(tmp_path / "report.html")]).exit_code == 0
    assert (tmp_path / "report.html").exists()


def test_run_with_report_writes_it_after_the_run(scripted_runs, tmp_path):
    out = tmp_path / "run.html"
    result = CliRunner().invoke(app, ["run", str(inline_recipe(tmp_path)), "--db", str(tmp_path / "s.duckdb"),
                                      "--report", str(out)])
    assert result.exit_code == 0, result.output
    assert f"report: {out}" in " ".join(result.output.split())
    assert out.read_text().count('<details class="sample" data-status="accepted"') == 2
