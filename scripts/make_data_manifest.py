"""Write a train-pool manifest from a data folder: one content hash per train row, in the folder's order.

    python scripts/make_data_manifest.py "$CHIMERA_DATA_DIR" --name ag_news-train-subset
    python scripts/make_data_manifest.py "$CHIMERA_DATA_DIR" --name ag_news-train-subset --check
    python scripts/make_data_manifest.py news.csv --name news --as-dataset --text-column headline --label-column topic

The folder is read exactly as `chimera train --data-dir` reads it (either layout); each row becomes
chimera.data.subsets.row_hash of its hub text and label, so the manifest holds no text. With --as-dataset,
DATA is another dataset, read as `--set data.dataset=DATA` reads it (its columns by --text-column /
--label-column), each row hashed with its label's index; a run then selects it with
data.train_pool=manifest:NAME. `--check` writes
nothing and exits 1 when the committed manifest differs from what the folder gives.
Exit codes: 0 written (or unchanged), 1 --check found a difference, 2 bad input.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
from pathlib import Path

from chimera.config import AG_NEWS, DataConfig
from chimera.data.dataset import HUB_ID, train_row_hashes
from chimera.data.subsets import MANIFEST_DIR, format_manifest
from chimera.errors import ChimeraError


def manifest_text(data_dir: Path, name: str, data: DataConfig | None = None) -> str:
    """The manifest file the train split gives, its header naming the file and that file's sha256."""
    where, hashes = train_row_hashes(data_dir, data)
    train_file = Path(where)
    digest = hashlib.sha256(train_file.read_bytes()).hexdigest()
    source = f"hub {HUB_ID}, split train" if data is None or data.dataset == AG_NEWS else \
        f"{data.dataset}, split {data.train_split}"
    return format_manifest(name, source=source, hashes=hashes, made_from=f"{train_file.name} sha256 {digest}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data_dir", type=Path, help="folder with the train (and test) file, as for --data-dir")
    parser.add_argument("--name", required=True, help="the manifest's name, as data.train_pool=manifest:NAME says it")
    parser.add_argument("--out", type=Path, default=None, help=f"where to write (default {MANIFEST_DIR}/NAME.txt)")
    parser.add_argument("--check", action="store_true", help="compare with the existing file instead of writing")
    parser.add_argument("--as-dataset", action="store_true", help="data_dir is another dataset's file or folder, "
                        "read as data.dataset reads it (not AG News)")
    parser.add_argument("--text-column", default="text", help="its text column (data.text_column)")
    parser.add_argument("--label-column", default="label", help="its label column (data.label_column)")
    args = parser.parse_args(argv)
    out = args.out or MANIFEST_DIR / f"{args.name}.txt"
    try:
        data = None if not args.as_dataset else DataConfig(
            dataset=str(args.data_dir), text_column=args.text_column, label_column=args.label_column, train_pool="all")
        text = manifest_text(None if data else args.data_dir, args.name, data)
    except ChimeraError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    rows = sum(1 for line in text.splitlines() if not line.startswith("#"))
    if args.check:
        same = out.is_file() and out.read_text(encoding="utf-8").replace("\r\n", "\n") == text
        print(f"{out}: {'matches' if same else 'DIFFERS from'} {args.data_dir} ({rows} rows)")
        return 0 if same else 1
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text, encoding="utf-8", newline="\n")
    print(f"{out}: {rows} rows, {len(text.encode()):,} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
