"""Self-Instruct growth figures from a store: instructions proposed / kept per round, why the rest were dropped,
and the pairwise ROUGE-L distribution of the kept instructions (with the seed tasks) — novelty's effect in numbers.

  python bench/self_instruct_growth.py --db si.duckdb [--run RUN_ID]
"""

from __future__ import annotations

import argparse
import itertools
import statistics

import duckdb

from synthgraph.tools.instructions import similarity


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", required=True)
    parser.add_argument("--run")
    args = parser.parse_args()
    con = duckdb.connect(args.db, read_only=True)
    where = "s.kind IN ('self_instruct', 'instruction_candidate') AND ($run IS NULL OR s.run_id = $run)"
    print("round  proposed  kept  accepted  not_novel  not_well_formed  proposal_errors")
    for row in con.execute(f"""
            SELECT CAST(payload->>'round' AS INTEGER) AS round,
                   count(*) FILTER (WHERE s.status <> 'error' OR kind = 'self_instruct'),
                   count(*) FILTER (WHERE kind = 'self_instruct'),
                   count(*) FILTER (WHERE kind = 'self_instruct' AND status = 'accepted'),
                   count(*) FILTER (WHERE reason LIKE 'not novel%'),
                   count(*) FILTER (WHERE reason LIKE 'not well-formed%'),
                   count(*) FILTER (WHERE kind = 'instruction_candidate' AND status = 'error')
            FROM samples s WHERE {where} GROUP BY 1 ORDER BY 1""", {"run": args.run}).fetchall():
        print("  ".join(f"{v:>{w}}" for v, w in zip(row, (5, 8, 4, 8, 9, 15, 15))))
    kept = [t for (t,) in con.execute(f"SELECT payload->>'instruction' FROM samples s WHERE {where} "
                                      "AND kind = 'self_instruct'", {"run": args.run}).fetchall()]
    seeds = [t for (t,) in con.execute("SELECT DISTINCT payload->>'instruction' FROM seeds WHERE $run IS NULL OR "
                                       "run_id = $run", {"run": args.run}).fetchall()]
    for label, texts in (("kept instructions", kept), ("kept + seed tasks", kept + seeds)):
        scores = [similarity(a, b) for a, b in itertools.combinations(texts, 2)]
        if not scores:
            print(f"{label}: fewer than two")
            continue
        bins = [0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 1.01]
        counts = [sum(lo <= s < hi for s in scores) for lo, hi in zip(bins, bins[1:])]
        quartiles = statistics.quantiles(scores, n=4) if len(scores) > 1 else scores * 3
        print(f"{label}: {len(texts)} texts, {len(scores)} pairs; ROUGE-L mean {statistics.mean(scores):.3f}, "
              f"quartiles {', '.join(f'{q:.3f}' for q in quartiles)}, max {max(scores):.3f}")
        print("  histogram " + "  ".join(f"[{lo:.1f},{min(hi, 1):.1f}):{n}" for lo, hi, n in zip(bins, bins[1:], counts)))


if __name__ == "__main__":
    main()
