"""The YAML recipe: which graph, which models for which role, sampling, seeds, checks, limits.

A recipe is validated completely — seeds included — before any model loads, and a mistake is reported as
`recipe PATH: FIELD: what is wrong (got VALUE)`.
"""

from __future__ import annotations

import gzip
import json
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal, Union

import yaml
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, model_validator

from synthgraph.agents.models import EngineSettings, ModelSpec, Sampling
from synthgraph.store.rows import stable_id


def prompts_digest(graph: str) -> str:
    """Prompt templates shape the data as much as sampling does: editing one of a family's (`GRAPH_*.md`)
    starts a new run of that family; adding another family's prompts does not."""
    folder = resources.files("synthgraph.agents").joinpath("prompts")
    texts = sorted((p.name, p.read_text()) for p in folder.iterdir()
                   if p.name.startswith(f"{graph}_") and p.name.endswith(".md"))
    return stable_id(json.dumps(texts))


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


class ReviseSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    rounds: int = Field(1, ge=0, le=5, description="revision rounds when no solution verifies")


class VerifierSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    sandbox_timeout_s: float = Field(10, gt=0, le=300)
    sandbox_memory_mb: int = Field(512, ge=64, le=16384)


class Budget(BaseModel):
    model_config = ConfigDict(extra="forbid")

    max_tokens: int | None = Field(None, ge=1, description="stop starting new seeds past this many tokens")


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


# Each family's recipe is told apart by `graph`; pydantic then reports errors against that family's fields.
Recipe = Annotated[Union[ReasoningRecipe, CodeRecipe], Field(discriminator="graph")]  # noqa: UP007 (grows per family)
_RECIPE = TypeAdapter(Recipe)
GRAPHS = ("reasoning", "code")


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
    source = recipe.seeds
    if source.inline is not None:
        items = [(f"{where}: seeds.inline[{i}]", item) for i, item in enumerate(source.inline)]
    else:
        file = source.file if source.file.is_absolute() else base / source.file
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
    return seeds
