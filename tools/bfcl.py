"""BFCL (Berkeley Function Calling Leaderboard) function docs as OpenAI tool specs, and tool specs from a file.

`from_bfcl` converts one BFCL function doc; `load_tool_specs` reads OpenAI specs, BFCL questions or BFCL function
docs from a file, whichever it holds.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import re
from pathlib import Path
from typing import Any

from synthgraph.tools.tool_calls import as_openai_spec, exception_message

__all__ = ["from_bfcl", "load_tool_specs"]


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
    return as_openai_spec(converted)


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
        converted["properties"] = {name: _bfcl_schema(sub, function, f"{where}.{name}" if where else name)
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
            raise ValueError(f"{place}: not a tool spec or BFCL entry ({exception_message(error)})") from None
    return list(specs.values())


def _specs_in(entry: dict[str, Any]) -> list[dict[str, Any]]:
    if entry.get("type") == "function" and isinstance(entry.get("function"), dict):
        return [as_openai_spec(entry)]
    if isinstance(entry.get("function"), list):
        return [from_bfcl(function) for function in entry["function"]]
    if "name" in entry:
        return [from_bfcl(entry)]
    raise ValueError("expected an OpenAI tool, a BFCL question with 'function', or a function doc with 'name'")


# ----------------------------------------------------------------------------------------------------------
