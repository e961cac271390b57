"""The rows synthgraph writes: pydantic models mirroring store/schema.sql, built by graphs, written by the store."""

from __future__ import annotations

import hashlib
import json
from datetime import datetime
from typing import Any, Literal, NamedTuple

from pydantic import BaseModel, Field

SampleStatus = Literal["accepted", "rejected", "error"]
ChatRole = Literal["system", "user", "assistant", "tool"]
VerdictOutcome = Literal["passed", "failed", "unchecked"]


class CheckOutcome(NamedTuple):
    """What one computed check found and why. A family's verify step keeps these in its graph state (verifier
    name -> outcome); each becomes a `verdicts` row."""

    outcome: VerdictOutcome
    detail: str


def stable_id(*parts: object) -> str:
    """A short content-derived id: the same parts always give the same id, so rewrites are no-ops."""
    digest = hashlib.sha256("\x1f".join(str(p) for p in parts).encode()).hexdigest()
    return digest[:20]


class RunRow(BaseModel):
    run_id: str
    name: str
    graph: str
    recipe: dict[str, Any]
    recipe_path: str | None = None


class SeedRow(BaseModel):
    run_id: str
    seed_id: str
    position: int
    payload: dict[str, Any]


class SampleRow(BaseModel):
    sample_id: str
    run_id: str
    seed_id: str
    group_id: str
    kind: str
    status: SampleStatus
    reason: str | None = None
    score: float | None = None
    payload: dict[str, Any] = Field(default_factory=dict)


class MessageRow(BaseModel):
    sample_id: str
    turn: int
    role: ChatRole
    content: str | None
    tool_calls: list[dict[str, Any]] | None = None
    tool_call_id: str | None = None
    name: str | None = None


class VerdictRow(BaseModel):
    sample_id: str
    verifier: str
    outcome: VerdictOutcome
    score: float | None = None
    detail: str = ""
    turn: int | None = None

    @property
    def verdict_id(self) -> str:
        return stable_id(self.sample_id, self.verifier, self.turn)

    @property
    def passed(self) -> bool | None:
        return None if self.outcome == "unchecked" else self.outcome == "passed"


class AgentCallRow(BaseModel):
    call_id: str
    run_id: str
    seed_id: str
    sample_id: str | None
    role: str
    node: str
    model: str
    prompt_hash: str
    prompt: list[dict[str, Any]]
    completion: str | None
    prompt_tokens: int | None
    completion_tokens: int | None
    latency_s: float
    finish_reason: str | None
    sampling: dict[str, Any]
    error: str | None
    started_at: datetime


class SeedOutcome(BaseModel):
    """Everything one seed produced. Written in one transaction, so a killed run never leaves half a seed."""

    run_id: str
    seed_id: str
    status: Literal["done", "error"]
    error: str | None = None
    seed: SeedRow | None = None  # a seed the run made as it went (a generative seed's next pass): written with it
    samples: list[SampleRow] = Field(default_factory=list)
    messages: list[MessageRow] = Field(default_factory=list)
    verdicts: list[VerdictRow] = Field(default_factory=list)
    agent_calls: list[AgentCallRow] = Field(default_factory=list)


def to_json(value: Any) -> str | None:
    return None if value is None else json.dumps(value, ensure_ascii=False, default=str)
