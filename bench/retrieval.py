"""Retrieval: ingest rate, full-text index build time and BM25 query latency, on the pydoc topics corpus.

Prints figures, asserts nothing. For each corpus size (the ~80 pydoc topics, then copies of them under other
sources, so the chunk count grows while the text stays realistic):
  (a) ingest: documents/s and chunks/s (load, chunk, insert; the index rebuild counted apart), and a
      re-ingest of the unchanged corpus (the no-op every recipe run pays);
  (b) rebuilding the BM25 index alone;
  (c) query latency p50 / p95 / max over N queries of 1-4 words drawn from the corpus, one at a time, then
      the same queries from concurrent asyncio tasks through a `Retriever`.

    .venv/bin/python bench/retrieval.py
    .venv/bin/python bench/retrieval.py --copies 1 10 50 --queries 500 --concurrency 8
"""

from __future__ import annotations

import argparse
import asyncio
import random
import re
import statistics
import tempfile
import time
from pathlib import Path

from synthgraph.store.db import connect
from synthgraph.tools.retrieval import Document, Retriever, ingest_documents, pydoc_topics_documents, rebuild_index, search


def percentiles(latencies: list[float]) -> str:
    ordered = sorted(latencies)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return (f"p50 {1000 * statistics.median(ordered):6.2f} ms   p95 {1000 * p95:6.2f} ms   "
            f"max {1000 * ordered[-1]:6.2f} ms")


def make_queries(documents: list[Document], count: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    words = sorted({w.lower() for d in documents for w in re.findall(r"[A-Za-z]{4,}", d.text)})
    return [" ".join(rng.sample(words, rng.randint(1, 4))) for _ in range(count)]


def copies_of(documents: list[Document], copies: int) -> list[Document]:
    return [d.model_copy(update={"source": f"{d.source}#copy{i}" if i else d.source})
            for i in range(copies) for d in documents]


def bench(copies: int, queries: list[str], concurrency: int, tmp: Path) -> None:
    base = pydoc_topics_documents()
    documents = copies_of(base, copies)
    con = connect(tmp / f"bench{copies}.duckdb", read_only=False)
    try:
        report = ingest_documents(con, documents, corpus="pydoc-topics")
        load_s = report.seconds - report.index_seconds
        chars = sum(len(d.text) for d in documents)
        print(f"pydoc topics x{copies}: {len(documents)} documents, {report.chunks_added} chunks, "
              f"{chars / 1e6:.1f} M characters")
        print(f"  (a) ingest        {len(documents) / load_s:8.0f} docs/s  {report.chunks_added / load_s:8.0f} chunks/s"
              f"   ({load_s:.2f} s, plus index {report.index_seconds:.2f} s)")
        again = ingest_documents(con, documents, corpus="pydoc-topics")
        print(f"      re-ingest of the unchanged corpus: {again.seconds:.2f} s "
              f"({again.documents_unchanged} unchanged, {again.chunks_added} chunks added)")
        t0 = time.perf_counter()
        rebuild_index(con)
        print(f"  (b) index rebuild {time.perf_counter() - t0:8.2f} s")

        latencies, empty = [], 0
        for query in queries:
            t0 = time.perf_counter()
            empty += not search(con, query, 5)
            latencies.append(time.perf_counter() - t0)
        print(f"  (c) search k=5, one at a time          {percentiles(latencies)}   "
              f"({len(queries)} queries, {empty} found nothing)")

        with Retriever(con, pool_size=concurrency) as retriever:
            async def timed(query: str) -> float:
                t0 = time.perf_counter()
                await retriever.asearch(query, 5)
                return time.perf_counter() - t0

            async def all_queries() -> tuple[list[float], float]:
                t0 = time.perf_counter()
                latencies = await asyncio.gather(*(timed(q) for q in queries))
                return latencies, time.perf_counter() - t0

            latencies, wall = asyncio.run(all_queries())
        print(f"      asearch, {len(queries)} tasks, {concurrency} cursors {percentiles(latencies)}   "
              f"{len(queries) / wall:.0f} queries/s")
    finally:
        con.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--copies", type=int, nargs="+", default=[1, 10])
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    queries = make_queries(pydoc_topics_documents(), args.queries, args.seed)
    with tempfile.TemporaryDirectory() as tmp:
        for copies in args.copies:
            bench(copies, queries, args.concurrency, Path(tmp))


if __name__ == "__main__":
    main()
