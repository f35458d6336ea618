"""Results history: run records and benchmark JSON from many commits and machines in one SQLite file.

    chimera history add runs/ci bench/results/ci.json      # ingest (a no-op for a file already in)
    chimera history                                       # per cell: normalised step time and metrics by commit
    chimera history export --format csv --out history.csv # every row of the store
    chimera history site history-site/                    # offline HTML: one page of charts per cell

ingest (one file -> rows, pure) · store (the SQLite file) · trend (rows -> per-cell trends, judged by the
speed gate's and the loss bands' own functions) · command (the CLI) · figure (the report's drawing) · export
(rows as CSV or JSON) · site_data (what the site draws) · site (its HTML, with site.js inlined).
"""
