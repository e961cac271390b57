"""Grounded QA over a document corpus: propose a question from passages -> k solvers search and answer with
citations (or decline) -> citation / support / answerability checks -> critic -> accept.

The seed's slot picks a chunk of the corpus (one for a factual question, it and its best match in another document
for a multi-hop one, one as a topic anchor for a question the corpus does not answer). The proposer writes a
self-contained question; computable checks refuse one that points at "the passage", copies a long run of it, or is
no question. Each of k solver branches runs the loop below: the graph searches with the question -> the solver
searches again, answers citing chunk ids it retrieved, or declines -> ... until it answers or declines (its last
step may not search). Then the computable stages: `citations` (every cited chunk exists, was retrieved in this
trajectory, and the question's source chunk is among them), `support` (the cited passages hold the answer's
content words, numbers and identifiers), `answerability` (unanswerable questions declined, answerable ones
answered). The critic judges what passed: question quality and whether the passages entail the reply.
Every trajectory becomes a sample in OpenAI form (a `search` tool's `tool_calls`, `tool` turns holding the
passages as JSON, the final answer with its citations); the search tool's spec sits in `payload.tools`.
"""

from __future__ import annotations

import asyncio
import json
import random
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated, Any, Literal, TypedDict

from langgraph.graph import END, START, StateGraph
from langgraph.runtime import Runtime
from langgraph.types import RetryPolicy, Send
from pydantic import BaseModel

from synthgraph.agents.domain_roles import (DomainCritic, DomainProposer, DomainSolver, QAJudgement, QuestionKind,
                                            SolverAction, clip, question_problems)
from synthgraph.agents.models import ModelOutputError, ModelPool
from synthgraph.graphs.fan_in import merge_by_key
from synthgraph.graphs.recipe import DomainRecipe, DomainSeed, draw_kind
from synthgraph.store.db import Store
from synthgraph.store.rows import MessageRow, SampleRow, VerdictRow, stable_id
from synthgraph.tools.retrieval import Hit, IngestReport, RetrievalError, Retriever, ingest_corpus, sample_chunks

StageOutcome = Literal["passed", "failed", "unchecked"]


def search_tool(description: str) -> dict[str, Any]:
    """The OpenAI spec of the solver's one tool, carried in every sample so exports offer it."""
    return {"type": "function", "function": {
        "name": "search", "description": f"Search {description}; returns the best-matching passages with their ids.",
        "parameters": {"type": "object", "properties": {"query": {"type": "string", "description": "keywords"}},
                       "required": ["query"]}}}


class Search(BaseModel):
    call_id: str
    query: str
    hits: list[str]                                # chunk ids, best first
    by: Literal["graph", "solver"]                 # the graph's first search uses the question itself


class Attempt(BaseModel):
    key: str                                       # k<branch>: stable, so sample ids survive a rerun
    searches: list[Search] = []
    passages: dict[str, Hit] = {}                  # every chunk this trajectory retrieved
    decisions: list[SolverAction] = []
    answer: str | None = None
    citations: list[str] = []
    decline_reason: str | None = None
    stopped: Literal["answered", "declined", "error"] | None = None
    error: str | None = None                       # the solver's output was refused on every try
    checks: dict[str, tuple[StageOutcome, str]] = {}
    judgement: QAJudgement | None = None
    judgement_error: str | None = None

    @property
    def retrieved(self) -> list[str]:
        return list(self.passages)


class DomainState(TypedDict, total=False):
    seed: DomainSeed
    kind: QuestionKind
    sources: list[Hit]                             # the chunks the question was written from
    question: str | None
    question_error: str | None
    question_problems: list[str]
    probe: list[dict[str, Any]]                    # unanswerable: what a search for the question finds
    attempts: Annotated[list[Attempt], merge_by_key]
    outcome: Literal["accepted", "rejected"]


class SolveTask(TypedDict):
    key: str
    question: str


@dataclass
class DomainContext:
    """The graph's run-scoped dependencies: tests pass fakes, the CLI passes real models and the run's store."""

    proposer: DomainProposer
    solver: DomainSolver
    critic: DomainCritic
    retriever: Retriever
    chunk_order: list[str]                         # the proposable chunks, in the order seed slots take them
    mix: dict[str, float]
    description: str = "the documents"
    samples: int = 1
    max_searches: int = 1
    retrieval_k: int = 3
    passage_chars: int = 500
    support_threshold: float = 0.6
    copy_words: int = 8
    max_question_words: int = 30
    source_overlap: float = 0.5
    critic_threshold: float = 6
    ingest: IngestReport | None = None             # what preparing the corpus for this run added


# ----------------------------------------------------------------------------------------- the solver loop


class AttemptState(TypedDict, total=False):
    question: str
    attempt: Attempt
    query: str | None                              # the search to run next


async def search(state: AttemptState, runtime: Runtime[DomainContext]) -> dict:
    attempt, ctx = state["attempt"], runtime.context
    hits = await ctx.retriever.asearch(state["query"], ctx.retrieval_k)
    record = Search(call_id=f"call_{len(attempt.searches)}", query=state["query"], hits=[h.chunk_id for h in hits],
                    by="solver" if attempt.searches else "graph")
    return {"attempt": attempt.model_copy(update={"searches": [*attempt.searches, record],
                                                  "passages": {**attempt.passages, **{h.chunk_id: h for h in hits}}}),
            "query": None}


async def decide(state: AttemptState, runtime: Runtime[DomainContext]) -> dict:
    attempt, ctx = state["attempt"], runtime.context
    may_search = len(attempt.searches) <= ctx.max_searches
    searches = [(s.query, [attempt.passages[i] for i in s.hits]) for s in attempt.searches]
    try:
        action = await ctx.solver.step(state["question"], searches, may_search=may_search, description=ctx.description,
                                       passage_chars=ctx.passage_chars, subject=attempt.key)
    except ModelOutputError as exc:
        return {"attempt": attempt.model_copy(update={"error": str(exc), "stopped": "error"})}
    update: dict[str, Any] = {"decisions": [*attempt.decisions, action]}
    if action.action == "search":
        if may_search:
            return {"attempt": attempt.model_copy(update=update), "query": action.query.strip()}
        update |= {"stopped": "error", "error": "searched again after its last allowed search"}
    elif action.action == "answer":
        update |= {"answer": action.answer.strip(), "citations": list(dict.fromkeys(action.citations)),
                   "stopped": "answered"}
    else:
        update |= {"decline_reason": action.reason.strip(), "stopped": "declined"}
    return {"attempt": attempt.model_copy(update=update)}


def route_after_decide(state: AttemptState) -> Literal["search", "__end__"]:
    return "search" if state.get("query") else END


def build_attempt() -> StateGraph:
    g = StateGraph(AttemptState, context_schema=DomainContext)
    g.add_node(search)
    g.add_node(decide, retry_policy=RetryPolicy(max_attempts=3))
    g.add_edge(START, "search")
    g.add_edge("search", "decide")
    g.add_conditional_edges("decide", route_after_decide, ["search", END])
    return g


# One attempt is the unit a resumed seed redoes: the subgraph never inherits the runner's checkpointer.
attempt_graph = build_attempt().compile(checkpointer=False)


# --------------------------------------------------------------------------------------------- the recipe graph


def plan_kind(seed: DomainSeed, mix: dict[str, float]) -> QuestionKind:
    """The seed's kind, or one drawn for it from its id, so a rerun draws the same."""
    if seed.question_kind is not None:
        return seed.question_kind
    if seed.question is not None:
        return "factual"
    return draw_kind(mix, random.Random(seed.seed_id))


def slot_of(seed: DomainSeed, size: int) -> int:
    return (seed.slot if seed.slot is not None else int(stable_id(seed.seed_id), 16)) % size


async def partner(first: Hit, ctx: DomainContext) -> Hit:
    """A multi-hop question's second chunk: the best match for the first one's words in another document."""
    words = list(dict.fromkeys(content_words(f"{first.title} {first.heading} {first.text}")))
    hits = await ctx.retriever.asearch(" ".join(words[:40]), 10)
    others = [h for h in hits if h.doc_id != first.doc_id] or [h for h in hits if h.chunk_id != first.chunk_id]
    if others:
        return others[0]
    following = ctx.chunk_order[(ctx.chunk_order.index(first.chunk_id) + 1) % len(ctx.chunk_order)]
    return ctx.retriever.get_chunks([following])[0]


async def propose(state: DomainState, runtime: Runtime[DomainContext]) -> dict:
    seed, ctx = state["seed"], runtime.context
    kind = plan_kind(seed, ctx.mix)
    if seed.chunks:
        sources = ctx.retriever.get_chunks(seed.chunks)
        missing = sorted(set(seed.chunks) - {h.chunk_id for h in sources})
        if missing:
            return {"kind": kind, "sources": sources, "question": None,
                    "question_error": f"seed chunks {', '.join(missing)} are not in corpus {ctx.retriever.corpus!r}"}
    elif seed.question is not None:
        sources = []
    else:
        first = ctx.retriever.get_chunks([ctx.chunk_order[slot_of(seed, len(ctx.chunk_order))]])[0]
        sources = [first, await partner(first, ctx)] if kind == "multi_hop" else [first]
    if seed.question is not None:
        return {"kind": kind, "sources": sources, "question": seed.question.strip()}
    try:
        question = await ctx.proposer.write_question(kind, sources, description=ctx.description,
                                                     passage_chars=ctx.passage_chars, copy_words=ctx.copy_words,
                                                     max_words=ctx.max_question_words)
    except ModelOutputError as exc:
        return {"kind": kind, "sources": sources, "question": None, "question_error": str(exc)}
    return {"kind": kind, "sources": sources, "question": question}


async def check_question(state: DomainState, runtime: Runtime[DomainContext]) -> dict:
    """The computable question checks (a ready seed question meets them here first); for a question the corpus
    should not answer, the search a reader would make, recorded so the claim can be audited."""
    if state.get("question") is None:
        return {"question_problems": []}
    ctx = runtime.context
    problems = question_problems(state["question"], [h.text for h in state["sources"]], copy_words=ctx.copy_words,
                                 max_words=ctx.max_question_words)
    update: dict[str, Any] = {"question_problems": problems}
    if state["kind"] == "unanswerable":
        hits = await ctx.retriever.asearch(state["question"], ctx.retrieval_k)
        update["probe"] = [{"chunk_id": h.chunk_id, "title": h.title, "heading": h.heading,
                            "score": round(h.score, 4)} for h in hits]
    return update


def fan_out(state: DomainState, runtime: Runtime[DomainContext]) -> list[Send] | Literal["reject"]:
    if state.get("question") is None or state["question_problems"]:
        return "reject"
    return [Send("solve", SolveTask(key=f"k{i}", question=state["question"])) for i in range(runtime.context.samples)]


async def solve(task: SolveTask, runtime: Runtime[DomainContext]) -> dict:
    result = await attempt_graph.ainvoke(
        {"question": task["question"], "attempt": Attempt(key=task["key"]), "query": task["question"]},
        context=runtime.context)
    return {"attempts": [result["attempt"]]}


async def verify(state: DomainState, runtime: Runtime[DomainContext]) -> dict:
    ctx = runtime.context

    async def one(attempt: Attempt) -> Attempt:
        if attempt.error is not None:
            return attempt
        cited = await asyncio.to_thread(ctx.retriever.get_chunks, attempt.citations)
        return attempt.model_copy(update={"checks": checks(attempt, cited, state, ctx)})

    return {"attempts": list(await asyncio.gather(*(one(a) for a in state["attempts"])))}


def _checked(attempt: Attempt) -> bool:
    return bool(attempt.checks) and all(outcome != "failed" for outcome, _ in attempt.checks.values())


def route_after_verify(state: DomainState) -> Literal["judge", "reject"]:
    return "judge" if any(_checked(a) for a in state["attempts"]) else "reject"


async def judge(state: DomainState, runtime: Runtime[DomainContext]) -> dict:
    """The critic judges the attempts that passed the computable checks: the passages it sees are the cited ones
    for an answer, all retrieved ones for a decline."""
    ctx = runtime.context

    async def one(attempt: Attempt) -> Attempt:
        passages = [attempt.passages[i] for i in attempt.citations] if attempt.stopped == "answered" \
            else list(attempt.passages.values())
        try:
            judgement = await ctx.critic.judge(question=state["question"], passages=passages,
                                               reply=reply_text(attempt, cite=False),
                                               passage_chars=ctx.passage_chars, subject=attempt.key)
        except ModelOutputError as exc:
            return attempt.model_copy(update={"judgement_error": str(exc)})
        return attempt.model_copy(update={"judgement": judgement})

    return {"attempts": list(await asyncio.gather(*(one(a) for a in state["attempts"] if _checked(a))))}


def route_after_judge(state: DomainState, runtime: Runtime[DomainContext]) -> Literal["accept", "reject"]:
    threshold = runtime.context.critic_threshold
    return "accept" if any(attempt_verdict(a, threshold)[0] == "accepted" for a in state["attempts"]) else "reject"


def accept(state: DomainState) -> dict:
    return {"outcome": "accepted"}


def reject(state: DomainState) -> dict:
    return {"outcome": "rejected"}


def build() -> StateGraph:
    model_retry = RetryPolicy(max_attempts=3)  # transport errors; refused outputs are retried per call
    g = StateGraph(DomainState, context_schema=DomainContext)
    g.add_node(propose, retry_policy=model_retry)
    g.add_node(check_question)
    g.add_node(solve, input_schema=SolveTask)
    g.add_node(verify)
    g.add_node(judge, retry_policy=model_retry)
    g.add_node(accept)
    g.add_node(reject)
    g.add_edge(START, "propose")
    g.add_edge("propose", "check_question")
    g.add_conditional_edges("check_question", fan_out, ["solve", "reject"])
    g.add_edge("solve", "verify")
    g.add_conditional_edges("verify", route_after_verify, ["judge", "reject"])
    g.add_conditional_edges("judge", route_after_judge, ["accept", "reject"])
    g.add_edge("accept", END)
    g.add_edge("reject", END)
    return g


graph = build().compile()  # `langgraph dev` / Studio entry point (langgraph.json)


# ------------------------------------------------------------------------------------- computable checks

_STOPWORDS = frozenset("""
a about after again all also an and any are as at be been before being between both but by can could did do does
done down during each either for from further had has have having he her here his how i if in into is it its just
may might more most must my no nor not of off on once one only or other our out over own same shall she should so
some such than that the their them then there these they this those through to too two under up very was we were
what when where which while who whom whose why will with would yes you your
""".split())
_TOKEN = re.compile(r"[A-Za-z_][A-Za-z0-9_]*|\d+(?:\.\d+)*")
# What an answer must not invent: code spans, numbers, and identifiers (snake_case, dunder, dotted, called).
_IDENTIFIER = re.compile(r"`([^`]+)`|(?<![\w.])(\d+(?:\.\d+)*|\w*_\w*|\w+(?:\.\w+)+|\w+\(\))(?![\w(])")


def _stem(word: str) -> str:
    word = word.lower()
    for suffix in ("ing", "ed", "es", "s"):
        if len(word) > len(suffix) + 3 and word.endswith(suffix):
            return word[: -len(suffix)]
    return word


def content_words(text: str) -> list[str]:
    """The words that carry meaning, lightly stemmed (plurals and tenses match their stem)."""
    return [_stem(w) for w in _TOKEN.findall(text) if (w.lower() not in _STOPWORDS and len(w) > 1) or w.isdigit()]


def support(answer: str, passages: Sequence[str]) -> tuple[float | None, list[str], list[str]]:
    """(share of the answer's content words found in the passages or None when it has none, the words missing,
    the numbers and identifiers missing: these must appear verbatim)."""
    text = "\n".join(passages)
    available = set(content_words(text))
    words = list(dict.fromkeys(content_words(answer)))
    missing_words = [w for w in words if w not in available]
    share = None if not words else 1 - len(missing_words) / len(words)
    literal = [m[1] or m[2] for m in _IDENTIFIER.finditer(answer)]
    missing_literals = [x for x in dict.fromkeys(literal) if x.strip().lower() not in text.lower()]
    return share, missing_words, missing_literals


def _same_passage(cited: Hit, source: Hit, overlap: float) -> bool:
    if cited.chunk_id == source.chunk_id:
        return True
    a, b = set(content_words(cited.text)), set(content_words(source.text))
    return bool(a | b) and len(a & b) / len(a | b) >= overlap


def checks(attempt: Attempt, cited: Sequence[Hit], state: DomainState, ctx: DomainContext
           ) -> dict[str, tuple[StageOutcome, str]]:
    """The computable verdicts of a finished attempt: verifier -> (outcome, detail). `cited` is what the store
    holds of the cited ids."""
    answerable = state["kind"] != "unanswerable"
    verdicts: dict[str, tuple[StageOutcome, str]] = {}
    # Answering or declining is the first thing to get right, so it is the reason a sample names first.
    if answerable:
        verdicts["answerability"] = (("passed", "answered") if attempt.stopped == "answered" else
                                     ("failed", f"declined a question its passages answer: {attempt.decline_reason}"))
    else:
        verdicts["answerability"] = (("passed", "declined a question the corpus does not answer")
                                     if attempt.stopped == "declined" else
                                     ("failed", "answered a question the corpus does not answer"))
    if attempt.stopped == "declined":
        verdicts["citations"] = ("unchecked", "declined: no claims to cite")
        verdicts["support"] = ("unchecked", "declined: no claims to support")
    else:
        found = {h.chunk_id for h in cited}
        unknown = [c for c in attempt.citations if c not in found]
        unseen = [c for c in attempt.citations if c in found and c not in attempt.passages]
        sources = state["sources"] if answerable else []
        uncited = [s.chunk_id for s in sources if not any(_same_passage(h, s, ctx.source_overlap) for h in cited)]
        if unknown:
            verdicts["citations"] = ("failed", f"cites chunks that do not exist: {', '.join(unknown)}")
        elif unseen:
            verdicts["citations"] = ("failed", f"cites chunks this trajectory never retrieved: {', '.join(unseen)}")
        elif uncited:
            verdicts["citations"] = ("failed", f"does not cite the passage the question was written from "
                                               f"({', '.join(uncited)}) nor one like it")
        else:
            verdicts["citations"] = ("passed", f"{len(attempt.citations)} cited, all retrieved"
                                               + (", source passage cited" if sources else ""))
        share, missing_words, missing_literals = support(attempt.answer, [h.text for h in cited])
        if missing_literals:
            verdicts["support"] = ("failed", f"not in the cited passages: {', '.join(missing_literals)}")
        elif share is None:
            verdicts["support"] = ("failed", "the answer states nothing to check (no content words)")
        elif share < ctx.support_threshold:
            verdicts["support"] = ("failed", f"{share:.0%} of the answer's content words are in the cited passages "
                                             f"(needs {ctx.support_threshold:.0%}); missing: "
                                             f"{', '.join(missing_words[:10])}")
        else:
            verdicts["support"] = ("passed", f"{share:.0%} of the answer's content words are in the cited passages")
    return verdicts


# --------------------------------------------------------------------------- the runner's interface


def prepare_corpus(recipe: DomainRecipe, store: Store) -> IngestReport:
    """Ingest the recipe's corpus into the run's store; unchanged documents are skipped, so a rerun adds nothing."""
    corpus = recipe.corpus
    return ingest_corpus(store.con, corpus.name, recipe.corpus_paths(), max_chars=corpus.max_chars,
                         overlap=corpus.overlap)


def make_context(recipe: DomainRecipe, pool: ModelPool, *, store: Store) -> DomainContext:
    roles, corpus = recipe.roles, recipe.corpus
    report = prepare_corpus(recipe, store)
    chunks = sample_chunks(store.con, corpus.name, n=1 << 30)  # every chunk, in an order fixed by the corpus
    order = [h.chunk_id for h in chunks if len(h.text) >= corpus.min_chunk_chars]
    if not order:
        raise RetrievalError(f"corpus {corpus.name!r} has no chunk of at least {corpus.min_chunk_chars} characters "
                         "to write questions from: lower corpus.min_chunk_chars")
    return DomainContext(
        proposer=DomainProposer(pool.client(recipe.role_model("proposer")), roles.proposer.sampling()),
        solver=DomainSolver(pool.client(recipe.role_model("solver")), roles.solver.sampling()),
        critic=DomainCritic(pool.client(recipe.role_model("critic")), roles.critic.sampling()),
        retriever=Retriever(store.con, corpus=corpus.name),
        chunk_order=order,
        mix=dict(recipe.mix),
        description=corpus.about,
        samples=roles.solver.samples,
        max_searches=roles.solver.max_searches,
        retrieval_k=recipe.retrieval.k,
        passage_chars=recipe.retrieval.passage_chars,
        support_threshold=recipe.verifier.support,
        copy_words=recipe.verifier.copy_words,
        max_question_words=recipe.verifier.max_question_words,
        source_overlap=recipe.verifier.source_overlap,
        critic_threshold=roles.critic.threshold,
        ingest=report,
    )


def initial_state(seed: DomainSeed) -> DomainState:
    return {"seed": seed, "attempts": []}


# ------------------------------------------------------------------------------------- state -> rows


def attempt_verdict(attempt: Attempt, threshold: float) -> tuple[str, str | None]:
    """(status, reason) of one attempt as a sample."""
    if attempt.error is not None:
        return "error", attempt.error
    for verifier, (outcome, detail) in attempt.checks.items():
        if outcome == "failed":
            return "rejected", f"{verifier}: {detail}"
    if attempt.judgement_error is not None:
        return "rejected", f"critic gave no usable verdict: {attempt.judgement_error}"
    judgement = attempt.judgement
    if judgement is None:
        return "rejected", "passed the checks but not judged"
    if not judgement.question_ok:
        return "rejected", f"critic: question not self-contained ({judgement.score}): {judgement.reason}"
    if not judgement.supported:
        return "rejected", f"critic: reply not supported by the passages ({judgement.score}): {judgement.reason}"
    if judgement.score < threshold:
        return "rejected", f"critic score {judgement.score} < {threshold:g}"
    return "accepted", None


def reply_text(attempt: Attempt, *, cite: bool = True) -> str:
    """The assistant's final turn: the answer with its citations, or the decline."""
    if attempt.stopped == "declined":
        return f"The documentation does not answer this: {attempt.decline_reason}"
    if not cite:
        return attempt.answer
    return f"{attempt.answer}\n\nSources: " + ", ".join(f"[{c}]" for c in attempt.citations)


def passage_record(hit: Hit, chars: int) -> dict[str, Any]:
    return {"chunk_id": hit.chunk_id, "title": hit.title, "heading": hit.heading, "text": clip(hit.text, chars)}


def attempt_messages(sample_id: str, question: str, attempt: Attempt, passage_chars: int) -> list[MessageRow]:
    """The OpenAI turns: user question, per search an assistant `tool_calls` turn and a `tool` turn with the
    passages as JSON, then the final answer (or decline)."""
    rows = [MessageRow(sample_id=sample_id, turn=0, role="user", content=question)]

    def add(**fields):
        rows.append(MessageRow(sample_id=sample_id, turn=len(rows), **fields))

    for s in attempt.searches:
        arguments = json.dumps({"query": s.query}, ensure_ascii=False)
        add(role="assistant", content=None,
            tool_calls=[{"id": s.call_id, "type": "function", "function": {"name": "search", "arguments": arguments}}])
        passages = [passage_record(attempt.passages[i], passage_chars) for i in s.hits]
        add(role="tool", tool_call_id=s.call_id, name="search", content=json.dumps(passages, ensure_ascii=False))
    if attempt.stopped in ("answered", "declined"):
        add(role="assistant", content=reply_text(attempt))
    return rows


def to_rows(state: DomainState, *, run_id: str, seed_id: str, context: DomainContext
            ) -> tuple[list[SampleRow], list[MessageRow], list[VerdictRow], dict[str, str]]:
    """The samples, chat turns and verdicts of one finished graph instance, plus attempt key -> sample id."""
    group_id = stable_id(run_id, seed_id)
    kind, question = state["kind"], state.get("question")
    base = {"question_kind": kind, "answerable": kind != "unanswerable", "question": question,
            "question_source": "seed" if state["seed"].question is not None else "proposed",
            "source_chunks": [h.chunk_id for h in state.get("sources", [])],
            "corpus": context.retriever.corpus, "tools": [search_tool(context.description)]}
    if state.get("probe") is not None:
        base["probe"] = state["probe"]
    problems = state.get("question_problems") or []
    if question is None or problems:
        sample_id = stable_id(run_id, seed_id, "question")
        sample = SampleRow(sample_id=sample_id, run_id=run_id, seed_id=seed_id, group_id=group_id,
                           kind="grounded_question", status="error" if question is None else "rejected",
                           reason=state.get("question_error") or "question: " + "; ".join(problems), payload=base)
        verdicts = [VerdictRow(sample_id=sample_id, verifier="question", outcome="failed", detail="; ".join(problems))
                    ] if problems else []
        return [sample], [], verdicts, {"question": sample_id}
    samples, messages, verdicts, sample_ids = [], [], [], {}
    for attempt in sorted(state["attempts"], key=lambda a: int(a.key[1:])):
        sample_id = stable_id(run_id, seed_id, attempt.key)
        sample_ids[attempt.key] = sample_id
        status, reason = attempt_verdict(attempt, context.critic_threshold)
        judgement = attempt.judgement
        samples.append(SampleRow(
            sample_id=sample_id, run_id=run_id, seed_id=seed_id, group_id=group_id, kind="grounded_qa",
            status=status, reason=reason, score=judgement.score if judgement else None,
            payload={**base, "attempt": attempt.key, "stopped": attempt.stopped, "answer": attempt.answer,
                     "declined": attempt.stopped == "declined", "decline_reason": attempt.decline_reason,
                     "citations": attempt.citations, "retrieved": attempt.retrieved,
                     "queries": [s.query for s in attempt.searches]}))
        if attempt.searches:
            messages.extend(attempt_messages(sample_id, question, attempt, context.passage_chars))
        verdicts.append(VerdictRow(sample_id=sample_id, verifier="question", outcome="passed",
                                   detail="self-contained, short, ends with '?', not copied"))
        for verifier, (outcome, detail) in attempt.checks.items():
            verdicts.append(VerdictRow(sample_id=sample_id, verifier=verifier, outcome=outcome, detail=detail,
                                       score={"passed": 1.0, "failed": 0.0}.get(outcome)))
        if judgement is not None:
            passed = judgement.question_ok and judgement.supported and judgement.score >= context.critic_threshold
            verdicts.append(VerdictRow(sample_id=sample_id, verifier="critic", outcome="passed" if passed else "failed",
                                       score=judgement.score, detail=judgement.reason))
        elif attempt.judgement_error is not None:
            verdicts.append(VerdictRow(sample_id=sample_id, verifier="critic", outcome="unchecked",
                                       detail=attempt.judgement_error))
    return samples, messages, verdicts, sample_ids
