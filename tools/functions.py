"""Tools a model can call: OpenAI-style JSON-schema specs, call validation, and deterministic executable tools.

A `ToolRegistry` holds tools; each is an OpenAI spec (`{"type": "function", "function": {name, description,
parameters}}`), a `group` that says which tools go together, and optionally an implementation. A trajectory
runs its calls through its own `ToolSession`, which holds the mutable state (files, inventory, cart) so two
trajectories never see each other's writes and the same calls always give the same results.

    registry = builtin_registry()
    tools = registry.sample(random.Random(seed), 3)             # e.g. write_file, read_file, list_files
    session = registry.session([tool.name for tool in tools])
    result = session.execute({"name": "write_file", "arguments": '{"path": "a.txt", "content": "hi"}'})

A call may come in any of the shapes a model stack produces: OpenAI's
`{"id", "type": "function", "function": {"name", "arguments": "<JSON>"}}`, the flat `{"name", "arguments"}` with
a JSON string or an object, or LangChain's `{"name", "args", "id"}`. `execute` never raises for a bad call or a
failing tool: it returns `ok=False` with a sentence the model can act on.

The shipped tools are pure Python with fixed data: no network, no clock (date tools take dates as arguments),
no randomness. BFCL function docs (Berkeley Function Calling Leaderboard) convert to OpenAI specs with
`from_bfcl`; `load_tool_specs` reads either format from a file.
"""

from __future__ import annotations

import ast
import copy
import datetime as dt
import difflib
import gzip
import hashlib
import json
import math
import operator
import posixpath
import random
import re
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError, ValidationError, best_match
from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "Tool",
    "ToolCall",
    "ToolRegistry",
    "ToolResult",
    "ToolSession",
    "builtin_registry",
    "from_bfcl",
    "load_tool_specs",
    "parse_call",
    "validate_call",
]

# What OpenAI (and vLLM's tool parsers) accept as a function name.
_NAME_RE = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")


# ----------------------------------------------------------------------------------------------------------
# Boundary models


class ToolResult(BaseModel):
    """What a tool call gave back: `content` is the result as JSON text, or the error message when not `ok`."""

    model_config = ConfigDict(frozen=True)

    ok: bool
    content: str
    error: str | None = None  # "<Kind>: <message>", e.g. "ValueError: cannot convert length (km) to mass (kg)"


class ToolCall(BaseModel):
    """A call in one normal form, whichever shape it arrived in."""

    model_config = ConfigDict(frozen=True)

    name: str
    arguments: dict[str, Any]
    id: str | None = None


class Tool(BaseModel):
    """One tool: its OpenAI spec, the group it combines with, and (optionally) what runs it.

    A stateful implementation is called as `impl(state, **arguments)` with its session's state dict; a
    stateless one as `impl(**arguments)`. Either returns something JSON-serialisable, or raises with a message
    meant for the model.
    """

    model_config = ConfigDict(frozen=True)

    spec: dict[str, Any]
    group: str = "general"
    impl: Callable[..., Any] | None = Field(default=None, exclude=True, repr=False)
    stateful: bool = False

    @property
    def name(self) -> str:
        return self.spec["function"]["name"]

    @property
    def description(self) -> str:
        return self.spec["function"].get("description", "")

    @property
    def parameters(self) -> dict[str, Any]:
        return self.spec["function"].get("parameters") or {"type": "object", "properties": {}}

    @property
    def executable(self) -> bool:
        return self.impl is not None


# ----------------------------------------------------------------------------------------------------------
# Calls: parsing and validation


def parse_call(call: dict[str, Any]) -> ToolCall:
    """Normalise any accepted call shape; raises ValueError with a sentence saying what is wrong with it."""
    if not isinstance(call, dict):
        raise ValueError(f"a tool call must be an object, got {_json_type(call)}")
    body = call.get("function") if isinstance(call.get("function"), dict) else call
    name = body.get("name")
    if not isinstance(name, str) or not name:
        raise ValueError("the tool call has no function name")
    raw = body["arguments"] if "arguments" in body else body.get("args")
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        arguments: Any = {}  # models emit "" for functions without parameters
    elif isinstance(raw, str):
        try:
            arguments = json.loads(raw)
        except json.JSONDecodeError as error:
            raise ValueError(f"the arguments of '{name}' are not valid JSON: {error}") from None
    else:
        arguments = raw
    if not isinstance(arguments, dict):
        raise ValueError(f"the arguments of '{name}' must be a JSON object, got {_json_type(arguments)}")
    call_id = call.get("id")
    return ToolCall(name=name, arguments=arguments, id=call_id if isinstance(call_id, str) else None)


def validate_call(call: dict[str, Any], spec: dict[str, Any]) -> list[str]:
    """Problems with `call` against `spec` (OpenAI form), one sentence each; [] means the call is valid.

    A bad `spec` is the caller's mistake, not the call's: it raises ValueError.

    Arguments the schema does not name are problems even without `additionalProperties: false`: a model that
    invents a parameter has misread the tool, and the implementation would fail on it anyway.
    """
    function = _as_openai_spec(spec)["function"]
    try:
        parsed = parse_call(call)
    except ValueError as error:
        return [str(error)]
    if parsed.name != function["name"]:
        return [f"unknown function '{parsed.name}': this tool is '{function['name']}'"]
    schema = _closed(function.get("parameters") or {"type": "object", "properties": {}})
    errors = sorted(_validator(schema).iter_errors(parsed.arguments),
                    key=lambda error: ([str(part) for part in error.absolute_path], error.validator))
    return [_describe(error) for error in errors]


def _validator(schema: dict[str, Any]) -> Draft202012Validator:
    return Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER)


# Keywords whose values are subschemas (one, a list, or a name -> schema map); `default`, `enum` and `const`
# hold data, which must not be touched. allOf is left open: its branches may each list part of the properties.
_SUBSCHEMA = ("items", "additionalProperties", "not", "contains", "if", "then", "else")
_SUBSCHEMA_LISTS = ("prefixItems", "anyOf", "oneOf")
_SUBSCHEMA_MAPS = ("properties", "patternProperties", "$defs", "definitions")


def _closed(schema: Any) -> Any:
    """A copy of `schema` where every object that lists its properties refuses others unless it says otherwise."""
    if not isinstance(schema, dict):
        return schema
    closed = dict(schema)
    for key in _SUBSCHEMA:
        if key in schema:
            closed[key] = _closed(schema[key])
    for key in _SUBSCHEMA_LISTS:
        if isinstance(schema.get(key), list):
            closed[key] = [_closed(sub) for sub in schema[key]]
    for key in _SUBSCHEMA_MAPS:
        if isinstance(schema.get(key), dict):
            closed[key] = {name: _closed(sub) for name, sub in schema[key].items()}
    if isinstance(schema.get("properties"), dict):
        closed.setdefault("additionalProperties", False)
    return closed


def _describe(error: ValidationError) -> str:
    """One validation error as a sentence that names the argument, what was expected and what came."""
    where = _path(error.absolute_path)
    argument = f"argument '{where}'" if where else "the arguments"
    kind, value, schema = error.validator, error.instance, error.schema
    if kind == "required":
        missing = [name for name in error.validator_value if name not in value]
        names = ", ".join(f"'{_join(where, name)}'" for name in missing)
        return f"missing required argument{'s' if len(missing) > 1 else ''} {names}"
    if kind == "additionalProperties":
        allowed = sorted(schema.get("properties", {}))
        extra = [name for name in value if name not in allowed and not _matches_pattern(name, schema)]
        names = ", ".join(f"'{_join(where, name)}'" for name in extra)
        hint = f"; allowed: {', '.join(allowed)}" if allowed else ""
        return f"unexpected argument{'s' if len(extra) > 1 else ''} {names} (not in the schema{hint})"
    if kind == "type":
        expected = error.validator_value
        expected = " or ".join(expected) if isinstance(expected, list) else expected
        return f"{argument} should be {_article(expected)} {expected}, got {_json_type(value)} {_short(value)}"
    if kind == "enum":
        choices = ", ".join(_short(choice) for choice in error.validator_value)
        return f"{argument} must be one of {choices}, got {_short(value)}"
    if kind == "const":
        return f"{argument} must be {_short(error.validator_value)}, got {_short(value)}"
    bounds = {"minimum": ">=", "maximum": "<=", "exclusiveMinimum": ">", "exclusiveMaximum": "<"}
    if kind in bounds:
        return f"{argument} must be {bounds[kind]} {error.validator_value}, got {_short(value)}"
    if kind == "pattern":
        return f"{argument} must match the pattern {error.validator_value}, got {_short(value)}"
    if kind == "format":
        return f"{argument} must be a valid {error.validator_value}, got {_short(value)}"
    if kind in ("minLength", "maxLength", "minItems", "maxItems"):
        what = "characters" if kind.endswith("Length") else "items"
        side = "at least" if kind.startswith("min") else "at most"
        return f"{argument} must have {side} {error.validator_value} {what}, got {len(value)}"
    if kind in ("anyOf", "oneOf") and error.context:
        return f"{argument} matches none of its allowed forms (closest: {_describe(best_match(error.context))})"
    return f"{argument}: {error.message}"


def _path(parts: Iterable[str | int]) -> str:
    text = ""
    for part in parts:
        text = f"{text}[{part}]" if isinstance(part, int) else _join(text, part)
    return text


def _join(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


def _matches_pattern(name: str, schema: dict[str, Any]) -> bool:
    return any(re.search(pattern, name) for pattern in schema.get("patternProperties", {}))


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    for python_type, name in ((bool, "boolean"), (int, "integer"), (float, "number"), (str, "string"),
                              (list, "array"), (dict, "object")):
        if isinstance(value, python_type):
            return name
    return type(value).__name__


def _article(word: str) -> str:
    return "an" if word[:1] in "aeiou" else "a"


def _short(value: Any, limit: int = 60) -> str:
    try:
        text = json.dumps(value, ensure_ascii=False)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


# ----------------------------------------------------------------------------------------------------------
# Registry and sessions


class ToolRegistry:
    """Named tools, in registration order (so sampling with a seeded rng is reproducible)."""

    def __init__(self) -> None:
        self._tools: dict[str, Tool] = {}

    def register(
        self,
        spec: dict[str, Any],
        impl: Callable[..., Any] | None = None,
        *,
        group: str = "general",
        stateful: bool = False,
        replace: bool = False,
    ) -> Tool:
        """Add a tool. `spec` is OpenAI's form, or the bare `{name, description, parameters}` inside it.

        Raises ValueError for a bad name, a parameters schema that is not valid JSON Schema, or a name already
        taken (unless `replace`).
        """
        spec = _as_openai_spec(spec)
        name = spec["function"]["name"]
        if name in self._tools and not replace:
            raise ValueError(f"a tool named '{name}' is already registered (pass replace=True to override it)")
        tool = Tool(spec=spec, group=group, impl=impl, stateful=stateful)
        self._tools[name] = tool
        return tool

    def get(self, name: str) -> Tool:
        try:
            return self._tools[name]
        except KeyError:
            raise KeyError(_unknown_tool(name, self._tools)) from None

    def names(self) -> list[str]:
        return list(self._tools)

    def groups(self) -> dict[str, list[str]]:
        grouped: dict[str, list[str]] = {}
        for tool in self._tools.values():
            grouped.setdefault(tool.group, []).append(tool.name)
        return grouped

    def __contains__(self, name: object) -> bool:
        return name in self._tools

    def __len__(self) -> int:
        return len(self._tools)

    def __iter__(self) -> Iterator[Tool]:
        return iter(self._tools.values())

    def specs(self, names: list[str] | None = None) -> list[dict[str, Any]]:
        """The OpenAI `tools` list for `names` (all tools when None); copies, so callers may edit them."""
        chosen = self._tools.values() if names is None else [self.get(name) for name in names]
        return [copy.deepcopy(tool.spec) for tool in chosen]

    def sample(
        self,
        rng: random.Random,
        n: int,
        *,
        groups: list[str] | None = None,
        executable_only: bool = False,
    ) -> list[Tool]:
        """`n` distinct tools, drawn group by group so that the tools offered together make sense together.

        A random group is used up (in random order) before the next one is started, so a small `n` gives tools
        of one group (write_file + read_file, not write_file + weekday) and a larger one adds neighbours.
        """
        pool = [tool for tool in self._tools.values()
                if (groups is None or tool.group in groups) and (tool.executable or not executable_only)]
        if not 0 < n <= len(pool):
            raise ValueError(f"cannot sample {n} distinct tools from the {len(pool)} eligible ones")
        by_group: dict[str, list[Tool]] = {}
        for tool in pool:
            by_group.setdefault(tool.group, []).append(tool)
        order = list(by_group)
        rng.shuffle(order)
        chosen: list[Tool] = []
        for group in order:
            members = list(by_group[group])
            rng.shuffle(members)
            chosen.extend(members[: n - len(chosen)])
            if len(chosen) == n:
                break
        return chosen

    def session(self, names: list[str] | None = None, state: dict[str, Any] | None = None) -> ToolSession:
        """A fresh session: calls may use `names` only (all tools when None), starting from a copy of `state`."""
        offered = None if names is None else [self.get(name).name for name in names]
        return ToolSession(self, offered, state)


class ToolSession:
    """The state of one trajectory's tools. Not thread-safe: one trajectory, one session."""

    def __init__(self, registry: ToolRegistry, names: list[str] | None = None,
                 state: dict[str, Any] | None = None) -> None:
        self.registry = registry
        self.names = names
        self.state: dict[str, Any] = copy.deepcopy(state) if state else {}

    def execute(self, call: dict[str, Any]) -> ToolResult:
        """Validate and run one call. Never raises for a bad call or a failing tool."""
        try:
            parsed = parse_call(call)
        except ValueError as error:
            return _failure("InvalidCall", str(error))
        offered = self.registry.names() if self.names is None else self.names
        if parsed.name not in offered:
            return _failure("UnknownTool", _unknown_tool(parsed.name, offered))
        tool = self.registry.get(parsed.name)
        if not tool.executable:
            return _failure("NotExecutable", f"'{tool.name}' has a spec but no implementation to run")
        problems = validate_call(parsed.model_dump(), tool.spec)
        if problems:
            return _failure("InvalidArguments", f"invalid call to '{tool.name}': " + "; ".join(problems))
        try:
            value = tool.impl(self.state, **parsed.arguments) if tool.stateful else tool.impl(**parsed.arguments)
            content = json.dumps(value, ensure_ascii=False, allow_nan=False)
        except Exception as error:  # the tool's failure is the model's observation, never the run's crash
            return _failure(type(error).__name__, _message(error))
        return ToolResult(ok=True, content=content)


def _failure(kind: str, message: str) -> ToolResult:
    return ToolResult(ok=False, content=message, error=f"{kind}: {message}")


def _message(error: Exception) -> str:
    # KeyError's str() is the repr of its key; the message raised with it reads better bare.
    if isinstance(error, KeyError) and len(error.args) == 1 and isinstance(error.args[0], str):
        return error.args[0]
    return str(error) or type(error).__name__


def _unknown_tool(name: str, known: Iterable[str]) -> str:
    known = list(known)
    close = difflib.get_close_matches(name, known, n=1)
    hint = f"; did you mean '{close[0]}'?" if close else ""
    return f"no tool named '{name}'{hint} (available: {', '.join(known) or 'none'})"


def _as_openai_spec(spec: dict[str, Any]) -> dict[str, Any]:
    """`spec` in OpenAI form, checked: a valid name and a parameters schema that is valid JSON Schema."""
    if not isinstance(spec, dict):
        raise ValueError(f"a tool spec must be an object, got {_json_type(spec)}")
    function = spec.get("function") if spec.get("type") == "function" else spec
    if not isinstance(function, dict) or "name" not in function:
        raise ValueError("a tool spec needs {'type': 'function', 'function': {'name', 'description', 'parameters'}}")
    name = function["name"]
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise ValueError(f"tool name {name!r} must match {_NAME_RE.pattern} (convert BFCL docs with from_bfcl)")
    parameters = function.get("parameters")
    if parameters is not None:
        try:
            Draft202012Validator.check_schema(parameters)
        except SchemaError as error:
            raise ValueError(f"tool '{name}': parameters are not a valid JSON Schema: {error.message}") from None
        if parameters.get("type", "object") != "object":
            raise ValueError(f"tool '{name}': parameters must be an object schema, got type {parameters['type']!r}")
    return {"type": "function", "function": copy.deepcopy(function)}


# ----------------------------------------------------------------------------------------------------------
# BFCL


# BFCL writes Python (and, for its Java/JavaScript sets, Java) type names where JSON Schema has its own.
_BFCL_TYPES = {
    "dict": "object", "object": "object", "hashmap": "object", "map": "object",
    "float": "number", "double": "number", "number": "number",
    "integer": "integer", "int": "integer", "long": "integer",
    "string": "string", "str": "string", "char": "string",
    "boolean": "boolean", "bool": "boolean",
    "array": "array", "list": "array", "arraylist": "array", "tuple": "array",
    "null": "null",
}
# BFCL's own marker; JSON Schema says the same thing with `required`.
_BFCL_ONLY_KEYS = {"optional"}


def from_bfcl(function: dict[str, Any]) -> dict[str, Any]:
    """One BFCL function doc -> OpenAI spec.

    Types are mapped to JSON Schema ("dict" -> object, "float" -> number, "tuple" -> array, "any" -> no
    constraint) all the way down. Names with dots ("math.factorial") become "math_factorial"; the original name
    is kept in the spec's function as "x-original-name" (vLLM ignores it) so BFCL ground truth still matches.
    """
    original = function["name"]
    name = re.sub(r"[^a-zA-Z0-9_-]", "_", original)
    if len(name) > 64:
        name = f"{name[:55]}_{hashlib.sha1(original.encode()).hexdigest()[:8]}"
    parameters = _bfcl_schema(function.get("parameters") or {"type": "dict", "properties": {}}, original, "")
    parameters.setdefault("type", "object")
    parameters.setdefault("properties", {})
    converted: dict[str, Any] = {"name": name, "description": function.get("description", ""), "parameters": parameters}
    if name != original:
        converted["x-original-name"] = original
    return _as_openai_spec(converted)


def _bfcl_schema(schema: Any, function: str, where: str) -> Any:
    if not isinstance(schema, dict):
        return schema
    converted = {key: value for key, value in schema.items() if key not in _BFCL_ONLY_KEYS}
    if "type" in schema:
        types = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
        if any(t in ("any", "", None) for t in types):
            del converted["type"]
        else:
            try:
                mapped = list(dict.fromkeys(_BFCL_TYPES[str(t).lower()] for t in types))
            except KeyError as error:
                raise ValueError(f"BFCL function '{function}': unknown type {error.args[0]!r} at "
                                 f"'{where or 'parameters'}'") from None
            converted["type"] = mapped if len(mapped) > 1 else mapped[0]
    if isinstance(schema.get("properties"), dict):
        converted["properties"] = {name: _bfcl_schema(sub, function, _join(where, name))
                                   for name, sub in schema["properties"].items()}
    if isinstance(schema.get("additionalProperties"), dict):
        converted["additionalProperties"] = _bfcl_schema(schema["additionalProperties"], function, f"{where}.*")
    if isinstance(schema.get("items"), dict):
        converted["items"] = _bfcl_schema(schema["items"], function, f"{where}[]")
    elif isinstance(schema.get("items"), list):  # draft-4 tuple form; 2020-12 spells it prefixItems
        converted["prefixItems"] = [_bfcl_schema(sub, function, f"{where}[{i}]")
                                    for i, sub in enumerate(schema["items"])]
        del converted["items"]
    return converted


def load_tool_specs(path: str | Path) -> list[dict[str, Any]]:
    """OpenAI specs from a file, whichever shape it holds (detected, not declared):

    - OpenAI: a JSON list of tools, or `{"tools": [...]}`;
    - BFCL questions: JSON lines with a `function` list (all their functions);
    - BFCL function docs: JSON lines (or a list) of `{name, description, parameters}`.
    One spec per name, the first seen: BFCL repeats names across questions with small variations in the
    schema, and a registry holds one tool per name. A `.gz` file is decompressed. Raises ValueError naming the
    file and entry that fit none of these shapes.
    """
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as file:
        text = file.read()
    try:
        document = json.loads(text)
        entries = document.get("tools", [document]) if isinstance(document, dict) else document
        where = [f"{path}: entry {i}" for i in range(len(entries))]
    except json.JSONDecodeError:
        lines = [(number, line) for number, line in enumerate(text.splitlines(), 1) if line.strip()]
        try:
            entries = [json.loads(line) for _, line in lines]
        except json.JSONDecodeError as error:
            raise ValueError(f"{path}: neither JSON nor JSON lines ({error})") from None
        where = [f"{path}:{number}" for number, _ in lines]
    specs: dict[str, dict[str, Any]] = {}
    for entry, place in zip(entries, where, strict=True):
        try:
            for spec in _specs_in(entry):
                specs.setdefault(spec["function"]["name"], spec)
        except (ValueError, KeyError, TypeError, AttributeError) as error:
            raise ValueError(f"{place}: not a tool spec or BFCL entry ({_message(error)})") from None
    return list(specs.values())


def _specs_in(entry: dict[str, Any]) -> list[dict[str, Any]]:
    if entry.get("type") == "function" and isinstance(entry.get("function"), dict):
        return [_as_openai_spec(entry)]
    if isinstance(entry.get("function"), list):
        return [from_bfcl(function) for function in entry["function"]]
    if "name" in entry:
        return [from_bfcl(entry)]
    raise ValueError("expected an OpenAI tool, a BFCL question with 'function', or a function doc with 'name'")


# ----------------------------------------------------------------------------------------------------------
# The shipped tools


def _spec(name: str, description: str, properties: dict[str, Any], required: list[str] | None = None
          ) -> dict[str, Any]:
    required = list(properties) if required is None else required
    parameters = {"type": "object", "properties": properties, "required": required}
    return {"type": "function", "function": {"name": name, "description": description, "parameters": parameters}}


# -- math: calculator

_MAX_EXPRESSION = 500
_MAX_INT_BITS = 10_000  # a result of about 3,000 digits; beyond that an "exponent" is a denial of service
_BINARY = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
           ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod, ast.Pow: operator.pow}
_UNARY = {ast.UAdd: operator.pos, ast.USub: operator.neg}
_FUNCTIONS: dict[str, Callable[..., Any]] = {"sqrt": math.sqrt, "abs": abs, "round": round, "min": min, "max": max,
                                            "floor": math.floor, "ceil": math.ceil, "log": math.log}
_CONSTANTS = {"pi": math.pi, "e": math.e}


def calculate(expression: str) -> dict[str, Any]:
    if len(expression) > _MAX_EXPRESSION:
        raise ValueError(f"expression is too long ({len(expression)} characters, at most {_MAX_EXPRESSION})")
    try:
        tree = ast.parse(expression.strip(), mode="eval")
    except SyntaxError as error:
        raise ValueError(f"cannot parse {expression!r}: {error.msg}") from None
    try:
        result = _evaluate(tree.body)
    except OverflowError:
        raise ValueError("the result is too large for a floating-point number") from None
    if isinstance(result, float) and not math.isfinite(result):
        raise ValueError("the result is not a finite number")
    return {"expression": expression, "result": result}


def _evaluate(node: ast.AST) -> int | float:
    if isinstance(node, ast.Constant) and type(node.value) in (int, float):
        return node.value
    if isinstance(node, ast.Name) and node.id in _CONSTANTS:
        return _CONSTANTS[node.id]
    if isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
        return _UNARY[type(node.op)](_evaluate(node.operand))
    if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
        left, right = _evaluate(node.left), _evaluate(node.right)
        if isinstance(node.op, ast.Pow):
            _check_power(left, right)
        return _BINARY[type(node.op)](left, right)
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in _FUNCTIONS:
        if node.keywords:
            raise ValueError(f"{node.func.id}() takes no keyword arguments")
        arguments = [_evaluate(argument) for argument in node.args]
        try:
            return _FUNCTIONS[node.func.id](*arguments)
        except (TypeError, ValueError) as error:
            raise ValueError(f"{node.func.id}({', '.join(map(str, arguments))}) is undefined: {error}") from None
    allowed = "numbers, + - * / // % **, parentheses, pi, e and " + ", ".join(_FUNCTIONS)
    raise ValueError(f"unsupported expression {ast.unparse(node)!r}: only {allowed} are allowed")


def _check_power(base: int | float, exponent: int | float) -> None:
    if abs(exponent) > 10_000:
        raise ValueError(f"exponent {exponent} is too large (at most 10000)")
    if isinstance(base, int) and isinstance(exponent, int) and exponent > 0:
        if abs(base).bit_length() * exponent > _MAX_INT_BITS:
            raise ValueError(f"{base} ** {exponent} is too large to compute exactly")


# -- math: unit conversion

# Factor to the dimension's base unit (metre, kilogram, litre, second); temperature is affine, handled apart.
_UNITS: dict[str, tuple[str, float]] = {
    "mm": ("length", 0.001), "cm": ("length", 0.01), "m": ("length", 1.0), "km": ("length", 1000.0),
    "in": ("length", 0.0254), "ft": ("length", 0.3048), "yd": ("length", 0.9144), "mi": ("length", 1609.344),
    "mg": ("mass", 1e-6), "g": ("mass", 0.001), "kg": ("mass", 1.0), "t": ("mass", 1000.0),
    "oz": ("mass", 0.028349523125), "lb": ("mass", 0.45359237),
    "ml": ("volume", 0.001), "l": ("volume", 1.0), "m3": ("volume", 1000.0), "tsp": ("volume", 0.00492892159375),
    "tbsp": ("volume", 0.01478676478125), "fl_oz": ("volume", 0.0295735295625), "cup": ("volume", 0.2365882365),
    "pt": ("volume", 0.473176473), "qt": ("volume", 0.946352946), "gal": ("volume", 3.785411784),
    "s": ("time", 1.0), "min": ("time", 60.0), "h": ("time", 3600.0), "day": ("time", 86400.0),
    "week": ("time", 604800.0),
    "C": ("temperature", 1.0), "F": ("temperature", 1.0), "K": ("temperature", 1.0),
}
_TO_KELVIN = {"C": lambda v: v + 273.15, "F": lambda v: (v - 32) * 5 / 9 + 273.15, "K": lambda v: v}
_FROM_KELVIN = {"C": lambda k: k - 273.15, "F": lambda k: (k - 273.15) * 9 / 5 + 32, "K": lambda k: k}


def convert_units(value: float, from_unit: str, to_unit: str) -> dict[str, Any]:
    source, target = _UNITS[from_unit][0], _UNITS[to_unit][0]
    if source != target:
        raise ValueError(f"cannot convert {source} ({from_unit}) to {target} ({to_unit})")
    if source == "temperature":
        kelvin = _TO_KELVIN[from_unit](value)
        if kelvin < 0:
            raise ValueError(f"{value} {from_unit} is below absolute zero")
        result = _FROM_KELVIN[to_unit](kelvin)
    else:
        result = value * _UNITS[from_unit][1] / _UNITS[to_unit][1]
    # Ten significant digits: exact enough for any question, and free of binary noise like 0.30000000000000004.
    return {"value": value, "from_unit": from_unit, "to_unit": to_unit, "result": float(f"{result:.10g}")}


# -- dates

# Not strftime("%A"): that follows the process locale.
_WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")

_DATE = {"type": "string", "pattern": r"^\d{4}-\d{2}-\d{2}$", "description": "A calendar date, YYYY-MM-DD."}


def _date(text: str) -> dt.date:
    try:
        return dt.date.fromisoformat(text)
    except ValueError as error:
        raise ValueError(f"invalid date {text!r}: {error}") from None


def add_days(date: str, days: int) -> dict[str, Any]:
    try:
        result = _date(date) + dt.timedelta(days=days)
    except OverflowError:
        raise ValueError(f"{date} plus {days} days is outside the years 1-9999") from None
    return {"date": result.isoformat(), "weekday": _WEEKDAYS[result.weekday()]}


def days_between(start_date: str, end_date: str) -> dict[str, Any]:
    return {"start_date": start_date, "end_date": end_date, "days": (_date(end_date) - _date(start_date)).days}


def weekday(date: str) -> dict[str, Any]:
    return {"date": date, "weekday": _WEEKDAYS[_date(date).weekday()]}


# -- money

# Illustrative rates, units of the currency per 1 USD. Fixed on purpose so conversions are reproducible;
# they are not market data and must not be used as such.
EXCHANGE_RATES: dict[str, float] = {
    "USD": 1.0, "EUR": 0.92, "GBP": 0.79, "JPY": 150.0, "CHF": 0.88, "CAD": 1.36, "AUD": 1.52, "CNY": 7.2,
    "INR": 83.0, "MXN": 17.0, "BRL": 5.0, "SEK": 10.5,
}
_CURRENCY = {"type": "string", "pattern": "^[A-Z]{3}$", "description": "ISO 4217 code, e.g. USD, EUR, JPY."}


def _rate(from_currency: str, to_currency: str) -> float:
    for code in (from_currency, to_currency):
        if code not in EXCHANGE_RATES:
            raise ValueError(f"unknown currency '{code}'; known: {', '.join(EXCHANGE_RATES)}")
    return EXCHANGE_RATES[to_currency] / EXCHANGE_RATES[from_currency]


def get_exchange_rate(from_currency: str, to_currency: str) -> dict[str, Any]:
    rate = _rate(from_currency, to_currency)
    return {"from_currency": from_currency, "to_currency": to_currency, "rate": round(rate, 6)}


def convert_currency(amount: float, from_currency: str, to_currency: str) -> dict[str, Any]:
    rate = _rate(from_currency, to_currency)
    return {"amount": amount, "from_currency": from_currency, "to_currency": to_currency,
            "rate": round(rate, 6), "result": round(amount * rate, 2)}


# -- files (state: {"files": {path: content}})

_MAX_FILES = 200
_MAX_FILE_CHARS = 100_000
_PATH = {"type": "string", "minLength": 1, "description": "File path, e.g. 'notes/todo.txt'."}


def _normal_path(path: str) -> str:
    normal = posixpath.normpath("/" + path.strip()).lstrip("/")
    if not normal or normal == ".":
        raise ValueError(f"{path!r} is not a file path")
    return normal


def _files(state: dict[str, Any]) -> dict[str, str]:
    return state.setdefault("files", {})


def _existing(state: dict[str, Any], path: str) -> str:
    normal = _normal_path(path)
    if normal not in _files(state):
        known = ", ".join(sorted(_files(state))) or "none"
        raise FileNotFoundError(f"no such file: '{normal}' (files: {known})")
    return normal


def write_file(state: dict[str, Any], path: str, content: str, append: bool = False) -> dict[str, Any]:
    files, normal = _files(state), _normal_path(path)
    text = files.get(normal, "") + content if append else content
    if len(text) > _MAX_FILE_CHARS:
        raise ValueError(f"'{normal}' would hold {len(text)} characters; the limit is {_MAX_FILE_CHARS}")
    if normal not in files and len(files) >= _MAX_FILES:
        raise ValueError(f"the file system is full ({_MAX_FILES} files); delete one first")
    files[normal] = text
    return {"path": normal, "size": len(text)}


def read_file(state: dict[str, Any], path: str) -> dict[str, Any]:
    normal = _existing(state, path)
    return {"path": normal, "content": _files(state)[normal]}


def list_files(state: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    start = prefix.strip().lstrip("/")
    return {"files": [{"path": path, "size": len(content)}
                      for path, content in sorted(_files(state).items()) if path.startswith(start)]}


def delete_file(state: dict[str, Any], path: str) -> dict[str, Any]:
    normal = _existing(state, path)
    del _files(state)[normal]
    return {"deleted": normal}


# -- inventory (state: {"inventory": {item: count}})

_ITEM = {"type": "string", "minLength": 1, "description": "Item name, matched exactly (e.g. 'blue pen')."}
_QUANTITY = {"type": "integer", "minimum": 1, "description": "How many units."}


def _stock(state: dict[str, Any]) -> dict[str, int]:
    return state.setdefault("inventory", {})


def _stocked(state: dict[str, Any], item: str) -> int:
    if item not in _stock(state):
        known = f"items: {', '.join(sorted(_stock(state)))}" if _stock(state) else "it is empty"
        raise KeyError(f"no item '{item}' in the inventory ({known})")
    return _stock(state)[item]


def add_item(state: dict[str, Any], item: str, quantity: int) -> dict[str, Any]:
    stock = _stock(state)
    stock[item] = stock.get(item, 0) + quantity
    return {"item": item, "stock": stock[item]}


def remove_item(state: dict[str, Any], item: str, quantity: int) -> dict[str, Any]:
    have = _stocked(state, item)
    if quantity > have:
        raise ValueError(f"cannot remove {quantity} of '{item}': only {have} in stock")
    _stock(state)[item] = have - quantity
    return {"item": item, "stock": have - quantity}


def get_stock(state: dict[str, Any], item: str) -> dict[str, Any]:
    return {"item": item, "stock": _stocked(state, item)}


def list_items(state: dict[str, Any]) -> dict[str, Any]:
    return {"items": [{"item": item, "stock": count} for item, count in sorted(_stock(state).items())]}


# -- shopping: a fixed catalog (illustrative products and USD prices) and a cart (state: {"cart": {id: qty}})

CATALOG: dict[str, dict[str, Any]] = {
    "P100": {"name": "Trail running shoes", "category": "sports", "price_usd": 89.99, "in_stock": True},
    "P101": {"name": "Yoga mat", "category": "sports", "price_usd": 24.5, "in_stock": True},
    "P102": {"name": "Steel water bottle", "category": "sports", "price_usd": 18.0, "in_stock": False},
    "P200": {"name": "Noise-cancelling headphones", "category": "electronics", "price_usd": 199.0, "in_stock": True},
    "P201": {"name": "USB-C charger 65W", "category": "electronics", "price_usd": 39.99, "in_stock": True},
    "P202": {"name": "E-book reader", "category": "electronics", "price_usd": 129.0, "in_stock": True},
    "P300": {"name": "Espresso beans 1kg", "category": "kitchen", "price_usd": 21.75, "in_stock": True},
    "P301": {"name": "Chef's knife", "category": "kitchen", "price_usd": 64.0, "in_stock": True},
    "P302": {"name": "Cast iron skillet", "category": "kitchen", "price_usd": 45.5, "in_stock": False},
    "P400": {"name": "Notebook A5 dotted", "category": "office", "price_usd": 12.0, "in_stock": True},
    "P401": {"name": "Fountain pen", "category": "office", "price_usd": 35.0, "in_stock": True},
    "P402": {"name": "Desk lamp", "category": "office", "price_usd": 49.9, "in_stock": True},
}
_CATEGORIES = sorted({product["category"] for product in CATALOG.values()})
_PRODUCT_ID = {"type": "string", "description": "Catalog product id, e.g. 'P100' (see search_products)."}


def _product(product_id: str) -> dict[str, Any]:
    if product_id not in CATALOG:
        raise KeyError(f"no product '{product_id}' in the catalog; search_products lists the ids")
    return {"product_id": product_id, **CATALOG[product_id]}


def search_products(query: str = "", category: str | None = None, max_price_usd: float | None = None
                    ) -> dict[str, Any]:
    words = query.lower().split()
    return {"products": [_product(product_id) for product_id, product in CATALOG.items()
                         if all(word in product["name"].lower() for word in words)
                         and (category is None or product["category"] == category)
                         and (max_price_usd is None or product["price_usd"] <= max_price_usd)]}


def get_product(product_id: str) -> dict[str, Any]:
    return _product(product_id)


def add_to_cart(state: dict[str, Any], product_id: str, quantity: int = 1) -> dict[str, Any]:
    product = _product(product_id)
    if not product["in_stock"]:
        raise ValueError(f"'{product['name']}' ({product_id}) is out of stock")
    cart = state.setdefault("cart", {})
    cart[product_id] = cart.get(product_id, 0) + quantity
    return {"product_id": product_id, "quantity": cart[product_id]}


def view_cart(state: dict[str, Any]) -> dict[str, Any]:
    lines = [{"product_id": product_id, "name": CATALOG[product_id]["name"], "quantity": quantity,
              "subtotal_usd": round(CATALOG[product_id]["price_usd"] * quantity, 2)}
             for product_id, quantity in state.get("cart", {}).items()]
    return {"items": lines, "total_usd": round(sum(line["subtotal_usd"] for line in lines), 2)}


def search_documents_spec(about: str) -> dict[str, Any]:
    return _spec("search_documents",
                 f"Search {about} (full text); returns the best-matching passages with their ids, titles and text.",
                 {"query": {"type": "string", "minLength": 1, "description": "Keywords to look for."},
                  "k": {"type": "integer", "minimum": 1, "maximum": 8, "description": "How many passages (default 3)."}},
                 required=["query"])


def register_document_search(registry: ToolRegistry, search: Callable[[str, int], list[Any]], *, about: str,
                             passage_chars: int = 400) -> Tool:
    """Offer retrieval over a store's corpus as a tool. `search(query, k)` returns hits with `chunk_id`, `title`,
    `heading` and `text` (tools/retrieval.py's `Retriever.search`); passages are cut to `passage_chars`."""
    def search_documents(query: str, k: int = 3) -> dict[str, Any]:
        hits = search(query, k)
        return {"passages": [{"id": h.chunk_id, "title": h.title, "heading": h.heading,
                              "text": h.text[:passage_chars]} for h in hits]}

    return registry.register(search_documents_spec(about), search_documents, group="documents", replace=True)


def builtin_registry() -> ToolRegistry:
    """A new registry of the shipped tools (a new one per call, so registering more never leaks)."""
    registry = ToolRegistry()
    add = registry.register

    add(_spec("calculate",
              "Evaluate an arithmetic expression exactly as a calculator would. Supports numbers, + - * / // % **, "
              "parentheses, the constants pi and e, and sqrt, abs, round, min, max, floor, ceil, log.",
              {"expression": {"type": "string", "minLength": 1,
                              "description": "The expression, e.g. '(3 + 4) * 2 ** 3' or 'sqrt(2) * 10'."}}),
        calculate, group="math")
    add(_spec("convert_units",
              "Convert a value between units of the same kind: length (mm cm m km in ft yd mi), mass (mg g kg t oz "
              "lb), volume (ml l m3 tsp tbsp fl_oz cup pt qt gal, US measures), time (s min h day week), "
              "temperature (C F K).",
              {"value": {"type": "number", "description": "The quantity to convert."},
               "from_unit": {"type": "string", "enum": list(_UNITS), "description": "Unit of the value."},
               "to_unit": {"type": "string", "enum": list(_UNITS), "description": "Unit wanted."}}),
        convert_units, group="math")

    add(_spec("add_days", "Add days to a date (negative days go back); returns the new date and its weekday.",
              {"date": _DATE, "days": {"type": "integer", "description": "Days to add; negative goes back."}}),
        add_days, group="dates")
    add(_spec("days_between", "Count the days from start_date to end_date (negative when end_date is earlier).",
              {"start_date": _DATE, "end_date": _DATE}),
        days_between, group="dates")
    add(_spec("weekday", "The day of the week (Monday ... Sunday) of a date.", {"date": _DATE}),
        weekday, group="dates")

    add(_spec("get_exchange_rate",
              "Exchange rate between two currencies from the fixed rate table (units of to_currency per 1 "
              f"from_currency). Known currencies: {', '.join(EXCHANGE_RATES)}.",
              {"from_currency": _CURRENCY, "to_currency": _CURRENCY}),
        get_exchange_rate, group="money")
    add(_spec("convert_currency",
              "Convert an amount of money between currencies with the fixed rate table; the result is rounded to "
              f"2 decimals. Known currencies: {', '.join(EXCHANGE_RATES)}.",
              {"amount": {"type": "number", "minimum": 0, "description": "Amount in from_currency."},
               "from_currency": _CURRENCY, "to_currency": _CURRENCY}),
        convert_currency, group="money")

    add(_spec("write_file", "Create or overwrite a text file (or append to it) in the user's workspace.",
              {"path": _PATH, "content": {"type": "string", "description": "Text to write."},
               "append": {"type": "boolean", "description": "Append instead of overwriting. Default false."}},
              ["path", "content"]),
        write_file, group="files", stateful=True)
    add(_spec("read_file", "Read the full text of a file in the user's workspace.", {"path": _PATH}),
        read_file, group="files", stateful=True)
    add(_spec("list_files", "List the files in the user's workspace with their sizes in characters.",
              {"prefix": {"type": "string", "description": "Only paths starting with this, e.g. 'notes/'."}}, []),
        list_files, group="files", stateful=True)
    add(_spec("delete_file", "Delete a file from the user's workspace.", {"path": _PATH}),
        delete_file, group="files", stateful=True)

    add(_spec("add_item", "Add units of an item to the inventory (creating the item if new); returns the new stock.",
              {"item": _ITEM, "quantity": _QUANTITY}),
        add_item, group="inventory", stateful=True)
    add(_spec("remove_item", "Take units of an item out of the inventory; fails if there are not enough.",
              {"item": _ITEM, "quantity": _QUANTITY}),
        remove_item, group="inventory", stateful=True)
    add(_spec("get_stock", "How many units of an item the inventory holds.", {"item": _ITEM}),
        get_stock, group="inventory", stateful=True)
    add(_spec("list_items", "List every item in the inventory with its stock.", {}),
        list_items, group="inventory", stateful=True)

    add(_spec("search_products", "Search the store catalog by words in the product name, category and maximum price.",
              {"query": {"type": "string", "description": "Words that must all appear in the name; '' for all."},
               "category": {"type": "string", "enum": _CATEGORIES, "description": "Only this category."},
               "max_price_usd": {"type": "number", "minimum": 0, "description": "Only products at most this price."}},
              []),
        search_products, group="shopping")
    add(_spec("get_product", "Details of one catalog product: name, category, price in USD, availability.",
              {"product_id": _PRODUCT_ID}),
        get_product, group="shopping")
    add(_spec("add_to_cart", "Put a catalog product in the shopping cart; fails if it is out of stock.",
              {"product_id": _PRODUCT_ID, "quantity": {**_QUANTITY, "description": "How many. Default 1."}},
              ["product_id"]),
        add_to_cart, group="shopping", stateful=True)
    add(_spec("view_cart", "The shopping cart: each product with quantity and subtotal, and the total in USD.", {}),
        view_cart, group="shopping", stateful=True)
    return registry
