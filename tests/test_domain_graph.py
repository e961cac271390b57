"""The grounded-QA graph's stages and routing over a small hand-made corpus, driven by a scripted chat model; the
corpus ingested at run start and the rows in DuckDB through the runner and the CLI."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from fakes import DomainScript, ScriptedPool, cite_best, decline, grounded_answer, offered_citations, search_again
from readback import rows
from typer.testing import CliRunner

from synthgraph.agents.domain_roles import action_schema, for_json_writers, longest_shared_run, question_problems
from synthgraph.graphs import domain
from synthgraph.graphs.cli import app
from synthgraph.graphs.domain import DomainSeed
from synthgraph.graphs.recipe import RecipeError, load_recipe, parse_recipe
from synthgraph.graphs.runner import Runner
from synthgraph.store.db import Store

ROOT = Path(__file__).resolve().parents[1]

# The README's query: every answer with the passages it cites.
CITED_PASSAGES_SQL = """
WITH cited AS (
    SELECT sample_id, status, payload->>'question' AS question, payload->>'answer' AS answer,
           unnest(from_json(payload->'citations', '["varchar"]')) AS chunk_id
    FROM samples WHERE kind = 'grounded_qa')
SELECT cited.question, cited.answer, cited.status, d.title, c.heading, c.chunk_id, c.text AS passage
FROM cited JOIN chunks c USING (chunk_id) JOIN documents d USING (doc_id)
ORDER BY cited.sample_id, c.chunk_id
"""

DOCS = {
    "kettle.md": "# Kettle guide\n\n## Boiling\n\nThe Aurora kettle boils one litre of water in 210 seconds. Its "
                 "heating element is rated at 2200 watts. It switches off by itself when the water boils.\n\n"
                 "## Cleaning\n\nDescale the Aurora kettle every 4 weeks with white vinegar. Rinse it three times "
                 "after descaling, then boil fresh water once and pour it away.\n",
    "toaster.md": "# Toaster guide\n\n## Browning\n\nThe Zephyr toaster has seven browning levels. Level 4 gives "
                  "golden toast in 150 seconds.\n\n## Safety\n\nUnplug the Zephyr toaster before removing stuck "
                  "bread. Never reach in with a metal fork.\n",
    "warranty.md": "# Warranty\n\nEvery Aurora and Zephyr appliance carries a warranty of 24 months from the date "
                   "of purchase. Keep the receipt as proof.\n",
}

BOIL_Q = "How long does the Aurora kettle take to boil a litre of water?"
BOIL_A = "The Aurora kettle boils one litre of water in 210 seconds."


@pytest.fixture
def docs(tmp_path) -> Path:
    folder = tmp_path / "docs"
    folder.mkdir()
    for name, text in DOCS.items():
        (folder / name).write_text(text)
    return folder


def recipe_for(docs: Path, **fields):
    return parse_recipe({"name": "qa", "graph": "domain", "seeds": {"inline": [{"kind": "factual"}]},
                         "corpus": {"name": "appliances", "paths": [str(docs)], "min_chunk_chars": 0}, **fields})


@pytest.fixture
def store(tmp_path):
    store = Store(tmp_path / "qa.duckdb")
    yield store
    store.close()


@pytest.fixture
def chunk(store, docs) -> dict[str, str]:
    """Heading -> chunk id of the ingested corpus."""
    domain.prepare_corpus(recipe_for(docs), store)
    return dict(store.con.execute("SELECT heading, chunk_id FROM chunks").fetchall())


def make_context(script: DomainScript, store: Store, docs: Path, **limits) -> domain.DomainContext:
    context = domain.make_context(recipe_for(docs), ScriptedPool(script), store=store)
    for name, value in limits.items():
        setattr(context, name, value)
    return context


def run_graph(seed: DomainSeed, context) -> dict:
    return asyncio.run(domain.graph.ainvoke(domain.initial_state(seed), context=context))


def rows_of(state, context):
    return domain.to_rows(state, run_id="r", seed_id="s", context=context)


def verdicts_of(verdicts) -> dict[str, str]:
    return {v.verifier: v.outcome for v in verdicts}


def test_factual_question_answered_citing_its_retrieved_source_is_accepted(store, docs, chunk):
    script = DomainScript()
    context = make_context(script, store, docs)
    state = run_graph(DomainSeed(kind="factual", chunks=[chunk["Kettle guide > Boiling"]]), context)
    assert state["outcome"] == "accepted" and state["question"] == BOIL_Q
    proposer_prompt = script.prompts["proposer"][0][1].content
    assert "210 seconds" in proposer_prompt and "question about Boiling" in proposer_prompt  # its source chunk
    (attempt,) = state["attempts"]
    assert attempt.citations == [chunk["Kettle guide > Boiling"]] and attempt.searches[0].by == "graph"
    assert attempt.searches[0].query == BOIL_Q
    samples, messages, verdicts, ids = rows_of(state, context)
    assert [s.status for s in samples] == ["accepted"] and samples[0].kind == "grounded_qa"
    assert verdicts_of(verdicts) == {"question": "passed", "citations": "passed", "support": "passed",
                                     "answerability": "passed", "critic": "passed"}
    assert [m.role for m in messages] == ["user", "assistant", "tool", "assistant"]
    (call,) = messages[1].tool_calls
    assert call["function"]["name"] == "search" and json.loads(call["function"]["arguments"]) == {"query": BOIL_Q}
    passages = json.loads(messages[2].content)
    assert messages[2].tool_call_id == call["id"] and passages[0]["chunk_id"] == chunk["Kettle guide > Boiling"]
    assert messages[3].content.startswith(BOIL_A) and chunk["Kettle guide > Boiling"] in messages[3].content
    payload = samples[0].payload
    assert payload["source_chunks"] == payload["citations"] == [chunk["Kettle guide > Boiling"]]
    assert set(payload["citations"]) <= set(payload["retrieved"])
    assert payload["tools"][0]["function"]["name"] == "search" and payload["answerable"] is True
    assert ids == {"k0": samples[0].sample_id}


@pytest.mark.parametrize("threshold, status", [(9, "accepted"), (9.5, "rejected")])
def test_a_critic_score_exactly_at_the_threshold_is_accepted_by_the_router_and_the_rows(store, docs, chunk,
                                                                                       threshold, status):
    context = make_context(DomainScript(), store, docs, critic_threshold=threshold)  # the scripted critic gives 9
    state = run_graph(DomainSeed(kind="factual", chunks=[chunk["Kettle guide > Boiling"]]), context)
    assert state["outcome"] == status
    samples, _, verdicts, _ = rows_of(state, context)
    assert [s.status for s in samples] == [status]
    assert verdicts_of(verdicts)["critic"] == ("passed" if status == "accepted" else "failed")


def test_every_prompt_names_the_corpus_and_leaves_no_placeholder(store, docs, chunk):
    script = DomainScript()
    context = make_context(script, store, docs)
    run_graph(DomainSeed(kind="factual", chunks=[chunk["Kettle guide > Boiling"]]), context)
    assert context.description == "the appliances documents"
    for role in ("proposer", "solver", "critic"):
        text = "\n".join(m.content for m in script.prompts[role][0])
        assert "{description}" not in text and "{{" not in text
    assert "the appliances documents" in script.prompts["solver"][0][1].content


def test_citing_a_chunk_that_does_not_exist_fails_citations(store, docs, chunk):
    script = DomainScript(solver=[grounded_answer(BOIL_A, "f" * 32)])
    context = make_context(script, store, docs)
    state = run_graph(DomainSeed(kind="factual", chunks=[chunk["Kettle guide > Boiling"]]), context)
    assert state["outcome"] == "rejected" and script.calls["critic"] == 0
    samples, _, verdicts, _ = rows_of(state, context)
    assert verdicts_of(verdicts)["citations"] == "failed"
    assert samples[0].reason == f"citations: cites chunks that do not exist: {'f' * 32}"


def test_citing_a_real_chunk_this_trajectory_never_retrieved_fails_citations(store, docs, chunk):
    warranty = chunk["Warranty"]
    script = DomainScript(solver=[grounded_answer(BOIL_A, warranty)])
    context = make_context(script, store, docs, retrieval_k=1)
    state = run_graph(DomainSeed(kind="factual", chunks=[chunk["Kettle guide > Boiling"]]), context)
    (attempt,) = state["attempts"]
    assert warranty not in attempt.retrieved
    assert attempt.checks["citations"] == ("failed", f"cites chunks this trajectory never retrieved: {warranty}")


def test_answer_citing_another_retrieved_chunk_than_the_source_fails_citations(store, docs, chunk):
    cleaning = chunk["Kettle guide > Cleaning"]
    script = DomainScript(solver=[grounded_answer("Descale the Aurora kettle every 4 weeks.", cleaning)])
    context = make_context(script, store, docs)
    state = run_graph(DomainSeed(kind="factual", chunks=[chunk["Kettle guide > Boiling"]]), context)
    (attempt,) = state["attempts"]
    assert cleaning in attempt.retrieved
    outcome, detail = attempt.checks["citations"]
    assert outcome == "failed" and "does not cite the passage the question was written from" in detail


def test_answer_with_numbers_or_words_the_cited_passage_lacks_fails_support(store, docs, chunk):
    boiling = chunk["Kettle guide > Boiling"]
    invented_number = DomainScript(solver=[cite_best("The Aurora kettle boils one litre of water in 90 seconds.")])
    state = run_graph(DomainSeed(kind="factual", chunks=[boiling]), make_context(invented_number, store, docs))
    assert state["attempts"][0].checks["support"] == ("failed", "not in the cited passages: 90")

    invented_words = DomainScript(solver=[cite_best("It glows purple and plays a cheerful melody at midnight.")])
    state = run_graph(DomainSeed(kind="factual", chunks=[boiling]), make_context(invented_words, store, docs))
    outcome, detail = state["attempts"][0].checks["support"]
    assert outcome == "failed" and "needs 60%" in detail and "purple" in detail
    assert state["outcome"] == "rejected" and invented_words.calls["critic"] == 0


def test_unanswerable_question_must_be_declined(store, docs, chunk):
    seed = DomainSeed(question="In which year was the Aurora kettle first designed?", answerable=False)
    declines = DomainScript(solver=[decline("The guides do not say when the kettle was designed.")])
    context = make_context(declines, store, docs)
    state = run_graph(seed, context)
    assert state["outcome"] == "accepted" and declines.calls["proposer"] == 0
    samples, messages, verdicts, _ = rows_of(state, context)
    assert verdicts_of(verdicts) == {"question": "passed", "citations": "unchecked", "support": "unchecked",
                                     "answerability": "passed", "critic": "passed"}
    assert messages[-1].content.startswith("The documentation does not answer this")
    assert samples[0].payload["declined"] and samples[0].payload["answerable"] is False
    assert samples[0].payload["probe"] and "chunk_id" in samples[0].payload["probe"][0]
    # the critic saw every retrieved passage, since a decline cites none
    assert "Boiling" in declines.prompts["critic"][0][1].content

    answers = DomainScript(solver=[cite_best(BOIL_A)])
    context = make_context(answers, store, docs)
    state = run_graph(seed, context)
    samples, _, verdicts, _ = rows_of(state, context)
    assert samples[0].reason == "answerability: answered a question the corpus does not answer"


def test_answerable_question_declined_fails_answerability(store, docs, chunk):
    script = DomainScript(solver=[decline("Nothing about boiling times.")])
    context = make_context(script, store, docs)
    state = run_graph(DomainSeed(kind="factual", chunks=[chunk["Kettle guide > Boiling"]]), context)
    samples, _, verdicts, _ = rows_of(state, context)
    assert verdicts_of(verdicts)["answerability"] == "failed"
    assert samples[0].reason == "answerability: declined a question its passages answer: Nothing about boiling times."


def test_solver_may_search_again_and_its_last_step_may_not(store, docs, chunk):
    script = DomainScript(solver=[search_again("descale vinegar weeks"),
                                  cite_best("Descale the Aurora kettle every 4 weeks with white vinegar.")],
                          proposer=json.dumps({"question": "How often should the Aurora kettle be descaled?"}))
    context = make_context(script, store, docs, max_searches=1, retrieval_k=1)
    state = run_graph(DomainSeed(kind="factual", chunks=[chunk["Kettle guide > Cleaning"]]), context)
    (attempt,) = state["attempts"]
    assert [s.by for s in attempt.searches] == ["graph", "solver"]
    first, last = script.kwargs["solver"]
    assert "search" in json.dumps(first["json_schema"]) and '"const": "search"' not in json.dumps(last["json_schema"])
    assert set(offered_citations(last)) == set(attempt.retrieved)
    _, messages, _, _ = rows_of(state, context)
    assert [m.role for m in messages] == ["user", "assistant", "tool", "assistant", "tool", "assistant"]
    assert json.loads(messages[3].tool_calls[0]["function"]["arguments"]) == {"query": "descale vinegar weeks"}
    assert messages[4].tool_call_id == messages[3].tool_calls[0]["id"] != messages[1].tool_calls[0]["id"]


def test_search_past_the_budget_is_an_error_sample(store, docs, chunk):
    script = DomainScript(solver=[search_again("kettle")])
    context = make_context(script, store, docs, max_searches=0)
    state = run_graph(DomainSeed(kind="factual", chunks=[chunk["Kettle guide > Boiling"]]), context)
    samples, _, _, _ = rows_of(state, context)
    assert samples[0].status == "error" and "last allowed search" in samples[0].reason


def test_passages_shown_to_a_json_writing_model_hold_no_double_quotes():
    assert for_json_writers('The "nonlocal" statement rebinds names.') == "The 'nonlocal' statement rebinds names."


def test_grammar_cites_only_retrieved_chunks_and_forbids_answers_with_nothing_retrieved():
    grammar = action_schema(["a", "b"], may_search=True)
    answer_form = next(f for f in grammar["anyOf"] if f["properties"]["action"] == {"const": "answer"})
    assert answer_form["properties"]["citations"]["items"] == {"enum": ["a", "b"]}
    assert [f["properties"]["action"]["const"] for f in action_schema([], may_search=False)["anyOf"]] == ["decline"]


def test_question_checks_refuse_self_reference_copies_statements_and_rambling():
    source = "The Aurora kettle boils one litre of water in 210 seconds and switches off by itself."

    def problems(question: str, max_words: int = 30) -> list[str]:
        return question_problems(question, [source], copy_words=8, max_words=max_words)

    assert problems("According to the passage, how fast is the kettle?")[0].startswith("refers to 'According to'")
    assert problems("What does the text above say about kettles?")
    assert problems("How do both passages describe the kettle?")
    assert problems("Tell me about the Aurora kettle.") == ["does not end with '?'"]
    copied = "Is it true that the Aurora kettle boils one litre of water in 210 seconds?"
    assert longest_shared_run(copied, source) == 11
    assert problems(copied) == ["copies 11 consecutive words from its source passage (at most 7)"]
    assert problems(BOIL_Q, max_words=5) == ["has 13 words (at most 5): ask one thing, briefly"]
    assert problems(BOIL_Q) == []


def test_copied_proposal_is_refused_and_retried(store, docs, chunk):
    copied = "Is it true that the Aurora kettle boils one litre of water in 210 seconds?"
    drafts = iter([json.dumps({"question": copied}),
                   json.dumps({"question": BOIL_Q})])
    script = DomainScript(proposer=lambda messages: next(drafts))
    state = run_graph(DomainSeed(kind="factual", chunks=[chunk["Kettle guide > Boiling"]]),
                      make_context(script, store, docs))
    assert state["question"] == BOIL_Q and script.calls["proposer"] == 2


def test_ready_question_that_fails_the_checks_is_rejected_before_any_solver(store, docs, chunk):
    script = DomainScript()
    context = make_context(script, store, docs)
    state = run_graph(DomainSeed(question="Summarise the passage about kettles.", answerable=True), context)
    assert state["outcome"] == "rejected" and script.calls["solver"] == 0
    samples, _, verdicts, ids = rows_of(state, context)
    assert [s.kind for s in samples] == ["grounded_question"] and samples[0].status == "rejected"
    assert "refers to 'the passage'" in samples[0].reason and verdicts_of(verdicts) == {"question": "failed"}
    assert "question" in ids


def test_proposer_that_never_writes_a_usable_question_is_a_question_error(store, docs, chunk):
    script = DomainScript(proposer=json.dumps({"question": "What is written in this passage?"}))
    context = make_context(script, store, docs)
    state = run_graph(DomainSeed(kind="factual"), context)
    assert script.calls["solver"] == 0
    samples, _, _, _ = rows_of(state, context)
    assert samples[0].status == "error" and "refers to 'this passage'" in samples[0].reason


def test_seed_naming_a_chunk_not_in_the_corpus_is_a_question_error(store, docs, chunk):
    context = make_context(DomainScript(), store, docs)
    samples, _, _, _ = rows_of(run_graph(DomainSeed(kind="factual", chunks=["nope"]), context), context)
    assert samples[0].status == "error" and "seed chunks nope are not in corpus 'appliances'" in samples[0].reason


def test_multi_hop_question_is_written_from_two_chunks_of_different_documents(store, docs, chunk):
    script = DomainScript()
    context = make_context(script, store, docs)
    state = run_graph(DomainSeed(kind="multi_hop", slot=0), context)
    first, second = state["sources"]
    assert first.doc_id != second.doc_id
    prompt = script.prompts["proposer"][0][1].content
    assert "Passage 1" in prompt and "Passage 2" in prompt and "BOTH passages" in prompt


def test_seed_slots_spread_over_the_corpus_and_a_rerun_draws_the_same(store, docs, chunk):
    script = DomainScript()
    context = make_context(script, store, docs)
    picks = [run_graph(DomainSeed(kind="factual", slot=i), context)["sources"][0].chunk_id for i in range(6)]
    again = [run_graph(DomainSeed(kind="factual", slot=i), context)["sources"][0].chunk_id for i in range(6)]
    assert picks == again and set(picks) == set(chunk.values())
    kinds = {domain.plan_kind(DomainSeed(id=f"s{i}"), context.mix) for i in range(40)}
    assert kinds == {"factual", "multi_hop", "unanswerable"}


def test_critic_that_finds_the_reply_unsupported_rejects_with_its_reason(store, docs, chunk):
    script = DomainScript(critic=json.dumps({"reason": "The passage gives no litre figure.", "question_ok": True,
                                             "supported": False, "score": 7}))
    context = make_context(script, store, docs)
    state = run_graph(DomainSeed(kind="factual", chunks=[chunk["Kettle guide > Boiling"]]), context)
    samples, _, verdicts, _ = rows_of(state, context)
    assert samples[0].status == "rejected" and "not supported" in samples[0].reason
    assert verdicts_of(verdicts)["critic"] == "failed"


def test_refused_solver_output_is_an_error_sample_not_a_crash(store, docs, chunk):
    script = DomainScript(solver=["{not json"])
    context = make_context(script, store, docs)
    state = run_graph(DomainSeed(kind="factual", chunks=[chunk["Kettle guide > Boiling"]]), context)
    samples, _, _, _ = rows_of(state, context)
    assert samples[0].status == "error" and "malformed structured output" in samples[0].reason


def test_corpus_is_ingested_once_however_often_a_run_starts(store, docs):
    first = domain.make_context(recipe_for(docs), ScriptedPool(DomainScript()), store=store).ingest
    second = domain.make_context(recipe_for(docs), ScriptedPool(DomainScript()), store=store).ingest
    assert first.documents_added == 3 and first.chunks_added == 5
    assert (second.documents_added, second.documents_replaced, second.chunks_added) == (0, 0, 0)
    assert second.documents_unchanged == 3


# ------------------------------------------------------------------------------------------------ the recipe


def test_corpus_that_is_not_built_in_needs_paths_and_the_paths_must_exist(tmp_path):
    with pytest.raises(ValueError, match="give its files or folders as corpus.paths"):
        parse_recipe({"name": "t", "graph": "domain", "corpus": {"name": "mydocs"}, "seeds": {"inline": [{}]}})
    recipe = tmp_path / "r.yaml"
    recipe.write_text("name: t\ngraph: domain\ncorpus: {name: mydocs, paths: [docs]}\nseeds: {inline: [{}]}\n")
    with pytest.raises(RecipeError, match=r"corpus.paths: .*docs does not exist \(paths are relative to the recipe\)"):
        load_recipe(recipe)


def test_ready_question_needs_answerable_and_kinds_must_agree():
    with pytest.raises(ValueError, match="needs `answerable`"):
        DomainSeed(question="Why?")
    with pytest.raises(ValueError, match="contradicts answerable: false"):
        DomainSeed(kind="factual", answerable=False)
    assert DomainSeed(question="Why is it so?", answerable=False).question_kind == "unanswerable"


def test_domain_demo_recipe_is_valid():
    recipe, seeds = load_recipe(ROOT / "demos" / "domain_qa.yaml")
    assert recipe.graph == "domain" and recipe.corpus.name == "pydoc-topics" and len(seeds) >= 8
    assert [s.slot for s in seeds] == list(range(len(seeds)))


# ------------------------------------------------------------------------------------ through the runner


def runner_solver(messages, kwargs):
    if "year" in messages[1].content:
        return decline("The guides give no dates of design.")
    if "warranty" in messages[1].content:
        return cite_best("It glows purple at midnight.")(messages, kwargs)
    return cite_best(BOIL_A)(messages, kwargs)


@pytest.fixture
def qa_recipe(tmp_path, docs) -> Path:
    recipe = tmp_path / "qa.yaml"
    recipe.write_text(f"""name: qa
graph: domain
corpus: {{name: appliances, paths: [docs], min_chunk_chars: 0}}
seeds:
  inline:
    - {{id: boil, question: "{BOIL_Q}", answerable: true}}
    - {{id: year, question: "In which year was the Aurora kettle designed?", answerable: false}}
    - {{id: warranty, question: "How long is the warranty on a Zephyr toaster?", answerable: true}}
""")
    return recipe


def run_recipe(path: Path, db: Path, script: DomainScript, **changes):
    recipe, seeds = load_recipe(path)
    recipe = recipe.model_copy(update=changes) if changes else recipe
    return asyncio.run(Runner(recipe, seeds, store_path=db, pool=ScriptedPool(script), recipe_path=path).run())


@pytest.fixture
def qa_store(tmp_path, qa_recipe) -> Path:
    db = tmp_path / "run.duckdb"
    run_recipe(qa_recipe, db, DomainScript(solver=runner_solver))
    return db


def test_runner_ingests_the_corpus_and_writes_answers_verdicts_and_lineage(qa_store):
    assert rows(qa_store, "SELECT corpus, count(*) FROM chunks GROUP BY 1") == [("appliances", 5)]
    statuses = dict(rows(qa_store, "SELECT seed_id, status FROM samples WHERE kind = 'grounded_qa'"))
    assert statuses == {"boil": "accepted", "year": "accepted", "warranty": "rejected"}
    verdicts = dict(rows(qa_store, "SELECT v.verifier || '/' || s.seed_id, v.outcome FROM verdicts v "
                                   "JOIN samples s USING (sample_id)"))
    assert verdicts["citations/boil"] == "passed" and verdicts["answerability/year"] == "passed"
    assert verdicts["support/warranty"] == "failed"
    roles = dict(rows(qa_store, "SELECT role, count(*) FROM agent_calls GROUP BY role"))
    assert roles == {"solver": 3, "critic": 2}
    assert rows(qa_store, "SELECT count(*) FROM agent_calls WHERE sample_id IS NULL") == [(0,)]


def test_a_second_run_on_the_same_store_ingests_nothing(qa_store, qa_recipe):
    before = rows(qa_store, "SELECT doc_id, ingested_at FROM documents ORDER BY 1")
    run_recipe(qa_recipe, qa_store, DomainScript(solver=runner_solver), name="qa-again")
    assert rows(qa_store, "SELECT count(DISTINCT run_id) FROM samples") == [(2,)]
    assert rows(qa_store, "SELECT doc_id, ingested_at FROM documents ORDER BY 1") == before


def test_sql_lists_answers_with_their_cited_passages(qa_store):
    result = CliRunner().invoke(app, ["sql", CITED_PASSAGES_SQL, "--db", str(qa_store), "--format", "json"])
    assert result.exit_code == 0, result.output
    by_question = {r["question"]: r for r in json.loads(result.output)}
    assert set(by_question) == {BOIL_Q, "How long is the warranty on a Zephyr toaster?"}  # declines cite nothing
    boil = by_question[BOIL_Q]
    assert boil["answer"] == BOIL_A and boil["heading"] == "Kettle guide > Boiling" and "210 seconds" in boil["passage"]


def test_export_carries_the_search_tool_and_the_passages_in_tool_turns(qa_store, tmp_path):
    out = tmp_path / "qa.jsonl"
    result = CliRunner().invoke(app, ["export", "--format", "jsonl", "--out", str(out), "--db", str(qa_store)])
    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in out.read_text().splitlines()]
    boil = next(r for r in records if r["messages"][0]["content"] == BOIL_Q)
    assert boil["tools"][0]["function"]["name"] == "search"
    assert [m["role"] for m in boil["messages"]] == ["user", "assistant", "tool", "assistant"]
    assert "210 seconds" in boil["messages"][2]["content"]


def test_readme_shows_the_cited_passages_query():
    readme = " ".join((ROOT / "README.md").read_text().replace('\\"', '"').split())
    assert " ".join(CITED_PASSAGES_SQL.split()) in readme


def test_corpus_without_a_usable_chunk_stops_the_run_with_a_message_not_a_traceback(qa_recipe, tmp_path):
    qa_recipe.write_text(qa_recipe.read_text().replace("min_chunk_chars: 0", "min_chunk_chars: 100000"))
    result = CliRunner().invoke(app, ["run", str(qa_recipe), "--db", str(tmp_path / "qa.duckdb")])
    assert result.exit_code == 2
    assert "has no chunk of at least 100000 characters" in " ".join(result.output.split())
    assert "Traceback" not in result.output


def test_a_question_limit_past_what_the_question_grammar_holds_is_refused():
    """A proposed question is at most 400 characters (its grammar): 50 words is about all that fits."""
    from synthgraph.agents.domain_roles import QuestionDraft

    with pytest.raises(ValueError, match="verifier.max_question_words\n  Input should be less than or equal to 50"):
        parse_recipe({"name": "t", "graph": "domain", "verifier": {"max_question_words": 80}, "seeds": {"inline": [{}]}})
    assert QuestionDraft.model_fields["question"].metadata[-1].max_length >= 50 * 8
