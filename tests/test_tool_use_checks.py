"""The tool-use checks (tools/tool_use_checks.py) on their own: results used, reference calls."""

from __future__ import annotations

import json

import pytest

from synthgraph.tools.tool_use_checks import ExecutedCall, reference_calls, reference_mismatch, results_used

# BFCL's simple_python_0 possible answer: "" among the values means the argument may be left out.
TRIANGLE_TRUTH = {"name": "calculate_triangle_area", "arguments": {"base": [10], "height": [5], "unit": ["units", ""]}}


@pytest.mark.parametrize("result, answer_text, expected", [
    ({"result": 42.1648}, "That is 42.16 km.", "passed"),              # rounded in the answer
    ({"result": 1234.5}, "It comes to 1,234.5 dollars.", "passed"),    # thousands separator
    ({"date": "2026-05-15", "weekday": "Friday"}, "It is a Friday.", "passed"),
    ({"value": 26.2}, "Nothing new here.", "unchecked"),              # the tool only echoed the request
    ({"result": 7}, "It is 8.", "failed"),
])
def test_results_used_matches_returned_values_not_echoed_inputs(result, answer_text, expected):
    calls = [ExecutedCall(id="call_0_0", step=0, name="t", arguments={}, execution="passed",
                          result=json.dumps(result))]
    assert results_used(calls, answer_text, "Convert 26.2 miles please")[0] == expected


@pytest.mark.parametrize("arguments, problem", [
    ({"base": 10, "height": 5, "unit": "units"}, None),                        # optional argument given its value
    ({"base": 10.0, "height": 5}, None),                                       # 10.0 is 10
    ({"base": 12, "height": 5}, "base=12, the reference allows [10]"),
    ({"base": 10}, "leaves out height"),
    ({"base": 10, "height": 5, "colour": "red"}, "argument 'colour' is not in the reference call"),
])
def test_reference_mismatch_follows_bfcl_possible_answers(arguments, problem):
    call = ExecutedCall(id="c", step=0, name="calculate_triangle_area", arguments=arguments, execution="unchecked")
    mismatch = reference_mismatch(call, TRIANGLE_TRUTH)
    assert mismatch == problem if problem is None else problem in mismatch


def test_reference_calls_match_parallel_calls_in_any_order_and_count_them():
    truth = [{"name": "weekday", "arguments": {"date": ["2026-01-01"]}},
             {"name": "weekday", "arguments": {"date": ["2026-12-25"]}}]

    def trajectory(*dates):
        return [ExecutedCall(id=f"c{i}", step=0, name="weekday", arguments={"date": d}, execution="passed")
                for i, d in enumerate(dates)]

    assert reference_calls(trajectory("2026-12-25", "2026-01-01"), truth)[0] == "passed"
    assert reference_calls(trajectory("2026-12-25"), truth) == (
        "failed", "made 1 calls, the reference has 2")
    outcome, detail = reference_calls(trajectory("2026-12-25", "2026-12-24"), truth)
    assert outcome == "failed" and '"2026-12-24"' in detail
