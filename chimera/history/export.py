"""`chimera history export`: every row of the store as CSV or JSON, for a spreadsheet, pandas or another tool.

    chimera history export --format csv --out history.csv

Columns are the store's own (chimera/history/store.py `rows`): a file's columns (its text, `body`, included)
then its run's or its benchmark's, empty where the file's kind has none.
"""

from __future__ import annotations

import csv
import io
import json

from chimera.errors import ChimeraError

FORMATS = ("csv", "json")


def export_text(columns: list[str], rows: list[dict], fmt: str) -> str:
    """The rows as CSV (a header line, then one line per row; None is empty) or as a JSON list of objects."""
    if fmt == "json":
        return json.dumps(rows, indent=2, ensure_ascii=False) + "\n"
    if fmt == "csv":
        text = io.StringIO()
        writer = csv.DictWriter(text, fieldnames=columns, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        return text.getvalue()
    raise ChimeraError(f"--format {fmt}: expected {' or '.join(FORMATS)}")
