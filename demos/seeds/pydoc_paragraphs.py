"""Writes pydoc_paragraphs.parquet: paragraphs of the Python language reference (the stdlib's pydoc_data.topics)
as a small "existing dataset" for demos/augment_docs.yaml. Run from the repository root:

    python demos/seeds/pydoc_paragraphs.py
"""

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from pydoc_data.topics import topics

WANTED = 24


def paragraphs():
    """Prose paragraphs (no code, no tables) of 300-700 characters, one per topic, in topic order."""
    for name in sorted(topics):
        for block in topics[name].split("\n\n"):
            text = " ".join(line.strip() for line in block.splitlines())
            if 300 <= len(text) <= 700 and not block.startswith(" ") and ">>>" not in text and "::" not in text \
                    and "+--" not in text:
                yield name, text
                break


rows = list(paragraphs())[:WANTED]
pq.write_table(pa.table({"Topic": [n for n, _ in rows], "Paragraph": [t for _, t in rows]}),
               Path(__file__).with_name("pydoc_paragraphs.parquet"))
print(f"wrote {len(rows)} paragraphs")
