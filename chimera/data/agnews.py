"""AG News: read it from the hub or a local folder into cleaned `TextSplit`s.

A local folder holds `train` and `test` files in one of two layouts: the hub schema (`.csv` with a
`text,label` header, `.parquet`, `.jsonl`/`.json`; labels 0-3) or the original char-CNN release
(`.csv` without a header: class 1-4, title, description). `datasets` reads every file; this module
validates the rows and turns any problem into a one-line `ChimeraError` naming the file and line.
The train split is then narrowed to the run's `data.train_pool` (chimera.data.subsets).
"""

from __future__ import annotations

import csv
import io
import json
import logging
import os
import re
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from chimera.data.subsets import TextSplit, clean_text, manifest_for, row_hash, select_rows
from chimera.errors import ChimeraError

HUB_ID = "fancyzhx/ag_news"
SPLITS = ("train", "test")
BUILDERS = {".csv": "csv", ".parquet": "parquet", ".jsonl": "json", ".json": "json"}
HUB_LABELS = range(0, 4)
ORIGINAL_LABELS = range(1, 5)  # the char-CNN release numbers classes 1-4
ORIGINAL_COLUMNS = ["label", "title", "description"]
_INT_LABEL = re.compile(r"[+-]?\d+")
_CSV_FIELD_LIMIT = 2**31 - 1  # the stdlib reader's default of 128 KiB would turn one long article into an error


# --- reading -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Read:
    split: TextSplit
    raw_texts: tuple[str, ...]  # as read, before clean_text: what a manifest's row hashes are over
    where: str  # the file, or the hub split, for messages


def load_ag_news(data_dir: Path | str | None, *, train_pool: str = "all") -> dict[str, TextSplit]:
    """{"train", "test"} with cleaned texts and labels 0-3, from the hub (None) or a local folder; the train
    split narrowed to `train_pool` (a `data.train_pool` value: "all", or the rows a manifest lists, in its order)."""
    manifest = manifest_for(train_pool)  # before reading, so a bad name fails without a download
    read = _load_hub() if data_dir is None else _load_folder(Path(data_dir))
    train = read["train"]
    if manifest is not None:
        return {"train": train.split.take(select_rows(_row_hashes(train), manifest, source=train.where)),
                "test": read["test"].split}
    return {name: read[name].split for name in SPLITS}


def train_row_hashes(data_dir: Path | str | None) -> tuple[str, list[str]]:
    """(where the train split was read, the manifest hash of each of its rows in order): what a manifest lists."""
    train = (_load_hub() if data_dir is None else _load_folder(Path(data_dir)))["train"]
    return train.where, _row_hashes(train)


def _row_hashes(read: _Read) -> list[str]:
    return [row_hash(text, label) for text, label in zip(read.raw_texts, read.split.labels, strict=True)]


def _load_folder(folder: Path) -> dict[str, _Read]:
    if not folder.is_dir():
        raise ChimeraError(f"{folder}: data folder not found or not a folder; point --data-dir at a folder "
                           f"with train and test files, or leave it out to use the hub ({HUB_ID})")
    try:
        names = os.listdir(folder)
    except OSError as exc:
        raise ChimeraError(f"{folder}: cannot read the data folder ({exc.strerror}); "
                           "check its permissions") from None
    return {split: _read_file(_find_split_file(folder, names, split)) for split in SPLITS}


def _load_hub() -> dict[str, _Read]:
    from datasets import load_dataset

    try:
        data = load_dataset(HUB_ID)
    except Exception as exc:  # network, auth and hub errors come in many types; all mean "not reachable"
        raise ChimeraError(f"hub {HUB_ID}: could not load ({_first_line(exc)}); pass --data-dir with local "
                           "train/test files instead") from None
    pairs = {name: zip(data[name]["text"], data[name]["label"], strict=True) for name in SPLITS}
    return {name: _to_split(f"hub {HUB_ID} [{name}]", pairs[name], HUB_LABELS, _row_locator)
            for name in SPLITS}


def _find_split_file(folder: Path, names: list[str], split: str) -> Path:
    found = sorted(n for n in names if Path(n).stem == split and Path(n).suffix.lower() in BUILDERS)
    if not found:
        raise ChimeraError(f"{folder}: no {split} file; expected {split}.csv, {split}.parquet, {split}.jsonl "
                           f"or {split}.json (found: {', '.join(sorted(names)) or 'nothing'})")
    if len(found) > 1:
        raise ChimeraError(f"{folder}: several {split} files ({', '.join(found)}); keep exactly one")
    return folder / found[0]


def _read_file(path: Path) -> _Read:
    builder = BUILDERS[path.suffix.lower()]
    if builder == "csv":
        return _read_csv(path)
    if builder == "json" and _is_blank(path):  # `datasets` fails on these with a bare StopIteration
        raise ChimeraError(f"{path}: line 1: file is empty; expected one JSON object per line")
    locate = _row_locator if builder == "parquet" else _json_locator(path)
    rows = _rows(_stream(path, builder, {}), path, text="text", label="label")
    return _to_split(str(path), rows, HUB_LABELS, locate)


def _read_csv(path: Path) -> _Read:
    header = _sniff_header(path)
    records = _CsvRecords(path, skip_header=header is not None)
    if header is not None:
        text, label, columns = header
        rows = _rows(_stream(path, "csv", {}, columns), path, text=text, label=label, width=len(columns),
                     records=records)
        return _to_split(str(path), rows, HUB_LABELS, records.where)
    options = {"column_names": ORIGINAL_COLUMNS}
    rows = _original_rows(_stream(path, "csv", options, ORIGINAL_COLUMNS), records)
    return _to_split(str(path), rows, ORIGINAL_LABELS, records.where, offset=-1)


def _sniff_header(path: Path) -> tuple[str, str, list[str]] | None:
    """(text column, label column, all columns) of a hub header; None for the headerless original layout."""
    with _reading(path), path.open("rb") as handle:
        first = handle.readline()
    try:
        line = first.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise ChimeraError(f"{path}: line 1: not valid UTF-8; re-save the file as UTF-8") from None
    if not line.strip():
        raise ChimeraError(f"{path}: line 1: file is empty; expected a text,label header "
                           "or class,title,description rows")
    try:
        with _long_csv_fields():
            fields = next(csv.reader([line]))
    except csv.Error as exc:  # e.g. a bare carriage return inside an unquoted field
        raise ChimeraError(f"{path}: line 1: not a CSV row ({exc}); quote fields that contain line breaks") from None
    names = {f.strip().lower(): f for f in fields}
    if "text" in names and "label" in names:
        return names["text"], names["label"], fields
    if len(fields) == 3:
        return None
    raise ChimeraError(f"{path}: line 1: expected a text,label header (hub layout) or 3 columns "
                       f"class,title,description (original layout), found {len(fields)} column(s)")


def _stream(path: Path, builder: str, options: dict[str, Any],
            csv_columns: list[str] | None = None) -> Iterator[dict[str, list]]:
    """Batches of columns as `datasets` reads them; streaming keeps its on-disk cache out of the way."""
    from datasets import Features, Value, load_dataset

    if csv_columns is not None:  # every cell as a string, verbatim ("NA" is a text, not a missing value)
        features = Features({name: Value("string") for name in csv_columns})
        options = {"features": features, "keep_default_na": False, "encoding": "utf-8-sig", **options}
    try:
        with _quiet_datasets():
            data = load_dataset(builder, data_files={"rows": str(path)}, split="rows", streaming=True,
                                **options)
            yield from data.iter(batch_size=4096)
    except (ValueError, OSError) as exc:  # pandas and pyarrow errors are ValueError subclasses
        raise ChimeraError(f"{path}: {_diagnose(path, builder, exc)}") from None


def _rows(batches: Iterator[dict[str, list]], path: Path, *, text: str, label: str, width: int = 0,
          records: _CsvRecords | None = None) -> Iterator[tuple[Any, Any]]:
    index = 0
    for batch in batches:
        for key in (text, label):
            if key not in batch:
                raise ChimeraError(f"{path}: no {key!r} column (found: {', '.join(batch)}); "
                                   "the hub layout needs text and label")
        for value, target in zip(batch[text], batch[label], strict=True):
            if records is not None and target == "" and records.width(index) != width:
                raise ChimeraError(f"{path}: {records.where(index)}: expected {width} columns, "
                                   f"found {records.width(index)}")
            yield value, target
            index += 1


def _original_rows(batches: Iterator[dict[str, list]], records: _CsvRecords) -> Iterator[tuple[str, Any]]:
    index = 0
    for batch in batches:
        for label, title, description in zip(*(batch[c] for c in ORIGINAL_COLUMNS), strict=True):
            if description == "" and records.width(index) != 3:  # a missing column reads as ""
                raise ChimeraError(f"{records.path}: {records.where(index)}: expected 3 columns "
                                   f"(class,title,description), found {records.width(index)}")
            yield f"{title} {description}", label
            index += 1


def _to_split(source: str, rows: Iterable[tuple[Any, Any]], allowed: range,
              locate: Callable[[int], str], *, offset: int = 0) -> _Read:
    raw_texts: list[str] = []
    texts: list[str] = []
    labels: list[int] = []
    span = f"{allowed.start}-{allowed.stop - 1}"
    for index, (raw_text, raw_label) in enumerate(rows):
        label = _parse_label(raw_label)
        if label is None or label not in allowed:
            raise ChimeraError(f"{source}: {locate(index)}: {_label_problem(raw_label, label)}; "
                               f"labels must be integers in {span}")
        if raw_text is not None and not isinstance(raw_text, str):
            raise ChimeraError(f"{source}: {locate(index)}: text must be a string, got {raw_text!r}")
        text = clean_text(raw_text or "")
        if not text:
            raise ChimeraError(f"{source}: {locate(index)}: empty text; remove the row or fill in its text")
        raw_texts.append(raw_text)
        texts.append(text)
        labels.append(label + offset)
    if not texts:
        raise ChimeraError(f"{source}: {locate(0)}: no data rows (header only or empty); "
                           "expected one row per example")
    return _Read(TextSplit(tuple(texts), tuple(labels)), tuple(raw_texts), source)


def _label_problem(raw: Any, parsed: int | None) -> str:
    if raw is None or raw == "":
        return "missing label"
    return f"label {raw!r} is not an integer" if parsed is None else f"label {parsed} is out of range"


def _parse_label(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and _INT_LABEL.fullmatch(value.strip()):
        return int(value)
    return None


# --- locating problems (error path only) -----------------------------------------------------------


class _CsvRecords:
    """Start line and field count of each CSV record, scanned lazily with the stdlib reader."""

    def __init__(self, path: Path, *, skip_header: bool) -> None:
        self.path, self._skip = path, skip_header
        self._records: list[tuple[int, int]] | None = None
        self._lines = 0

    def _scan(self) -> list[tuple[int, int]]:
        if self._records is None:
            records, previous = [], 0
            with self.path.open(encoding="utf-8-sig", newline="") as handle, _long_csv_fields():
                reader = csv.reader(handle)
                try:
                    for fields in reader:
                        if fields:
                            records.append((previous + 1, len(fields)))
                        previous = reader.line_num
                except csv.Error:  # unparseable from here on: locate what came before, blame the rest
                    pass
            self._records, self._lines = (records[1:] if self._skip else records), previous
        return self._records

    def where(self, index: int) -> str:
        records = self._scan()
        return f"line {records[index][0]}" if index < len(records) else f"line {self._lines + 1}"

    def width(self, index: int) -> int:
        records = self._scan()
        return records[index][1] if index < len(records) else 0


def _json_locator(path: Path) -> Callable[[int], str]:
    def locate(index: int) -> str:
        with path.open(encoding="utf-8") as handle:
            if handle.read(64).lstrip().startswith("["):
                return f"record {index + 1}"
            handle.seek(0)
            lines = [n for n, line in enumerate(handle, start=1) if line.strip()]
        return f"line {lines[index]}" if index < len(lines) else f"line {len(lines) + 1}"
    return locate


def _row_locator(index: int) -> str:
    return f"row {index + 1}"


def _diagnose(path: Path, builder: str, exc: BaseException) -> str:
    """Turn a reader exception into 'line N: what is wrong', scanning the file when the reader is vague."""
    if isinstance(exc, UnicodeDecodeError) or "utf-8" in str(exc).lower():
        return f"{_first_bad_utf8_line(path)}: not valid UTF-8; re-save the file as UTF-8"
    if builder == "csv":
        match = re.search(r"Expected (\d+) fields in line (\d+), saw (\d+)", str(exc))
        if match:
            expected, line, saw = match.groups()
            return f"line {line}: expected {expected} columns, found {saw}"
        match = re.search(r"EOF inside string starting at row (\d+)", str(exc))
        if match:  # pandas counts records from 0, header included; a record may span several lines
            where = _CsvRecords(path, skip_header=False).where(int(match.group(1)))
            return f"{where}: a quoted field is never closed; close its quote or escape it as \"\""
    if builder == "json":
        bad = _first_bad_json_line(path)
        if bad:
            return bad
    return f"cannot read as {builder} ({_first_line(exc)})"


def _first_bad_utf8_line(path: Path) -> str:
    with path.open("rb") as handle:
        for number, line in enumerate(handle, start=1):
            try:
                line.decode("utf-8")
            except UnicodeDecodeError:
                return f"line {number}"
    return "somewhere in the file"


def _first_bad_json_line(path: Path) -> str | None:
    text = path.read_text(encoding="utf-8")
    if text.lstrip().startswith("["):
        try:
            json.loads(text)
        except json.JSONDecodeError as err:
            return f"line {err.lineno}: invalid JSON ({err.msg})"
        return None
    for number, line in enumerate(io.StringIO(text), start=1):
        if line.strip():
            try:
                json.loads(line)
            except json.JSONDecodeError as err:
                return f"line {number}: invalid JSON ({err.msg}); expected one object per line"
    return None


def _is_blank(path: Path) -> bool:
    with _reading(path), path.open("rb") as handle:
        while chunk := handle.read(1 << 16):
            if chunk.strip():
                return False
    return True


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


@contextmanager
def _long_csv_fields() -> Iterator[None]:
    """Lift the stdlib csv reader's (process-wide) field size limit for the duration of a scan."""
    previous = csv.field_size_limit(_CSV_FIELD_LIMIT)
    try:
        yield
    finally:
        csv.field_size_limit(previous)


@contextmanager
def _reading(path: Path) -> Iterator[None]:
    try:
        yield
    except OSError as exc:
        raise ChimeraError(f"{path}: cannot read ({exc.strerror or exc}); "
                           "check the file and its permissions") from None


@contextmanager
def _quiet_datasets() -> Iterator[None]:
    """`datasets` logs reader failures itself; we report them as one ChimeraError instead."""
    logger = logging.getLogger("datasets")
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        logger.setLevel(level)
