"""Copy BFCL's single-turn function-calling questions out of the installed `bfcl-eval` package, as tool-use seeds.

    pip install --no-deps bfcl-eval      # only its data is read; its own dependencies are not needed
    python demos/seeds/bfcl.py           # -> demos/seeds/bfcl_simple.jsonl.gz

BFCL (the Berkeley Function Calling Leaderboard, https://github.com/ShishirPatil/gorilla) is Apache-2.0 licensed,
data included (the package's data/README.md says `license: apache-2.0`). The wheel keeps questions in
bfcl_eval/data/BFCL_v4_<category>.json and their answers in bfcl_eval/data/possible_answer/ under the same name,
both as JSON lines. Of the categories, the single-turn ones with ground truth are copied: simple_python,
multiple, parallel and parallel_multiple (the live_* ones are user-contributed and noisier; the multi-turn ones
need BFCL's stateful Python classes).

Each output line:

    {"id": "simple_python_1", "category": "simple_python", "source": "BFCL v4 (Apache-2.0)",
     "messages": [{"role": "user", "content": "Calculate the factorial of 5 using math functions."}],
     "tools": [<OpenAI tool spec, converted with synthgraph.tools.bfcl.from_bfcl>],
     "ground_truth": [{"name": "math_factorial", "arguments": {"number": [5]}}]}

`ground_truth` keeps BFCL's convention: one entry per expected call (several for the parallel categories, in
any order), each argument mapped to the list of values that count as correct, where "" means the argument may
be left out. Names are converted like the specs' ("math.factorial" -> "math_factorial").
"""

from __future__ import annotations

import gzip
import json
import sys
from pathlib import Path

from synthgraph.tools.bfcl import from_bfcl

TARGET = Path(__file__).with_name("bfcl_simple.jsonl.gz")
CATEGORIES = ("simple_python", "multiple", "parallel", "parallel_multiple")
PER_CATEGORY = 100


def read_jsonl(path: Path) -> list[dict]:
    with path.open(encoding="utf-8") as file:
        return [json.loads(line) for line in file if line.strip()]


def seed(question: dict, answer: dict, category: str) -> dict:
    tools = [from_bfcl(function) for function in question["function"]]
    renamed = {tool["function"].get("x-original-name", tool["function"]["name"]): tool["function"]["name"]
               for tool in tools}
    turns = question["question"]
    if len(turns) != 1:
        raise ValueError(f"{question['id']}: expected one turn, got {len(turns)}")
    return {
        "id": question["id"],
        "category": category,
        "source": "BFCL v4 (Apache-2.0)",
        "messages": turns[0],
        "tools": tools,
        "ground_truth": [{"name": renamed[name], "arguments": arguments}
                         for call in answer["ground_truth"] for name, arguments in call.items()],
    }


def main() -> None:
    try:
        import bfcl_eval
    except ImportError:
        sys.exit("bfcl-eval is not installed: pip install --no-deps bfcl-eval")
    data = Path(bfcl_eval.__file__).parent / "data"
    seeds = []
    for category in CATEGORIES:
        name = f"BFCL_v4_{category}.json"
        answers = {answer["id"]: answer for answer in read_jsonl(data / "possible_answer" / name)}
        questions = read_jsonl(data / name)
        # Evenly spaced rather than the first ones: BFCL's files run through topics in blocks.
        step = max(1, len(questions) // PER_CATEGORY)
        seeds += [seed(question, answers[question["id"]], category) for question in questions[::step][:PER_CATEGORY]]
    # mtime=0: the same data gives the same bytes, so re-running the script leaves git with nothing to commit.
    with gzip.GzipFile(TARGET, "wb", mtime=0) as file:
        file.write("".join(json.dumps(item, ensure_ascii=False) + "\n" for item in seeds).encode())
    print(f"{TARGET} <- {data} ({len(seeds)} questions from {', '.join(CATEGORIES)})")


if __name__ == "__main__":
    main()
