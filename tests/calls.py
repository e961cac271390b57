"""A spec and call builders the tool tests share (tools/tool_calls.py, registry.py, builtin_tools.py, bfcl.py)."""

from __future__ import annotations

import json

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather in a city.",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string"},
                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
                "days": {"type": "integer", "minimum": 1},
                "location": {
                    "type": "object",
                    "properties": {"lat": {"type": "number"}, "lon": {"type": "number"}},
                    "required": ["lat", "lon"],
                },
                "tags": {"type": "array", "items": {"type": "string"}},
            },
            "required": ["city"],
        },
    },
}

def call(name: str, **arguments) -> dict:
    return {"name": name, "arguments": arguments}


def run(session, name: str, **arguments):
    return session.execute(call(name, **arguments))


def value(result) -> dict:
    assert result.ok, result.error
    return json.loads(result.content)
