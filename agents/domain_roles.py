"""The grounded-QA recipe's roles: proposer (writes a question from passages), solver (searches, then answers with
citations or declines), critic (question quality and entailment). Prompt + call + parsing; no graph logic.

The solver decides through structured output held to a grammar built from what it has retrieved so far: its
citations can only name chunks it has seen, and on its last step it may no longer search.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from langchain_core.messages import AIMessage, BaseMessage, HumanMessage
from pydantic import BaseModel, Field, model_validator

from synthgraph.agents.models import ModelClient, Sampling
from synthgraph.agents.prompting import DEFAULT_PROMPTS, Prompts
from synthgraph.tools.retrieval import Hit

QuestionKind = Literal["factual", "multi_hop", "unanswerable"]

# No example questions: a 0.5B proposer copied the example's subject into its own question.
KIND_INSTRUCTIONS: dict[str, str] = {
    "factual": "Write one question about {topic} that the passage answers directly, with a short factual answer "
               "(a rule, a name, a behaviour, a value).",
    "multi_hop": "Write one question that needs BOTH passages to answer: its answer combines a fact about {topic} "
                 "from passage 1 with a fact about {other_topic} from passage 2.",
    "unanswerable": "Write one short question about {topic} that a reader might ask but that documentation like this "
                    "does not answer: who designed it, or in which year it first appeared, or why another design was "
                    "rejected. Ask one thing only.",
}


SEARCH_RESULTS = "Search results for {query!r}:\n\n"
NOTHING_FOUND = "(nothing found)"
# Prompt text filled in beside the templates: part of the run id like the templates.
PROMPT_TEXT = {"kind_instructions": KIND_INSTRUCTIONS, "search_results": SEARCH_RESULTS, "nothing_found": NOTHING_FOUND}


class QuestionDraft(BaseModel):
    question: str = Field(min_length=10, max_length=400)


# One sentence ending in its only question mark: small models otherwise copy the passage or write statements.
# (No length bounds: xgrammar cannot compile a bounded repeat of this size, and pattern + maxLength sends vLLM
# to a slower backend; max_tokens and the QuestionDraft check bound it.)
QUESTION_GRAMMAR = {"type": "object",
                    "properties": {"question": {"type": "string", "pattern": r"^[A-Z][^?]*\?$"}},
                    "required": ["question"], "additionalProperties": False}


class SolverAction(BaseModel):
    """One solver step: search again, answer citing retrieved chunks, or decline."""

    action: Literal["search", "answer", "decline"]
    query: str | None = None
    answer: str | None = None
    citations: list[str] = Field(default_factory=list)
    reason: str | None = None

    @model_validator(mode="after")
    def _complete(self):
        if self.action == "search" and not (self.query or "").strip():
            raise ValueError("search needs a non-empty query")
        if self.action == "answer" and (not (self.answer or "").strip() or not self.citations):
            raise ValueError("answer needs non-empty answer text and at least one citation")
        if self.action == "decline" and not (self.reason or "").strip():
            raise ValueError("decline needs a reason")
        return self


class QAJudgement(BaseModel):
    reason: str = Field(max_length=600)
    question_ok: bool
    supported: bool
    score: int = Field(ge=0, le=10)


# ------------------------------------------------------------------------------------ question checks

_SELF_REFERENCE = re.compile(
    r"\b(?:this|these|the|that|both|two|above|given|following|provided)\s+"
    r"(?:passage|text|document|excerpt|section|paragraph|article|snippet)s?\b"
    r"|\baccording to\b|\b(?:mentioned|shown|described) above\b", re.I)
_WORDS = re.compile(r"\w+")


def longest_shared_run(text: str, source: str) -> int:
    """The most consecutive words (case-insensitive) that `text` shares with `source`."""
    a = [w.lower() for w in _WORDS.findall(text)]
    b = [w.lower() for w in _WORDS.findall(source)]
    best, previous = 0, [0] * (len(b) + 1)
    for word in a:
        current = [0] * (len(b) + 1)
        for j, other in enumerate(b, 1):
            if word == other:
                current[j] = previous[j - 1] + 1
                best = max(best, current[j])
        previous = current
    return best


def question_problems(question: str, sources: Sequence[str], *, copy_words: int, max_words: int) -> list[str]:
    """What makes a question unusable on its own: no question mark, pointing at a passage the reader will not
    see, a long run copied from its source (a copy tests matching, not understanding), or rambling on."""
    problems = []
    if not question.rstrip().endswith("?"):
        problems.append("does not end with '?'")
    if (words := len(_WORDS.findall(question))) > max_words:
        problems.append(f"has {words} words (at most {max_words}): ask one thing, briefly")
    if match := _SELF_REFERENCE.search(question):
        problems.append(f"refers to {match[0]!r}: a question must stand on its own")
    run = max((longest_shared_run(question, source) for source in sources), default=0)
    if run >= copy_words:
        problems.append(f"copies {run} consecutive words from its source passage (at most {copy_words - 1})")
    return problems


def topic_of(hit: Hit) -> str:
    """What a chunk is about, in a few words: its innermost heading, else its document's title."""
    return (hit.heading.rsplit(" > ", 1)[-1] or hit.title).strip()


def for_json_writers(text: str) -> str:
    """Passage text for a model that answers inside a JSON string: quoted terms ("nonlocal", as pydoc renders
    literals) get single quotes, since a weak model's first straight double quote ends its answer string."""
    return re.sub(r'"([^"\n]{1,80})"', r"'\1'", text)


def clip(text: str, chars: int) -> str:
    """`text` cut at a word boundary within `chars` characters."""
    return text if len(text) <= chars else text[:chars].rsplit(" ", 1)[0] + " ..."


def show_passages(hits: Sequence[Hit], chars: int, *, numbered: bool = False) -> str:
    """Passages as a model reads them: where each comes from, then its text cut at `chars`."""
    blocks = []
    for i, hit in enumerate(hits, 1):
        # Headings usually begin with the document's title already.
        where = hit.heading if hit.heading.startswith(hit.title) else " > ".join(filter(None, (hit.title, hit.heading)))
        label = f"Passage {i}" if numbered else f"[{hit.chunk_id}]"
        blocks.append(f"{label} ({where}):\n{clip(for_json_writers(hit.text), chars)}")
    return "\n\n".join(blocks)


# ---------------------------------------------------------------------------------------------- roles


@dataclass
class DomainProposer:
    client: ModelClient
    sampling: Sampling
    prompts: Prompts = DEFAULT_PROMPTS

    async def write_question(self, kind: QuestionKind, sources: Sequence[Hit], *, description: str,
                             passage_chars: int, copy_words: int, max_words: int) -> str:
        def usable(text: str) -> str | None:  # runs only on output that parsed
            problems = question_problems(QuestionDraft.model_validate_json(text).question,
                                         [h.text for h in sources], copy_words=copy_words, max_words=max_words)
            return "; ".join(problems) or None

        completion = await self.client.complete(
            self.prompts.render("domain_proposer", description=description,
                   passages=show_passages(sources, passage_chars, numbered=True),
                   kind_instruction=KIND_INSTRUCTIONS[kind].format(topic=topic_of(sources[0]),
                                                                   other_topic=topic_of(sources[-1]))),
            role="proposer", sampling=self.sampling, schema=QuestionDraft, json_schema=QUESTION_GRAMMAR,
            check=usable,
        )
        return completion.parsed.question.strip()


def action_schema(retrieved: Sequence[str], *, may_search: bool, max_citations: int = 3) -> dict:
    """The grammar a solver step is held to: citations only of retrieved chunks; no search on the last step;
    no answer when nothing was retrieved."""
    forms = []
    if may_search:
        forms.append({"type": "object",
                      "properties": {"action": {"const": "search"},
                                     "query": {"type": "string", "minLength": 2, "maxLength": 120}},
                      "required": ["action", "query"], "additionalProperties": False})
    if retrieved:
        forms.append({"type": "object",
                      "properties": {"action": {"const": "answer"},
                                     "answer": {"type": "string", "minLength": 1, "maxLength": 400},
                                     "citations": {"type": "array", "minItems": 1,
                                                   "maxItems": min(max_citations, len(retrieved)),
                                                   "items": {"enum": list(retrieved)}}},
                      "required": ["action", "answer", "citations"], "additionalProperties": False})
    forms.append({"type": "object",
                  "properties": {"action": {"const": "decline"},
                                 "reason": {"type": "string", "minLength": 1, "maxLength": 300}},
                  "required": ["action", "reason"], "additionalProperties": False})
    return {"anyOf": forms}


@dataclass
class DomainSolver:
    client: ModelClient
    sampling: Sampling
    prompts: Prompts = DEFAULT_PROMPTS

    def prompt(self, question: str, searches: Sequence[tuple[str, Sequence[Hit]]], *, description: str,
               passage_chars: int) -> list[BaseMessage]:
        """The conversation so far as this model sees it: each search as its own JSON decision, the results as
        a user turn. (The stored trajectory uses OpenAI `tool_calls` and `tool` turns.)"""
        messages = self.prompts.render("domain_solver", description=description, question=question)
        for query, hits in searches:
            messages.append(AIMessage(content=SolverAction(action="search", query=query).model_dump_json(
                include={"action", "query"})))
            messages.append(HumanMessage(content=SEARCH_RESULTS.format(query=query)
                                                 + (show_passages(hits, passage_chars) or NOTHING_FOUND)))
        return messages

    async def step(self, question: str, searches: Sequence[tuple[str, Sequence[Hit]]], *, may_search: bool,
                   description: str, passage_chars: int, subject: str | None = None) -> SolverAction:
        retrieved = list(dict.fromkeys(h.chunk_id for _, hits in searches for h in hits))
        completion = await self.client.complete(
            self.prompt(question, searches, description=description, passage_chars=passage_chars),
            role="solver", sampling=self.sampling, schema=SolverAction,
            json_schema=action_schema(retrieved, may_search=may_search), subject=subject,
        )
        return completion.parsed


@dataclass
class DomainCritic:
    client: ModelClient
    sampling: Sampling
    prompts: Prompts = DEFAULT_PROMPTS

    async def judge(self, *, question: str, passages: Sequence[Hit], reply: str, passage_chars: int,
                    subject: str | None = None) -> QAJudgement:
        completion = await self.client.complete(
            self.prompts.render("domain_critic", question=question, reply=reply,
                   passages=show_passages(passages, passage_chars) or "(none)"),
            role="critic", sampling=self.sampling, schema=QAJudgement, subject=subject,
        )
        return completion.parsed
