"""Read a text-classification dataset into cleaned `TextSplit`s with labels 0..K-1 and the K label names.

`data.dataset` says which (chimera/config.py):
- "ag_news", the default: the hub's fancyzhx/ag_news, or an offline copy given as --data-dir: a folder with
  `train` and `test` files in the hub schema (`.csv` with a `text,label` header, `.parquet`, `.jsonl`/`.json`;
  labels 0-3) or the original char-CNN layout (`.csv` without a header: class 1-4, title, description). Its
  text is cleaned of the corpus' escapes; its label names are the hub's.
- any other value: a local CSV / JSON Lines / Parquet file, a folder holding `<train_split>` and
  `<test_split>` files, or else a hub id; `data.text_column` and `data.label_column` name the columns. Labels
  may be strings or integers; the names are the hub's ClassLabel names, else the train split's distinct
  labels, sorted. A single file has no test split: its test rows are carved out as val's are (subsets.py).
`datasets` reads every file; this module validates the rows and turns any problem into a one-line
`ChimeraError` naming the file and line (chimera.data.diagnose finds the line). The train split is then
narrowed to the run's `data.train_pool` (chimera.data.subsets).
"""

from __future__ import annotations

import csv
import logging
import os
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from chimera.config import AG_NEWS, AG_NEWS_LABELS, DataConfig
from chimera.data.subsets import TextSplit, clean_text, manifest_for, row_hash, select_rows
from chimera.errors import ChimeraError
from chimera.fileio import long_csv_fields

HUB_ID = "fancyzhx/ag_news"
SPLITS = ("train", "test")
BUILDERS = {".csv": "csv", ".parquet": "parquet", ".jsonl": "json", ".json": "json"}
HUB_LABELS = range(0, 4)
ORIGINAL_LABELS = range(1, 5)  # the char-CNN release numbers classes 1-4
ORIGINAL_COLUMNS = ["label", "title", "description"]
_INT_LABEL = re.compile(r"[+-]?\d+")


@dataclass(frozen=True)
class LoadedData:
    """A dataset read for a run: "train" (narrowed to the train pool) and, when the source has one, "test"."""

    splits: dict[str, TextSplit]
    label_names: tuple[str, ...]  # label i's name
    source: str  # for the record: the folder or file as given, or hub:<id>


@dataclass(frozen=True)
class _Columns:
    """How to read one dataset's rows."""

    text: str = "text"
    label: str = "label"
    ag_news: bool = True  # AG News: its escapes cleaned, integer labels in its ranges


@dataclass(frozen=True)
class _Read:
    texts: tuple[str, ...]  # cleaned
    raw_texts: tuple[str, ...]  # as read, before cleaning: what a manifest's row hashes are over
    labels: tuple[Any, ...]  # AG News: 0-3; other data: the values as read, until `_number_labels`
    where: str  # the file, or the hub split, for messages
    locate: Callable[[int], str]

    def split(self, labels: Sequence[int] | None = None) -> TextSplit:
        return TextSplit(self.texts, tuple(self.labels if labels is None else labels))


# --- reading -----------------------------------------------------------------------------------------


def load_data(data: DataConfig, data_dir: Path | str | None = None) -> LoadedData:
    """The run's dataset: `data_dir` is AG News' offline copy (None: the hub); another `data.dataset` is read
    from where it names, and a `data_dir` beside it is refused (it would be ignored)."""
    manifest = manifest_for(data.train_pool)  # before reading, so a bad name fails without a download
    if data.dataset == AG_NEWS:
        read = _load_hub(HUB_ID, SPLITS, _Columns()) if data_dir is None else _load_folder(Path(data_dir), SPLITS,
                                                                                           _Columns())
        names, source = AG_NEWS_LABELS, str(data_dir) if data_dir else f"hub:{HUB_ID}"
        numbered = {split: read[split].split() for split in read}
    else:
        if data_dir is not None:
            raise ChimeraError(f"--data-dir {data_dir}: it holds AG News; data.dataset={data.dataset} names the "
                               "data to read (leave --data-dir out)")
        read, declared, source = _load_named(data)
        names, numbered = _number_labels(read, declared, train=data.train_split)
        numbered = {("train" if k == data.train_split else "test"): v for k, v in numbered.items()}
        read = {("train" if k == data.train_split else "test"): v for k, v in read.items()}
    if manifest is not None:
        train = read["train"]
        rows = select_rows(_row_hashes(train.raw_texts, numbered["train"].labels), manifest, source=train.where)
        numbered = {**numbered, "train": numbered["train"].take(rows)}
    return LoadedData(splits=numbered, label_names=tuple(names), source=source)


def load_ag_news(data_dir: Path | str | None, *, train_pool: str = "all") -> dict[str, TextSplit]:
    """AG News' {"train", "test"} with labels 0-3, from the hub (None) or a local folder, the train split
    narrowed to `train_pool` ("all", or the rows a manifest lists, in its order)."""
    return load_data(DataConfig(train_pool=train_pool), data_dir).splits


def train_row_hashes(data_dir: Path | str | None, data: DataConfig | None = None) -> tuple[str, list[str]]:
    """(where the train split was read, the manifest hash of each of its rows in order): what a manifest lists.
    AG News from `data_dir` (None: the hub); another `data.dataset` from where it names, each row hashed with
    its label's index among the dataset's label names, as `load_data` numbers them."""
    if data is None or data.dataset == AG_NEWS:
        train = (_load_hub(HUB_ID, SPLITS, _Columns()) if data_dir is None
                 else _load_folder(Path(data_dir), SPLITS, _Columns()))["train"]
        return train.where, _row_hashes(train.raw_texts, train.labels)
    read, declared, _ = _load_named(data)
    _, numbered = _number_labels(read, declared, train=data.train_split)
    train = read[data.train_split]
    return train.where, _row_hashes(train.raw_texts, numbered[data.train_split].labels)


def _row_hashes(raw_texts: Sequence[str], labels: Sequence[int]) -> list[str]:
    return [row_hash(text, label) for text, label in zip(raw_texts, labels, strict=True)]


def _load_named(data: DataConfig) -> tuple[dict[str, _Read], tuple[str, ...] | None, str]:
    """A non-AG News `data.dataset`: (its splits by their names, the hub's ClassLabel names if any, source)."""
    columns = _Columns(text=data.text_column, label=data.label_column, ag_news=False)
    splits = (data.train_split, data.test_split)
    path = Path(data.dataset).expanduser()
    if path.is_dir():
        return _load_folder(path, splits, columns), None, str(path)
    if path.is_file():
        if path.suffix.lower() not in BUILDERS:
            raise ChimeraError(f"data.dataset {path}: not a .csv, .jsonl, .json or .parquet file")
        return {data.train_split: _read_file(path, columns)}, None, str(path)
    if path.suffix.lower() in BUILDERS or data.dataset.startswith((".", "/", "~")) or os.sep + os.sep in data.dataset:
        raise ChimeraError(f"data.dataset {data.dataset}: no such file or folder")
    return _load_hub(data.dataset, splits, columns, with_names=True)


def _number_labels(read: dict[str, _Read], declared: tuple[str, ...] | None, *,
                   train: str) -> tuple[tuple[str, ...], dict[str, TextSplit]]:
    """Label names and each split with labels 0..K-1: the declared (ClassLabel) names, else the train split's
    distinct labels sorted (numerically when all are integers). A split's label outside them is refused."""
    if declared is not None:
        names = declared
        index = {value: value for value in range(len(names))}  # ClassLabel values are already the indices
    else:
        values = sorted(set(read[train].labels), key=lambda v: (0, int(v)) if _integer(v) else (1, str(v)))
        names = tuple(str(v) for v in values)
        index = {value: i for i, value in enumerate(values)}
    if len(names) < 2:
        raise ChimeraError(f"{read[train].where}: only one class ({', '.join(names) or 'none'}); a classifier "
                           "needs at least two labels")
    numbered = {}
    for split, part in read.items():
        labels = []
        for row, value in enumerate(part.labels):
            if value not in index:
                raise ChimeraError(f"{part.where}: {part.locate(row)}: label {value!r} is not one of "
                                   f"{'the dataset' if declared else 'the train split'}'s labels "
                                   f"({', '.join(names)})")
            labels.append(index[value])
        numbered[split] = part.split(labels)
    return names, numbered


def _integer(value: Any) -> bool:
    return isinstance(value, int) or (isinstance(value, str) and _INT_LABEL.fullmatch(value.strip()) is not None)


def _load_folder(folder: Path, splits: Sequence[str], columns: _Columns) -> dict[str, _Read]:
    if not folder.is_dir():
        raise ChimeraError(f"{folder}: data folder not found or not a folder; point --data-dir at a folder "
                           f"with train and test files, or leave it out to use the hub ({HUB_ID})")
    try:
        names = os.listdir(folder)
    except OSError as exc:
        raise ChimeraError(f"{folder}: cannot read the data folder ({exc.strerror}); "
                           "check its permissions") from None
    return {split: _read_file(_find_split_file(folder, names, split), columns) for split in splits}


def _load_hub(hub_id: str, splits: Sequence[str], columns: _Columns, *, with_names: bool = False):
    from datasets import ClassLabel, load_dataset

    try:
        data = load_dataset(hub_id)
    except Exception as exc:  # network, auth and hub errors come in many types; all mean "not reachable"
        hint = "pass --data-dir with local train/test files" if columns.ag_news else "check data.dataset"
        raise ChimeraError(f"hub {hub_id}: could not load ({_first_line(exc)}); {hint}") from None
    for split in splits:
        if split not in data:
            raise ChimeraError(f"hub {hub_id}: no split {split!r} (it has: {', '.join(data)}); "
                               "set data.train_split / data.test_split")
    for key in (columns.text, columns.label):
        if key not in data[splits[0]].column_names:
            raise ChimeraError(f"hub {hub_id}: no {key!r} column (found: {', '.join(data[splits[0]].column_names)}); "
                               "set data.text_column / data.label_column")
    read = {name: _to_split(f"hub {hub_id} [{name}]", zip(data[name][columns.text], data[name][columns.label],
                                                          strict=True), columns, _row_locator)
            for name in splits}
    if not with_names:
        return read
    feature = data[splits[0]].features[columns.label]
    names = tuple(feature.names) if isinstance(feature, ClassLabel) else None
    return read, names, f"hub:{hub_id}"


def _find_split_file(folder: Path, names: list[str], split: str) -> Path:
    found = sorted(n for n in names if Path(n).stem == split and Path(n).suffix.lower() in BUILDERS)
    if not found:
        raise ChimeraError(f"{folder}: no {split} file; expected {split}.csv, {split}.parquet, {split}.jsonl "
                           f"or {split}.json (found: {', '.join(sorted(names)) or 'nothing'})")
    if len(found) > 1:
        raise ChimeraError(f"{folder}: several {split} files ({', '.join(found)}); keep exactly one")
    return folder / found[0]


def _read_file(path: Path, columns: _Columns) -> _Read:
    builder = BUILDERS[path.suffix.lower()]
    if builder == "csv":
        return _read_csv(path, columns)
    if builder == "json" and _is_blank(path):  # `datasets` fails on these with a bare StopIteration
        raise ChimeraError(f"{path}: line 1: file is empty; expected one JSON object per line")
    locate = _row_locator if builder == "parquet" else _json_locator(path)
    rows = _rows(_stream(path, builder, {}), path, text=columns.text, label=columns.label)
    return _to_split(str(path), rows, columns, locate)


def _read_csv(path: Path, columns: _Columns) -> _Read:
    header = _sniff_header(path, columns)
    records = _CsvLines(path, skip_header=header is not None)
    if header is not None:
        text, label, names = header
        rows = _rows(_stream(path, "csv", {}, names), path, text=text, label=label, width=len(names),
                     records=records)
        return _to_split(str(path), rows, columns, records.where)
    options = {"column_names": ORIGINAL_COLUMNS}
    rows = _original_rows(_stream(path, "csv", options, ORIGINAL_COLUMNS), records)
    return _to_split(str(path), rows, columns, records.where, offset=-1, allowed=ORIGINAL_LABELS)


def _sniff_header(path: Path, columns: _Columns) -> tuple[str, str, list[str]] | None:
    """(text column, label column, all columns) of the header; None for AG News' headerless original layout."""
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
        with long_csv_fields():
            fields = next(csv.reader([line]))
    except csv.Error as exc:  # e.g. a bare carriage return inside an unquoted field
        raise ChimeraError(f"{path}: line 1: not a CSV row ({exc}); quote fields that contain line breaks") from None
    names = {f.strip().lower(): f for f in fields}
    text, label = columns.text.lower(), columns.label.lower()
    if text in names and label in names:
        return names[text], names[label], fields
    if columns.ag_news and len(fields) == 3:
        return None
    if not columns.ag_news:
        missing = columns.text if text not in names else columns.label
        raise ChimeraError(f"{path}: line 1: no {missing!r} column in the header (found: {', '.join(fields)}); "
                           "set data.text_column / data.label_column")
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
          records: _CsvLines | None = None) -> Iterator[tuple[Any, Any]]:
    index = 0
    for batch in batches:
        for key in (text, label):
            if key not in batch:
                raise ChimeraError(f"{path}: no {key!r} column (found: {', '.join(batch)}); "
                                   "set data.text_column / data.label_column (AG News' hub layout: text, label)")
        for value, target in zip(batch[text], batch[label], strict=True):
            if records is not None and target == "" and records.width(index) != width:
                raise ChimeraError(f"{path}: {records.where(index)}: expected {width} columns, "
                                   f"found {records.width(index)}")
            yield value, target
            index += 1


def _original_rows(batches: Iterator[dict[str, list]], records: _CsvLines) -> Iterator[tuple[str, Any]]:
    index = 0
    for batch in batches:
        for label, title, description in zip(*(batch[c] for c in ORIGINAL_COLUMNS), strict=True):
            if description == "" and records.width(index) != 3:  # a missing column reads as ""
                raise ChimeraError(f"{records.path}: {records.where(index)}: expected 3 columns "
                                   f"(class,title,description), found {records.width(index)}")
            yield f"{title} {description}", label
            index += 1


def _to_split(source: str, rows: Iterable[tuple[Any, Any]], columns: _Columns, locate: Callable[[int], str], *,
              offset: int = 0, allowed: range = HUB_LABELS) -> _Read:
    raw_texts: list[str] = []
    texts: list[str] = []
    labels: list[Any] = []
    span = f"{allowed.start}-{allowed.stop - 1}"
    clean = clean_text if columns.ag_news else _collapse_spaces
    for index, (raw_text, raw_label) in enumerate(rows):
        if columns.ag_news:
            label = _parse_label(raw_label)
            if label is None or label not in allowed:
                raise ChimeraError(f"{source}: {locate(index)}: {_label_problem(raw_label, label)}; "
                                   f"labels must be integers in {span}")
            label += offset
        else:
            label = _plain_label(raw_label)
            if label is None:
                raise ChimeraError(f"{source}: {locate(index)}: {_label_problem(raw_label, None, plain=True)}")
        if raw_text is not None and not isinstance(raw_text, str):
            raise ChimeraError(f"{source}: {locate(index)}: text must be a string, got {raw_text!r}"
                               + ("" if columns.ag_news else f" (is {columns.text!r} the text column?)"))
        text = clean(raw_text or "")
        if not text:
            raise ChimeraError(f"{source}: {locate(index)}: empty text; remove the row or fill in its text")
        raw_texts.append(raw_text)
        texts.append(text)
        labels.append(label)
    if not texts:
        raise ChimeraError(f"{source}: {locate(0)}: no data rows (header only or empty); "
                           "expected one row per example")
    return _Read(tuple(texts), tuple(raw_texts), tuple(labels), source, locate)


def _collapse_spaces(text: str) -> str:
    """Other datasets' text as given, up to runs of whitespace (AG News' escapes are its own)."""
    return " ".join(text.split())


def _plain_label(value: Any) -> str | int | None:
    """A label of another dataset as a comparable value: text stripped, integers as integers; None if unusable."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip():
        return value.strip()
    return None


def _label_problem(raw: Any, parsed: int | None, *, plain: bool = False) -> str:
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        return "missing label"
    if plain:
        return f"label {raw!r} is neither a string nor an integer"
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


class _CsvLines:
    """The CSV record locator of chimera.data.diagnose, loaded and scanned on first use (a problem row)."""

    def __init__(self, path: Path, *, skip_header: bool) -> None:
        self.path, self._skip, self._records = path, skip_header, None

    def _scan(self):
        if self._records is None:
            from chimera.data.diagnose import CsvRecords

            self._records = CsvRecords(self.path, skip_header=self._skip)
        return self._records

    def where(self, index: int) -> str:
        return self._scan().where(index)

    def width(self, index: int) -> int:
        return self._scan().width(index)


def _row_locator(index: int) -> str:
    return f"row {index + 1}"


def _is_blank(path: Path) -> bool:
    with _reading(path), path.open("rb") as handle:
        while chunk := handle.read(1 << 16):
            if chunk.strip():
                return False
    return True


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


def _json_locator(path: Path) -> Callable[[int], str]:
    def locate(index: int) -> str:
        from chimera.data.diagnose import json_locator  # a problem row: only then is the file scanned

        return json_locator(path)(index)
    return locate


def _diagnose(path: Path, builder: str, exc: BaseException) -> str:
    from chimera.data.diagnose import diagnose

    return diagnose(path, builder, exc)


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__
