"""The YAML recipe: which graph, which models for which role, sampling, seeds, checks, limits.

A recipe is validated completely — seeds included — before any model loads, and a mistake is reported as
`recipe PATH: FIELD: what is wrong (got VALUE)`.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterable
from pathlib import Path
from typing import Any, ClassVar, Self

import yaml
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, model_validator

from synthgraph.agents.models import EngineSettings, ModelSpec, Sampling
from synthgraph.agents.prompting import PromptOverride
from synthgraph.graphs.cleaning import DecontaminationSettings, DedupSettings
from synthgraph.graphs.seed_files import SeedFileError, read_rows, select_rows
from synthgraph.store.rows import stable_id
from synthgraph.tools.retrieval import BUILTIN_CORPORA, DEFAULT_MAX_CHARS, DEFAULT_OVERLAP


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


class SeedSource(BaseModel):
    model_config = ConfigDict(extra="forbid")

    file: Path | None = Field(None, description="JSONL (.jsonl, .jsonl.gz), CSV, Parquet, or a `datasets` folder made "
                                                "with save_to_disk; relative to the recipe")
    inline: list[dict[str, Any]] | None = None
    split: str | None = Field(None, description="the split of a `datasets` folder that holds several")
    fields: dict[str, str] | None = Field(None, description="seed field -> the file's column, e.g. {topic: Subject}; "
                                                           "when given, only these fields are kept")
    sample: int | None = Field(None, ge=1, description="use this many rows, drawn at random with `seed`")
    shuffle: bool = Field(False, description="use the rows in a random order drawn with `seed`")
    seed: int | None = Field(None, description="the random seed of `sample` / `shuffle` (default 0): the same seed "
                                               "draws the same rows")

    @model_validator(mode="after")
    def _exactly_one(self):
        if (self.file is None) == (self.inline is None):
            raise ValueError("give exactly one of seeds.file or seeds.inline")
        if self.split is not None and self.inline is not None:
            raise ValueError("seeds.split names a split of a `datasets` folder; inline seeds have none: remove it")
        if self.seed is not None and self.sample is None and not self.shuffle:
            raise ValueError("seeds.seed draws the rows of seeds.sample or seeds.shuffle, and neither is given: "
                             "add one, or remove seeds.seed")
        return self


class SeedBase(BaseModel):
    """One line of a seed file. Unknown fields are kept: they travel into the sample's payload."""

    model_config = ConfigDict(extra="allow")

    id: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _blank_is_absent(cls, data: Any) -> Any:
        # A blank CSV cell under a field the family reads means "not given", not an empty topic or answer. Fields
        # of the user's own (a pipeline's template values) keep their blanks.
        if isinstance(data, dict):
            return {k: v for k, v in data.items() if not (v == "" and k in cls.model_fields)}
        return data

    @property
    def seed_id(self) -> str:
        return self.id or stable_id(json.dumps(self.model_dump(exclude_none=True), sort_keys=True, default=str))

    @property
    def generative(self) -> bool:
        """Whether running the seed again can give new data: it inspires a task rather than posing a fixed one.
        `budget.target_accepted` cycles generative seeds when the seed list runs out."""
        return True

    def again(self, round: int, stride: int) -> SeedBase:
        """The seed's `round`-th pass (2, 3, ...) as a seed of its own: a derived id gives it its own rows, seed
        row and resume. `stride` (the length of the seed list) moves planned coverage on (a grid cell, a slot)."""
        return self.model_copy(update={"id": f"{self.seed_id}#{round}"})


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
    concurrency: int = Field(16, ge=1, le=1024, description=(
        "the most graph instances in flight, per worker on Ray (a memory guard); below it, a model back end that "
        "reports its queue (in-process vLLM, a vLLM server) paces admission so its batch stays full"))
    max_model_attempts: int = Field(3, ge=1, le=10, description="tries per model call before an error is recorded")
    budget: Budget = Field(default_factory=Budget)
    store: Path | None = Field(None, description="DuckDB file, relative to the recipe's folder as every path it "
                                                "names; default ./synthgraph.duckdb (--db overrides both)")
    prompts: dict[str, PromptOverride] = Field(
        default_factory=dict, description="replacements for the family's prompt templates, by name (e.g. solver): "
                                          "inline system / user parts, or a file with '## system' and '## user'")
    dedup: DedupSettings = Field(default_factory=DedupSettings, description="near-duplicate samples: `false` or "
                                 "{scope: run|store, threshold, text: user|assistant|conversation, action: reject|flag}")
    decontaminate: DecontaminationSettings = Field(
        default_factory=DecontaminationSettings, description="overlap with evaluation sets: `false` or "
        "{benchmarks: [humaneval, mt-bench, bfcl, PATH:FIELD], text, action: reject|flag}")
    _base: Path | None = PrivateAttr(None)  # the recipe file's folder (load_seeds sets it)

    @model_validator(mode="after")
    def _model_spec_parses(self):
        ModelSpec.parse(self.model)
        return self

    @model_validator(mode="after")
    def _room_for_the_prompt(self):
        # An in-process engine cuts a reply at the end of its context: max_tokens past it would never apply.
        for path, role in _named_roles(getattr(self, "roles", None), "roles"):
            if ModelSpec.parse(role.model or self.model).provider == "vllm" and \
                    role.max_tokens >= self.engine.max_model_len:
                raise ValueError(f"{path}.max_tokens {role.max_tokens} leaves no room for the prompt in "
                                 f"engine.max_model_len {self.engine.max_model_len} (the model's context): raise "
                                 "engine.max_model_len or lower max_tokens")
        return self

    def role_model(self, role: str) -> ModelSpec:
        return ModelSpec.parse(getattr(self.roles, role).model or self.model)

    def model_specs(self) -> list[ModelSpec]:
        """Every model the recipe's roles use, wherever a family keeps them (named roles, a list of responders, a
        pipeline's role map): a role without a model of its own uses the recipe's `model`."""
        settings = _role_settings(getattr(self, "roles", None))
        return list(dict.fromkeys(ModelSpec.parse(s.model or self.model) for s in settings)) or [
            ModelSpec.parse(self.model)]

    def with_overrides(self, **fields: Any) -> Self:
        """This recipe with some fields replaced, validated again, still resolving paths from its own folder."""
        if "model" in fields and hasattr(self, "roles"):  # one model for every role, as the command line means it
            fields.setdefault("roles", _without_role_models(self.roles))
        recipe = type(self).model_validate({**self.model_dump(), **fields})
        recipe._base = self._base
        return recipe

    def identity(self, seeds: list[SeedBase]) -> dict[str, Any]:
        """What makes two runs the same run: everything that changes the data, not how fast it is made."""
        from synthgraph.graphs.family import family

        recipe = self.model_dump(mode="json", exclude={"concurrency", "budget", "store", "seeds", "prompts"})
        recipe["seeds"] = [s.model_dump(mode="json", exclude_none=True) for s in seeds]
        recipe["prompts"] = family(self.graph).prompts_digest(self)
        return recipe

    def check_seeds(self, seeds: list[SeedBase]) -> None:
        """Checks that need the recipe and its seeds together (files beside the recipe, names they refer to);
        raises ValueError naming the problem. Runs when the recipe is loaded, before any model."""

    def resolve(self, path: Path) -> Path:
        """A path the recipe names: relative to the recipe's folder, once the recipe was loaded from a file."""
        return path if path.is_absolute() or self._base is None else self._base / path

    def run_id(self, seeds: list[SeedBase]) -> str:
        return stable_id(json.dumps(self.identity(seeds), sort_keys=True))


def _role_settings(value: Any) -> list[RoleSettings]:
    return [role for _, role in _named_roles(value, "roles")]


def _named_roles(value: Any, path: str) -> list[tuple[str, RoleSettings]]:
    """Every role in `value` (roles, however a family nests them) with its path as a recipe writes it."""
    if isinstance(value, RoleSettings):
        return [(path, value)]
    if isinstance(value, BaseModel):
        return [r for name in type(value).model_fields for r in _named_roles(getattr(value, name), f"{path}.{name}")]
    if isinstance(value, dict):
        return [r for key, item in value.items() for r in _named_roles(item, f"{path}.{key}")]
    if isinstance(value, (list, tuple)):
        return [r for i, item in enumerate(value) for r in _named_roles(item, f"{path}[{i}]")]
    return []


def _without_role_models(value: Any) -> Any:
    """`value` (roles, however nested) with every role's own `model` cleared."""
    if isinstance(value, RoleSettings):
        return value.model_copy(update={"model": None})
    if isinstance(value, BaseModel):
        return value.model_copy(update={name: _without_role_models(getattr(value, name))
                                        for name in type(value).model_fields})
    if isinstance(value, dict):
        return {key: _without_role_models(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_without_role_models(item) for item in value)
    return value


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


def parse_recipe(raw: dict[str, Any]) -> RecipeBase:
    """The recipe model of the family `raw["graph"]` names (built-in or plugin), validated; raises RecipeError for
    a missing or unknown graph and pydantic's ValidationError for the family's own fields."""
    from synthgraph.graphs.family import families, family

    if "graph" not in raw:
        raise RecipeError(f"graph: required field is missing (one of {', '.join(families())})")
    return family(str(raw["graph"])).recipe.model_validate(raw)


def changed(settings: BaseModel, names: Iterable[str]) -> list[str]:
    """Those of `names` whose value is not the field's default: what a recipe asked for. (Not `model_fields_set`:
    a recipe validated again from its own dump, as `with_overrides` does, has set every field.)"""
    return sorted(n for n in names if getattr(settings, n) != type(settings).model_fields[n].default)


def _describe(error: dict[str, Any]) -> str:
    loc = list(error["loc"])
    where = ".".join(str(part) for part in loc) or "(top level)"
    message = error["msg"].removeprefix("Value error, ")
    if error["type"] == "missing":
        return f"{where}: required field is missing"
    if error["type"] == "extra_forbidden":
        return f"{where}: unknown field (check the spelling; demos/ has a commented recipe per graph)"
    if not loc:  # a check of the whole recipe names its fields itself; its input is the whole recipe
        return message
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
    except RecipeError as exc:
        raise RecipeError(f"recipe {path}: {exc}") from None
    return recipe, load_seeds(recipe, base=path.parent, where=f"recipe {path}")


def load_seeds(recipe: RecipeBase, *, base: Path | None, where: str) -> list[SeedBase]:
    recipe._base = base
    source = recipe.seeds
    try:
        items = (read_rows(recipe.resolve(source.file), split=source.split) if source.inline is None
                 else [(f"{where}: seeds.inline[{i}]", item) for i, item in enumerate(source.inline)])
        items = select_rows(items, fields=source.fields, sample=source.sample, shuffle=source.shuffle,
                            seed=source.seed or 0)
    except SeedFileError as exc:
        raise RecipeError(f"{where}: {exc}" if str(exc).startswith("seeds.") else str(exc)) from None
    seeds = []
    for label, item in items:
        try:
            seeds.append(recipe.seed_model.model_validate(item))
        except ValidationError as exc:
            raise RecipeError(f"{label}: " + "; ".join(_describe(e) for e in exc.errors())) from None
    if not seeds:
        raise RecipeError(f"{where}: the seed source is empty")
    first: dict[str, str] = {}
    for (label, _), seed in zip(items, seeds):
        if (earlier := first.setdefault(seed.seed_id, label)) != label:
            named = "" if seed.id else " (an id made from the seed's content: the two rows are the same seed)"
            raise RecipeError(f"{label}: seed id {seed.seed_id!r}{named} is also {earlier}'s; ids must be unique")
    for (label, _), seed in zip(items, seeds):
        base, _, number = seed.seed_id.rpartition("#")
        if number.isdigit() and base in first:  # `base`'s later passes (budget.target_accepted) take these ids
            raise RecipeError(f"{label}: seed id {seed.seed_id!r} is the id synthgraph gives the later passes of seed "
                              f"{base!r} ({first[base]}); rename one of them")
    from synthgraph.graphs.family import family

    try:
        family(recipe.graph).prompt_set(recipe)  # an override that does not fit its prompt fails here, not mid-run
        recipe.check_seeds(seeds)
    except ValueError as exc:
        raise RecipeError(f"{where}: {exc}") from None
    return seeds
