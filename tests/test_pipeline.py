"""Declarative pipelines: node kinds, routing and selection rules, load-time errors, every demo compiles."""

from __future__ import annotations

import asyncio
import json
import tempfile
from pathlib import Path

import pytest
import yaml
from fakes import RoleScript, ScriptedPool
from readback import rows

from synthgraph.agents.models import ScriptedChatModel
from synthgraph.graphs.family import family
from synthgraph.graphs.pipeline_checks import majority, run_check
from synthgraph.graphs.pipeline_spec import ChecksSettings
from synthgraph.graphs.recipe import RecipeError, load_recipe
from synthgraph.graphs.runner import Runner

DEMOS = Path(__file__).resolve().parents[1] / "demos"
SEEDS = [{"id": "s1", "topic": "apples"}, {"id": "s2", "topic": "trains"}]


ROLES = {"asker": {"temperature": 0.7}, "solver": {}, "critic": {"temperature": 0}}


def recipe_of(nodes, edges=(), emit=None, seeds=SEEDS, **fields):
    """The recipe as a user's YAML file, loaded the way `synthgraph run` loads it. Dedup is off unless a test
    turns it on: the scripted roles answer every seed alike, which dedup would rightly reject."""
    used = {(node.get("llm") or node.get("judge") or {}).get("role") for node in nodes.values()}
    roles = {name: role for name, role in ROLES.items() if name in used}
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "recipe.yaml"
        path.write_text(yaml.safe_dump({
            "name": "unit", "graph": "pipeline", "seeds": {"inline": seeds}, "dedup": False, "roles": roles,
            **fields, "nodes": nodes, "edges": list(edges), "emit": emit or {"messages": ["ask.text", "answer.text"]}},
            sort_keys=False))
        return load_recipe(path)


def run(tmp_path, recipe, seeds, script):
    db = tmp_path / "p.duckdb"
    result = asyncio.run(Runner(recipe, seeds, store_path=db, pool=ScriptedPool(script)).run())
    return db, result


def load_error(**kwargs) -> str:
    with pytest.raises(RecipeError) as error:
        recipe_of(**kwargs)
    return str(error.value)


ASK = {"llm": {"role": "asker", "user": "Write one question about {{ topic }}."}}
ANSWER = {"llm": {"role": "solver", "user": "{{ ask.text }}"}}


# ------------------------------------------------------------------------------------------------ llm nodes


def test_llm_nodes_render_templates_per_role_and_emit_a_chat_record(tmp_path):
    recipe, seeds = recipe_of({"ask": ASK, "answer": ANSWER}, ["ask -> answer"])
    script = RoleScript({"asker": lambda m: f"Q about {m[-1].content.split()[-1].rstrip('.')}?",
                         "solver": lambda m: f"A to {m[-1].content}"})
    db, result = run(tmp_path, recipe, seeds, script)
    assert result.tally.accepted == 2 and script.calls == {"asker": 2, "solver": 2}
    assert script.kwargs["asker"][0]["temperature"] == 0.7
    assert rows(db, "SELECT m.role, m.content FROM messages m JOIN samples s USING (sample_id) "
                    "WHERE s.seed_id = 's1' ORDER BY turn") == [("user", "Q about apples?"),
                                                               ("assistant", "A to Q about apples?")]
    assert rows(db, "SELECT role, count(sample_id) FROM agent_calls GROUP BY 1 ORDER BY 1") == [("asker", 2),
                                                                                             ("solver", 2)]


def test_structured_output_holds_the_model_to_a_schema_from_a_field_list(tmp_path):
    nodes = {"ask": {"llm": {"role": "asker", "user": "About {{ topic }}",
                             "output": {"question": "str", "level": ["easy", "hard"]}}},
             "answer": {"llm": {"role": "solver", "user": "{{ ask.question }} ({{ ask.level }})"}}}
    replies = iter(['{"question": "Why?"}', '{"question": "Why?", "level": "easy"}',   # first misses a field
                    '{"question": "How?", "level": "hard"}'])
    script = RoleScript({"asker": lambda m: next(replies), "solver": lambda m: m[-1].content})
    recipe, seeds = recipe_of(nodes, ["ask -> answer"], emit={"messages": ["ask.question", "answer.text"]})
    db, result = run(tmp_path, recipe, seeds, script)
    schema = script.kwargs["asker"][0]["json_schema"]
    assert schema["properties"]["level"] == {"enum": ["easy", "hard"]} and schema["required"] == ["question", "level"]
    assert script.calls["asker"] == 3  # the reply lacking `level` was refused and asked again
    assert sorted(rows(db, "SELECT content FROM messages WHERE role = 'assistant'")) == [("How? (hard)",),
                                                                                        ("Why? (easy)",)]


def test_an_llm_node_refused_on_every_try_rejects_with_the_reason(tmp_path):
    recipe, seeds = recipe_of({"ask": {**ASK, "llm": {**ASK["llm"], "output": {"question": "str"}}},
                               "answer": {"llm": {"role": "solver", "user": "{{ ask.question }}"}}},
                              ["ask -> answer"], emit={"messages": ["ask.question", "answer.text"]})
    db, _ = run(tmp_path, recipe, seeds, RoleScript({"asker": "not json", "solver": "x"}))
    assert rows(db, "SELECT DISTINCT status, reason LIKE 'ask: asker: no usable output%' FROM samples") == [
        ("error", True)]


class CutOffPool(ScriptedPool):
    """Every reply stops at max_tokens."""

    def _build(self, spec):
        return ScriptedChatModel(respond=self.script, finish_reason="length")


def test_an_output_cut_off_at_max_tokens_is_asked_again_unless_the_node_keeps_it(tmp_path):
    for keep, status, calls in ((False, "error", 2), (True, "accepted", 1)):
        node = {"llm": {**ASK["llm"], **({"at_max_tokens": "keep"} if keep else {})}}
        recipe, seeds = recipe_of({"ask": node}, emit={"messages": ["ask.text"]}, seeds=SEEDS[:1])
        script = RoleScript({"asker": "Write about"})
        (tmp_path / str(keep)).mkdir()
        asyncio.run(Runner(recipe, seeds, store_path=tmp_path / str(keep) / "p.duckdb", pool=CutOffPool(script)).run())
        assert script.calls["asker"] == calls
        assert rows(tmp_path / str(keep) / "p.duckdb", "SELECT status FROM samples") == [(status,)]


# ------------------------------------------------------------------------------------------------ check nodes


def check(verifier, **args):
    return asyncio.run(run_check(verifier, args, ChecksSettings()))


def test_answers_match_is_three_valued():
    assert check("answers_match", candidate="so 42\n#### 42", reference="42").outcome == "passed"
    assert check("answers_match", candidate="#### 41", reference="42").outcome == "failed"
    assert check("answers_match", candidate="no idea", reference="42").outcome == "unchecked"


def test_text_checks_regex_length_json_schema_and_copy():
    assert check("regex", value="#### 7", pattern=r"#### \d+$").outcome == "passed"
    assert check("regex", value="7", pattern=r"\d+", full=True).outcome == "passed"
    assert check("length", value="one two", min_words=3).reason == "2 words < 3"
    assert check("json_schema", value='{"a": "x"}', schema={"type": "object", "properties": {
        "a": {"type": "integer"}}}).outcome == "failed"
    assert check("json_schema", value="{", schema={"type": "object"}).reason.startswith("not JSON")
    source = "the quick brown fox jumps over the lazy dog and then runs far away"
    assert check("not_a_copy", text=source, source=source).outcome == "failed"
    assert check("not_a_copy", text="A fox, quick and brown, leapt across a sleepy hound before it fled.",
                 source=source).outcome == "passed"


def test_grounded_and_validate_call_checks():
    passage = "The Aurora kettle boils one litre of water in 210 seconds."
    assert check("grounded", answer="The Aurora kettle boils a litre in 210 seconds.", passages=[passage]).outcome \
        == "passed"
    assert check("grounded", answer="The Aurora kettle boils a litre in 95 seconds.", passages=passage).outcome \
        == "failed"
    spec = {"name": "add", "parameters": {"type": "object", "properties": {"a": {"type": "integer"}},
                                          "required": ["a"]}}
    assert check("validate_call", call='{"name": "add", "arguments": {"a": 1}}', spec=spec).outcome == "passed"
    assert check("validate_call", call='{"name": "add", "arguments": {"a": "1"}}', spec=spec).outcome == "failed"


def test_sandboxed_python_checks_program_snippet_and_tests():
    ran = check("run_program", code="print(6 * 7)")
    assert (ran.outcome, ran.extra["answer"]) == ("passed", "42")
    assert check("run_program", code="raise SystemExit(3)").outcome == "failed"
    assert check("run_program", code="Here it is:\n```python\nprint(6 * 7)\n```\nDone.").extra["answer"] == "42"
    snippet = "print('passed: long enough' if len(inputs['text']) > 3 else 'failed: too short')"
    assert check("python", code=snippet, inputs={"text": "hello"}).reason == "long enough"
    assert check("python", code=snippet, inputs={"text": "hi"}).outcome == "failed"
    assert check("python", code="import time; time.sleep(60)", inputs={}).outcome == "unchecked"
    assert check("run_tests", solution="def f(x):\n    return x + 1", tests="assert f(1) == 2").outcome == "passed"
    assert check("run_tests", solution="def f(x):\n    return x", tests="assert f(1) == 2").outcome == "failed"


def trusted_check(text: str):
    return ("passed", "trusted") if text.startswith("Q") else ("failed", "does not start with Q")


def test_a_trusted_function_check_needs_the_recipe_flag(tmp_path):
    node = {"check": {"function": {"ref": "test_pipeline:trusted_check", "args": {"text": "{{ ask.text }}"}}}}
    nodes = {"ask": ASK, "vet": node}
    assert "set checks.allow_python: true" in load_error(nodes=nodes, edges=["ask -> vet"],
                                                         emit={"messages": ["ask.text"]})
    recipe, seeds = recipe_of(nodes, ["ask -> vet"], emit={"messages": ["ask.text"]}, checks={"allow_python": True})
    db, _ = run(tmp_path, recipe, seeds, RoleScript({"asker": "Q?"}))
    assert rows(db, "SELECT DISTINCT verifier, outcome, detail FROM verdicts") == [("vet", "passed", "trusted")]


def test_majority_agreement_passes_the_agreeing_and_holds_a_split_for_review():
    verdicts = majority(["positive", "Positive ", "negative"])
    assert [v.outcome for v in verdicts] == ["passed", "passed", "failed"]
    assert {v.outcome for v in majority(["positive", "negative"])} == {"unchecked"}


def test_records_without_annotator_agreement_are_kept_unchecked_for_review(tmp_path):
    nodes = {"annotate": {"llm": {"role": "solver", "samples": 3, "user": "Label: {{ topic }}",
                                  "output": {"label": ["pos", "neg", "neu"]}}},
             "agree": {"check": {"majority": {"value": "{{ annotate.label }}"}}, "select": "first"}}
    labels = {"apples": iter(["pos", "pos", "neg"]), "trains": iter(["pos", "neg", "neu"])}
    script = RoleScript({"solver": lambda m: json.dumps({"label": next(labels[m[-1].content.split()[-1]])})})
    recipe, seeds = recipe_of(nodes, ["annotate -> agree"], emit={"messages": ["topic", "annotate.label"]})
    db, _ = run(tmp_path, recipe, seeds, script)
    assert rows(db, "SELECT seed_id, status, count(*) FROM samples GROUP BY ALL ORDER BY ALL") == [
        ("s1", "accepted", 1), ("s1", "rejected", 2), ("s2", "rejected", 3)]
    assert rows(db, "SELECT DISTINCT v.outcome, s.reason LIKE 'held for review%' FROM verdicts v "
                    "JOIN samples s USING (sample_id) WHERE s.seed_id = 's2'") == [("unchecked", True)]


# ------------------------------------------------------------------------------------------------ judge nodes


def test_judge_scores_against_a_threshold_and_best_keeps_one(tmp_path):
    nodes = {"ask": ASK, "answer": {"llm": {**ANSWER["llm"], "samples": 3}},
             "rate": {"judge": {"role": "critic", "rubric": "Correct?", "show": "{{ answer.text }}", "threshold": 6},
                      "select": "best"}}
    answers = iter(["a1", "a2", "a3"] * 2)
    scores = {"a1": 5, "a2": 9, "a3": 7}
    script = RoleScript({"asker": "Q?", "solver": lambda m: next(answers),
                         "critic": lambda m: json.dumps({"reason": "ok", "score": scores[m[-1].content.split()[-1]]})})
    recipe, seeds = recipe_of(nodes, ["ask -> answer -> rate"], seeds=SEEDS[:1])
    db, _ = run(tmp_path, recipe, seeds, script)
    assert rows(db, "SELECT m.content, s.status, s.score FROM samples s JOIN messages m USING (sample_id) "
                    "WHERE m.role = 'assistant' ORDER BY 1") == [("a1", "rejected", 5.0), ("a2", "accepted", 9.0),
                                                                 ("a3", "rejected", 7.0)]
    assert rows(db, "SELECT reason FROM samples WHERE status = 'rejected' ORDER BY reason") == [
        ("rate: failed: score 5 < 6: ok",), ("rate: not selected (best)",)]


def test_pairwise_judge_prefers_one_of_two_candidates(tmp_path):
    nodes = {"ask": ASK, "answer": {"llm": {**ANSWER["llm"], "samples": 2}},
             "compare": {"judge": {"role": "critic", "rubric": "Which is clearer?", "show": "{{ answer.text }}",
                                   "pairwise": True}}}
    answers = iter(["first", "second"])
    script = RoleScript({"asker": "Q?", "solver": lambda m: next(answers),
                         "critic": json.dumps({"reason": "B is clearer", "winner": "B"})})
    recipe, seeds = recipe_of(nodes, ["ask -> answer -> compare"], seeds=SEEDS[:1])
    db, _ = run(tmp_path, recipe, seeds, script)
    assert "Candidate A:\nfirst" in script.prompts["critic"][0][-1].content
    assert rows(db, "SELECT m.content, s.status FROM samples s JOIN messages m USING (sample_id) "
                    "WHERE m.role = 'assistant' ORDER BY 1") == [("first", "rejected"), ("second", "accepted")]


# ------------------------------------------------------------------------------------------------ routing


def loop_recipe(max_visits=2):
    nodes = {"ask": ASK, "answer": {"llm": {**ANSWER["llm"], "samples": 2}},
             "verify": {"check": {"answers_match": {"candidate": "{{ answer.text }}", "reference": "42"}}}}
    return recipe_of(nodes, ["ask -> answer -> verify",
                             {"verify": {"passed": "accept", "failed": "answer", "max_visits": max_visits}}],
                     seeds=SEEDS[:1])


def test_a_failed_check_loops_back_for_a_new_round_until_one_passes(tmp_path):
    replies = iter(["#### 1", "#### 2", "#### 3", "#### 42"])
    recipe, seeds = loop_recipe()
    db, _ = run(tmp_path, recipe, seeds, RoleScript({"asker": "Q?", "solver": lambda m: next(replies)}))
    assert rows(db, "SELECT payload->>'candidate', status FROM samples ORDER BY 1") == [
        ("r0k0", "rejected"), ("r0k1", "rejected"), ("r1k0", "rejected"), ("r1k1", "accepted")]


def test_a_loop_stops_at_max_visits_and_rejects(tmp_path):
    script = RoleScript({"asker": "Q?", "solver": "#### 1"})
    recipe, seeds = loop_recipe(max_visits=3)
    db, _ = run(tmp_path, recipe, seeds, script)
    assert script.calls["solver"] == 6  # three rounds of two, then the bound
    assert rows(db, "SELECT status, count(*) FROM samples GROUP BY 1") == [("rejected", 6)]


def test_a_plain_next_after_a_check_rejects_on_failure_and_reviews_when_unchecked(tmp_path):
    nodes = {"ask": ASK, "shape": {"check": {"regex": {"value": "{{ ask.text }}", "pattern": r"\?$"}}},
             "verify": {"check": {"answers_match": {"candidate": "{{ ask.text }}", "reference": "42"}}}}
    recipe, seeds = recipe_of(nodes, ["ask -> shape -> verify -> accept"], emit={"messages": ["ask.text"]})
    replies = {"apples": "Nothing to ask.", "trains": "How many trains?"}
    db, _ = run(tmp_path, recipe, seeds, RoleScript({"asker": lambda m: replies[m[-1].content.split()[-1][:-1]]}))
    assert rows(db, "SELECT seed_id, status, reason FROM samples ORDER BY 1") == [
        ("s1", "rejected", "shape: failed: does not match '\\\\?$'"),
        ("s2", "rejected", "held for review: verify: unchecked: no final answer found (expected '#### <answer>', "
                           "\\boxed{...} or 'The answer is ...')")]


def test_select_all_keeps_every_passing_candidate_and_first_keeps_one(tmp_path):
    for rule, accepted in (("all", 2), ("first", 1)):
        nodes = {"ask": ASK, "answer": {"llm": {**ANSWER["llm"], "samples": 3}},
                 "verify": {"check": {"answers_match": {"candidate": "{{ answer.text }}", "reference": "7"}},
                            "select": rule}}
        replies = iter(["#### 7", "#### 8", "#### 7"])
        recipe, seeds = recipe_of(nodes, ["ask -> answer -> verify"], seeds=SEEDS[:1])
        (tmp_path / rule).mkdir()
        db, _ = run(tmp_path / rule, recipe, seeds, RoleScript({"asker": "Q?", "solver": lambda m: next(replies)}))
        assert rows(db, "SELECT count(*) FROM samples WHERE status = 'accepted'") == [(accepted,)]


def test_for_each_fans_out_one_candidate_per_value(tmp_path):
    nodes = {"rewrite": {"llm": {"role": "solver", "user": "Rewrite {{ topic }} {{ style }}",
                                 "for_each": {"style": ["like Wikipedia", "as a Q&A"]}}}}
    recipe, seeds = recipe_of(nodes, emit={"messages": ["Rewrite {{ topic }} {{ style }}", "rewrite.text"]},
                              seeds=SEEDS[:1])
    db, _ = run(tmp_path, recipe, seeds, RoleScript({"solver": lambda m: m[-1].content.upper()}))
    assert rows(db, "SELECT content FROM messages WHERE role = 'assistant' ORDER BY 1") == [
        ("REWRITE APPLES AS A Q&A",), ("REWRITE APPLES LIKE WIKIPEDIA",)]


# ------------------------------------------------------------------------------------------------ load-time errors


def test_an_undefined_template_variable_names_the_field_and_what_is_available():
    message = load_error(nodes={"ask": {"llm": {"role": "asker", "user": "About {{ topc }}"}}},
                         emit={"messages": ["ask.text"]})
    assert "nodes.ask.llm.user: {{ topc }} is not defined; available: id, topic" in message


def test_a_later_node_is_not_available_to_an_earlier_one():
    message = load_error(nodes={"ask": {"llm": {"role": "asker", "user": "{{ answer.text }}"}}, "answer": ANSWER},
                         edges=["ask -> answer"])
    assert "nodes.ask.llm.user: {{ answer }} is not defined" in message


def test_an_unknown_output_field_lists_the_node_outputs():
    message = load_error(nodes={"ask": ASK, "answer": {"llm": {"role": "solver", "user": "{{ ask.question }}"}}},
                         edges=["ask -> answer"])
    assert "nodes.answer.llm.user: node 'ask' has no output 'question'; its outputs: text" in message


def test_an_edge_to_an_unknown_node_lists_the_nodes():
    message = load_error(nodes={"ask": ASK, "answer": ANSWER}, edges=["ask -> anwser"])
    assert "edges[0]: unknown node 'anwser'; nodes: ask, answer (terminals: accept, reject, review)" in message


def test_an_unknown_verifier_lists_the_verifiers():
    message = load_error(nodes={"ask": ASK, "vet": {"check": {"answer_match": {}}}}, edges=["ask -> vet"],
                         emit={"messages": ["ask.text"]})
    assert "check: unknown verifier 'answer_match'; verifiers: answers_match, run_tests" in message


def test_a_loop_without_a_bound_is_refused():
    nodes = {"ask": ASK, "answer": ANSWER,
             "verify": {"check": {"answers_match": {"candidate": "{{ answer.text }}", "reference": "1"}}}}
    message = load_error(nodes=nodes, edges=["ask -> answer -> verify",
                                             {"verify": {"passed": "accept", "failed": "answer"}}])
    assert "edges: the loop answer -> verify -> answer has no bound; add max_visits: N to the route of verify" \
        in message


VERIFY = {"check": {"answers_match": {"candidate": "{{ answer.text }}", "reference": "1"}}}


@pytest.mark.parametrize("route, message", [
    ({"passed": "accept", "failed": "reject", "max_visits": 2},
     "edges[1].verify.max_visits bounds a loop, and no target of this route leads back to verify: remove max_visits"),
    ({"passed": "accept", "failed": "reject", "exhausted": "review"},
     "edges[1].verify.exhausted is where a loop goes after max_visits; add max_visits: N, or remove exhausted"),
])
def test_a_loop_bound_on_a_route_that_cannot_loop_is_refused(route, message):
    nodes = {"ask": ASK, "answer": ANSWER, "verify": VERIFY}
    assert message in load_error(nodes=nodes, edges=["ask -> answer -> verify", {"verify": route}])


def test_a_bounded_loop_loads_and_takes_a_command_line_model():
    nodes = {"ask": ASK, "answer": ANSWER, "verify": VERIFY}
    recipe, _ = recipe_of(nodes, ["ask -> answer -> verify",
                                  {"verify": {"passed": "accept", "failed": "answer", "max_visits": 2}}])
    recipe.with_overrides(model="openai:http://h:1/v1:m").check_structure()


def test_a_fan_out_continues_with_a_plain_edge_not_a_route():
    nodes = {"ask": ASK, "answer": {"llm": {**ANSWER["llm"], "samples": 2}}}
    message = load_error(nodes=nodes, edges=["ask -> answer", {"answer": {"passed": "accept", "failed": "reject"}}])
    assert "edges: answer fans out (samples / for_each), so it continues with a plain edge" in message


JUDGE = {"judge": {"role": "critic", "rubric": "Is it right?", "show": "{{ answer.text }}"}}


@pytest.mark.parametrize("node, setting", [
    ({**JUDGE, "select": "best"}, "select"),
    ({"judge": {**JUDGE["judge"], "pairwise": True}}, "judge.pairwise"),
    ({"check": {"majority": {"value": "{{ answer.text }}"}}}, "check.majority"),
])
def test_a_candidate_setting_on_a_node_no_fan_out_runs_before_is_refused(node, setting):
    """Without samples or for_each upstream the node only ever sees the seed: the setting would do nothing."""
    message = load_error(nodes={"ask": ASK, "answer": ANSWER, "rate": node}, edges=["ask -> answer -> rate"])
    assert (f"nodes.rate.{setting} works on the candidates of an llm node with samples or for_each, and none runs "
            f"before rate: put rate after one, or remove {setting}") in message
    fanned = {"ask": ASK, "answer": {"llm": {**ANSWER["llm"], "samples": 2}}, "rate": node}
    recipe_of(nodes=fanned, edges=["ask -> answer -> rate"])   # after a fan-out: fine


def test_select_best_after_a_pass_or_fail_check_is_refused():
    nodes = {"ask": ASK, "answer": {"llm": {**ANSWER["llm"], "samples": 2}}, "verify": {**VERIFY, "select": "best"}}
    message = load_error(nodes=nodes, edges=["ask -> answer -> verify"])
    assert ("nodes.verify.select: best picks the highest score, and check.answers_match scores every candidate that "
            "passes alike: use select: first (or all)") in message


def test_a_threshold_on_a_pairwise_judge_is_refused():
    node = {"judge": {**JUDGE["judge"], "pairwise": True, "threshold": 8}}
    message = load_error(nodes={"ask": ASK, "answer": {"llm": {**ANSWER["llm"], "samples": 2}}, "rate": node},
                         edges=["ask -> answer -> rate"])
    assert "threshold: a pairwise judge passes the candidate it prefers and scores none" in message


def test_cli_model_override_applies_to_every_role():
    recipe, _ = recipe_of({"ask": ASK, "answer": ANSWER}, ["ask -> answer"],
                          roles={"asker": {"model": "vllm:smollm2-135m"}, "solver": {}})
    assert str(recipe.with_overrides(model="openai:http://h:1/v1:m").role_model("asker")) == "openai:http://h:1/v1:m"


def test_an_unreachable_node_is_refused():
    message = load_error(nodes={"ask": ASK, "answer": ANSWER, "extra": ANSWER}, edges=["ask -> answer"])
    assert "nodes.extra: unreachable from 'ask'; add an edge to it or remove it" in message


def test_an_output_schema_that_is_not_json_schema_is_refused():
    message = load_error(nodes={"ask": {"llm": {"role": "asker", "user": "x",
                                                "output": {"type": "object", "properties": {"q": {"type": "strin"}}}}}},
                         emit={"messages": ["x"]})
    assert "nodes.ask.llm.output: not a valid JSON Schema at properties.q.type" in message


def test_an_unknown_role_lists_the_roles():
    message = load_error(nodes={"ask": {"llm": {"role": "writer", "user": "x"}}}, emit={"messages": ["x"]},
                         roles=ROLES)
    assert "nodes.ask.llm.role: unknown role 'writer'; roles: asker, solver, critic" in message


def test_a_role_no_node_uses_is_refused():
    message = load_error(nodes={"ask": ASK, "answer": ANSWER}, edges=["ask -> answer"], roles=ROLES)
    assert "roles.critic: no node uses this role; remove it, or name it in a node's llm.role or judge.role" in message


def test_a_role_seed_gives_each_branch_a_seed_of_its_own_and_the_same_ones_again(tmp_path):
    nodes = {"ask": {"llm": {"role": "asker", "samples": 4, "user": "Write one question about {{ topic }}."}}}
    recipe, seeds = recipe_of(nodes, emit={"messages": ["ask.text"]},
                              roles={"asker": {"temperature": 1.0, "seed": 7}})
    drawn = []
    for attempt in ("first", "again"):
        (tmp_path / attempt).mkdir()
        script = RoleScript({"asker": "Why?"})
        run(tmp_path / attempt, recipe, seeds, script)
        drawn.append([kwargs["seed"] for kwargs in script.kwargs["asker"]])
    # vLLM seeds each request alone: four branches with one seed would draw one text four times
    per_seed = len(drawn[0]) // len(seeds)
    assert per_seed == 4 and len(set(drawn[0][:per_seed])) == 4
    assert sorted(drawn[0]) == sorted(drawn[1])  # reproducible: a rerun draws with the same seeds


# ------------------------------------------------------------------------------------------------ seeds


def write_recipe(folder: Path, seeds: dict) -> Path:
    path = folder / "r.yaml"
    path.write_text(json.dumps({"name": "x", "graph": "pipeline", "roles": {"w": {}}, "seeds": seeds,
                                "nodes": {"ask": {"llm": {"role": "w", "user": "{{ topic }}"}}},
                                "emit": {"messages": ["topic", "ask.text"]}}))
    return path


def test_csv_seeds_with_field_mapping_and_a_missing_column_reported_by_line(tmp_path):
    (tmp_path / "t.csv").write_text("Subject,Other\napples,1\ntrains,2\n")
    _, seeds = load_recipe(write_recipe(tmp_path, {"file": "t.csv", "fields": {"topic": "Subject"}}))
    assert [s.model_dump(exclude_none=True) for s in seeds] == [{"topic": "apples"}, {"topic": "trains"}]
    (tmp_path / "bad.csv").write_text("Subject,Other\napples,1\ntrains\n")
    with pytest.raises(RecipeError, match=r"bad.csv:3: has no column 'Other' \(mapped by seeds.fields\)"):
        load_recipe(write_recipe(tmp_path, {"file": "bad.csv", "fields": {"topic": "Subject", "n": "Other"}}))


def test_parquet_seeds_and_a_seeded_sample(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"name": [f"t{i}" for i in range(20)]}), tmp_path / "t.parquet")
    spec = {"file": "t.parquet", "fields": {"topic": "name"}, "sample": 5, "seed": 7}
    first = [s.topic for s in load_recipe(write_recipe(tmp_path, spec))[1]]
    again = [s.topic for s in load_recipe(write_recipe(tmp_path, spec))[1]]
    other = [s.topic for s in load_recipe(write_recipe(tmp_path, {**spec, "seed": 8}))[1]]
    assert len(first) == 5 and first == again and first != other
    with pytest.raises(RecipeError, match=r"seeds.sample: 30 rows asked for, and the source holds 20: lower sample"):
        load_recipe(write_recipe(tmp_path, {**spec, "sample": 30}))


def test_a_datasets_folder_made_with_save_to_disk(tmp_path):
    import datasets

    datasets.Dataset.from_dict({"topic": ["apples", "trains"]}).save_to_disk(str(tmp_path / "ds"))
    assert [s.topic for s in load_recipe(write_recipe(tmp_path, {"file": "ds"}))[1]] == ["apples", "trains"]
    datasets.DatasetDict({"train": datasets.Dataset.from_dict({"topic": ["a"]})}).save_to_disk(str(tmp_path / "dd"))
    with pytest.raises(RecipeError, match="seeds.split: .* holds the splits train"):
        load_recipe(write_recipe(tmp_path, {"file": "dd"}))
    assert [s.topic for s in load_recipe(write_recipe(tmp_path, {"file": "dd", "split": "train"}))[1]] == ["a"]


def test_a_seeds_option_the_source_cannot_use_is_refused(tmp_path):
    (tmp_path / "t.jsonl").write_text('{"topic": "a"}\n{"topic": "b"}\n')
    with pytest.raises(RecipeError, match=r"seeds.split: .*t.jsonl is a single file without splits"):
        load_recipe(write_recipe(tmp_path, {"file": "t.jsonl", "split": "test"}))
    with pytest.raises(RecipeError, match="seeds.split names a split of a `datasets` folder; inline seeds have none"):
        load_recipe(write_recipe(tmp_path, {"inline": [{"topic": "a"}], "split": "test"}))
    with pytest.raises(RecipeError, match="seeds.seed draws the rows of seeds.sample or seeds.shuffle"):
        load_recipe(write_recipe(tmp_path, {"file": "t.jsonl", "seed": 7}))
    assert len(load_recipe(write_recipe(tmp_path, {"file": "t.jsonl", "seed": 7, "shuffle": True}))[1]) == 2


def test_jsonl_seed_row_lacking_a_mapped_field_names_file_and_line(tmp_path):
    (tmp_path / "t.jsonl").write_text('{"t": "a"}\n\n{"u": "b"}\n')
    with pytest.raises(RecipeError, match=r"t.jsonl:3: has no column 't'"):
        load_recipe(write_recipe(tmp_path, {"file": "t.jsonl", "fields": {"topic": "t"}}))


# ------------------------------------------------------------------------------------------------ demos


DEMO_NODES = {
    "two_step.yaml": ["write", "solve"],
    "augment_docs.yaml": ["rephrase", "copy", "size", "faithful"],
    "label_reviews.yaml": ["annotate", "agree"],
    "reasoning_pipeline.yaml": ["propose", "program", "reference", "solve", "verify", "judge"],
}


@pytest.mark.parametrize("demo", sorted(DEMO_NODES))
def test_every_demo_pipeline_compiles_into_its_nodes(demo):
    recipe, seeds = load_recipe(DEMOS / demo)
    graph = family("pipeline").graph_for(recipe)
    assert seeds and list(recipe.nodes) == DEMO_NODES[demo]
    assert set(graph.get_graph().nodes) == {"__start__", "__end__", *DEMO_NODES[demo], "accept", "reject", "review"}


def test_demo_pipelines_are_all_listed():
    assert sorted(p.name for p in DEMOS.glob("*.yaml") if "graph: pipeline" in p.read_text()) == sorted(DEMO_NODES)


@pytest.mark.model
@pytest.mark.parametrize("demo", ["two_step.yaml", "augment_docs.yaml"])
def test_demo_runs_end_to_end_on_the_embedded_model(tmp_path, demo):
    recipe, seeds = load_recipe(DEMOS / demo)
    db = tmp_path / "m.duckdb"
    result = asyncio.run(Runner(recipe, seeds, store_path=db, limit=2).run())
    assert result.tally.seeds_done == 2
    # no seed crashed (a model output refused on every try is a recorded `error` sample, which is data)
    assert rows(db, "SELECT count(*) > 0, count(*) FILTER (WHERE kind = 'seed_error') FROM samples") == [(True, 0)]
    assert rows(db, "SELECT count(*) > 0 FROM messages") == [(True,)]
    roles = {role for (role,) in rows(db, "SELECT DISTINCT role FROM agent_calls WHERE sample_id IS NOT NULL")}
    assert roles and roles <= set(recipe.roles)
    if any(node.kind != "llm" for node in recipe.nodes.values()):
        assert rows(db, "SELECT count(*) > 0 FROM verdicts") == [(True,)]


def test_a_node_prompt_is_part_of_the_run_id():
    recipe, seeds = recipe_of({"ask": ASK, "answer": ANSWER}, ["ask -> answer"])
    edited, _ = recipe_of({"ask": {"llm": {**ASK["llm"], "user": "Ask about {{ topic }}."}}, "answer": ANSWER},
                          ["ask -> answer"])
    assert recipe.run_id(seeds) != edited.run_id(seeds)


def test_a_python_snippet_may_print_a_json_verdict_with_a_score():
    verdict = check("python", code="import json; print(json.dumps({'outcome': 'passed', 'reason': 'ok', 'score': 0.7}))")
    assert (verdict.outcome, verdict.reason, verdict.score) == ("passed", "ok", 0.7)


# ------------------------------------------------------------------------------------------ the user's own files


def seeds_of(tmp_path, name: str, data: bytes | str, **spec) -> list[dict]:
    path = tmp_path / name
    path.write_bytes(data if isinstance(data, bytes) else data.encode())
    _, seeds = load_recipe(write_recipe(tmp_path, {"file": name, **spec}))
    return [s.model_dump(exclude_none=True) for s in seeds]


def seed_error(tmp_path, name: str, data: bytes | str, **spec) -> str:
    with pytest.raises(RecipeError) as error:
        seeds_of(tmp_path, name, data, **spec)
    return str(error.value)


def test_an_excel_csv_with_a_byte_order_mark_keeps_its_first_column(tmp_path):
    assert seeds_of(tmp_path, "t.csv", "\ufeffid,topic\r\nq1,apples\r\n") == [{"id": "q1", "topic": "apples"}]


def test_a_csv_row_with_more_cells_than_the_header_or_a_repeated_column_is_refused(tmp_path):
    assert "t.csv:3: a cell past the header's 2 columns (' pears and plums'; a value holding a comma needs double " \
           "quotes)" in seed_error(tmp_path, "t.csv", "id,topic\nq1,apples\nq2,apples, pears and plums\n")
    assert "d.csv:1: the header names 'topic' twice" in seed_error(tmp_path, "d.csv", "topic,topic\na,b\n")
    # what spreadsheets leave: blank columns at the right, an empty cell past the header
    assert seeds_of(tmp_path, "x.csv", "topic,,\r\napples,,\r\n") == [{"topic": "apples"}]
    assert seeds_of(tmp_path, "y.csv", "topic\r\napples,\r\n") == [{"topic": "apples"}]


def test_unreadable_bytes_are_one_line_naming_the_file(tmp_path):
    assert "l.csv is not UTF-8 text (byte 9: invalid continuation byte); save it as UTF-8" in \
        seed_error(tmp_path, "l.csv", "topic\ncaf\xe9 au lait\n".encode("latin-1"))
    assert "b.jsonl.gz is not a readable gzip file" in seed_error(tmp_path, "b.jsonl.gz", b"not gzip")
    assert "s.jsonl:1: a seed is a JSON object of fields, not str" in seed_error(tmp_path, "s.jsonl", '"apples"\n')


def test_a_json_array_file_and_raw_line_separators_inside_strings(tmp_path):
    assert seeds_of(tmp_path, "a.json", '[\n  {"topic": "apples"},\n  {"topic": "trains"}\n]\n') == [
        {"topic": "apples"}, {"topic": "trains"}]
    assert seeds_of(tmp_path, "u.jsonl", '{"topic": "one\u2028two\u0085three"}\n') == [
        {"topic": "one\u2028two\u0085three"}]


def test_a_mapped_file_keeps_its_own_ids_and_says_which_rows_collide(tmp_path):
    rows = "id,Subject\nQ1,apples\nQ2,apples\n"
    assert seeds_of(tmp_path, "t.csv", rows, fields={"topic": "Subject"}) == [
        {"id": "Q1", "topic": "apples"}, {"id": "Q2", "topic": "apples"}]
    numbered = '{"id": 1, "Subject": "apples"}\n{"id": 2, "Subject": "trains"}\n'   # not an id synthgraph takes
    assert [s["topic"] for s in seeds_of(tmp_path, "i.jsonl", numbered, fields={"topic": "Subject"})] == [
        "apples", "trains"]
    message = seed_error(tmp_path, "n.csv", "Subject,n\napples,1\napples,2\n", fields={"topic": "Subject"})
    assert "n.csv:3: seed id" in message and "(an id made from the seed's content: the two rows are the same " \
        "seed) is also seed file" in message and "n.csv:2's; ids must be unique" in message
    assert "j.jsonl:1: column 'Subject' (mapped by seeds.fields) is null" in \
        seed_error(tmp_path, "j.jsonl", '{"Subject": null}\n', fields={"topic": "Subject"})


def test_an_id_another_seeds_later_pass_would_take_is_refused(tmp_path):
    assert "p.jsonl:2: seed id 'a#2' is the id synthgraph gives the later passes of seed 'a'" in \
        seed_error(tmp_path, "p.jsonl", '{"id": "a", "topic": "x"}\n{"id": "a#2", "topic": "y"}\n')
    assert seeds_of(tmp_path, "g.jsonl", '{"id": "pallets/flask#4521", "topic": "x"}\n')[0]["id"] == \
        "pallets/flask#4521"


def test_parquet_values_json_cannot_hold_still_make_seed_ids(tmp_path):
    import datetime

    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"topic": ["apples"], "day": [datetime.date(2026, 12, 5)]}), tmp_path / "d.parquet")
    recipe, seeds = load_recipe(write_recipe(tmp_path, {"file": "d.parquet"}))
    assert seeds[0].seed_id and recipe.run_id(seeds)
