"""Documents in DuckDB and BM25 search over their chunks (the `fts` extension, loaded from a PyPI package).

    ingest(con, ["docs/"], corpus="guide")        files -> documents + chunks, then the full-text index
    ingest_documents(con, docs, corpus="guide")   the same for documents built in code
    search(con, "how do I install", k=5)          best chunks first, as `Hit`s
    get_chunks(con, ids) / sample_chunks(...)     chunks by id (citation checks) / evenly over a corpus (proposers)
    Retriever(con)                                 the above from cursors of a connection a graph shares

Loaders: .txt, .md/.markdown (sections at `#` headings), .html/.htm (stdlib html.parser; h1-h6 become
sections; script/style dropped), .jsonl (one {"text", "title"?, "id"?, "source"?, "metadata"?,
"format"?: "markdown"} per line), directories recursively, and the built-in corpus `pydoc-topics` (the
language reference shipped with Python).

Chunks never cross a heading: a section is split at paragraphs, then sentences, into chunks of at most
`max_chars`, each after the first starting with the last whole sentences (at most `overlap` characters) of
the chunk before, so a fact cut at a boundary is still whole in one of them.

The fts extension is never downloaded: `load_fts` points DuckDB at the folder the `duckdb-ext-fts` wheel
installs and turns DuckDB's automatic installing off.
"""

from __future__ import annotations

import asyncio
import hashlib
import importlib.util
import json
import queue
import re
import sys
import time
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path
from typing import Any, Literal

import duckdb
import pyarrow as pa
from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "BUILTIN_CORPORA", "DEFAULT_MAX_CHARS", "DEFAULT_OVERLAP", "Chunk", "Document", "Hit", "IngestReport",
    "RetrievalError", "Retriever", "builtin_documents", "chunk_document", "corpora", "corpus_chunks", "get_chunks",
    "ingest", "ingest_documents", "load_documents", "load_fts", "pydoc_topics_documents", "rebuild_index",
    "sample_chunks", "search",
]

DEFAULT_MAX_CHARS = 1200
DEFAULT_OVERLAP = 150
SUFFIXES = {".txt": "text", ".md": "markdown", ".markdown": "markdown", ".html": "html", ".htm": "html",
            ".jsonl": "jsonl"}


class RetrievalError(RuntimeError):
    """A retrieval problem the user can act on (missing extension, unreadable file, nothing ingested)."""


class Document(BaseModel):
    """One document before chunking. `format="markdown"` splits sections at Markdown headings; "text" at
    reStructuredText-style underlined titles (as in pydoc topics) and otherwise keeps paragraphs only."""

    model_config = ConfigDict(frozen=True)

    source: str
    title: str
    text: str
    format: Literal["text", "markdown"] = "text"
    metadata: dict[str, Any] = Field(default_factory=dict)


class Chunk(BaseModel):
    model_config = ConfigDict(frozen=True)

    chunk_id: str
    position: int
    heading: str
    text: str


class Hit(BaseModel):
    """A chunk as retrieved; `score` is BM25 for search results, None for chunks fetched by id."""

    model_config = ConfigDict(frozen=True)

    chunk_id: str
    doc_id: str
    corpus: str
    source: str
    title: str
    heading: str
    text: str
    score: float | None = None


class IngestReport(BaseModel):
    corpus: str
    documents_added: int = 0       # sources not in the corpus before
    documents_replaced: int = 0    # sources whose content (or chunking settings) changed
    documents_unchanged: int = 0
    chunks_added: int = 0
    chunks_removed: int = 0        # chunks of the replaced versions
    replaced_sources: list[str] = Field(default_factory=list)
    index_seconds: float = 0.0     # rebuilding the full-text index, part of `seconds`
    seconds: float = 0.0


# ---- the fts extension ---------------------------------------------------------------------------------

def _extension_directory() -> Path | None:
    spec = importlib.util.find_spec("duckdb_ext")  # a namespace package shared by the duckdb-ext-* wheels
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        if (Path(location) / "extensions").is_dir():
            return Path(location) / "extensions"
    return None


def load_fts(con: duckdb.DuckDBPyConnection) -> None:
    """Load DuckDB's full-text search extension from the duckdb-ext-fts wheel, never from the network.

    The settings are per database, so every cursor of `con` (and `con` itself) can then search."""
    pip = f"pip install 'duckdb-ext-fts=={duckdb.__version__}.*'"
    directory = _extension_directory()
    if directory is None:
        raise RetrievalError(f"DuckDB's full-text search extension is not installed: {pip}")
    # No automatic install or load: a missing or mismatched extension must fail here, not reach for the network.
    con.execute("SET autoinstall_known_extensions = false")
    con.execute("SET autoload_known_extensions = false")
    con.execute("SET extension_directory = ?", [str(directory)])
    try:
        con.execute("LOAD fts")
    except duckdb.Error as exc:
        raise RetrievalError(
            f"cannot load DuckDB's fts extension from {directory} (duckdb {duckdb.__version__}): {exc}; "
            f"install the build matching this duckdb: {pip}") from exc


# ---- loading -------------------------------------------------------------------------------------------

def load_documents(paths: Iterable[str | Path]) -> Iterator[Document]:
    """Documents of files and directories (recursively, sorted; hidden and unsupported files skipped)."""
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            for file in sorted(path.rglob("*")):
                hidden = any(part.startswith(".") for part in file.relative_to(path).parts)
                if file.is_file() and not hidden and file.suffix.lower() in SUFFIXES:
                    yield from _load_file(file)
        elif path.is_file():
            if path.suffix.lower() not in SUFFIXES:
                raise RetrievalError(f"{path}: unsupported file type {path.suffix or '(none)'}; "
                                     f"supported: {', '.join(sorted(SUFFIXES))}")
            yield from _load_file(path)
        else:
            raise RetrievalError(f"{path}: no such file or directory")


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise RetrievalError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start}); convert it first") from exc


def _load_file(path: Path) -> Iterator[Document]:
    kind = SUFFIXES[path.suffix.lower()]
    source = str(path.resolve())
    if kind == "jsonl":
        yield from _load_jsonl(path, source)
        return
    text = _read_text(path)
    if kind == "html":
        title, text = _html_to_markdown(text)
        yield Document(source=source, title=title or _first_heading(text) or path.stem, text=text, format="markdown")
    elif kind == "markdown":
        yield Document(source=source, title=_first_heading(text) or path.stem, text=text, format="markdown")
    else:
        yield Document(source=source, title=path.stem, text=text)


def _load_jsonl(path: Path, source: str) -> Iterator[Document]:
    for number, line in enumerate(_read_text(path).splitlines(), 1):
        if not line.strip():
            continue
        where = f"{path} line {number}"
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise RetrievalError(f"{where}: not JSON ({exc.msg})") from exc
        if not isinstance(record, dict) or not isinstance(record.get("text"), str):
            raise RetrievalError(f'{where}: each line must be an object with a "text" string')
        metadata = record.get("metadata") or {}
        if not isinstance(metadata, dict):
            raise RetrievalError(f'{where}: "metadata" must be an object')
        if "id" in record:
            metadata = {"id": record["id"], **metadata}
        # The record's id (else its line number) keeps its source stable when other lines change.
        yield Document(
            source=str(record.get("source") or f"{source}#{record.get('id', number)}"),
            title=str(record.get("title") or record.get("id") or f"{path.stem} {number}"),
            text=record["text"], format="markdown" if record.get("format") == "markdown" else "text",
            metadata=metadata)


class _HTMLText(HTMLParser):
    """Visible text of an HTML page as Markdown-ish text: headings as `#` lines, blocks as paragraphs."""

    SKIP = {"script", "style", "noscript", "template", "svg", "head"}
    BLOCKS = {"p", "div", "br", "li", "ul", "ol", "tr", "table", "section", "article", "main", "header",
              "footer", "nav", "aside", "blockquote", "pre", "dl", "dt", "dd", "figure", "figcaption", "hr",
              "form", "details", "summary"}

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.title = ""
        self._skipping: list[str] = []
        self._in_title = False
        self._pre = 0

    def handle_starttag(self, tag, attrs):
        if tag == "title":
            self._in_title = True
        elif tag in self.SKIP:
            self._skipping.append(tag)
        elif self._skipping:
            return
        elif re.fullmatch(r"h[1-6]", tag):
            self.parts.append("\n\n" + "#" * int(tag[1]) + " ")
        elif tag in self.BLOCKS:
            self.parts.append({"br": "\n", "pre": "\n\n```\n"}.get(tag, "\n\n"))
            if tag == "pre":  # fenced, so a code block with blank lines stays one paragraph
                self._pre += 1

    def handle_startendtag(self, tag, attrs):
        if tag in ("br", "hr") and not self._skipping:
            self.parts.append("\n")

    def handle_endtag(self, tag):
        if tag == "title":
            self._in_title = False
        elif self._skipping:
            if tag == self._skipping[-1]:
                self._skipping.pop()
        elif re.fullmatch(r"h[1-6]", tag) or tag in self.BLOCKS:
            self.parts.append("\n```\n\n" if tag == "pre" and self._pre else "\n\n")
            if tag == "pre" and self._pre:
                self._pre -= 1

    def handle_data(self, data):
        if self._in_title:
            self.title += data
        elif not self._skipping:
            self.parts.append(data if self._pre else re.sub(r"\s+", " ", data))


def _html_to_markdown(html: str) -> tuple[str, str]:
    parser = _HTMLText()
    parser.feed(html)
    parser.close()
    text = "".join(parser.parts)
    # A heading's text must stay on its `#` line; inline whitespace runs are already collapsed outside <pre>.
    text = re.sub(r"^(#{1,6}) +([^\n]*)", lambda m: f"{m[1]} {m[2].strip()}", text, flags=re.M)
    text = "\n".join(line.rstrip() for line in text.split("\n"))
    text = re.sub(r"\n{3,}", "\n\n", text).strip()
    text = re.sub(r"^#{1,6}$\n*", "", text, flags=re.M)  # headings with no text
    return " ".join(parser.title.split()), text


def _first_heading(markdown: str) -> str | None:
    return next((s.path[0] for s in _sections(markdown, markdown=True) if s.path), None)


def pydoc_topics_documents() -> list[Document]:
    """The Python language reference topics shipped with the interpreter (`help('if')`): ~80 documents."""
    from pydoc_data.topics import topics

    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    documents = []
    for name, text in sorted(topics.items()):
        first = text.lstrip().split("\n", 1)[0].strip()
        documents.append(Document(source=f"pydoc:{name}", title=first or name, text=text,
                                  metadata={"topic": name, "python": version}))
    return documents


BUILTIN_CORPORA: dict[str, Callable[[], list[Document]]] = {"pydoc-topics": pydoc_topics_documents}


def builtin_documents(name: str) -> list[Document]:
    if name not in BUILTIN_CORPORA:
        raise RetrievalError(f"no built-in corpus {name!r}; built-in: {', '.join(BUILTIN_CORPORA)}")
    return BUILTIN_CORPORA[name]()


# ---- chunking ------------------------------------------------------------------------------------------

_ATX = re.compile(r"^ {0,3}(#{1,6})[ \t]+(.*?)(?:[ \t]+#+)?[ \t]*$")
_FENCE = re.compile(r"^ {0,3}(```|~~~)")
_UNDERLINE = re.compile(r"^([=\-~^*+#\"'`:.])\1{2,}[ \t]*$")
# Sentence ends: . ! ? (optionally closed by a quote or bracket) before whitespace, or a paragraph break.
_SENTENCE_END = re.compile(r"(?<=[.!?])[\"')\]]?\s+|\n\s*\n")


@dataclass
class _Section:
    path: tuple[str, ...]   # the headings above it, outermost first
    lines: list[str]


def _heading_at(lines: list[str], i: int, *, markdown: bool, underline_levels: dict[str, int]
                ) -> tuple[int, str, int] | None:
    """(level, title, lines used) when a heading starts at line i."""
    line = lines[i]
    if markdown and (atx := _ATX.match(line)):
        return len(atx[1]), atx[2].strip(), 1
    below = lines[i + 1] if i + 1 < len(lines) else ""
    underline = _UNDERLINE.match(below)
    if (not underline or not line.strip() or line[0] in " \t" or len(below.rstrip()) < len(line.rstrip())
            or (i > 0 and lines[i - 1].strip())):
        return None
    char = underline[1]
    if markdown:  # setext headings
        level = {"=": 1, "-": 2}.get(char)
        return (level, line.strip(), 2) if level else None
    # reStructuredText: a title style's level is the order in which the styles first appear
    return underline_levels.setdefault(char, len(underline_levels) + 1), line.strip(), 2


def _sections(text: str, *, markdown: bool) -> list[_Section]:
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    sections = [_Section((), [])]
    stack: list[tuple[int, str]] = []
    underline_levels: dict[str, int] = {}
    fenced = False
    i = 0
    while i < len(lines):
        if markdown and _FENCE.match(lines[i]):
            fenced = not fenced
        heading = None if fenced else _heading_at(lines, i, markdown=markdown, underline_levels=underline_levels)
        if heading is None:
            sections[-1].lines.append(lines[i])
            i += 1
            continue
        level, title, used = heading
        while stack and stack[-1][0] >= level:
            stack.pop()
        stack.append((level, title))
        sections.append(_Section(tuple(t for _, t in stack), []))
        i += used
    return sections


def _paragraphs(lines: list[str], *, markdown: bool) -> list[str]:
    """Blank-line separated blocks; a fenced code block stays one block even with blank lines inside."""
    paragraphs: list[str] = []
    current: list[str] = []
    fenced = False
    for line in lines:
        if markdown and _FENCE.match(line):
            fenced = not fenced
        if not line.strip() and not fenced:
            if current:
                paragraphs.append("\n".join(current).strip("\n"))
                current = []
        else:
            current.append(line.rstrip())
    if current:
        paragraphs.append("\n".join(current).strip("\n"))
    return [p for p in paragraphs if p.strip()]


def _split_long(text: str, limit: int) -> list[str]:
    """Pieces of at most `limit` characters: whole sentences where they fit, else cut at a space."""
    pieces: list[str] = []
    current = ""
    start = 0
    sentences = []
    for end in _SENTENCE_END.finditer(text):
        sentences.append(text[start:end.start() + len(end[0].rstrip())].strip())
        start = end.end()
    sentences.append(text[start:].strip())
    for sentence in filter(None, sentences):
        while len(sentence) > limit:
            cut = sentence.rfind(" ", limit // 2, limit + 1)
            cut = cut if cut > 0 else limit
            if current:
                pieces.append(current)
                current = ""
            pieces.append(sentence[:cut].strip())
            sentence = sentence[cut:].strip()
        if current and len(current) + 1 + len(sentence) > limit:
            pieces.append(current)
            current = ""
        current = f"{current} {sentence}" if current else sentence
    if current:
        pieces.append(current)
    return [p for p in pieces if p]


def _tail(text: str, overlap: int) -> str:
    """The last whole sentences of `text` within `overlap` characters, else its last words."""
    if overlap <= 0:
        return ""
    for boundary in _SENTENCE_END.finditer(text):
        start = boundary.end()
        line_start = text.rfind("\n", 0, start) + 1
        if not text[line_start:start].strip():
            start = line_start  # keep the indentation of a code line
        if 0 < len(text) - start <= overlap:
            return text[start:].rstrip()
    cut = text.find(" ", len(text) - overlap)
    return text[cut:].strip() if cut > 0 else ""


def _chunk_id(doc_id: str, position: int, text: str) -> str:
    return hashlib.sha256(f"{doc_id}\0{position}\0{text}".encode()).hexdigest()[:32]


def chunk_document(document: Document, doc_id: str, *, max_chars: int = DEFAULT_MAX_CHARS,
                   overlap: int = DEFAULT_OVERLAP) -> list[Chunk]:
    """Chunks of at most `max_chars` characters that never cross a heading; see the module docstring."""
    _check_sizes(max_chars, overlap)
    markdown = document.format == "markdown"
    # Room for the overlap and the blank line after it, so no chunk exceeds max_chars.
    budget = max_chars - overlap - 2 if overlap else max_chars
    chunks: list[Chunk] = []
    for section in _sections(document.text, markdown=markdown):
        units = [piece for paragraph in _paragraphs(section.lines, markdown=markdown)
                 for piece in ([paragraph] if len(paragraph) <= budget else _split_long(paragraph, budget))]
        for text in _pack(units, max_chars, overlap):
            chunks.append(Chunk(chunk_id=_chunk_id(doc_id, len(chunks), text), position=len(chunks),
                                heading=" > ".join(section.path), text=text))
    return chunks


def _pack(units: list[str], max_chars: int, overlap: int) -> list[str]:
    """Consecutive units joined into texts of at most max_chars, each after the first led by the tail of the
    previous one (units are short enough for that: see `budget` above)."""
    texts: list[str] = []
    body: list[str] = []
    prefix = ""
    for unit in units:
        if body and len(prefix) + sum(len(b) + 2 for b in body) + len(unit) + 2 > max_chars:
            texts.append("\n\n".join(filter(None, [prefix, *body])))
            prefix = _tail("\n\n".join(body), overlap)
            body = []
        body.append(unit)
    if body:
        texts.append("\n\n".join(filter(None, [prefix, *body])))
    return texts


def _check_sizes(max_chars: int, overlap: int) -> None:
    if max_chars < 100:
        raise ValueError(f"max_chars must be at least 100 (got {max_chars})")
    if not 0 <= overlap <= max_chars // 2:
        raise ValueError(f"overlap must be between 0 and max_chars / 2 = {max_chars // 2} (got {overlap})")


# ---- ingest --------------------------------------------------------------------------------------------

def _doc_id(corpus: str, document: Document, content_hash: str, max_chars: int, overlap: int) -> str:
    # The chunking settings are part of the identity: re-ingesting with other sizes re-chunks the document.
    key = f"{corpus}\0{document.source}\0{content_hash}\0{max_chars}\0{overlap}"
    return hashlib.sha256(key.encode()).hexdigest()[:32]


def ingest(con: duckdb.DuckDBPyConnection, paths: Iterable[str | Path], *, corpus: str,
           max_chars: int = DEFAULT_MAX_CHARS, overlap: int = DEFAULT_OVERLAP) -> IngestReport:
    """Load files and directories into `corpus`; see `ingest_documents`."""
    return ingest_documents(con, load_documents(paths), corpus=corpus, max_chars=max_chars, overlap=overlap)


def ingest_documents(con: duckdb.DuckDBPyConnection, documents: Iterable[Document], *, corpus: str,
                     max_chars: int = DEFAULT_MAX_CHARS, overlap: int = DEFAULT_OVERLAP) -> IngestReport:
    """Add documents to `corpus` and rebuild the full-text index.

    Unchanged documents are skipped; a source seen before with other content (or other chunking settings)
    loses its old row and chunks. Runs on its own cursor in one transaction, so it neither joins nor
    disturbs a transaction open on `con`."""
    if not corpus or not corpus.strip():
        raise ValueError("corpus must be a non-empty name")
    _check_sizes(max_chars, overlap)
    started = time.perf_counter()
    report = IngestReport(corpus=corpus)
    cur = con.cursor()
    try:
        known = dict(cur.execute("SELECT doc_id, source FROM documents WHERE corpus = ?", [corpus]).fetchall())
        by_source: dict[str, str] = {source: doc_id for doc_id, source in known.items()}
        doc_rows: list[dict[str, Any]] = []
        chunk_rows: list[dict[str, Any]] = []
        stale: list[str] = []
        seen: set[str] = set()
        for document in documents:
            content_hash = hashlib.sha256(document.text.encode()).hexdigest()
            doc_id = _doc_id(corpus, document, content_hash, max_chars, overlap)
            if doc_id in known or doc_id in seen:
                report.documents_unchanged += 1
                continue
            seen.add(doc_id)
            if document.source in by_source:
                stale.append(by_source.pop(document.source))
                report.documents_replaced += 1
                report.replaced_sources.append(document.source)
            else:
                report.documents_added += 1
            doc_rows.append({"doc_id": doc_id, "corpus": corpus, "source": document.source, "title": document.title,
                             "content_hash": content_hash, "chars": len(document.text),
                             "metadata": json.dumps(document.metadata, ensure_ascii=False, default=str)})
            for chunk in chunk_document(document, doc_id, max_chars=max_chars, overlap=overlap):
                chunk_rows.append({"chunk_id": chunk.chunk_id, "doc_id": doc_id, "corpus": corpus,
                                   "position": chunk.position, "heading": chunk.heading, "text": chunk.text,
                                   "chars": len(chunk.text)})
        if doc_rows:
            cur.begin()
            try:
                if stale:
                    report.chunks_removed = cur.execute(
                        "SELECT count(*) FROM chunks WHERE list_contains(?, doc_id)", [stale]).fetchone()[0]
                    cur.execute("DELETE FROM chunks WHERE list_contains(?, doc_id)", [stale])
                    cur.execute("DELETE FROM documents WHERE list_contains(?, doc_id)", [stale])
                # Arrow batches instead of executemany: a few thousand rows insert in milliseconds, not seconds.
                _insert_rows(cur, "documents", doc_rows)
                if chunk_rows:
                    _insert_rows(cur, "chunks", chunk_rows)
                    report.chunks_added = len(chunk_rows)
                cur.commit()
            except BaseException:
                cur.rollback()
                raise
        if doc_rows or not _has_index(cur):
            index_started = time.perf_counter()
            rebuild_index(cur)
            report.index_seconds = time.perf_counter() - index_started
    finally:
        cur.close()
    report.seconds = time.perf_counter() - started
    return report


def _insert_rows(cur: duckdb.DuckDBPyConnection, table: str, rows: list[dict[str, Any]]) -> None:
    columns = list(rows[0])
    batch = pa.Table.from_pylist(rows)
    cur.register("_incoming_rows", batch)
    try:
        cur.execute(f"INSERT INTO {table} ({', '.join(columns)}) SELECT {', '.join(columns)} FROM _incoming_rows "
                    "ON CONFLICT DO NOTHING")
    finally:
        cur.unregister("_incoming_rows")


def ingest_corpus(con: duckdb.DuckDBPyConnection, name: str, paths: Sequence[str | Path] = (), *,
                  max_chars: int = DEFAULT_MAX_CHARS, overlap: int = DEFAULT_OVERLAP,
                  copied: bool = False) -> IngestReport:
    """A named corpus into the store: its files, or the built-in corpus of that name without them. Unchanged
    documents are skipped, so a recipe can call this at every start. `copied`: `con` holds a copy of a store's
    corpora (`CORPUS_TABLES`: a Ray worker's), searched as it was copied: no file is read, nothing is ingested, and
    only the search index is built."""
    if copied:
        ensure_index(con)
        return IngestReport(corpus=name)
    documents = load_documents(paths) if paths else builtin_documents(name)
    return ingest_documents(con, documents, corpus=name, max_chars=max_chars, overlap=overlap)


# Every corpus of a store, whole: BM25 weighs a word by how rare it is among all the chunks the index holds, so a
# copy of one corpus alone would rank passages differently from the store it was taken from.
CORPUS_TABLES = {"documents": "SELECT * FROM documents", "chunks": "SELECT * FROM chunks"}


def ensure_index(con: duckdb.DuckDBPyConnection) -> None:
    """The full-text index over the chunks `con` holds, built unless it is there (a copy of a store's corpora comes
    without it)."""
    if not _has_index(con):
        rebuild_index(con)


def rebuild_index(con: duckdb.DuckDBPyConnection) -> None:
    """Rebuild the BM25 index over every chunk; DuckDB's index is a snapshot, blind to later inserts."""
    load_fts(con)
    con.execute("PRAGMA create_fts_index('chunks', 'chunk_id', 'text', 'heading', stemmer = 'porter', "
                "stopwords = 'english', overwrite = 1)")


def _has_index(con: duckdb.DuckDBPyConnection) -> bool:
    return bool(con.execute(
        "SELECT count(*) FROM duckdb_schemas() WHERE schema_name = 'fts_main_chunks'").fetchone()[0])


# ---- reading -------------------------------------------------------------------------------------------

_HIT_COLUMNS = "c.chunk_id, c.doc_id, c.corpus, d.source, d.title, c.heading, c.text"


def _hit(row: tuple, score: float | None = None) -> Hit:
    return Hit(chunk_id=row[0], doc_id=row[1], corpus=row[2], source=row[3], title=row[4], heading=row[5],
               text=row[6], score=score)


def _require_index(con: duckdb.DuckDBPyConnection) -> None:
    if not _has_index(con):
        raise RetrievalError("no documents have been ingested into this store: "
                             "synthgraph ingest PATH... --corpus NAME (or ingest()/ingest_documents())")


def search(con: duckdb.DuckDBPyConnection, query: str, k: int = 5, *, corpus: str | None = None) -> list[Hit]:
    """The k chunks that best match `query` by BM25 (Porter-stemmed, English stopwords), best first.

    A query with no searchable word (empty, punctuation, only stopwords) finds nothing."""
    if not query.strip() or k <= 0:
        return []
    load_fts(con)
    _require_index(con)
    rows = con.execute(
        f"SELECT {_HIT_COLUMNS}, s.score FROM ("
        "   SELECT chunk_id, fts_main_chunks.match_bm25(chunk_id, ?) AS score FROM chunks"
        "   WHERE ? IS NULL OR corpus = ?) s "
        "JOIN chunks c USING (chunk_id) JOIN documents d USING (doc_id) "
        "WHERE s.score IS NOT NULL ORDER BY s.score DESC, c.chunk_id LIMIT ?",
        [query, corpus, corpus, k]).fetchall()
    return [_hit(row[:-1], row[-1]) for row in rows]


def get_chunks(con: duckdb.DuckDBPyConnection, chunk_ids: Sequence[str]) -> list[Hit]:
    """The chunks with these ids, in the order asked (unknown ids are left out); score is None."""
    if not chunk_ids:
        return []
    rows = con.execute(
        f"SELECT {_HIT_COLUMNS} FROM chunks c JOIN documents d USING (doc_id) WHERE list_contains(?, c.chunk_id)",
        [list(chunk_ids)]).fetchall()
    found = {row[0]: _hit(row) for row in rows}
    return [found[i] for i in dict.fromkeys(chunk_ids) if i in found]


def corpus_chunks(con: duckdb.DuckDBPyConnection, corpus: str) -> list[Hit]:
    """Every chunk of a corpus, document by document in reading order."""
    rows = con.execute(
        f"SELECT {_HIT_COLUMNS} FROM chunks c JOIN documents d USING (doc_id) WHERE c.corpus = ? "
        "ORDER BY d.source, c.position", [corpus]).fetchall()
    return [_hit(row) for row in rows]


def sample_chunks(con: duckdb.DuckDBPyConnection, corpus: str, n: int, *, seed: int = 0,
                  used: Mapping[str, int] | Collection[str] = ()) -> list[Hit]:
    """n chunks of a corpus, least used first, ties in an order fixed by `seed`.

    `used` counts how often each chunk served already (or is a collection of ids used once), so a proposer
    that feeds its picks back covers the whole corpus before any chunk comes round again."""
    counts = used if isinstance(used, Mapping) else dict.fromkeys(used, 1)
    ids = [row[0] for row in con.execute("SELECT chunk_id FROM chunks WHERE corpus = ?", [corpus]).fetchall()]
    if not ids:
        raise RetrievalError(f"corpus {corpus!r} has no chunks; have: {', '.join(corpora(con)) or 'none'}")
    ids.sort(key=lambda i: (counts.get(i, 0), hashlib.sha256(f"{seed}\0{i}".encode()).digest()))
    return get_chunks(con, ids[:n])


def corpora(con: duckdb.DuckDBPyConnection) -> dict[str, int]:
    """Corpus name -> number of chunks."""
    return dict(con.execute("SELECT corpus, count(*) FROM chunks GROUP BY 1 ORDER BY 1").fetchall())


class Retriever:
    """Search for graph nodes, over cursors of a connection the process already holds.

    DuckDB lets one process write a file, and within a process a second `duckdb.connect` of the same file
    with another read_only setting fails, so the retriever never opens the file itself: it takes the
    runner's connection (`Store.con`) and makes `pool_size` cursors of it up front, in the caller's thread.
    A DuckDB cursor must not be used by two threads at once, so each call borrows a cursor from the pool for
    its duration: `asearch` runs in a worker thread (DuckDB releases the GIL while it searches), so up to
    `pool_size` searches from concurrent asyncio tasks run in parallel and the rest wait for a cursor.
    """

    def __init__(self, con: duckdb.DuckDBPyConnection, *, corpus: str | None = None, pool_size: int = 4):
        if pool_size < 1:
            raise ValueError(f"pool_size must be at least 1 (got {pool_size})")
        self.corpus = corpus
        load_fts(con)
        self._cursors: queue.SimpleQueue[duckdb.DuckDBPyConnection] = queue.SimpleQueue()
        self._all = [con.cursor() for _ in range(pool_size)]
        for cursor in self._all:
            self._cursors.put(cursor)
        if corpus is not None and corpus not in corpora(self._all[0]):
            raise RetrievalError(f"corpus {corpus!r} has no chunks in this store; ingest it first "
                                 f"(synthgraph ingest PATH... --corpus {corpus}); have: "
                                 f"{', '.join(corpora(self._all[0])) or 'none'}")

    def _call(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        cursor = self._cursors.get()
        try:
            return fn(cursor, *args, **kwargs)
        finally:
            self._cursors.put(cursor)

    def search(self, query: str, k: int = 5, *, corpus: str | None = None) -> list[Hit]:
        return self._call(search, query, k, corpus=corpus or self.corpus)

    async def asearch(self, query: str, k: int = 5, *, corpus: str | None = None) -> list[Hit]:
        return await asyncio.to_thread(self.search, query, k, corpus=corpus)

    def get_chunks(self, chunk_ids: Sequence[str]) -> list[Hit]:
        return self._call(get_chunks, chunk_ids)

    def sample_chunks(self, n: int, *, corpus: str | None = None, seed: int = 0,
                      used: Mapping[str, int] | Collection[str] = ()) -> list[Hit]:
        name = corpus or self.corpus
        if name is None:
            raise ValueError("sample_chunks needs a corpus: pass corpus= here or to Retriever(...)")
        return self._call(sample_chunks, name, n, seed=seed, used=used)

    def close(self) -> None:
        for cursor in self._all:
            cursor.close()

    def __enter__(self) -> Retriever:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()
