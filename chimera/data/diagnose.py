"""Where a data file goes wrong: the line a reader error or a bad row is on, and what is wrong there.

Only an error path loads this module (chimera.data.dataset imports it when a file fails or a row is refused),
so a run whose data reads cleanly never does.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Callable
from pathlib import Path

from chimera.fileio import long_csv_fields


def json_locator(path: Path) -> Callable[[int], str]:
    def locate(index: int) -> str:
        with path.open(encoding="utf-8") as handle:
            if handle.read(64).lstrip().startswith("["):
                return f"record {index + 1}"
            handle.seek(0)
            lines = [n for n, line in enumerate(handle, start=1) if line.strip()]
        return f"line {lines[index]}" if index < len(lines) else f"line {len(lines) + 1}"
    return locate


def diagnose(path: Path, builder: str, exc: BaseException) -> str:
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
            where = CsvRecords(path, skip_header=False).where(int(match.group(1)))
            return f"{where}: a quoted field is never closed; close its quote or escape it as \"\""
    if builder == "json":
        bad = _first_bad_json_line(path)
        if bad:
            return bad
    return f"cannot read as {builder} ({first_line(exc)})"


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


class CsvRecords:
    """Start line and field count of each CSV record, scanned lazily with the stdlib reader."""

    def __init__(self, path: Path, *, skip_header: bool) -> None:
        self.path, self._skip = path, skip_header
        self._records: list[tuple[int, int]] | None = None
        self._lines = 0

    def _scan(self) -> list[tuple[int, int]]:
        if self._records is None:
            records, previous = [], 0
            with self.path.open(encoding="utf-8-sig", newline="") as handle, long_csv_fields():
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


def first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__
