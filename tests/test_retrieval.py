"""Document ingestion and BM25 retrieval over DuckDB: loaders, chunking, idempotent ingest, search, the CLI."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path

import duckdb
import pytest
from typer.testing import CliRunner

from synthgraph.graphs.cli import app
from synthgraph.store.db import Store, connect
from synthgraph.tools.retrieval import (
    CORPUS_TABLES,
    Document,
    Retriever,
    RetrievalError,
    chunk_document,
    corpora,
    corpus_chunks,
    ensure_index,
    get_chunks,
    ingest,
    ingest_documents,
    load_documents,
    load_fts,
    pydoc_topics_documents,
    sample_chunks,
    search,
)

GUIDE = """# Garden guide

Plants need light and water.

## Tomatoes

Tomatoes ripen in late summer. Pinch the side shoots so the plant puts its strength into the fruit.

## Compost

Compost turns kitchen scraps into soil. Keep the heap moist and turn it every few weeks.
"""

ANIMALS = [
    {"id": "owl", "title": "Owls", "text": "Owls hunt at night. Their feathers make their flight silent."},
    {"id": "bee", "title": "Bees", "text": "Bees collect nectar and pollen. A hive can hold fifty thousand bees."},
    {"id": "fox", "title": "Foxes", "text": "Foxes are omnivores. A fox caches surplus food to eat later."},
]


def long_text(paragraphs: int = 12) -> str:
    return "\n\n".join(
        " ".join(f"Paragraph {p} sentence {s} talks about topic{p}x{s} at some length." for s in range(6))
        for p in range(paragraphs))


@pytest.fixture
def con(tmp_path):
    con = connect(tmp_path / "r.duckdb", read_only=False)
    yield con
    con.close()


@pytest.fixture
def corpus_dir(tmp_path) -> Path:
    folder = tmp_path / "docs"
    (folder / "sub").mkdir(parents=True)
    (folder / "guide.md").write_text(GUIDE)
    (folder / "sub" / "animals.jsonl").write_text("\n".join(json.dumps(a) for a in ANIMALS) + "\n")
    (folder / "notes.txt").write_text("Bicycles need oiled chains.\n\nCheck tyre pressure weekly.")
    (folder / "page.html").write_text(
        "<html><head><title>Kettle manual</title><style>h1 {color: red}</style></head><body>"
        "<h1>Kettle</h1><p>Fill the kettle with water.</p><script>var descale = 1;</script>"
        "<h2>Descaling</h2><p>Descale the kettle with <b>vinegar</b> monthly.</p></body></html>")
    (folder / ".hidden.md").write_text("# Secret\n\nnot to be ingested")
    (folder / "image.png").write_bytes(b"\x89PNG")
    return folder


def chunk(text: str, *, fmt="text", **sizes):
    return chunk_document(Document(source="s", title="t", text=text, format=fmt), "doc", **sizes)


# ---- chunking ------------------------------------------------------------------------------------------

def test_markdown_chunks_never_cross_a_heading_and_carry_its_path():
    chunks = chunk(GUIDE, fmt="markdown")
    assert [(c.heading, c.text.split(".")[0]) for c in chunks] == [
        ("Garden guide", "Plants need light and water"),
        ("Garden guide > Tomatoes", "Tomatoes ripen in late summer"),
        ("Garden guide > Compost", "Compost turns kitchen scraps into soil"),
    ]
    assert [c.position for c in chunks] == [0, 1, 2]


def test_hash_lines_inside_code_fences_are_not_headings():
    chunks = chunk("# Top\n\n```python\n# a comment\nx = 1\n```\n", fmt="markdown")
    assert [c.heading for c in chunks] == ["Top"] and "# a comment" in chunks[0].text


def test_underlined_titles_of_plain_text_are_sections():
    text = "The if statement\n*****************\n\nIt selects a suite.\n\nSyntax\n======\n\nif x: pass\n"
    assert [c.heading for c in chunk(text)] == ["The if statement", "The if statement > Syntax"]


def test_chunks_respect_the_size_limit_and_are_never_empty():
    chunks = chunk(long_text() + "\n\n" + "word " * 700, max_chars=300, overlap=60)
    assert len(chunks) > 5
    assert all(0 < len(c.text) <= 300 and c.text.strip() for c in chunks)
    assert chunk("\n\n   \n") == [] and chunk("# Only a heading\n", fmt="markdown") == []


def test_consecutive_chunks_overlap_by_whole_sentences():
    chunks = chunk(long_text(), max_chars=400, overlap=120)
    for before, after in zip(chunks, chunks[1:]):
        first_sentence = re.split(r"(?<=\.)\s+", after.text)[0]
        assert first_sentence in before.text and first_sentence.startswith("Paragraph")
    assert all(len(c.text) <= 400 for c in chunks)


def test_no_overlap_when_asked_for_none():
    chunks = chunk(long_text(), max_chars=400, overlap=0)
    assert "".join(c.text.replace("\n\n", " ") for c in chunks).count("sentence 0") == 12


def test_chunk_ids_are_stable_across_runs_and_differ_by_content():
    first = [c.chunk_id for c in chunk(long_text(), max_chars=400)]
    assert first == [c.chunk_id for c in chunk(long_text(), max_chars=400)]
    assert len(set(first)) == len(first)
    assert first[0] != chunk(long_text().replace("Paragraph 0", "Paragraph zero"), max_chars=400)[0].chunk_id


def test_sizes_are_checked():
    with pytest.raises(ValueError, match="overlap"):
        chunk("text", max_chars=200, overlap=150)


# ---- loaders -------------------------------------------------------------------------------------------

def test_directory_loads_every_supported_file_recursively(corpus_dir):
    docs = {d.title: d for d in load_documents([corpus_dir])}
    assert sorted(docs) == ["Bees", "Foxes", "Garden guide", "Kettle manual", "Owls", "notes"]
    assert docs["Owls"].source.endswith("animals.jsonl#owl") and docs["Owls"].metadata == {"id": "owl"}


def test_html_keeps_headings_as_sections_and_drops_scripts_and_styles(corpus_dir):
    [page] = load_documents([corpus_dir / "page.html"])
    chunks = chunk_document(page, "doc")
    assert [(c.heading, c.text) for c in chunks] == [
        ("Kettle", "Fill the kettle with water."),
        ("Kettle > Descaling", "Descale the kettle with vinegar monthly."),
    ]
    assert "descale = 1" not in page.text and "color" not in page.text


def test_jsonl_errors_name_the_line(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "fine"}\n{"title": "no text"}\n')
    with pytest.raises(RetrievalError, match=r"bad.jsonl line 2: .*\"text\""):
        list(load_documents([bad]))


def test_unsupported_or_missing_paths_are_refused(tmp_path):
    (tmp_path / "x.pdf").write_bytes(b"%PDF")
    with pytest.raises(RetrievalError, match="unsupported file type .pdf"):
        list(load_documents([tmp_path / "x.pdf"]))
    with pytest.raises(RetrievalError, match="no such file"):
        list(load_documents([tmp_path / "missing.md"]))


def test_pydoc_topics_make_a_corpus_with_sections():
    docs = pydoc_topics_documents()
    assert len(docs) > 50 and any(d.source == "pydoc:if" for d in docs)
    chunks = chunk_document(next(d for d in docs if d.source == "pydoc:if"), "doc")
    assert chunks[0].heading == 'The "if" statement'


# ---- ingest --------------------------------------------------------------------------------------------

def counts(con) -> tuple[int, int]:
    return con.execute("SELECT (SELECT count(*) FROM documents), (SELECT count(*) FROM chunks)").fetchone()


def test_reingesting_the_same_files_adds_nothing(con, corpus_dir):
    first = ingest(con, [corpus_dir], corpus="home")
    assert (first.documents_added, first.chunks_added) == (6, 9)
    before = counts(con)
    second = ingest(con, [corpus_dir], corpus="home")
    assert (second.documents_added, second.documents_unchanged, second.chunks_added) == (0, 6, 0)
    assert counts(con) == before == (6, 9)


def test_a_changed_file_replaces_its_chunks(con, corpus_dir):
    ingest(con, [corpus_dir], corpus="home")
    old_ids = {c.chunk_id for c in corpus_chunks(con, "home") if c.title == "notes"}
    (corpus_dir / "notes.txt").write_text("Bicycles need oiled chains and new brake pads.")
    report = ingest(con, [corpus_dir], corpus="home")
    assert (report.documents_replaced, report.documents_unchanged, report.chunks_removed) == (1, 5, 1)
    assert report.replaced_sources == [str((corpus_dir / "notes.txt").resolve())]
    notes = [c for c in corpus_chunks(con, "home") if c.title == "notes"]
    assert [c.text for c in notes] == ["Bicycles need oiled chains and new brake pads."]
    assert not old_ids & {c.chunk_id for c in notes}
    assert search(con, "brake pads", 1)[0].title == "notes"
    assert search(con, "tyre pressure") == []


def test_other_chunk_sizes_rechunk_instead_of_duplicating(con, corpus_dir):
    ingest(con, [corpus_dir], corpus="home")
    report = ingest(con, [corpus_dir], corpus="home", max_chars=200, overlap=20)
    assert report.documents_replaced == 6 and counts(con)[0] == 6


def test_the_same_file_can_belong_to_two_corpora(con, corpus_dir):
    ingest(con, [corpus_dir / "guide.md"], corpus="a")
    ingest(con, [corpus_dir / "guide.md"], corpus="b")
    assert corpora(con) == {"a": 3, "b": 3}


def test_ingest_leaves_an_open_transaction_on_the_connection_alone(con):
    con.begin()
    con.execute("CREATE TABLE scratch (x INTEGER)")
    ingest_documents(con, [Document(source="m", title="m", text="Magnets attract iron.")], corpus="c")
    con.rollback()
    assert search(con, "magnets")[0].source == "m"


# ---- search --------------------------------------------------------------------------------------------

def test_bm25_ranks_the_chunk_that_answers_first(con, corpus_dir):
    ingest(con, [corpus_dir], corpus="home")
    assert search(con, "when do tomatoes ripen", 3)[0].heading == "Garden guide > Tomatoes"
    assert search(con, "descaling the kettle with vinegar", 3)[0].heading == "Kettle > Descaling"
    # Porter stemming: "hunting" finds "hunt"
    top = search(con, "which animal is hunting at night", 3)[0]
    assert (top.title, top.corpus) == ("Owls", "home") and top.score > 0
    hits = search(con, "kettle water", 5)
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)


def test_search_can_be_limited_to_a_corpus(con, corpus_dir):
    ingest(con, [corpus_dir], corpus="home")
    ingest_documents(con, [Document(source="w", title="Water", text="Water boils at 100 degrees.")], corpus="physics")
    assert {h.corpus for h in search(con, "water", 10)} == {"home", "physics"}
    assert {h.corpus for h in search(con, "water", 10, corpus="physics")} == {"physics"}
    assert search(con, "water", 10, corpus="nothing-here") == []


def test_a_copy_of_every_corpus_in_a_store_searches_as_the_store_does(tmp_path, corpus_dir):
    """A Ray worker searches such a copy: it must rank with the store's own scores, which weigh every corpus."""
    store = Store(tmp_path / "s.duckdb")
    ingest(store.con, [corpus_dir], corpus="home")
    ingest_documents(store.con, [Document(source="w", title="Water", text="Water boils at 100 degrees in a kettle. "
                                          "Boiled water is safe to drink.")], corpus="physics")

    def copy_of(where: str = "") -> Store:
        copy = Store.holding(store.rows({table: query + where for table, query in CORPUS_TABLES.items()}))
        ensure_index(copy.con)
        return copy

    def ranked(con) -> list[list[tuple[str, float]]]:
        return [[(h.chunk_id, h.score) for h in search(con, query, 5, corpus="home")]
                for query in ("fill the kettle with water", "when do tomatoes ripen", "owls hunting at night")]

    assert ranked(copy_of().con) == ranked(store.con)
    assert ranked(copy_of(" WHERE corpus = 'home'").con) != ranked(store.con)   # one corpus alone ranks otherwise
    store.close()


def test_empty_punctuation_or_stopword_queries_find_nothing(con, corpus_dir):
    ingest(con, [corpus_dir], corpus="home")
    assert search(con, "") == search(con, "   ") == search(con, "?!") == search(con, "the and of") == []


def test_search_before_any_ingest_says_what_to_do(con):
    with pytest.raises(RetrievalError, match="synthgraph ingest"):
        search(con, "anything")


def test_get_chunks_returns_the_asked_chunks_in_order(con, corpus_dir):
    ingest(con, [corpus_dir], corpus="home")
    ids = [h.chunk_id for h in search(con, "kettle", 2)]
    got = get_chunks(con, [ids[1], "no-such-id", ids[0]])
    assert [g.chunk_id for g in got] == [ids[1], ids[0]] and got[0].score is None
    assert get_chunks(con, []) == []


def test_sampling_covers_the_corpus_before_repeating(con, corpus_dir):
    ingest(con, [corpus_dir], corpus="home")
    used: dict[str, int] = {}
    for _ in range(4):
        for hit in sample_chunks(con, "home", 2, seed=7, used=used):
            used[hit.chunk_id] = used.get(hit.chunk_id, 0) + 1
    assert sorted(used.values()) == [1] * 8
    assert sample_chunks(con, "home", 3, seed=7) == sample_chunks(con, "home", 3, seed=7)
    assert sample_chunks(con, "home", 3, seed=7) != sample_chunks(con, "home", 3, seed=8)
    with pytest.raises(RetrievalError, match="no chunks"):
        sample_chunks(con, "nope", 1)


def test_the_fts_extension_loads_from_the_package_without_autoinstall():
    con = duckdb.connect()
    load_fts(con)
    settings = dict(con.execute(
        "SELECT name, value FROM duckdb_settings() WHERE name IN "
        "('autoinstall_known_extensions', 'autoload_known_extensions')").fetchall())
    assert settings == {"autoinstall_known_extensions": "false", "autoload_known_extensions": "false"}
    [(path,)] = con.execute("SELECT install_path FROM duckdb_extensions() WHERE extension_name = 'fts' AND loaded"
                            ).fetchall()
    assert "duckdb_ext" in path and Path(path).is_file()


def test_retriever_shares_the_writers_connection_and_serves_concurrent_tasks(con, corpus_dir):
    ingest(con, [corpus_dir], corpus="home")
    with Retriever(con, corpus="home", pool_size=2) as retriever:
        async def many():
            return await asyncio.gather(*(retriever.asearch(q, 1) for q in ["tomatoes", "owls", "compost"] * 10))
        results = asyncio.run(many())
        assert [r[0].title for r in results[:3]] == ["Garden guide", "Owls", "Garden guide"]
        assert retriever.get_chunks([results[1][0].chunk_id])[0].title == "Owls"
        assert len(retriever.sample_chunks(3)) == 3
    with pytest.raises(RetrievalError, match="ingest it first"):
        Retriever(con, corpus="missing")


# ---- CLI -----------------------------------------------------------------------------------------------

def test_cli_ingest_then_search(tmp_path, corpus_dir):
    db = tmp_path / "cli.duckdb"
    runner = CliRunner()
    first = runner.invoke(app, ["ingest", str(corpus_dir), "--corpus", "home", "--db", str(db)])
    assert first.exit_code == 0, first.output
    assert "6 added, 0 replaced, 0 unchanged" in first.output
    again = runner.invoke(app, ["ingest", str(corpus_dir), "--corpus", "home", "--db", str(db)])
    assert "0 added, 0 replaced, 6 unchanged" in again.output
    found = runner.invoke(app, ["search", "tomatoes ripen", "--db", str(db), "-k", "1"])
    assert found.exit_code == 0, found.output
    assert "Tomatoes ripen in late summer" in found.output and "Compost" not in found.output
    wrong = runner.invoke(app, ["search", "tomatoes", "--db", str(db), "--corpus", "nope"])
    assert wrong.exit_code == 2 and "no corpus 'nope'" in wrong.output


def test_cli_ingests_the_builtin_pydoc_corpus_by_name(tmp_path):
    db = tmp_path / "py.duckdb"
    result = CliRunner().invoke(app, ["ingest", "pydoc-topics", "--db", str(db)])
    assert result.exit_code == 0, result.output
    found = CliRunner().invoke(app, ["search", "lambda expression", "--db", str(db), "--corpus", "pydoc-topics"])
    assert "Lambda" in found.output


def test_cli_errors_say_what_to_do(tmp_path, corpus_dir):
    runner = CliRunner()
    no_corpus = runner.invoke(app, ["ingest", str(corpus_dir), "--db", str(tmp_path / "x.duckdb")])
    assert no_corpus.exit_code == 2 and "--corpus NAME is required" in no_corpus.output
    no_store = runner.invoke(app, ["search", "x", "--db", str(tmp_path / "none.duckdb")])
    assert no_store.exit_code == 2 and "synthgraph ingest" in no_store.output


def test_a_missing_fts_extension_says_what_to_install(monkeypatch, tmp_path):
    import synthgraph.tools.retrieval as retrieval

    monkeypatch.setattr(retrieval, "_extension_directory", lambda: tmp_path)
    with pytest.raises(RetrievalError, match=re.escape(f"pip install 'duckdb-ext-fts=={duckdb.__version__}.*'")):
        load_fts(duckdb.connect())
    monkeypatch.setattr(retrieval, "_extension_directory", lambda: None)
    with pytest.raises(RetrievalError, match="not installed: pip install 'duckdb-ext-fts"):
        load_fts(duckdb.connect())
