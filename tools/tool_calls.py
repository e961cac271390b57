"""A tool call in one normal form, checked against its tool's spec; what a call gives back.

A call may come in any of the shapes a model stack produces: OpenAI's
`{"id", "type": "function", "function": {"name", "arguments": "<JSON>"}}`, the flat `{"name", "arguments"}` with
a JSON string or an object, or LangChain's `{"name", "args", "id"}`. `parse_call` normalises them; `validate_call`
lists what is wrong with one against an OpenAI spec (`{"type": "function", "function": {name, description,
parameters}}`), one sentence per problem, so a model can act on it.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Iterable
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError, ValidationError, best_match
from pydantic import BaseModel, ConfigDict

__all__ = ["ToolCall", "ToolResult", "as_openai_spec", "exception_message", "parse_call", "validate_call"]

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
    function = as_openai_spec(spec)["function"]
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


def as_openai_spec(spec: dict[str, Any]) -> dict[str, Any]:
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


def exception_message(error: Exception) -> str:
    # KeyError's str() is the repr of its key; the message raised with it reads better bare.
    if isinstance(error, KeyError) and len(error.args) == 1 and isinstance(error.args[0], str):
        return error.args[0]
    return str(error) or type(error).__name__

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
