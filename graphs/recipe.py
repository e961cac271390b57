"""The YAML recipe: which graph, which models for which role, sampling, seeds, checks, limits.

A recipe is validated completely — seeds included — before any model loads, and a mistake is reported as
`recipe PATH: FIELD: what is wrong (got VALUE)`.
"""

from __future__ import annotations

import gzip
import json
import random
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal, Union

import yaml
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, TypeAdapter, ValidationError, model_validator

from synthgraph.agents.dialogue_roles import Twist
from synthgraph.agents.domain_roles import QuestionKind
from synthgraph.agents.models import EngineSettings, ModelSpec, Sampling
from synthgraph.store.rows import stable_id
from synthgraph.tools.functions import ToolRegistry, builtin_registry, load_tool_specs, search_documents_spec
from synthgraph.tools.retrieval import BUILTIN_CORPORA, DEFAULT_MAX_CHARS, DEFAULT_OVERLAP


def prompts_digest(graph: str) -> str:
    """Prompt templates shape the data as much as sampling does: editing one of a family's (`GRAPH_*.md`)
    starts a new run of that family; adding another family's prompts does not."""
    folder = resources.files("synthgraph.agents").joinpath("prompts")
    texts = sorted((p.name, p.read_text()) for p in folder.iterdir()
                   if p.name.startswith(f"{graph}_") and p.name.endswith(".md"))
    return stable_id(json.dumps(texts))


def check_mix(mix: dict[str, float]) -> None:
    """A recipe's `mix` (share of each seed kind) must be able to draw something."""
    if not mix or any(share < 0 for share in mix.values()) or sum(mix.values()) <= 0:
        raise ValueError("mix needs at least one kind with a positive share, and no negative shares")


def draw_kind(mix: dict[str, float], rng: random.Random) -> str:
    """A kind drawn by its share in `mix`, for a seed that names none (rng seeded from the seed, so reruns agree)."""
    kinds = [k for k, share in mix.items() if share > 0]
    return rng.choices(kinds, weights=[mix[k] for k in kinds])[0]


class RecipeError(ValueError):
    """A recipe or seed file a user must fix; the message names the file, the field and what is allowed."""


class RoleSettings(Sampling):
    model: str | None = Field(None, description="model spec for this role; default: the recipe's `model`")

    def sampling(self) -> Sampling:
        return Sampling(**self.model_dump(include=set(Sampling.model_fields)))

    @model_validator(mode="after")
    def _model_spec_parses(self):
        if self.model is not None:
            ModelSpec.parse(self.model)
        return self


class ProposerSettings(RoleSettings):
    temperature: float = Field(0.9, ge=0, le=2)
    max_tokens: int = Field(512, ge=1, le=32768)


class SolverSettings(RoleSettings):
    samples: int = Field(4, ge=1, le=64, description="independent solutions per problem (k)")
    temperature: float = Field(0.8, ge=0, le=2)
    max_tokens: int = Field(640, ge=1, le=32768)


class CriticSettings(RoleSettings):
    threshold: float = Field(6, ge=0, le=10, description="critic score (0-10) a verified trace needs")
    temperature: float = Field(0.0, ge=0, le=2)
    max_tokens: int = Field(256, ge=1, le=32768)


class CodeProposerSettings(ProposerSettings):
    max_tokens: int = Field(1024, ge=1, le=32768)


class CodeSolverSettings(SolverSettings):
    max_tokens: int = Field(1024, ge=1, le=32768)


class CodeRoles(BaseModel):
    model_config = ConfigDict(extra="forbid")

    proposer: CodeProposerSettings = Field(default_factory=CodeProposerSettings)
    solver: CodeSolverSettings = Field(default_factory=CodeSolverSettings)
    critic: CriticSettings = Field(default_factory=CriticSettings)


class ReasoningRoles(BaseModel):
    model_config = ConfigDict(extra="forbid")

    proposer: ProposerSettings = Field(default_factory=ProposerSettings)
    solver: SolverSettings = Field(default_factory=SolverSettings)
    critic: CriticSettings = Field(default_factory=CriticSettings)


class SeedSource(BaseModel):
    model_config = ConfigDict(extra="forbid")

    file: Path | None = Field(None, description="JSONL (or .jsonl.gz), one seed object per line; relative to the recipe")
    inline: list[dict[str, Any]] | None = None

    @model_validator(mode="after")
    def _exactly_one(self):
        if (self.file is None) == (self.inline is None):
            raise ValueError("give exactly one of seeds.file or seeds.inline")
        return self


class SeedBase(BaseModel):
    """One line of a seed file. Unknown fields are kept: they travel into the sample's payload."""

    model_config = ConfigDict(extra="allow")

    id: str | None = None

    @property
    def seed_id(self) -> str:
        return self.id or stable_id(json.dumps(self.model_dump(exclude_none=True), sort_keys=True))

    @property
    def generative(self) -> bool:
        """Whether running the seed again can give new data: it inspires a task rather than posing a fixed one.
        `budget.target_accepted` cycles generative seeds when the seed list runs out."""
        return True

    def again(self, round: int, stride: int) -> SeedBase:
        """The seed's `round`-th pass (2, 3, ...) as a seed of its own: a derived id gives it its own rows, seed
        row and resume. `stride` (the length of the seed list) moves planned coverage on (a grid cell, a slot)."""
        return self.model_copy(update={"id": f"{self.seed_id}#{round}"})


class Seed(SeedBase):
    """A reasoning seed: a topic to write a new problem about, or a problem with a known gold answer."""

    topic: str | None = None
    style: str | None = None
    example: str | None = None
    problem: str | None = None
    answer: str | None = None

    @model_validator(mode="after")
    def _topic_or_problem(self):
        if self.topic is None and self.problem is None:
            raise ValueError("a seed needs a `topic` (to propose a new problem) or a `problem` (with `answer`)")
        if self.problem is not None and self.answer is None:
            raise ValueError("a seed with a `problem` needs its gold `answer`")
        return self

    @property
    def generative(self) -> bool:
        return self.problem is None


class CodeSeed(SeedBase):
    """A code seed: something to write a new problem from (a `topic`, a function `signature`, a code `snippet`
    to draw on, OSS-Instruct style), or a human-eval style problem that brings its own `prompt` (a function
    stub with its docstring), `test` (asserts, or a `check(candidate)` function) and `entry_point`, with an
    optional `canonical_solution` (the body that completes the prompt)."""

    task_id: str | None = None
    topic: str | None = None
    signature: str | None = None
    snippet: str | None = None
    prompt: str | None = None
    test: str | None = None
    entry_point: str | None = None
    canonical_solution: str | None = None

    @property
    def seed_id(self) -> str:
        return self.id or self.task_id or super().seed_id

    @model_validator(mode="after")
    def _inspiration_or_problem(self):
        if self.prompt is None and not (self.topic or self.signature or self.snippet):
            raise ValueError("a code seed needs a `topic`, `signature` or `snippet` (to propose a new problem) "
                             "or a `prompt` with its `test` and `entry_point` (human-eval style)")
        if self.prompt is not None and (self.test is None or self.entry_point is None):
            raise ValueError("a seed with a `prompt` needs its `test` and `entry_point`")
        if self.entry_point is not None and not self.entry_point.isidentifier():
            raise ValueError(f"entry_point must be a Python function name (got {self.entry_point!r})")
        return self

    @property
    def generative(self) -> bool:
        return self.prompt is None


class ReviseSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    rounds: int = Field(1, ge=0, le=5, description="revision rounds when no solution verifies")


class VerifierSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    sandbox_timeout_s: float = Field(10, gt=0, le=300)
    sandbox_memory_mb: int = Field(512, ge=64, le=16384)


class Budget(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # Budgets bound one invocation of `synthgraph run`; the target counts what the store holds for the run, so a
    # rerun of the same command picks up where the last one stopped. Each stops the run the same graceful way:
    # no new seeds, the ones in flight finish.
    max_tokens: int | None = Field(None, ge=1, description="stop starting new seeds past this many tokens")
    max_seconds: float | None = Field(None, gt=0, description="stop starting new seeds after this many seconds")
    max_seeds: int | None = Field(None, ge=1, description="start at most this many seeds")
    target_accepted: int | None = Field(
        None, ge=1, description="run until the store holds this many accepted samples of the run, admitting seeds "
                                "as needed; when the seed list runs out, generative seeds (a topic, not a fixed "
                                "task) are run again as new seeds ID#2, ID#3, ...")


class RecipeBase(BaseModel):
    """What every recipe family shares: models, engine, seeds, concurrency, budget, store."""

    model_config = ConfigDict(extra="forbid")
    seed_model: ClassVar[type[SeedBase]] = SeedBase

    name: str = Field(min_length=1)
    model: str = Field("vllm:qwen2.5-coder-0.5b", description="default model spec for every role")
    engine: EngineSettings = Field(default_factory=EngineSettings)
    seeds: SeedSource
    concurrency: int = Field(16, ge=1, le=1024, description="graph instances in flight")
    max_model_attempts: int = Field(3, ge=1, le=10, description="tries per model call before an error is recorded")
    budget: Budget = Field(default_factory=Budget)
    store: Path | None = Field(None, description="DuckDB file; default ./synthgraph.duckdb")
    _base: Path | None = PrivateAttr(None)  # the recipe file's folder (load_seeds sets it)

    @model_validator(mode="after")
    def _model_spec_parses(self):
        ModelSpec.parse(self.model)
        return self

    def role_model(self, role: str) -> ModelSpec:
        return ModelSpec.parse(getattr(self.roles, role).model or self.model)

    def identity(self, seeds: list[SeedBase]) -> dict[str, Any]:
        """What makes two runs the same run: everything that changes the data, not how fast it is made."""
        recipe = self.model_dump(mode="json", exclude={"concurrency", "budget", "store", "seeds"})
        recipe["seeds"] = [s.model_dump(exclude_none=True) for s in seeds]
        recipe["prompts"] = prompts_digest(self.graph)
        return recipe

    def check_seeds(self, seeds: list[SeedBase]) -> None:
        """Checks that need the recipe and its seeds together (files beside the recipe, names they refer to);
        raises ValueError naming the problem. Runs when the recipe is loaded, before any model."""

    def resolve(self, path: Path) -> Path:
        """A path the recipe names: relative to the recipe's folder, once the recipe was loaded from a file."""
        return path if path.is_absolute() or self._base is None else self._base / path

    def run_id(self, seeds: list[SeedBase]) -> str:
        return stable_id(json.dumps(self.identity(seeds), sort_keys=True))


class ReasoningRecipe(RecipeBase):
    seed_model: ClassVar[type[SeedBase]] = Seed

    graph: Literal["reasoning"]
    roles: ReasoningRoles = Field(default_factory=ReasoningRoles)
    revise: ReviseSettings = Field(default_factory=ReviseSettings)
    verifier: VerifierSettings = Field(default_factory=VerifierSettings)


class CodeRecipe(RecipeBase):
    seed_model: ClassVar[type[SeedBase]] = CodeSeed

    graph: Literal["code"]
    roles: CodeRoles = Field(default_factory=CodeRoles)
    revise: ReviseSettings = Field(default_factory=ReviseSettings)
    verifier: VerifierSettings = Field(default_factory=VerifierSettings)


class CorpusSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, description="the corpus's name in the store (chunks.corpus)")
    paths: list[Path] = Field(default_factory=list,
                              description="files or folders (.txt .md .html .jsonl), relative to the recipe; "
                                          "none for a built-in corpus (pydoc-topics)")
    description: str | None = Field(None, description="what the documents are, in a few words, for the prompts; "
                                                      "default: 'the NAME documents'")
    max_chars: int = Field(DEFAULT_MAX_CHARS, ge=100, le=100000, description="largest chunk, in characters")
    overlap: int = Field(DEFAULT_OVERLAP, ge=0, description="characters of a chunk repeated at the start of the next")
    min_chunk_chars: int = Field(200, ge=0, description="shorter chunks are not given to the proposer")

    @model_validator(mode="after")
    def _source(self):
        if not self.paths and self.name not in BUILTIN_CORPORA:
            raise ValueError(f"corpus {self.name!r} is not built in ({', '.join(BUILTIN_CORPORA)}): "
                             "give its files or folders as corpus.paths")
        if self.overlap > self.max_chars // 2:
            raise ValueError(f"corpus.overlap must be at most max_chars / 2 = {self.max_chars // 2}")
        return self

    @property
    def about(self) -> str:
        if self.description:
            return self.description
        return "the Python language reference" if self.name == "pydoc-topics" and not self.paths \
            else f"the {self.name} documents"


class ToolUseProposerSettings(ProposerSettings):
    max_tokens: int = Field(256, ge=1, le=32768)


class ToolUseSolverSettings(SolverSettings):
    samples: int = Field(2, ge=1, le=64, description="independent trajectories per request (k)")
    temperature: float = Field(0.7, ge=0, le=2)
    max_tokens: int = Field(384, ge=1, le=32768, description="per step")
    max_steps: int = Field(4, ge=1, le=16, description="model turns per trajectory; the last may only answer")
    max_calls_per_step: int = Field(4, ge=1, le=16)
    constrain_arguments: bool = Field(
        True, description="hold each call's arguments to its tool's schema in the grammar (weak models need it); "
                          "false leaves the format check something to catch")
    mode: Literal["structured", "native"] = Field(
        "structured", description="structured: calls through a JSON grammar of the offered tools (any model); "
                                  "native: the model's own tool calling (Hermes-format in process, or the "
                                  "server's tool_calls)")


class ToolUseRoles(BaseModel):
    model_config = ConfigDict(extra="forbid")

    proposer: ToolUseProposerSettings = Field(default_factory=ToolUseProposerSettings)
    solver: ToolUseSolverSettings = Field(default_factory=ToolUseSolverSettings)
    critic: CriticSettings = Field(default_factory=CriticSettings)


RequestKind = Literal["single", "parallel", "multi_step", "no_tool"]


class ToolUseSeed(SeedBase):
    """A tool-use seed: which kind of request to write (drawn from the recipe's `mix` when absent), which tools to
    offer (names from the registry, sampled when absent, or inline OpenAI specs: spec-only), an optional scenario
    `topic`; or a ready user `request` with the `tools` it is about, which skips the proposer, and optionally its
    `ground_truth` calls (`[{"name", "arguments": {arg: [acceptable values; "" = may be left out]}}]`, BFCL's
    possible answers) for the `reference_calls` check. BFCL seed lines (`demos/seeds/bfcl.py`) load as they are:
    their `messages` give the request and their `category` the kind."""

    kind: RequestKind | None = None
    tools: list[str | dict[str, Any]] | None = None
    topic: str | None = None
    request: str | None = None
    ground_truth: list[dict[str, Any]] | None = None

    @model_validator(mode="before")
    @classmethod
    def _bfcl_line(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("request") is None and isinstance(data.get("messages"), list):
            users = [m.get("content") for m in data["messages"] if isinstance(m, dict) and m.get("role") == "user"]
            if users:
                data = {**data, "request": users[0]}
            if data.get("kind") is None and isinstance(data.get("category"), str):
                data["kind"] = "parallel" if "parallel" in data["category"] else "single"
        return data

    @model_validator(mode="after")
    def _request_needs_tools(self):
        if self.request is not None and not self.tools:
            raise ValueError("a seed with a ready `request` needs the `tools` to offer with it")
        if self.tools is not None and not self.tools:
            raise ValueError("`tools` must name at least one tool (or be left out to sample them)")
        if self.ground_truth is not None and self.request is None:
            raise ValueError("`ground_truth` belongs to a ready `request`; a proposed request has none")
        return self

    @property
    def tool_names(self) -> list[str]:
        return [t if isinstance(t, str) else t.get("function", t).get("name", "?") for t in self.tools or []]

    @property
    def inline_specs(self) -> list[dict[str, Any]]:
        return [t for t in self.tools or [] if isinstance(t, dict)]

    @property
    def generative(self) -> bool:
        return self.request is None


class ToolSource(BaseModel):
    model_config = ConfigDict(extra="forbid")

    builtin: bool = Field(True, description="offer the shipped executable tools (tools/functions.py)")
    files: list[Path] = Field(default_factory=list,
                              description="OpenAI tools JSON or BFCL JSON/JSONL files; relative to the recipe. "
                                          "Their tools are spec-only: calls are checked, not executed")
    from_seeds: bool = Field(False, description="the seeds bring their own specs (inline in `tools`), e.g. BFCL")
    corpus: CorpusSettings | None = Field(None, description="offer `search_documents` over this corpus, ingested "
                                                           "into the run's store when it starts")
    state: dict[str, Any] = Field(default_factory=dict,
                                  description="what every trajectory's stateful tools start from, e.g. "
                                              "{files: {name: text}, inventory: {item: count}}; the proposer sees it")


class ToolUseRecipe(RecipeBase):
    seed_model: ClassVar[type[SeedBase]] = ToolUseSeed

    graph: Literal["tool_use"]
    roles: ToolUseRoles = Field(default_factory=ToolUseRoles)
    tools: ToolSource = Field(default_factory=ToolSource)
    mix: dict[RequestKind, float] = Field(
        default_factory=lambda: {"single": 0.3, "parallel": 0.2, "multi_step": 0.3, "no_tool": 0.2},
        description="share of each request kind, for seeds that do not name their kind")
    tools_per_request: tuple[int, int] = Field((1, 3), description="how many tools a sampled request is offered")

    @model_validator(mode="after")
    def _mix_and_sizes(self):
        check_mix(self.mix)
        low, high = self.tools_per_request
        if not 1 <= low <= high <= 8:
            raise ValueError("tools_per_request must be [low, high] with 1 <= low <= high <= 8")
        if not (self.tools.builtin or self.tools.files or self.tools.from_seeds):
            raise ValueError("tools: offer the builtin tools, name spec files, or set from_seeds")
        return self

    def tool_files(self) -> list[Path]:
        return [self.resolve(f) for f in self.tools.files]

    def registry(self) -> ToolRegistry:
        """The builtin tools (if on) plus every spec file's tools, spec-only."""
        registry = builtin_registry() if self.tools.builtin else ToolRegistry()
        for file in self.tool_files():
            for spec in load_tool_specs(file):
                registry.register(spec)
        if self.tools.corpus is not None:  # its implementation needs the run's store: make_context binds it
            registry.register(search_documents_spec(self.tools.corpus.about), group="documents")
        return registry

    def corpus_paths(self) -> list[Path]:
        return [self.resolve(p) for p in (self.tools.corpus.paths if self.tools.corpus else [])]

    def check_seeds(self, seeds: list[SeedBase]) -> None:
        for file in self.tool_files():
            if not file.is_file():
                raise ValueError(f"tools.files: {file} does not exist")
        for path in self.corpus_paths():
            if not path.exists():
                raise ValueError(f"tools.corpus.paths: {path} does not exist")
        try:
            known = set(self.registry().names())
        except (ValueError, KeyError) as exc:
            raise ValueError(f"tools.files: {exc}") from None
        for seed in seeds:
            for spec in seed.inline_specs:
                try:
                    ToolRegistry().register(spec)
                except ValueError as exc:
                    raise ValueError(f"seed {seed.seed_id}: tool spec: {exc}") from None
            if self.tools.from_seeds and not seed.inline_specs:
                raise ValueError(f"seed {seed.seed_id}: tools.from_seeds is set but the seed brings no tool specs")
            unknown = sorted({t for t in seed.tools or [] if isinstance(t, str)} - known)
            if unknown:
                raise ValueError(f"seed {seed.seed_id}: unknown tools {', '.join(unknown)} "
                                 f"(known: {', '.join(sorted(known)[:30])}{' ...' if len(known) > 30 else ''})")

    def identity(self, seeds: list[SeedBase]) -> dict[str, Any]:
        identity = super().identity(seeds)
        identity["tools"] = stable_id(json.dumps(self.registry().specs(), sort_keys=True))  # what was on offer
        return identity


class DialogueUserSettings(RoleSettings):
    temperature: float = Field(0.9, ge=0, le=2)
    max_tokens: int = Field(192, ge=1, le=32768, description="per user turn (a JSON message + status)")


class DialogueAssistantSettings(RoleSettings):
    temperature: float = Field(0.7, ge=0, le=2)
    max_tokens: int = Field(384, ge=1, le=32768, description="per assistant turn")
    system_prompt: str = Field("You are a helpful, accurate assistant. Answer clearly and concisely.",
                               description="the assistant's system prompt: turn 0 of every dialogue; '' for none")


class DialogueCriticSettings(CriticSettings):
    threshold: float = Field(6, ge=0, le=10, description="mean critic score (0-10) an assistant turn needs")
    dialogue_threshold: float = Field(6, ge=0, le=10, description="whole-dialogue critic score a dialogue needs")
    regenerations: int = Field(1, ge=0, le=3, description="re-drafts of an assistant turn scored under threshold")


class DialogueRoles(BaseModel):
    model_config = ConfigDict(extra="forbid")

    user: DialogueUserSettings = Field(default_factory=DialogueUserSettings)
    assistant: DialogueAssistantSettings = Field(default_factory=DialogueAssistantSettings)
    critic: DialogueCriticSettings = Field(default_factory=DialogueCriticSettings)


class Persona(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=80, description="short label, what SQL groups by")
    description: str = Field(min_length=1, max_length=2000, description="the persona sheet the user simulator plays")


class TurnLimits(BaseModel):
    model_config = ConfigDict(extra="forbid")

    min_user: int = Field(3, ge=1, le=20, description="user turns before the user simulator may end the dialogue")
    max_user: int = Field(5, ge=1, le=20, description="user turns after which the dialogue ends (turn_budget)")

    @model_validator(mode="after")
    def _min_le_max(self):
        if self.min_user > self.max_user:
            raise ValueError(f"min_user ({self.min_user}) must not exceed max_user ({self.max_user})")
        return self


class DialogueChecks(BaseModel):
    model_config = ConfigDict(extra="forbid")

    max_turn_chars: int = Field(4000, ge=20, le=100000, description="longest allowed turn, user or assistant")
    near_duplicate: float = Field(0.9, gt=0, le=1, description="difflib ratio at which two assistant turns repeat")
    leak_chars: int = Field(60, ge=10, le=2000, description="verbatim overlap with the system prompt or persona "
                                                             "sheet that counts as a leak")


class DialogueSeed(SeedBase):
    """A dialogue seed: a `cell` of the recipe's persona x goal x twist grid (its position in the seed list when
    absent), and any of `persona` (a recipe persona's name), `goal`, `twist` pinned to override the grid."""

    cell: int | None = Field(None, ge=0)
    persona: str | None = None
    goal: str | None = Field(None, min_length=1)
    twist: Twist | None = None

    def again(self, round: int, stride: int) -> SeedBase:
        seed = super().again(round, stride)
        return seed if self.cell is None else seed.model_copy(update={"cell": self.cell + (round - 1) * stride})


class DialogueRecipe(RecipeBase):
    seed_model: ClassVar[type[SeedBase]] = DialogueSeed

    graph: Literal["dialogue"]
    roles: DialogueRoles = Field(default_factory=DialogueRoles)
    personas: list[Persona] = Field(min_length=1, description="the user simulator's personas")
    goals: list[str] = Field(min_length=1, description="what the user wants from the conversation")
    twists: list[Twist] = Field(["none", "changes_mind", "makes_mistake"],
                                description="what the user does on their second turn besides pursuing the goal")
    turns: TurnLimits = Field(default_factory=TurnLimits)
    verifier: DialogueChecks = Field(default_factory=DialogueChecks)

    @model_validator(mode="after")
    def _grid(self):
        names = [p.name for p in self.personas]
        if len(set(names)) != len(names):
            raise ValueError(f"personas: names must be unique (got {names})")
        if not self.twists or len(set(self.twists)) != len(self.twists):
            raise ValueError("twists: list each of none, changes_mind, makes_mistake at most once, at least one")
        if set(self.twists) - {"none"} and self.turns.max_user < 2:
            raise ValueError("twists other than none happen on the user's second turn: "
                             "set turns.max_user >= 2 or twists: [none]")
        return self

    def check_seeds(self, seeds: list[SeedBase]) -> None:
        known = {p.name for p in self.personas}
        for position, seed in enumerate(seeds):
            if seed.persona is not None and seed.persona not in known:
                raise ValueError(f"seed {seed.seed_id}: persona {seed.persona!r} is not one of the recipe's "
                                 f"personas ({', '.join(sorted(known))})")
            if seed.cell is None:
                # Coverage is planned: a seed without a cell takes the one at its position in the seed list.
                seed.cell = position


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
    max_question_words: int = Field(30, ge=5, le=200, description="longest question, in words")
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


class DomainRecipe(RecipeBase):
    seed_model: ClassVar[type[SeedBase]] = DomainSeed

    graph: Literal["domain"]
    corpus: CorpusSettings = Field(default_factory=lambda: CorpusSettings(name="pydoc-topics"))
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


# Each family's recipe is told apart by `graph`; pydantic then reports errors against that family's fields.
Recipe = Annotated[Union[ReasoningRecipe, CodeRecipe, ToolUseRecipe, DialogueRecipe, DomainRecipe],  # noqa: UP007
                   Field(discriminator="graph")]
_RECIPE = TypeAdapter(Recipe)
GRAPHS = ("reasoning", "code", "tool_use", "dialogue", "domain")


def parse_recipe(raw: dict[str, Any]) -> RecipeBase:
    return _RECIPE.validate_python(raw)


def _describe(error: dict[str, Any]) -> str:
    loc = list(error["loc"])
    if loc and loc[0] in GRAPHS:  # pydantic prefixes the family's tag; the user's YAML has no such level
        loc = loc[1:]
    where = ".".join(str(part) for part in loc) or "(top level)"
    message = error["msg"].removeprefix("Value error, ")
    if error["type"] == "missing":
        return f"{where}: required field is missing"
    if error["type"] == "extra_forbidden":
        return f"{where}: unknown field (check the spelling; demos/ has a commented recipe per graph)"
    if error["type"] in ("union_tag_invalid", "union_tag_not_found"):
        return f"graph: must be one of {', '.join(GRAPHS)} (got {error['input'].get('graph')!r})"
    return f"{where}: {message} (got {error.get('input')!r})"


def load_recipe(path: Path) -> tuple[RecipeBase, list[SeedBase]]:
    path = Path(path)
    if not path.is_file():
        raise RecipeError(f"recipe {path}: no such file")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise RecipeError(f"recipe {path}: not valid YAML: {exc}") from exc
    if not isinstance(raw, dict):
        raise RecipeError(f"recipe {path}: expected a mapping of fields at the top level")
    try:
        recipe = parse_recipe(raw)
    except ValidationError as exc:
        raise RecipeError(f"recipe {path}: " + "; ".join(_describe(e) for e in exc.errors())) from None
    return recipe, load_seeds(recipe, base=path.parent, where=f"recipe {path}")


def load_seeds(recipe: RecipeBase, *, base: Path | None, where: str) -> list[SeedBase]:
    recipe._base = base
    source = recipe.seeds
    if source.inline is not None:
        items = [(f"{where}: seeds.inline[{i}]", item) for i, item in enumerate(source.inline)]
    else:
        file = recipe.resolve(source.file)
        if not file.is_file():
            raise RecipeError(f"{where}: seeds.file: {file} does not exist")
        items = []
        text = gzip.decompress(file.read_bytes()).decode() if file.suffix == ".gz" else file.read_text()
        for number, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                items.append((f"seed file {file}:{number}", json.loads(line)))
            except json.JSONDecodeError as exc:
                raise RecipeError(f"seed file {file}:{number}: not valid JSON ({exc.msg})") from None
    seeds = []
    for label, item in items:
        try:
            seeds.append(recipe.seed_model.model_validate(item))
        except ValidationError as exc:
            raise RecipeError(f"{label}: " + "; ".join(_describe(e) for e in exc.errors())) from None
    if not seeds:
        raise RecipeError(f"{where}: the seed source is empty")
    ids = [s.seed_id for s in seeds]
    if len(set(ids)) != len(ids):
        duplicate = next(i for i in ids if ids.count(i) > 1)
        raise RecipeError(f"{where}: seed id {duplicate!r} appears more than once; ids must be unique")
    try:
        recipe.check_seeds(seeds)
    except ValueError as exc:
        raise RecipeError(f"{where}: {exc}") from None
    return seeds
