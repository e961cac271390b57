"""The YAML of a declarative pipeline (`graph: pipeline`), and every check that can be made before a model loads.

A pipeline is named nodes (llm / check / judge), edges between them (`ask -> answer -> check`, or a route on a
node's outcome `check: {passed: accept, failed: answer, max_visits: 2}`), the terminals accept / reject / review,
and what a finished candidate emits as a sample. Mistakes are reported with the field path and the fix: an
undefined template variable, an unknown node / output field / verifier / role, a loop without a bound, an
unreachable node, an output schema that is not JSON Schema.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from functools import cached_property
from typing import Any, ClassVar, Literal

import jinja2
import jsonschema
from jinja2 import meta, nodes as jinja_nodes
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from synthgraph.graphs.recipe import RecipeBase, RoleSettings, SeedBase, changed

TERMINALS = ("accept", "reject", "review")
Outcome = Literal["passed", "failed", "unchecked"]

# verifier -> (required arguments, optional arguments, extra output fields besides outcome / reason / score)
VERIFIERS: dict[str, tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]] = {
    "answers_match": (("candidate", "reference"), (), ("extracted",)),
    "run_tests": (("solution", "tests"), ("entry_point",), ()),
    "validate_call": (("call", "spec"), (), ()),
    "grounded": (("answer", "passages"), ("min_support",), ()),
    "json_schema": (("value", "schema"), (), ()),
    "regex": (("value", "pattern"), ("full",), ()),
    "length": (("value",), ("min_words", "max_words", "min_chars", "max_chars"), ()),
    "not_a_copy": (("text", "source"), ("max_overlap", "n"), ()),
    "run_program": (("code",), ("prelude",), ("stdout", "answer")),
    "python": (("code",), ("inputs",), ("stdout",)),
    "majority": (("value",), ("min_share",), ("value",)),
    "function": (("ref",), ("args",), ()),
}
# Pass or fail, nothing between: every candidate that passes has the same score.
UNGRADED = {"answers_match", "run_tests", "validate_call", "json_schema", "regex", "length", "run_program", "majority"}
# Arguments taken as written, never rendered: source code and schemas are full of braces.
LITERAL_ARGUMENTS = {("python", "code"), ("json_schema", "schema"), ("validate_call", "spec"), ("function", "ref"),
                     ("run_program", "prelude"), ("regex", "pattern")}
COMPACT_TYPES = {"str": {"type": "string"}, "int": {"type": "integer"}, "float": {"type": "number"},
                 "bool": {"type": "boolean"}, "list[str]": {"type": "array", "items": {"type": "string"}},
                 "list[int]": {"type": "array", "items": {"type": "integer"}}}
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_REFERENCE = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_]*)(?:\.([A-Za-z_][A-Za-z0-9_]*))?\s*$")

TEMPLATES = jinja2.Environment(undefined=jinja2.StrictUndefined, autoescape=False, keep_trailing_newline=True)


def as_template(text: str) -> str:
    """`ask.question` (a bare reference) means `{{ ask.question }}`; anything with Jinja syntax is a template."""
    return text if "{{" in text or "{%" in text or not _REFERENCE.match(text) else "{{ " + text.strip() + " }}"


# ------------------------------------------------------------------------------------------- node kinds


class LlmSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    role: str = Field(description="a name under `roles:` (its model and sampling; lineage's agent_calls.role)")
    system: str | None = Field(None, description="Jinja2 template of the system part")
    user: str = Field(description="Jinja2 template of the user part, over seed fields and earlier nodes' outputs")
    output: Literal["text"] | dict[str, Any] = Field(
        "text", description="text, a JSON Schema (type: object), or fields {name: str|int|float|bool|list[str]|[choices]}")
    samples: int = Field(1, ge=1, le=64, description="independent candidates (k): a fan-out")
    at_max_tokens: Literal["retry", "keep"] = Field(
        "retry", description="an output cut off at max_tokens: refused and asked again (the default), or kept as it is")
    for_each: dict[str, list[Any]] | None = Field(
        None, description="{name: [values]}: a fan-out with one candidate per value (times samples), the value "
                          "seen as {{ name }} by this node and every later one (e.g. styles to rewrite in)")

    @model_validator(mode="after")
    def _keep_only_text(self):
        if self.at_max_tokens == "keep" and self.output != "text":
            raise ValueError("at_max_tokens: keep is for text output; a structured output cut off is not valid JSON")
        return self

    @field_validator("for_each")
    @classmethod
    def _one_binding(cls, for_each):
        if for_each is not None:
            if len(for_each) != 1:
                raise ValueError(f"for_each binds one name to a list of values (got {len(for_each)} names)")
            [(name, values)] = for_each.items()
            if not _NAME.match(name) or not values:
                raise ValueError(f"for_each: {name!r} must be an identifier bound to a non-empty list of values")
        return for_each

    @property
    def fans_out(self) -> bool:
        return self.samples > 1 or self.for_each is not None

    @property
    def branches(self) -> list[dict[str, Any]]:
        """The bindings of each branch of the fan-out, in order."""
        [(name, values)] = (self.for_each or {"": [None]}).items()
        return [({name: value} if name else {}) for value in values for _ in range(self.samples)]

    @cached_property
    def json_schema(self) -> dict[str, Any] | None:
        if self.output == "text":
            return None
        if any(key in self.output for key in ("type", "properties", "$schema")):
            return self.output
        properties = {name: ({"enum": list(kind)} if isinstance(kind, list) else COMPACT_TYPES[kind])
                      for name, kind in self.output.items()}
        return {"type": "object", "properties": properties, "required": list(properties),
                "additionalProperties": False}

    @field_validator("output")
    @classmethod
    def _output_is_a_schema(cls, output):
        if output == "text":
            return output
        if any(key in output for key in ("type", "properties", "$schema")):
            try:
                jsonschema.Draft202012Validator.check_schema(output)
            except jsonschema.SchemaError as exc:
                where = ".".join(str(p) for p in exc.absolute_path) or "(top)"
                raise ValueError(f"not a valid JSON Schema at {where}: {exc.message}") from None
            if output.get("type") != "object" or not isinstance(output.get("properties"), dict):
                raise ValueError("a structured output must be a JSON Schema with type: object and properties "
                                 "(its fields are what later nodes refer to)")
            return output
        for name, kind in output.items():
            if not _NAME.match(name):
                raise ValueError(f"field {name!r} must be an identifier (later templates refer to it)")
            if not ((isinstance(kind, str) and kind in COMPACT_TYPES) or (isinstance(kind, list) and kind)):
                raise ValueError(f"field {name}: type must be one of {', '.join(COMPACT_TYPES)} or a list of "
                                 f"choices (got {kind!r})")
        return output

    @property
    def fields(self) -> tuple[str, ...]:
        return ("text",) if self.json_schema is None else tuple(self.json_schema["properties"])


class JudgeSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    role: str
    rubric: str = Field(description="what a good answer is; the judge scores 0-10 against it")
    show: str = Field(description="Jinja2 template of what is judged, e.g. 'Q: {{ ask.question }} A: {{ answer.text }}'")
    threshold: float = Field(7, ge=0, le=10, description="score a candidate needs to pass")
    pairwise: bool = Field(False, description="compare the first two candidates instead of scoring each alone")
    system: str | None = Field(None, description="replaces the judge's instructions (the rubric is still given)")

    @model_validator(mode="after")
    def _threshold_scores(self):
        if self.pairwise and changed(self, ["threshold"]):
            raise ValueError("threshold: a pairwise judge passes the candidate it prefers and scores none; "
                             "remove threshold, or pairwise to score each candidate")
        return self


class NodeSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    llm: LlmSpec | None = None
    check: dict[str, dict[str, Any]] | None = Field(
        None, description=f"one verifier and its arguments; verifiers: {', '.join(VERIFIERS)}")
    judge: JudgeSpec | None = None
    select: Literal["all", "best", "first"] = Field(
        "all", description="after a fan-out: keep all candidates that pass, the best by score, or the first")

    @model_validator(mode="after")
    def _one_kind(self):
        kinds = [k for k in ("llm", "check", "judge") if getattr(self, k) is not None]
        if len(kinds) != 1:
            raise ValueError(f"a node is exactly one of llm, check, judge (got {', '.join(kinds) or 'none'})")
        if self.check is not None:
            if len(self.check) != 1:
                raise ValueError(f"check names exactly one verifier (got {', '.join(self.check) or 'none'}); "
                                 "use one node per check")
            [(verifier, args)] = self.check.items()
            if verifier not in VERIFIERS:
                raise ValueError(f"check: unknown verifier {verifier!r}; verifiers: {', '.join(VERIFIERS)}")
            required, optional, _ = VERIFIERS[verifier]
            args = args or {}
            missing = [a for a in required if a not in args]
            unknown = [a for a in args if a not in required + optional]
            if missing or unknown:
                problem = f"needs {', '.join(missing)}" if missing else f"has no argument {unknown[0]!r}"
                raise ValueError(f"check.{verifier} {problem}; its arguments: {', '.join(required)}"
                                 + (f" (optional: {', '.join(optional)})" if optional else ""))
            if verifier == "length" and not args.keys() & set(optional):
                raise ValueError("check.length needs at least one of " + ", ".join(optional))
            if verifier == "regex":
                try:
                    re.compile(args["pattern"])
                except re.error as exc:
                    raise ValueError(f"check.regex.pattern is not a valid regular expression: {exc}") from None
            if verifier == "json_schema":
                try:
                    jsonschema.Draft202012Validator.check_schema(args["schema"])
                except jsonschema.SchemaError as exc:
                    raise ValueError(f"check.json_schema.schema is not a valid JSON Schema: {exc.message}") from None
            if verifier == "function" and not re.match(r"^[\w.]+:\w+$", str(args["ref"])):
                raise ValueError(f"check.function.ref must look like 'package.module:function' (got {args['ref']!r})")
        return self

    @property
    def kind(self) -> Literal["llm", "check", "judge"]:
        return "llm" if self.llm else "check" if self.check is not None else "judge"

    @property
    def verifier(self) -> str | None:
        return next(iter(self.check)) if self.check else None

    @property
    def fields(self) -> tuple[str, ...]:
        if self.llm is not None:
            return self.llm.fields
        extra = VERIFIERS[self.verifier][2] if self.check is not None else ("winner",) if self.judge.pairwise else ()
        return ("outcome", "reason", "score", *extra)

    def templates(self, name: str) -> Iterable[tuple[str, str]]:
        """(field path, template) of every template the node renders."""
        if self.llm is not None:
            if self.llm.system is not None:
                yield f"nodes.{name}.llm.system", self.llm.system
            yield f"nodes.{name}.llm.user", self.llm.user
        elif self.judge is not None:
            yield f"nodes.{name}.judge.show", self.judge.show
        else:
            [(verifier, args)] = self.check.items()
            for arg, value in (args or {}).items():
                if (verifier, arg) in LITERAL_ARGUMENTS:
                    continue
                for i, item in enumerate(value if isinstance(value, list) else [value]):
                    if isinstance(item, dict):
                        for key, inner in item.items():
                            if isinstance(inner, str):
                                yield f"nodes.{name}.check.{verifier}.{arg}.{key}", inner
                    elif isinstance(item, str):
                        suffix = f"[{i}]" if isinstance(value, list) else ""
                        yield f"nodes.{name}.check.{verifier}.{arg}{suffix}", item


# ------------------------------------------------------------------------------------------- routing


class RouteSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    passed: str
    failed: str
    unchecked: str | None = Field(None, description="default: where `failed` goes")
    max_visits: int | None = Field(None, ge=1, le=100,
                                   description="the node runs at most this often; a loop back past it goes to `exhausted`")
    exhausted: str = "reject"

    def targets(self) -> dict[str, str]:
        return {"passed": self.passed, "failed": self.failed, "unchecked": self.unchecked or self.failed}


class EmitSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    messages: list[str | dict[Literal["system", "user", "assistant"], str]] = Field(
        description="the chat record: references (ask.question) alternate user / assistant, or {role: template}")
    payload: dict[str, str] = Field(default_factory=dict, description="name -> reference or template")
    kind: str = Field("pipeline", min_length=1, description="samples.kind of what this pipeline emits")

    def turns(self) -> list[tuple[str, str]]:
        """(chat role, template) of every turn."""
        turns = []
        for item in self.messages:
            if isinstance(item, str):
                turns.append(("user" if sum(r != "system" for r, _ in turns) % 2 == 0 else "assistant",
                              as_template(item)))
            else:
                turns.extend((role, as_template(text)) for role, text in item.items())
        return turns


class ChecksSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    allow_python: bool = Field(False, description="allow `function: module:function` checks: trusted local Python, "
                                                  "run in this process, outside the sandbox")
    sandbox_timeout_s: float = Field(10, gt=0, le=300)
    sandbox_memory_mb: int = Field(512, ge=64, le=16384)


class PipelineRecipe(RecipeBase):
    seed_model: ClassVar[type[SeedBase]] = SeedBase

    graph: Literal["pipeline"]
    roles: dict[str, RoleSettings] = Field(description="role name -> model and sampling")
    nodes: dict[str, NodeSpec] = Field(min_length=1)
    edges: list[str | dict[str, RouteSpec]] = Field(
        default_factory=list, description="'a -> b -> c' chains and {node: {passed: X, failed: Y, max_visits: N}} "
                                          "routes; none: the nodes run in the order written, then accept")
    emit: EmitSpec
    checks: ChecksSettings = Field(default_factory=ChecksSettings)

    # ---- the graph's shape

    @cached_property
    def shape(self) -> Shape:
        return Shape.of(self)

    def check_structure(self) -> None:
        """Names, roles, permissions, edges, reachability and loop bounds; raises ValueError naming the field.
        (Here rather than in a pydantic validator, so the message is the path and the fix, not the whole input.)"""
        for name, node in self.nodes.items():
            if not _NAME.match(name) or name in TERMINALS:
                raise ValueError(f"nodes.{name}: a node name must be an identifier and not one of the terminals "
                                 f"{', '.join(TERMINALS)}")
            role = node.llm.role if node.llm else node.judge.role if node.judge else None
            if role is not None and role not in self.roles:
                raise ValueError(f"nodes.{name}.{node.kind}.role: unknown role {role!r}; "
                                 f"roles: {', '.join(self.roles) or 'none (add one under roles:)'}")
            if node.verifier == "function" and not self.checks.allow_python:
                raise ValueError(f"nodes.{name}.check.function runs local Python outside the sandbox; set "
                                 "checks.allow_python: true to trust it, or use a `python` check (sandboxed)")
            if node.select != "all" and node.kind == "llm":
                raise ValueError(f"nodes.{name}.select: selection follows a check or judge node, not an llm node")
            if node.select == "best" and node.verifier in UNGRADED:
                raise ValueError(f"nodes.{name}.select: best picks the highest score, and check.{node.verifier} "
                                 "scores every candidate that passes alike: use select: first (or all)")
        used = {node.llm.role if node.llm else node.judge.role for node in self.nodes.values() if node.kind != "check"}
        for role in self.roles:
            if role not in used:  # its model would still be checked and loaded, its sampling read by nothing
                raise ValueError(f"roles.{role}: no node uses this role; remove it, or name it in a node's llm.role "
                                 "or judge.role")
        shape = self.shape  # edges, reachability and loop bounds are checked as the shape is drawn
        fan_outs = {name for name, node in self.nodes.items() if node.llm is not None and node.llm.fans_out}
        for name, node in self.nodes.items():
            # These act on a fan-out's candidates; a node no fan-out can run before only ever sees the seed.
            setting = ("select" if node.select != "all" else "judge.pairwise" if node.judge and node.judge.pairwise
                       else "check.majority" if node.verifier == "majority" else None)
            if setting is not None and not shape.before[name] & fan_outs:
                raise ValueError(f"nodes.{name}.{setting} works on the candidates of an llm node with samples or "
                                 f"for_each, and none runs before {name}: put {name} after one, or remove {setting}")
        for name, node in self.nodes.items():
            if node.llm is None or not node.llm.fans_out:
                continue
            # Its k branches meet at the next node (the step barrier); a route per branch would multiply them.
            if name in shape.routes:
                raise ValueError(f"edges: {name} fans out (samples / for_each), so it continues with a plain edge "
                                 f"('{name} -> NEXT'); route on the outcome of the check after it")
            after = self.nodes.get(shape.next[name])
            if after is not None and after.llm is not None and after.llm.fans_out:
                raise ValueError(f"edges: {name} -> {shape.next[name]}: two fan-outs in a row; put a check or a "
                                 "single-sample llm node between them")

    def role_model(self, role: str):
        from synthgraph.agents.models import ModelSpec

        return ModelSpec.parse(self.roles[role].model or self.model)

    def with_overrides(self, **fields: Any):
        if "model" in fields:  # one model for every role, as the command line means it
            fields.setdefault("roles", {name: {**r.model_dump(), "model": None} for name, r in self.roles.items()})
        recipe = type(self).model_validate({**self.model_dump(), **fields})
        recipe._base = self._base
        return recipe

    # ---- templates, checked against the seeds' fields

    def check_seeds(self, seeds: list[SeedBase]) -> None:
        self.check_structure()
        common = set.intersection(*(set(s.model_dump(exclude_none=True)) for s in seeds))
        for name in self.nodes:
            if name in common:
                raise ValueError(f"nodes.{name}: a seed field has the same name; rename the node")
        shape = self.shape
        bound = {n: set(spec.llm.for_each) for n, spec in self.nodes.items() if spec.llm and spec.llm.for_each}
        for name, variables in bound.items():
            clash = variables & (set(common) | set(self.nodes))
            if clash:
                raise ValueError(f"nodes.{name}.llm.for_each: {sorted(clash)[0]!r} is already a seed field or a "
                                 "node name; choose another name")
        for name, node in self.nodes.items():
            available = set(common) | shape.before[name] | {v for n in shape.before[name] | {name}
                                                             for v in bound.get(n, ())}
            for where, template in node.templates(name):
                check_template(where, template, available, self.nodes)
        everything = set(common) | set(self.nodes) | {v for variables in bound.values() for v in variables}
        for i, (role, template) in enumerate(self.emit.turns()):
            check_template(f"emit.messages[{i}]", template, everything, self.nodes)
        for key, template in self.emit.payload.items():
            check_template(f"emit.payload.{key}", as_template(template), everything, self.nodes)


def check_template(where: str, template: str, available: set[str], node_specs: Mapping[str, NodeSpec]) -> None:
    try:
        tree = TEMPLATES.parse(template)
    except jinja2.TemplateSyntaxError as exc:
        raise ValueError(f"{where}: not a valid Jinja2 template: {exc.message} (line {exc.lineno})") from None
    known = available | set(TEMPLATES.globals)
    for variable in sorted(meta.find_undeclared_variables(tree)):
        if variable not in known:
            raise ValueError(f"{where}: {{{{ {variable} }}}} is not defined; available: "
                             f"{', '.join(sorted(available)) or 'nothing'}")
    for access in tree.find_all((jinja_nodes.Getattr, jinja_nodes.Getitem)):
        target = access.node
        if not (isinstance(target, jinja_nodes.Name) and target.name in node_specs and target.name in available):
            continue
        attribute = access.attr if isinstance(access, jinja_nodes.Getattr) else getattr(access.arg, "value", None)
        fields = node_specs[target.name].fields
        if isinstance(attribute, str) and attribute not in fields:
            raise ValueError(f"{where}: node {target.name!r} has no output {attribute!r}; its outputs: "
                             f"{', '.join(fields)}")


class Shape(BaseModel):
    """Entry, the plain `next` of each node, the routes, and which nodes can run before which."""

    entry: str
    next: dict[str, str]
    routes: dict[str, RouteSpec]
    before: dict[str, set[str]]
    back_edges: set[tuple[str, str]]

    @classmethod
    def of(cls, recipe: PipelineRecipe) -> Shape:
        node_names = list(recipe.nodes)
        names = set(node_names) | set(TERMINALS)
        next_of: dict[str, str] = {}
        routes: dict[str, RouteSpec] = {}
        route_at: dict[str, str] = {}

        def known(where: str, name: str) -> str:
            if name not in names:
                raise ValueError(f"{where}: unknown node {name!r}; nodes: {', '.join(node_names)} "
                                 f"(terminals: {', '.join(TERMINALS)})")
            return name

        def claim(where: str, source: str) -> None:
            if source in TERMINALS:
                raise ValueError(f"{where}: {source} is a terminal; nothing runs after it")
            if source in next_of or source in routes:
                raise ValueError(f"{where}: {source} already has a next step; give each node one chain or one route")

        entry = None
        if not recipe.edges:
            chain = node_names + ["accept"]
            next_of = dict(zip(chain, chain[1:]))
            entry = node_names[0]
        for i, edge in enumerate(recipe.edges):
            where = f"edges[{i}]"
            if isinstance(edge, str):
                chain = [known(where, part.strip()) for part in edge.split("->")]
                if len(chain) < 2:
                    raise ValueError(f"{where}: write a chain as 'a -> b' (got {edge!r})")
                for source, target in zip(chain, chain[1:]):
                    claim(where, source)
                    next_of[source] = target
                entry = entry or chain[0]
            else:
                for source, route in edge.items():
                    known(where, source)
                    claim(where, source)
                    for outcome, target in [*route.targets().items(), ("exhausted", route.exhausted)]:
                        known(f"{where}.{source}.{outcome}", target)
                    routes[source] = route
                    route_at[source] = f"{where}.{source}"
                    entry = entry or source
        # A node the edges leave without a next step ends its path: accepted, unless a check said otherwise.
        for name in node_names:
            if name not in next_of and name not in routes:
                next_of[name] = "accept"

        def successors(name: str) -> list[str]:
            if name in routes:
                return list(dict.fromkeys([*routes[name].targets().values(), routes[name].exhausted]))
            return [next_of[name]] if name in next_of else []

        reached, order, frontier = {entry}, [entry], [entry]
        while frontier:
            for target in successors(frontier.pop()):
                if target not in reached and target not in TERMINALS:
                    reached.add(target)
                    order.append(target)
                    frontier.append(target)
        unreachable = [n for n in node_names if n not in reached]
        if unreachable:
            raise ValueError(f"nodes.{unreachable[0]}: unreachable from {entry!r}; add an edge to it or remove it")

        # Back edges (to a node already on the path) close loops; each must leave a route with max_visits.
        back_edges: set[tuple[str, str]] = set()

        def walk(name: str, path: list[str]) -> None:
            for target in successors(name):
                if target in TERMINALS:
                    continue
                if target in path:
                    back_edges.add((name, target))
                    continue
                walk(target, path + [target])

        walk(entry, [entry])
        for source, target in sorted(back_edges):
            route = routes.get(source)
            if route is None or route.max_visits is None:
                loop = " -> ".join(_loop(target, source, successors)) + f" -> {target}"
                raise ValueError(f"edges: the loop {loop} has no bound; route {source} on its outcome with "
                                 f"max_visits: N (e.g. {{{source}: {{passed: accept, failed: {target}, max_visits: 2}}}})"
                                 if route is None else
                                 f"edges: the loop {loop} has no bound; add max_visits: N to the route of {source}")

        before = {name: {a for a in node_names if a != name and _reaches(a, name, successors)}
                  | ({name} if _reaches(name, name, successors, strict=True) else set()) for name in node_names}
        for source, route in routes.items():
            # The way out of a loop: a route that leads back to no node it ran after never takes it.
            if changed(route, ["exhausted"]) and route.max_visits is None:
                raise ValueError(f"{route_at[source]}.exhausted is where a loop goes after max_visits; add "
                                 "max_visits: N, or remove exhausted")
            if route.max_visits is not None and source not in before[source]:
                raise ValueError(f"{route_at[source]}.max_visits bounds a loop, and no target of this route leads "
                                 f"back to {source}: remove max_visits (and exhausted)")
        return cls(entry=entry, next=next_of, routes=routes, before=before, back_edges=back_edges)


def _reaches(start: str, goal: str, successors, *, strict: bool = False) -> bool:
    seen, frontier = set(), list(successors(start)) if strict else [start]
    while frontier:
        name = frontier.pop()
        if name == goal:
            return True
        if name in seen or name in TERMINALS:
            continue
        seen.add(name)
        frontier.extend(successors(name))
    return False


def _loop(start: str, end: str, successors) -> list[str]:
    """One path start -> ... -> end, for the message."""
    paths = [[start]]
    while paths:
        path = paths.pop(0)
        if path[-1] == end:
            return path
        paths.extend(path + [t] for t in successors(path[-1]) if t not in path and t not in TERMINALS)
    return [start, end]
