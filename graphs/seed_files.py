"""Seed rows from the user's own data: JSONL (or .jsonl.gz), CSV, Parquet, or a Hugging Face `datasets` folder
made with `save_to_disk` (read locally; nothing is downloaded). Each row keeps a label (`file:line`, or
`file: row N` where a format has no lines) so a bad row is reported where the user can find it.

A recipe may map its seed fields from the file's columns (`fields: {topic: Subject}`) and draw a seeded random
sample of the rows (`sample: 100, seed: 7`) or shuffle them all (`shuffle: true`).
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import random
from collections.abc import Mapping
from pathlib import Path
from typing import Any

Row = tuple[str, dict[str, Any]]
# A seed may be a whole document: the csv module's default cap of 128 KiB per cell is lifted (once: it is the
# process's setting, and recipes may load in several threads at once).
csv.field_size_limit(max(csv.field_size_limit(), 2**31 - 1))
FORMATS = ("JSONL (.jsonl, .jsonl.gz), a JSON array (.json), CSV (.csv), Parquet (.parquet) or a `datasets` folder "
           "made with save_to_disk")


class SeedFileError(ValueError):
    """A seed file that cannot be read, or a row that does not fit the recipe; the message names the place."""


def read_rows(file: Path, *, split: str | None = None) -> list[Row]:
    """Every row of `file` as (label, mapping), in file order."""
    name = file.name.lower()
    if file.is_dir():
        return _datasets_folder(file, split)
    if not file.is_file():
        raise SeedFileError(f"seeds.file: {file} does not exist")
    if split is not None:
        raise SeedFileError(f"seeds.split: {file} is a single file without splits (seeds.split names a split of a "
                            "`datasets` folder); remove seeds.split")
    if name.endswith((".jsonl", ".jsonl.gz", ".json.gz", ".ndjson")) or name.endswith(".json"):
        return _jsonl(file)
    if name.endswith((".csv", ".csv.gz")):
        return _csv(file)
    if name.endswith(".parquet"):
        return _parquet(file)
    raise SeedFileError(f"seeds.file: {file} is not a format synthgraph reads; use {FORMATS}")


def select_rows(rows: list[Row], *, fields: Mapping[str, str] | None, sample: int | None, shuffle: bool,
                seed: int) -> list[Row]:
    """The rows a run uses: a seeded shuffle or sample (the same seed draws the same rows), then each row reduced
    to the recipe's fields, renamed from the file's columns. A row lacking a mapped column names its place."""
    if sample is not None and sample > len(rows):
        raise SeedFileError(f"seeds.sample: {sample} rows asked for, and the source holds {len(rows)}: lower sample, "
                            "or leave it out (with shuffle: true for a random order) to take every row")
    if sample is not None or shuffle:
        rng = random.Random(seed)
        rows = rng.sample(rows, sample if sample is not None else len(rows))
    if not fields:
        return rows
    mapped = []
    for label, row in rows:
        if missing := [column for column in fields.values() if column not in row]:
            columns = ", ".join(sorted(map(str, row))) or "none"
            raise SeedFileError(f"{label}: has no column {missing[0]!r} (mapped by seeds.fields); "
                                f"its columns: {columns}")
        if empty := [column for column in fields.values() if row[column] is None]:
            raise SeedFileError(f"{label}: column {empty[0]!r} (mapped by seeds.fields) is null")
        # The row's own id stays its id unless a field is mapped onto `id`: resume finds seeds by it.
        kept = {"id": row["id"]} if "id" not in fields and isinstance(row.get("id"), str) else {}
        mapped.append((label, {**kept, **{name: row[column] for name, column in fields.items()}}))
    return mapped


def _text(file: Path) -> str:
    data = file.read_bytes()
    if file.name.lower().endswith(".gz"):
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError) as exc:  # gzip.BadGzipFile is an OSError
            raise SeedFileError(f"seeds.file: {file} is not a readable gzip file ({exc})") from None
    try:
        # utf-8-sig: the byte-order mark of Excel's "CSV UTF-8" would otherwise stick to the first column's name
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise SeedFileError(f"seeds.file: {file} is not UTF-8 text (byte {exc.start}: {exc.reason}); save it as "
                            "UTF-8") from None


def _jsonl(file: Path) -> list[Row]:
    text = _text(file)
    if file.name.lower().endswith((".json", ".json.gz")) and text.lstrip().startswith("["):
        return _json_array(file, text)
    rows = []
    # Lines end at \n only: str.splitlines() also splits at U+2028 and U+0085, which JSON strings may hold raw.
    for number, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError as exc:
            raise SeedFileError(f"seed file {file}:{number}: not valid JSON ({exc.msg}); a seed file holds one JSON "
                                "object per line, or a .json file one array of them") from None
        rows.append(_object(f"seed file {file}:{number}", value))
    return rows


def _json_array(file: Path, text: str) -> list[Row]:
    try:
        values = json.loads(text)
    except json.JSONDecodeError as exc:
        raise SeedFileError(f"seed file {file}:{exc.lineno}: not valid JSON ({exc.msg})") from None
    if not isinstance(values, list):
        raise SeedFileError(f"seed file {file}: a .json seed file holds one array of objects")
    return [_object(f"seed file {file}: item {i}", value) for i, value in enumerate(values)]


def _object(label: str, value: Any) -> Row:
    if not isinstance(value, dict):
        raise SeedFileError(f"{label}: a seed is a JSON object of fields, not {type(value).__name__} {value!r:.60}")
    return label, value


def _csv(file: Path) -> list[Row]:
    reader = csv.DictReader(io.StringIO(_text(file), newline=""))
    rows = []
    try:
        header = reader.fieldnames or []
        # Blank names are the empty columns a spreadsheet leaves at the right; a name given twice loses a column.
        if repeated := sorted({name for name in header if name.strip() and header.count(name) > 1}):
            raise SeedFileError(f"seed file {file}:1: the header names {repeated[0]!r} twice; each column needs a "
                                "name of its own")
        for row in reader:
            label = f"seed file {file}:{reader.line_num}"
            extra = [cell for cell in row.pop(None, []) if cell.strip()]  # cells past the header's columns
            if extra:
                raise SeedFileError(f"{label}: a cell past the header's {len(header)} columns ({extra[0]!r:.40}; a "
                                    "value holding a comma needs double quotes)")
            # A short row gets None for its missing cells: absent, as a row lacking a mapped field should read.
            rows.append((label, {k: v for k, v in row.items() if v is not None and k.strip()}))
    except csv.Error as exc:
        raise SeedFileError(f"seed file {file}:{reader.line_num}: not valid CSV ({exc})") from None
    return rows


def _parquet(file: Path) -> list[Row]:
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(file)
    except Exception as exc:  # pyarrow raises several types for a file that is not Parquet
        raise SeedFileError(f"seeds.file: {file} is not a readable Parquet file ({exc})") from None
    return [(f"seed file {file}: row {i}", row) for i, row in enumerate(table.to_pylist())]


def _datasets_folder(folder: Path, split: str | None) -> list[Row]:
    if not any((folder / marker).is_file() for marker in ("dataset_info.json", "state.json", "dataset_dict.json")):
        raise SeedFileError(f"seeds.file: {folder} is a folder but not a `datasets` folder made with save_to_disk "
                            f"(no dataset_info.json / dataset_dict.json); use {FORMATS}")
    import datasets

    try:
        loaded = datasets.load_from_disk(str(folder))
    except Exception as exc:  # datasets raises FileNotFoundError / ValueError variants for a broken folder
        raise SeedFileError(f"seeds.file: {folder} could not be loaded with datasets.load_from_disk ({exc})") from None
    if isinstance(loaded, datasets.DatasetDict):
        if split is None or split not in loaded:
            raise SeedFileError(f"seeds.split: {folder} holds the splits {', '.join(loaded)}; "
                                f"name one as seeds.split (got {split!r})")
        loaded = loaded[split]
    elif split is not None:
        raise SeedFileError(f"seeds.split: {folder} is a single dataset without splits; remove seeds.split")
    return [(f"seed file {folder}: row {i}", dict(row)) for i, row in enumerate(loaded)]
