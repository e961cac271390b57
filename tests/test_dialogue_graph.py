"""The dialogue graph's nodes, stop rules and checks, driven by a scripted chat model; its rows in DuckDB."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path

import pytest
from fakes import RoleScript, ScriptedPool
from readback import rows
from typer.testing import CliRunner

from synthgraph.agents import dialogue_roles
from synthgraph.agents.dialogue_roles import CONTINUE_ONLY
from synthgraph.tools.dialogue_checks import check_dialogue
from synthgraph.graphs import dialogue
from synthgraph.graphs.cli import app
from synthgraph.graphs.dialogue import DialogueSeed
from synthgraph.graphs.recipe import RecipeError, load_recipe, parse_recipe
from synthgraph.graphs.runner import Runner

ROOT = Path(__file__).resolve().parents[1]

# The README's queries.
SCORE_BY_PERSONA_AND_TURN_SQL = """
SELECT s.payload->>'persona' AS persona, v.turn, round(avg(v.score), 2) AS mean_score, count(*) AS turns
FROM samples s JOIN verdicts v ON v.sample_id = s.sample_id AND v.verifier = 'turn_critic'
WHERE s.kind = 'dialogue'
GROUP BY ALL ORDER BY persona, v.turn
"""
GAVE_UP_SQL = """
SELECT s.seed_id, s.payload->>'persona' AS persona, s.payload->>'goal' AS goal,
       CAST(s.payload->>'user_turns' AS INTEGER) AS user_turns, s.status, s.payload->>'closing' AS last_words
FROM samples s
WHERE s.kind = 'dialogue' AND (s.payload->>'end_reason') = 'gave_up'
ORDER BY s.seed_id
"""

SYSTEM_PROMPT = "You are a helpful, accurate assistant. Answer clearly and concisely."
PERSONAS = [
    {"name": "nurse", "description": "A nurse on night shifts who writes short messages and wants practical answers."},
    {"name": "teacher", "description": "A retired teacher, polite and curious, who wants things explained simply."},
]
GOALS = ["Plan a cheap weekend in Lisbon.", "Understand compound interest."]
RECIPE = {"name": "t", "graph": "dialogue", "personas": PERSONAS, "goals": GOALS,
          "roles": {"assistant": {"system_prompt": SYSTEM_PROMPT}}, "seeds": {"inline": [{"id": "a"}]}}

ANSWERS = [
    "Lisbon is affordable: fly on a budget airline and stay in a hostel near Baixa for about 25 euros a night.",
    "Day one Belem and its monastery, day two the Alfama hills and a fado bar, day three a train to Sintra.",
    "Budget roughly 40 euros a day for food and transport; many museums are free on Sunday mornings.",
    "A Lisboa Card only pays off when you visit four or more paid sights in a single day.",
    "Pack light layers, comfortable shoes for the cobbles, and a jacket for windy evenings by the river.",
    "Tram 28 is scenic but crowded; walking or the metro is quicker for most trips in the centre.",
    "Pasteis de nata from a bakery in Belem are the classic snack and cost about a euro and a half each.",
]


def user_turn_number(messages) -> int:
    """Which user turn a user-simulator prompt asks for: one more than the user lines in its transcript."""
    return len(re.findall(r"^User: ", messages[-1].content, flags=re.M)) + 1


QUESTIONS = [
    "Hi! I want a cheap weekend in Lisbon, where do I start?",
    "What should I see on each of the three days?",
    "How much money per day should I bring?",
    "Thanks, that is all I needed.",
    "Is the Lisboa Card worth it?",
    "What should I pack?",
]


def user_says(*statuses: str):
    """A user simulator whose n-th message is QUESTIONS[n-1] with the n-th status (the last one repeats)."""
    def reply(messages):
        n = user_turn_number(messages)
        return json.dumps({"message": QUESTIONS[n - 1], "status": statuses[min(n, len(statuses)) - 1]})
    return reply


def answers(messages) -> str:
    return ANSWERS[sum(m.type == "human" for m in messages) - 1]


def turn_critique(score: int, reason: str = "Helpful and correct.") -> str:
    return json.dumps({"reason": reason, "helpfulness": score, "correctness": score, "consistency": score,
                       "on_goal": score})


def verdict(score: int = 8, *, goal_met: bool = True, repetition: bool = False) -> str:
    return json.dumps({"reason": "A useful conversation.", "goal_met": goal_met, "persona_adherence": 8,
                       "repetition": repetition, "score": score})


class DialogueScript(RoleScript):
    """Scripted replies per dialogue role (agents/prompts/dialogue_*.md; the critic's whole-dialogue prompt is
    `judge`), each a string or a function of the prompt messages."""

    def __init__(self, **replies):
        super().__init__({"user": user_says("continue", "continue", "continue", "goal_met"), "assistant": answers,
                          "critic": turn_critique(8), "judge": verdict()}, **replies)


def make_context(script: DialogueScript, **fields) -> dialogue.DialogueContext:
    context = dialogue.make_context(parse_recipe(RECIPE), ScriptedPool(script))
    for name, value in fields.items():
        setattr(context, name, value)
    return context


def run_graph(context, seed: DialogueSeed | None = None) -> dict:
    seed = seed or DialogueSeed(id="a", cell=0)
    return asyncio.run(dialogue.graph.ainvoke(dialogue.initial_state(seed), context=context))


def rows_of(state, context):
    return dialogue.to_rows(state, run_id="r", seed_id="s", context=context)


# ------------------------------------------------------------------------------------------ the planner


def test_grid_walk_visits_every_cell_once_and_a_short_run_spans_every_axis():
    sizes = (3, 4, 3)
    cells = [dialogue.grid_cell(i, sizes) for i in range(36)]
    assert len(set(cells)) == 36
    first = cells[:3]
    assert {c[0] for c in first} == {0, 1, 2} and len({c[1] for c in first}) == 3 and {c[2] for c in first} == {0, 1, 2}
    assert dialogue.grid_cell(36 + 5, sizes) == cells[5]


def test_plan_draws_the_seed_cell_and_seed_pins_override_the_grid():
    script = DialogueScript()
    context = make_context(script)
    state = run_graph(context, DialogueSeed(id="a", cell=1))
    scenario = state["scenario"]
    assert (scenario.persona, scenario.goal, scenario.twist) == ("teacher", GOALS[1], "changes_mind")
    assert scenario.persona_sheet == PERSONAS[1]["description"] and scenario.twist_turn == 2
    assert run_graph(context, DialogueSeed(id="a", cell=1))["scenario"] == scenario  # planned, not drawn
    pinned = run_graph(context, DialogueSeed(id="b", cell=1, persona="nurse", goal="Fix a bike.", twist="none"))
    assert (pinned["scenario"].persona, pinned["scenario"].goal, pinned["scenario"].twist_turn) == (
        "nurse", "Fix a bike.", None)
    assert "A nurse on night shifts" in script.prompts["user"][-1][0].content


def test_seeds_without_a_cell_take_their_position(tmp_path):
    recipe_path = tmp_path / "r.yaml"
    seeds = [{"id": "x"}, {"id": "y", "cell": 7}, {"id": "z"}]
    recipe_path.write_text(json.dumps({**RECIPE, "seeds": {"inline": seeds}}))
    _, seeds = load_recipe(recipe_path)
    assert [s.cell for s in seeds] == [0, 7, 2]


# ---------------------------------------------------------------------------------------- stop conditions


def test_user_reaching_the_goal_ends_a_dialogue_that_is_judged_verified_and_accepted():
    script = DialogueScript()
    context = make_context(script)
    state = run_graph(context)
    assert state["outcome"] == "accepted" and state["end_reason"] == "goal_met"
    assert [t.role for t in state["turns"]] == ["user", "assistant"] * 3
    assert state["closing"] == QUESTIONS[3]  # the goodbye is not a turn
    assert script.calls == {"user": 4, "assistant": 3, "critic": 3, "judge": 1}
    assert all(c.passed for c in state["checks"])
    # the critic sees the conversation up to the reply it reviews, and the user's goal
    assert "Assistant: " + ANSWERS[1] in script.prompts["critic"][1][-1].content
    assert GOALS[0] in script.prompts["critic"][0][-1].content


def test_user_giving_up_ends_the_dialogue_as_gave_up():
    state = run_graph(make_context(DialogueScript(user=user_says("continue", "continue", "continue", "gave_up"))))
    assert state["end_reason"] == "gave_up" and dialogue.user_turns(state["turns"]) == 3


def test_turn_budget_ends_a_dialogue_the_user_never_ends():
    script = DialogueScript(user=user_says("continue"))
    state = run_graph(make_context(script, max_user_turns=5))
    assert state["end_reason"] == "turn_budget" and dialogue.user_turns(state["turns"]) == 5
    assert state["turns"][-1].role == "assistant" and script.calls["user"] == 5


def test_user_cannot_end_before_the_minimum_turns():
    script = DialogueScript(user=user_says("continue", "goal_met"))
    state = run_graph(make_context(script, min_user_turns=3))
    assert [(e.user_turn, e.status) for e in state["early_stops"]] == [(2, "goal_met"), (3, "goal_met")]
    assert state["end_reason"] == "goal_met" and dialogue.user_turns(state["turns"]) == 3
    # below the minimum the grammar itself holds the status to "continue"; after it, any status may come
    schemas = [kwargs.get("json_schema") for kwargs in script.kwargs["user"]]
    assert schemas[:3] == [CONTINUE_ONLY] * 3 and schemas[3]["properties"]["status"].get("const") is None
    assert "goal_met" not in script.prompts["user"][1][-1].content


def test_twist_reaches_the_user_on_the_second_turn_and_a_mistake_is_flagged_to_the_critic():
    script = DialogueScript()
    run_graph(make_context(script), DialogueSeed(id="m", cell=0, twist="makes_mistake"))
    user_prompts = [p[-1].content for p in script.prompts["user"]]
    assert ["state something wrong" in p for p in user_prompts] == [False, True, False, False]
    critic_prompts = [p[-1].content for p in script.prompts["critic"]]
    assert ["may contain a mistake" in p for p in critic_prompts] == [False, True, False]
    assert "make one mistake" in script.prompts["judge"][0][-1].content


def test_twist_turn_must_come_before_the_user_may_end():
    script = DialogueScript(user=user_says("goal_met"))
    state = run_graph(make_context(script, min_user_turns=1), DialogueSeed(id="c", cell=0, twist="changes_mind"))
    assert dialogue.user_turns(state["turns"]) == 2 and state["end_reason"] == "goal_met"


# -------------------------------------------------------------------------------------------- regeneration


def test_low_scored_turn_is_redrafted_with_the_critique_and_the_better_draft_kept():
    critiques = iter([turn_critique(3, "Ignores the budget the user gave."), turn_critique(7)])
    script = DialogueScript(critic=lambda m: next(critiques, turn_critique(8)))
    context = make_context(script)
    state = run_graph(context)
    first = state["turns"][1]
    assert [d.score for d in first.drafts] == [3, 7] and first.kept == 1
    assert script.calls["assistant"] == 4 and script.calls["critic"] == 4
    redraft_prompt = script.prompts["assistant"][1]
    assert "Ignores the budget the user gave." in redraft_prompt[-1].content
    assert "reviewer read a draft" in redraft_prompt[0].content
    samples, messages, verdicts, _ = rows_of(state, context)
    assert samples[0].payload["regenerations"] == 1 and samples[0].status == "accepted"
    assert samples[0].payload["turn_scores"][0] == {"turn": 2, "scores": [3, 7], "kept": 1}
    assert messages[1].content == QUESTIONS[0]  # the note stayed out of the data
    assert [v.score for v in verdicts if v.verifier == "turn_critic"] == [7, 8, 8]


def test_a_turn_is_redrafted_only_once_and_the_better_draft_kept():
    scores = iter([4, 2] + [3] * 10)
    script = DialogueScript(critic=lambda m: turn_critique(next(scores)))
    context = make_context(script)
    state = run_graph(context)
    assert [len(t.drafts) for t in state["turns"] if t.role == "assistant"] == [2, 2, 2]
    assert state["turns"][1].kept == 0 and state["turns"][1].content == ANSWERS[0]
    assert state["outcome"] == "rejected"
    assert dialogue.rejection(state, context) == "assistant turn 2 scored 4 < 6"


@pytest.mark.parametrize("threshold, status", [(8, "accepted"), (8.5, "rejected")])
def test_scores_exactly_at_the_thresholds_pass_the_turn_and_the_dialogue(threshold, status):
    context = make_context(DialogueScript(), turn_threshold=threshold, dialogue_threshold=threshold,
                           regenerations=0)  # the scripted critic scores every turn and the dialogue 8
    state = run_graph(context)
    assert state["outcome"] == status
    samples, _, verdicts, _ = rows_of(state, context)
    assert samples[0].status == status
    expected = "passed" if status == "accepted" else "failed"
    assert {v.outcome for v in verdicts if v.verifier in ("turn_critic", "dialogue_critic")} == {expected}


def test_no_redraft_when_regenerations_is_zero():
    script = DialogueScript(critic=turn_critique(2))
    state = run_graph(make_context(script, regenerations=0))
    assert script.calls["assistant"] == 3 and state["outcome"] == "rejected"


# ------------------------------------------------------------------------------------- failures and verdicts


def test_assistant_without_usable_output_makes_an_error_sample_with_its_partial_turns():
    script = DialogueScript(assistant="")
    context = make_context(script)
    state = run_graph(context)
    assert "assistant: no usable output" in state["error"] and state["outcome"] == "rejected"
    samples, messages, _, _ = rows_of(state, context)
    assert samples[0].status == "error" and "empty output" in samples[0].reason
    assert [m.role for m in messages] == ["system", "user"]


def test_assistant_writing_the_users_side_too_is_refused_and_retried():
    replies = iter(["Sure, here is a plan.\nUser: thanks!\nAssistant: welcome"])
    script = DialogueScript(assistant=lambda m: next(replies, answers(m)))
    state = run_graph(make_context(script))
    assert state["outcome"] == "accepted" and "User:" not in state["turns"][1].content


def test_user_simulator_without_usable_output_is_an_error():
    state = run_graph(make_context(DialogueScript(user="not json")))
    assert "user: no usable output" in state["error"] and state["turns"] == []


@pytest.mark.parametrize("bad, problem", [
    (QUESTIONS[0] + "!", "echoes an earlier user turn"),
    (ANSWERS[0], "echoes an earlier assistant turn"),
    ("Sure! How can I help you today?", "speaks as the assistant"),
    (":  ", "empty message"),
    ("I am a nurse on night shifts who writes short messages and wants practical answers.", "recites the persona"),
])
def test_user_message_out_of_character_is_refused_and_retried(bad, problem):
    second_turn = iter([json.dumps({"message": bad, "status": "continue"})])
    normal = user_says("continue", "continue", "continue", "goal_met")
    script = DialogueScript(user=lambda m: next(second_turn) if user_turn_number(m) == 2 and script.calls["user"] == 2
                            else normal(m))
    state = run_graph(make_context(script))
    assert state["turns"][2].content == QUESTIONS[1] and script.calls["user"] == 5
    assert dialogue_roles.user_message_problem(dialogue_roles._plain(bad), dialogue.lines(state["turns"][:2]),
                                               persona_sheet=PERSONAS[0]["description"]).startswith(problem)


def test_speaker_prefix_the_model_copies_from_the_transcript_is_dropped():
    prefixes = iter([": ", "User: ", ", "])
    script = DialogueScript(user=lambda m: json.dumps(
        {"message": next(prefixes, "") + QUESTIONS[user_turn_number(m) - 1], "status": "continue"}))
    state = run_graph(make_context(script))
    assert [t.content for t in state["turns"] if t.role == "user"] == QUESTIONS[:5]


def test_unjudged_turn_is_unchecked_and_the_dialogue_rejected():
    script = DialogueScript(critic="{}")
    context = make_context(script)
    state = run_graph(context)
    assert state["outcome"] == "rejected" and script.calls["assistant"] == 3
    _, _, verdicts, _ = rows_of(state, context)
    assert {v.outcome for v in verdicts if v.verifier == "turn_critic"} == {"unchecked"}
    assert "was not judged" in dialogue.rejection(state, context)


@pytest.mark.parametrize("judge, reason", [
    (verdict(3), "dialogue critic score 3 < 6"),
    (verdict(9, repetition=True), "repetition loop"),
    ("nonsense", "no usable verdict"),
])
def test_dialogue_critic_verdict_decides_acceptance(judge, reason):
    context = make_context(DialogueScript(judge=judge))
    state = run_graph(context)
    assert state["outcome"] == "rejected" and reason in dialogue.rejection(state, context)


def test_assistant_parroting_the_user_or_itself_is_refused_and_retried():
    parrots = {1: lambda m: m[-1].content, 3: lambda m: ANSWERS[0] + " Enjoy!"}  # the user's words; its own again
    script = DialogueScript(assistant=lambda m: parrots.get(script.calls["assistant"], answers)(m))
    state = run_graph(make_context(script))
    assert state["outcome"] == "accepted" and script.calls["assistant"] == 5
    assert [t.content for t in state["turns"] if t.role == "assistant"] == ANSWERS[:3]


def test_assistant_that_only_repeats_itself_ends_the_dialogue_as_an_error():
    script = DialogueScript(assistant=lambda m: ANSWERS[0] + (" Enjoy!" if len(m) > 3 else ""))
    state = run_graph(make_context(script))
    assert "echoes an earlier assistant turn" in state["error"] and len(state["turns"]) == 3


# --------------------------------------------------------------------------------------- computable checks

GOOD = [("system", SYSTEM_PROMPT), ("user", "How do I plan a cheap weekend in Lisbon?"), ("assistant", ANSWERS[0]),
        ("user", "And what should I see each day?"), ("assistant", ANSWERS[1])]


def checks_of(messages, **limits) -> dict[str, object]:
    settings = {"max_turn_chars": 400, "near_duplicate": 0.9, "leak_chars": 40, **limits}
    results = check_dialogue(messages, system_prompt=SYSTEM_PROMPT, persona_sheet=PERSONAS[0]["description"],
                             **settings)
    return {r.name: r for r in results}


def test_a_sound_dialogue_passes_every_check():
    results = checks_of(GOOD)
    assert set(results) == {"alternation", "non_empty", "no_duplicate_turn", "no_repeated_assistant", "length",
                            "no_leak"}
    assert all(r.passed for r in results.values())
    assert all(r.passed for r in checks_of(GOOD[1:]).values())  # no system turn is fine too


@pytest.mark.parametrize("name, messages, turn", [
    ("alternation", GOOD[:2] + [("user", "Hello?")] + GOOD[2:], 2),
    ("alternation", GOOD[:4], 3),
    ("non_empty", GOOD[:4] + [("assistant", "  \n")], 4),
    ("no_duplicate_turn", GOOD + [("user", GOOD[1][1]), ("assistant", ANSWERS[2])], 5),
    ("no_repeated_assistant", GOOD[:4] + [("assistant", ANSWERS[0].replace("25", "30"))], 4),
    ("length", GOOD[:4] + [("assistant", "word " * 100)], 4),
    ("no_leak", GOOD[:4] + [("assistant", "My instructions: you are a helpful, accurate assistant. "
                                          "Answer clearly and concisely.")], 4),
    ("no_leak", GOOD[:4] + [("assistant", "You are a nurse on night shifts who writes short messages, so: rest.")], 4),
])
def test_each_check_catches_its_hand_made_bad_dialogue(name, messages, turn):
    result = checks_of(messages)[name]
    assert not result.passed and result.turn == turn, result


def test_near_duplicate_threshold_comes_from_the_settings():
    messages = GOOD[:4] + [("assistant", ANSWERS[0].replace("25", "30"))]
    assert checks_of(messages, near_duplicate=0.999)["no_repeated_assistant"].passed


# ------------------------------------------------------------------------------------------------- rows


def test_rows_hold_one_message_per_turn_and_per_turn_critic_verdicts():
    context = make_context(DialogueScript())
    state = run_graph(context, DialogueSeed(id="a", cell=2))
    samples, messages, verdicts, ids = rows_of(state, context)
    [sample] = samples
    assert (sample.kind, sample.status, sample.score, sample.reason) == ("dialogue", "accepted", 8.0, None)
    assert [(m.turn, m.role) for m in messages] == [(0, "system")] + [
        (i, "user" if i % 2 else "assistant") for i in range(1, 7)]
    assert messages[0].content == SYSTEM_PROMPT
    assert [(v.verifier, v.turn, v.outcome) for v in verdicts] == [
        ("turn_critic", 2, "passed"), ("turn_critic", 4, "passed"), ("turn_critic", 6, "passed"),
        ("dialogue_critic", None, "passed"), ("checks", None, "passed")]
    assert json.loads(verdicts[0].detail)["correctness"] == 8
    payload = sample.payload
    assert {k: payload[k] for k in ("persona", "goal", "twist", "end_reason", "user_turns", "regenerations")} == {
        "persona": "nurse", "goal": GOALS[1], "twist": "changes_mind", "end_reason": "goal_met", "user_turns": 3,
        "regenerations": 0}
    assert payload["cell"] == 2 and payload["dialogue_verdict"]["goal_met"] is True and len(payload["checks"]) == 6
    assert ids == {"dialogue": sample.sample_id}


def test_without_a_system_prompt_the_dialogue_starts_at_turn_zero():
    script = DialogueScript()
    context = make_context(script, system_prompt="")
    samples, messages, verdicts, _ = rows_of(run_graph(context), context)
    assert [m.role for m in messages[:2]] == ["user", "assistant"]
    assert [v.turn for v in verdicts if v.verifier == "turn_critic"] == [1, 3, 5]
    assert script.prompts["assistant"][0][0].type == "human"


# ------------------------------------------------------------------------------------ store, runner and SQL


@pytest.fixture
def dialogue_store(tmp_path) -> Path:
    """Four dialogues through the runner over three personas; the student (cell 2, and d3 pinned) gives up."""
    def user(messages):
        gives_up = "student" in messages[0].content
        return user_says("continue", "continue", "continue", "gave_up" if gives_up else "goal_met")(messages)

    personas = PERSONAS + [{"name": "student", "description": "A student with very little money."}]
    # dedup off: the scripted user says the same words in every dialogue, which the dedup stage would reject
    recipe = parse_recipe({**RECIPE, "personas": personas, "dedup": False,
                           "seeds": {"inline": [{"id": "d0"}, {"id": "d1"}, {"id": "d2"},
                                                {"id": "d3", "persona": "student"}]}})
    recipe.check_seeds(seeds := [DialogueSeed.model_validate(s) for s in recipe.seeds.inline])
    db = tmp_path / "d.duckdb"
    asyncio.run(Runner(recipe, seeds, store_path=db, pool=ScriptedPool(DialogueScript(user=user))).run())
    return db


def test_runner_writes_each_dialogue_as_one_sample_with_its_turns_verdicts_and_lineage(dialogue_store):
    assert rows(dialogue_store, "SELECT kind, status, count(*) FROM samples GROUP BY ALL") == [
        ("dialogue", "accepted", 4)]
    per_sample = rows(dialogue_store, "SELECT count(*) FROM messages GROUP BY sample_id")
    assert [n for (n,) in per_sample] == [7] * 4
    assert rows(dialogue_store, "SELECT count(*) FROM verdicts WHERE verifier = 'turn_critic'") == [(12,)]
    roles = dict(rows(dialogue_store, "SELECT role, count(*) FROM agent_calls WHERE sample_id IS NOT NULL GROUP BY 1"))
    assert roles == {"user": 16, "assistant": 12, "critic": 16}
    chat = rows(dialogue_store, "SELECT messages FROM chat_samples LIMIT 1")[0][0]
    assert [m["role"] for m in json.loads(chat)] == ["system"] + ["user", "assistant"] * 3


def test_sql_answers_mean_critic_score_by_persona_and_turn(dialogue_store):
    result = CliRunner().invoke(app, ["sql", SCORE_BY_PERSONA_AND_TURN_SQL, "--db", str(dialogue_store),
                                      "--format", "json"])
    assert result.exit_code == 0, result.output
    table = json.loads(result.stdout)
    assert {(r["persona"], r["turn"]) for r in table} == {(p, t) for p in ("nurse", "teacher", "student")
                                                          for t in (2, 4, 6)}
    assert all(r["mean_score"] == 8.0 for r in table)


def test_sql_lists_dialogues_that_ended_because_the_user_gave_up(dialogue_store):
    result = CliRunner().invoke(app, ["sql", GAVE_UP_SQL, "--db", str(dialogue_store), "--format", "json"])
    assert result.exit_code == 0, result.output
    assert [(r["seed_id"], r["persona"], r["user_turns"]) for r in json.loads(result.stdout)] == [
        ("d2", "student", 3), ("d3", "student", 3)]


# ------------------------------------------------------------------------------------------------ recipes


def test_demo_recipe_is_valid():
    recipe, seeds = load_recipe(ROOT / "demos" / "dialogue.yaml")
    assert recipe.graph == "dialogue" and len(seeds) >= 8 and recipe.turns.min_user >= 3
    assert [s.cell for s in seeds[:3]] == [0, 1, 2]


def write_recipe(tmp_path: Path, **fields) -> Path:
    path = tmp_path / "r.yaml"
    path.write_text(json.dumps({**RECIPE, **fields}))
    return path


@pytest.mark.parametrize("fields, message", [
    ({"turns": {"min_user": 4, "max_user": 3}}, "turns: min_user (4) must not exceed max_user (3)"),
    ({"personas": [PERSONAS[0], PERSONAS[0]]}, "personas: names must be unique"),
    ({"personas": []}, "personas: List should have at least 1 item"),
    ({"twists": ["none", "sulks"]}, "twists.1: Input should be 'none', 'changes_mind' or 'makes_mistake'"),
    ({"turns": {"min_user": 1, "max_user": 1}}, "set turns.max_user >= 2 or twists: [none]"),
    ({"roles": {"critic": {"regenerations": 5}}},
     "roles.critic.regenerations: Input should be less than or equal to 3"),
    ({"seeds": {"inline": [{"persona": "pirate"}]}},
     "persona 'pirate' is not one of the recipe's personas (nurse, teacher)"),
    ({"roles": {"critic": {"regenerations": 0}}, "prompts": {"revise": {"user": "{draft} {critique}"}}},
     "prompts.revise: this recipe never shows the prompt to a model (roles.critic.regenerations: 0)"),
])
def test_bad_dialogue_recipe_names_the_field_and_the_fix(tmp_path, fields, message):
    path = write_recipe(tmp_path, **fields)
    assert message in str(pytest.raises(RecipeError, load_recipe, path).value)


def test_readme_shows_both_dialogue_queries():
    readme = " ".join((ROOT / "README.md").read_text().split())
    for query in (SCORE_BY_PERSONA_AND_TURN_SQL, GAVE_UP_SQL):
        assert " ".join(query.split()) in readme
