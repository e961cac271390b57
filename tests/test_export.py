import json

from synthgraph.store.export import sharegpt_record

CALLS = [{"id": "call_0", "type": "function", "function": {"name": "convert_units", "arguments": '{"value": 3}'}},
         {"id": "call_1", "type": "function", "function": {"name": "calculate", "arguments": '{"expression": "2+2"}'}}]
TOOLS = [{"type": "function", "function": {"name": "convert_units", "parameters": {"type": "object"}}}]


def test_sharegpt_puts_system_and_tools_beside_the_conversation():
    record = sharegpt_record([{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"},
                              {"role": "assistant", "content": "hello"}], TOOLS)
    assert record["system"] == "be brief"
    assert record["conversations"] == [{"from": "human", "value": "hi"}, {"from": "gpt", "value": "hello"}]
    assert json.loads(record["tools"]) == [TOOLS[0]["function"]]


def test_sharegpt_parallel_calls_become_one_function_call_and_one_observation():
    record = sharegpt_record([
        {"role": "user", "content": "convert and add"},
        {"role": "assistant", "content": None, "tool_calls": CALLS},
        {"role": "tool", "content": '{"result": 1}', "tool_call_id": "call_0", "name": "convert_units"},
        {"role": "tool", "content": '{"result": 4}', "tool_call_id": "call_1", "name": "calculate"},
        {"role": "assistant", "content": "1 and 4"},
    ])
    kinds = [turn["from"] for turn in record["conversations"]]
    assert kinds == ["human", "function_call", "observation", "gpt"]
    assert json.loads(record["conversations"][1]["value"]) == [
        {"name": "convert_units", "arguments": {"value": 3}}, {"name": "calculate", "arguments": {"expression": "2+2"}}]
    assert json.loads(record["conversations"][2]["value"]) == ['{"result": 1}', '{"result": 4}']


def test_sharegpt_single_call_is_an_object_not_a_list():
    record = sharegpt_record([{"role": "user", "content": "x"},
                              {"role": "assistant", "content": None, "tool_calls": CALLS[:1]},
                              {"role": "tool", "content": "3", "tool_call_id": "call_0", "name": "convert_units"}])
    assert json.loads(record["conversations"][1]["value"]) == {"name": "convert_units", "arguments": {"value": 3}}
    assert record["conversations"][2] == {"from": "observation", "value": "3"}
