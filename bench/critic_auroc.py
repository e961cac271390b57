"""How well the reasoning critic's score separates right from wrong solutions (AUROC), on gold problems.

Reads the reasoning traces of stores whose seeds carry gold answers (a run of demos/reasoning_gold.yaml; proposed
problems count too once their reference was corroborated), labels each correct or incorrect by math-verify
against that answer, has the recipe's critic score every
one (the pipeline itself only judges verified traces, so it never sees a wrong one), and prints the AUROC of
the sampled score and of G-Eval's expected score (probability-weighted over 0..10 from the score token's
logprobs): 0.5 is chance, 1.0 a perfect separation. Prints figures, asserts nothing.

    .venv/bin/python bench/critic_auroc.py --db gold.duckdb [--db more.duckdb ...] [--recipe demos/reasoning_gold.yaml]
"""

from __future__ import annotations

import argparse
import asyncio
import json
from pathlib import Path

import duckdb

from synthgraph.agents.models import ModelOutputError, ModelPool
from synthgraph.agents.reasoning_roles import Critic
from synthgraph.graphs.reasoning import FAMILY
from synthgraph.graphs.recipe import load_recipe
from synthgraph.tools.math_answers import answers_match

GOLD = Path(__file__).resolve().parents[1] / "demos" / "reasoning_gold.yaml"

TRACES = """
    SELECT * FROM (
        SELECT s.sample_id, s.payload->>'problem' AS problem,
               coalesce(d.payload->>'answer', CASE WHEN (s.payload->'validation'->>'status') = 'corroborated'
                                                   THEN s.payload->>'reference' END) AS gold,
               list(struct_pack(role := m.role, content := m.content, tool_calls := m.tool_calls) ORDER BY m.turn)
        FROM samples s JOIN seeds d USING (run_id, seed_id) JOIN messages m USING (sample_id)
        WHERE s.kind = 'reasoning_trace' AND s.status <> 'error'
        GROUP BY ALL)
    WHERE gold IS NOT NULL"""


def transcript(turns) -> str:
    """The solution as the critic reads it in the pipeline: reasoning, code, outputs, final answer."""
    parts = []
    for turn in turns[1:]:                          # turn 0 is the problem
        if turn["role"] == "tool":
            parts.append(f"```output\n{turn['content']}\n```")
            continue
        text = turn["content"] or ""
        for call in json.loads(turn["tool_calls"] or "[]"):
            text += f"\n```python\n{json.loads(call['function']['arguments'])['code']}\n```"
        parts.append(text.strip())
    return "\n\n".join(parts)


def auroc(positives: list[float], negatives: list[float]) -> float:
    """P(a correct trace scores above an incorrect one), ties counting half (the Mann-Whitney U statistic)."""
    pairs = [(p > n) + 0.5 * (p == n) for p in positives for n in negatives]
    return sum(pairs) / len(pairs)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", type=Path, action="append", required=True, help="a store; repeat to pool several")
    parser.add_argument("--recipe", type=Path, default=GOLD, help="whose critic (model, sampling, prompts) to measure")
    args = parser.parse_args()
    rows = []
    for db in args.db:
        con = duckdb.connect(str(db), read_only=True)
        rows += con.execute(TRACES).fetchall()
        con.close()
    labelled = [(problem, transcript(turns), answers_match(transcript(turns), gold))
                for _, problem, gold, turns in rows]
    recipe, _ = load_recipe(args.recipe)
    pool = ModelPool(recipe.engine)
    critic = Critic(pool.client(recipe.role_model("critic")), recipe.roles.critic.sampling(),
                    prompts=FAMILY.prompt_set(recipe))

    async def score(problem: str, solution: str, gold: str) -> tuple[float | None, float | None]:
        try:
            critique, expected = await critic.judge_with_expectation(problem=problem, solution=solution, reference=gold)
            return critique.score, expected
        except ModelOutputError:
            return None, None

    try:
        await pool.start()
        golds = [g for _, _, g, _ in rows]
        scores = await asyncio.gather(*(score(p, s, g) for (p, s, _), g in zip(labelled, golds)))
    finally:
        pool.shutdown()
    labels = [ok for _, _, ok in labelled]
    print(f"traces: {len(rows)} ({sum(labels)} correct, {len(labels) - sum(labels)} incorrect, "
          f"{sum(sampled is None for sampled, _ in scores)} unscored)")
    for name, column in (("sampled score", 0), ("expected score (G-Eval)", 1)):
        right = [s[column] for ok, s in zip(labels, scores) if ok and s[column] is not None]
        wrong = [s[column] for ok, s in zip(labels, scores) if not ok and s[column] is not None]
        if not (right and wrong):
            print(f"{name}: AUROC n/a ({len(right)} correct, {len(wrong)} incorrect scored)")
            continue
        print(f"{name}: AUROC {auroc(right, wrong):.3f} over {len(right)} correct / {len(wrong)} incorrect; "
              f"mean {sum(right) / len(right):.2f} vs {sum(wrong) / len(wrong):.2f}")

if __name__ == "__main__":
    asyncio.run(main())
