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
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal, TypedDict

from langgraph.graph import END, START, StateGraph
from langgraph.runtime import Runtime
from langgraph.types import RetryPolicy, Send
from pydantic import BaseModel, ConfigDict, Field, model_validator

from synthgraph.agents.domain_roles import (DomainCritic, DomainProposer, DomainSolver, QAJudgement, QuestionKind,
                                            SolverAction, clip, question_problems)
from synthgraph.agents import domain_roles
from synthgraph.agents.models import ModelOutputError, ModelPool
from synthgraph.graphs.fan_in import merge_by_key
from synthgraph.graphs.family import Family, Rows, on_loop
from synthgraph.graphs.recipe import (CorpusSettings, CriticSettings, ProposerSettings, RecipeBase, SeedBase,
                                       SolverSettings, check_mix, draw_kind)
from synthgraph.graphs.rows import check_rows, critic_row, sample_row, unjudged_row
from synthgraph.store.db import Store
from synthgraph.store.rows import MessageRow, VerdictRow, stable_id
from synthgraph.tools.grounding_checks import CheckOutcome, content_words, grounding_checks
from synthgraph.tools.retrieval import (CORPUS_TABLES, Hit, IngestReport, RetrievalError, Retriever, ingest_corpus,
                                        sample_chunks)

# ------------------------------------------------------------------------------------------------ recipe


class DomainProposerSettings(ProposerSettings):
    max_tokens: int = Field(160, ge=1, le=32768)


class DomainSolverSettings(SolverSettings):
    samples: int = Field(1, ge=1, le=64, description="independent answers per question (k)")
    temperature: float = Field(0.3, ge=0, le=2)
    max_tokens: int = Field(256, ge=1, le=32768, description="per step")
    max_searches: int = Field(1, ge=0, le=4, description="searches the solver may add to the graph's first one")


class DomainRoles(BaseModel):
    model_config = ConfigDict(extra="forbid")

    proposer: DomainProposerSettings = Field(default_factory=DomainProposerSettings)
    solver: DomainSolverSettings = Field(default_factory=DomainSolverSettings)
    critic: CriticSettings = Field(default_factory=CriticSettings)


class RetrievalSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    k: int = Field(3, ge=1, le=20, description="chunks per search")
    passage_chars: int = Field(500, ge=100, le=100000, description="each passage is cut to this many characters "
                                                                  "in prompts and tool results (small models are slow "
                                                                  "on long prompts)")


class DomainChecks(BaseModel):
    model_config = ConfigDict(extra="forbid")

    support: float = Field(0.6, ge=0, le=1, description="share of the answer's content words the cited passages "
                                                        "must contain")
    copy_words: int = Field(8, ge=3, le=100, description="consecutive words shared with its source passage that "
                                                         "make a question a copy")
    # At most what the question grammar's 400 characters hold (domain_roles.QuestionDraft): a higher limit never bound.
    max_question_words: int = Field(30, ge=5, le=50, description="longest question, in words")
    source_overlap: float = Field(0.5, ge=0, le=1, description="word overlap (Jaccard) at which a cited chunk "
                                                               "counts as the question's source chunk")


class DomainSeed(SeedBase):
    """A grounded-QA seed: a question `kind` (drawn from the recipe's `mix` when absent) and optionally the chunk
    ids to write it from (else the seed's `slot` picks them: its position in the seed list); or a ready
    `question` with whether the corpus can answer it (`answerable`), which skips the proposer."""

    kind: QuestionKind | None = None
    chunks: list[str] | None = None
    question: str | None = Field(None, min_length=3)
    answerable: bool | None = None
    slot: int | None = Field(None, ge=0)

    @model_validator(mode="after")
    def _consistent(self):
        if self.question is not None and self.answerable is None:
            raise ValueError("a seed with a ready `question` needs `answerable` (true or false)")
        if self.answerable is False and self.kind not in (None, "unanswerable"):
            raise ValueError(f"kind {self.kind!r} contradicts answerable: false (use kind: unanswerable)")
        if self.answerable is True and self.kind == "unanswerable":
            raise ValueError("kind unanswerable contradicts answerable: true")
        if self.chunks is not None and not self.chunks:
            raise ValueError("`chunks` must name at least one chunk id (or be left out to pick them)")
        return self

    @property
    def question_kind(self) -> QuestionKind | None:
        return "unanswerable" if self.answerable is False else self.kind

    @property
    def generative(self) -> bool:
        return self.question is None

    def again(self, round: int, stride: int) -> SeedBase:
        seed = super().again(round, stride)
        return seed if self.slot is None else seed.model_copy(update={"slot": self.slot + (round - 1) * stride})


class DomainCorpusSettings(CorpusSettings):
    min_chunk_chars: int = Field(200, ge=0, description="shorter chunks are not given to the proposer")


class DomainRecipe(RecipeBase):
    seed_model: ClassVar[type[SeedBase]] = DomainSeed

    graph: Literal["domain"]
    corpus: DomainCorpusSettings = Field(default_factory=lambda: DomainCorpusSettings(name="pydoc-topics"))
    roles: DomainRoles = Field(default_factory=DomainRoles)
    mix: dict[QuestionKind, float] = Field(
        default_factory=lambda: {"factual": 0.5, "multi_hop": 0.25, "unanswerable": 0.25},
        description="share of each question kind, for seeds that do not name their kind")
    retrieval: RetrievalSettings = Field(default_factory=RetrievalSettings)
    verifier: DomainChecks = Field(default_factory=DomainChecks)

    @model_validator(mode="after")
    def _mix(self):
        check_mix(self.mix)
        return self

    def corpus_paths(self) -> list[Path]:
        return [self.resolve(p) for p in self.corpus.paths]

    def check_seeds(self, seeds: list[SeedBase]) -> None:
        for path in self.corpus_paths():
            if not path.exists():
                raise ValueError(f"corpus.paths: {path} does not exist (paths are relative to the recipe)")
        for position, seed in enumerate(seeds):
            if seed.slot is None:
                # Coverage is planned: a seed without a slot takes the chunk at its position in the seed list.
                seed.slot = position



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
    checks: dict[str, CheckOutcome] = {}           # the computable stages, set by verify
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
    g.add_conditional_edges("decide", on_loop(route_after_decide), ["search", END])
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
        found = grounding_checks(answerable=state["kind"] != "unanswerable", stopped=attempt.stopped,
                                 answer=attempt.answer, citations=attempt.citations,
                                 decline_reason=attempt.decline_reason, retrieved=attempt.retrieved, cited=cited,
                                 sources=state["sources"], support_threshold=ctx.support_threshold,
                                 source_overlap=ctx.source_overlap)
        return attempt.model_copy(update={"checks": found})

    return {"attempts": list(await asyncio.gather(*(one(a) for a in state["attempts"])))}


def _checked(attempt: Attempt) -> bool:
    return bool(attempt.checks) and all(check.outcome != "failed" for check in attempt.checks.values())


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
    g.add_conditional_edges("check_question", on_loop(fan_out), ["solve", "reject"])
    g.add_edge("solve", "verify")
    g.add_conditional_edges("verify", on_loop(route_after_verify), ["judge", "reject"])
    g.add_conditional_edges("judge", on_loop(route_after_judge), ["accept", "reject"])
    g.add_edge("accept", END)
    g.add_edge("reject", END)
    return g



# --------------------------------------------------------------------------- the runner's interface


def prepare_corpus(recipe: DomainRecipe, store: Store) -> IngestReport:
    """Ingest the recipe's corpus into the run's store; unchanged documents are skipped, so a rerun adds nothing.
    A Ray worker's copy of the store holds the corpus as the run ingested it: it is only indexed."""
    corpus = recipe.corpus
    return ingest_corpus(store.con, corpus.name, recipe.corpus_paths(), max_chars=corpus.max_chars,
                         overlap=corpus.overlap, copied=store.is_copy)


def store_reads(recipe: DomainRecipe, store: Store) -> dict[str, str]:
    prepare_corpus(recipe, store)
    return CORPUS_TABLES


def make_context(recipe: DomainRecipe, pool: ModelPool, store: Store | None = None) -> DomainContext:
    if store is None:
        raise RetrievalError("the domain family retrieves from the run's store: run the recipe with the runner")
    prompts = FAMILY.prompt_set(recipe)
    roles, corpus = recipe.roles, recipe.corpus
    report = prepare_corpus(recipe, store)
    chunks = sample_chunks(store.con, corpus.name, n=1 << 30)  # every chunk, in an order fixed by the corpus
    order = [h.chunk_id for h in chunks if len(h.text) >= corpus.min_chunk_chars]
    if not order:
        raise RetrievalError(f"corpus {corpus.name!r} has no chunk of at least {corpus.min_chunk_chars} characters "
                         "to write questions from: lower corpus.min_chunk_chars")
    return DomainContext(
        proposer=DomainProposer(pool.client(recipe.role_model("proposer")), roles.proposer.sampling(), prompts=prompts),
        solver=DomainSolver(pool.client(recipe.role_model("solver")), roles.solver.sampling(), prompts=prompts),
        critic=DomainCritic(pool.client(recipe.role_model("critic")), roles.critic.sampling(), prompts=prompts),
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


def critic_passed(judgement: QAJudgement, threshold: float) -> bool:
    """The critic's accept rule, the one place it is written."""
    return judgement.question_ok and judgement.supported and judgement.score >= threshold


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
    if not critic_passed(judgement, threshold):
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
            ) -> Rows:
    """The samples, chat turns and verdicts of one finished graph instance, plus attempt key -> sample id."""
    kind, question = state["kind"], state.get("question")
    base = {"question_kind": kind, "answerable": kind != "unanswerable", "question": question,
            "question_source": "seed" if state["seed"].question is not None else "proposed",
            "source_chunks": [h.chunk_id for h in state.get("sources", [])],
            "corpus": context.retriever.corpus, "tools": [search_tool(context.description)]}
    if state.get("probe") is not None:
        base["probe"] = state["probe"]
    problems = state.get("question_problems") or []
    if question is None or problems:
        sample = sample_row(run_id, seed_id, "question", kind="grounded_question",
                            status="error" if question is None else "rejected",
                            reason=state.get("question_error") or "question: " + "; ".join(problems), payload=base)
        verdicts = [VerdictRow(sample_id=sample.sample_id, verifier="question", outcome="failed",
                               detail="; ".join(problems))] if problems else []
        return Rows([sample], [], verdicts, {"question": sample.sample_id})
    samples, messages, verdicts, sample_ids = [], [], [], {}
    for attempt in sorted(state["attempts"], key=lambda a: int(a.key[1:])):
        status, reason = attempt_verdict(attempt, context.critic_threshold)
        judgement = attempt.judgement
        sample = sample_row(
            run_id, seed_id, attempt.key, kind="grounded_qa", status=status, reason=reason,
            score=judgement.score if judgement else None,
            payload={**base, "attempt": attempt.key, "stopped": attempt.stopped, "answer": attempt.answer,
                     "declined": attempt.stopped == "declined", "decline_reason": attempt.decline_reason,
                     "citations": attempt.citations, "retrieved": attempt.retrieved,
                     "queries": [s.query for s in attempt.searches]})
        samples.append(sample)
        sample_id = sample_ids[attempt.key] = sample.sample_id
        if attempt.searches:
            messages.extend(attempt_messages(sample_id, question, attempt, context.passage_chars))
        verdicts.append(VerdictRow(sample_id=sample_id, verifier="question", outcome="passed",
                                   detail="self-contained, short, ends with '?', not copied"))
        verdicts.extend(check_rows(sample_id, attempt.checks))
        if judgement is not None:
            verdicts.append(critic_row(sample_id, score=judgement.score, detail=judgement.reason,
                                       passed=critic_passed(judgement, context.critic_threshold)))
        elif attempt.judgement_error is not None:
            verdicts.append(unjudged_row(sample_id, attempt.judgement_error))
    return Rows(samples, messages, verdicts, sample_ids)


FAMILY = Family(
    name="domain", recipe=DomainRecipe, build=build, make_context=make_context, initial_state=initial_state,
    to_rows=to_rows,
    prompts=("domain_proposer", "domain_solver", "domain_critic"),
    prompt_text=domain_roles.PROMPT_TEXT, studio_recipe="demos/domain_qa.yaml", store_reads=store_reads,
)
graph = FAMILY.graph  # compiled once; tests and scripts invoke it directly
