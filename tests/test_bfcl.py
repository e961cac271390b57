"""BFCL import: function docs to OpenAI specs, and tool specs from files in either format."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest
from calls import WEATHER, call
from jsonschema import Draft202012Validator

from synthgraph.tools.bfcl import from_bfcl, load_tool_specs
from synthgraph.tools.registry import ToolRegistry
from synthgraph.tools.tool_calls import validate_call

BFCL_FACTORIAL = {
    "name": "math.factorial",
    "description": "Calculate the factorial of a given number.",
    "parameters": {"type": "dict", "properties": {"number": {"type": "integer"}}, "required": ["number"]},
}
BFCL_NESTED = {
    "name": "geo.route.plan",
    "description": "Plan a route.",
    "parameters": {
        "type": "dict",
        "properties": {
            "points": {"type": "array", "items": {"type": "tuple", "items": {"type": "float"}}},
            "options": {"type": "dict", "properties": {"avoid_tolls": {"type": "Boolean", "optional": True},
                                                        "label": {"type": "String"}}},
            "speed": {"type": "float", "default": 1.5},
            "payload": {"type": "any", "description": "Anything."},
            "weights": {"type": "dict", "additionalProperties": {"type": "float"}},
        },
        "required": ["points"],
    },
}


def test_from_bfcl_renames_dotted_names_and_keeps_the_original():
    spec = from_bfcl(BFCL_FACTORIAL)
    assert spec["type"] == "function"
    assert spec["function"]["name"] == "math_factorial"
    assert spec["function"]["x-original-name"] == "math.factorial"
    assert spec["function"]["parameters"]["type"] == "object"
    assert validate_call(call("math_factorial", number=5), spec) == []


def test_from_bfcl_converts_types_all_the_way_down():
    parameters = from_bfcl(BFCL_NESTED)["function"]["parameters"]
    Draft202012Validator.check_schema(parameters)
    properties = parameters["properties"]
    assert parameters["type"] == "object" and parameters["required"] == ["points"]
    assert properties["points"]["items"] == {"type": "array", "items": {"type": "number"}}
    assert properties["options"]["type"] == "object"
    assert properties["options"]["properties"]["avoid_tolls"] == {"type": "boolean"}  # BFCL's "optional" dropped
    assert properties["options"]["properties"]["label"] == {"type": "string"}
    assert properties["speed"] == {"type": "number", "default": 1.5}
    assert properties["payload"] == {"description": "Anything."}
    assert properties["weights"]["additionalProperties"] == {"type": "number"}


def test_from_bfcl_spec_validates_calls():
    spec = from_bfcl(BFCL_NESTED)
    good = call("geo_route_plan", points=[[1.0, 2], [3, 4.5]], payload={"any": ["thing"]}, weights={"a": 1.5})
    assert validate_call(good, spec) == []
    [problem] = validate_call(call("geo_route_plan", points=[[1.0, "x"]]), spec)
    assert "'points[0][1]' should be a number" in problem


def test_from_bfcl_names_an_unknown_type():
    with pytest.raises(ValueError, match="unknown type 'matrix' at 'm'"):
        from_bfcl({"name": "f", "parameters": {"type": "dict", "properties": {"m": {"type": "matrix"}}}})


def test_load_tool_specs_reads_an_openai_list_and_a_tools_object(tmp_path: Path):
    (tmp_path / "list.json").write_text(json.dumps([WEATHER]))
    (tmp_path / "object.json").write_text(json.dumps({"tools": [WEATHER]}))
    assert load_tool_specs(tmp_path / "list.json") == [WEATHER]
    assert load_tool_specs(tmp_path / "object.json") == [WEATHER]


def test_load_tool_specs_reads_bfcl_jsonl_one_spec_per_name(tmp_path: Path):
    questions = [
        {"id": "simple_0", "question": [[{"role": "user", "content": "5!"}]], "function": [BFCL_FACTORIAL]},
        {"id": "multiple_0", "question": [[{"role": "user", "content": "route"}]],
         "function": [BFCL_NESTED, {**BFCL_FACTORIAL, "description": "A variant."}]},
    ]
    path = tmp_path / "bfcl.json"
    path.write_text("".join(json.dumps(q) + "\n" for q in questions))
    specs = load_tool_specs(path)
    assert [s["function"]["name"] for s in specs] == ["math_factorial", "geo_route_plan"]
    assert specs[0]["function"]["description"] == BFCL_FACTORIAL["description"]
    zipped = tmp_path / "bfcl.jsonl.gz"
    zipped.write_bytes(gzip.compress(path.read_bytes()))
    assert load_tool_specs(zipped) == specs


def test_load_tool_specs_reads_bfcl_function_docs(tmp_path: Path):
    path = tmp_path / "docs.json"
    path.write_text(json.dumps(BFCL_FACTORIAL) + "\n" + json.dumps(BFCL_NESTED) + "\n")
    assert [s["function"]["name"] for s in load_tool_specs(path)] == ["math_factorial", "geo_route_plan"]


def test_load_tool_specs_names_the_entry_it_cannot_read(tmp_path: Path):
    path = tmp_path / "odd.json"
    path.write_text(json.dumps({"id": 1}) + "\n" + json.dumps({"id": 2}) + "\n")
    with pytest.raises(ValueError, match=r"odd.json:1: not a tool spec or BFCL entry"):
        load_tool_specs(path)


def test_every_function_of_a_real_bfcl_file_converts_to_a_valid_schema():
    bfcl_eval = pytest.importorskip("bfcl_eval")
    path = Path(bfcl_eval.__file__).parent / "data" / "BFCL_v4_multiple.json"
    specs = load_tool_specs(path)
    assert len(specs) > 100
    for spec in specs:
        Draft202012Validator.check_schema(spec["function"]["parameters"])
        ToolRegistry().register(spec)


def test_shipped_bfcl_seeds_match_their_tools():
    path = Path(__file__).parents[1] / "demos" / "seeds" / "bfcl_simple.jsonl.gz"
    if not path.exists():
        pytest.skip("demos/seeds/bfcl_simple.jsonl.gz not generated")
    with gzip.open(path, "rt", encoding="utf-8") as file:
        seeds = [json.loads(line) for line in file]
    assert len(seeds) >= 300
    for seed in seeds:
        names = {tool["function"]["name"] for tool in seed["tools"]}
        assert seed["messages"] and {truth["name"] for truth in seed["ground_truth"]} <= names
