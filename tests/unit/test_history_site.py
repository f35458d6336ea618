"""`chimera history export` writes every column the store holds, as CSV or JSON, the same twice; `chimera history
site` draws a store of two machines as offline pages, checked in a real headless Chromium: every series of both
machines is in the rendered DOM and the page logs nothing to the console (a page that throws is caught)."""

from __future__ import annotations

import csv
import io
import json
import os
import re
import shutil
import sqlite3
import subprocess
from contextlib import closing
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote

import pytest

from chimera import cli
from tests.unit.test_history import COMMIT_A, COMMIT_B, NORMS_A, NORMS_B, TIME_A, TIME_B, write_results

MACHINE_A, MACHINE_B = "AMD EPYC", 'Xeon "<i>&</i>"'  # B's name is markup: it must arrive as text
BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
CONSOLE = re.compile(r"CONSOLE|Uncaught")  # how Chromium's --enable-logging=stderr prints what a page logs


def history(*args: str, capsys) -> tuple[int, str, str]:
    code = cli.main(["history", *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def with_mfu(root: Path, mfu: float) -> None:
    """Give root's benchmark file an extra_info.mfu on every train step, as bench/harness.py records it."""
    path = root / "bench" / "ci.json"
    data = json.loads(path.read_text())
    for entry in data["benchmarks"]:
        if entry["group"] == "train-step":
            entry["extra_info"]["mfu"] = mfu
    path.write_text(json.dumps(data))


@pytest.fixture
def two_machines(tmp_path, capsys):
    """Commits A and B on machine A (its benchmark files with an MFU), commit B on machine B (without); two seeds
    of two cells each: the store and its files."""
    a, records_a = write_results(tmp_path / "a", COMMIT_A, TIME_A, NORMS_A, device_name=MACHINE_A)
    b, records_b = write_results(tmp_path / "b", COMMIT_B, TIME_B, NORMS_B, device_name=MACHINE_A)
    c, records_c = write_results(tmp_path / "c", COMMIT_B, TIME_B, NORMS_B, device_name=MACHINE_B)
    with_mfu(a, 0.21)
    with_mfu(b, 0.2)
    store = tmp_path / "history.sqlite"
    assert history("add", str(a), str(b), str(c), "--store", str(store), capsys=capsys)[0] == 0
    return store, [*records_a, *records_b, *records_c]


def store_columns(store: Path) -> set[str]:
    with closing(sqlite3.connect(store)) as db:
        return {row[1] for table in ("files", "runs", "benchmarks")
                for row in db.execute(f"PRAGMA table_info({table})")} - {"file"}


def test_export_json_has_one_row_per_record_and_benchmark_with_every_store_column(two_machines, capsys):
    store, records = two_machines
    code, out, _ = history("export", "--format", "json", "--store", str(store), capsys=capsys)
    rows = json.loads(out)
    assert code == 0 and {key for row in rows for key in row} == store_columns(store)
    runs = [r for r in rows if r["kind"] == "record"]
    benchmarks = [r for r in rows if r["kind"] == "bench"]
    assert len(runs) == len(records) and len(benchmarks) == 3 * len(NORMS_A)  # a train step per cell and file
    assert sorted((r["cell"], r["seed"], r["val_loss"], r["machine_label"]) for r in runs) == sorted(
        (rec.cell, rec.seed, rec.final_metrics.val_loss, f"cpu: {rec.env.device_name}") for rec in records)
    assert {r["name"] for r in benchmarks} == {f"test_train_step[fp32-{cell}]" for cell in NORMS_A}
    assert all(r["median_s"] is None and r["run_id"] for r in runs)  # a record has no benchmark columns
    with closing(sqlite3.connect(store)) as db:  # the body is the file's text, as stored
        assert {r["sha256"]: r["body"] for r in rows} == dict(db.execute("SELECT sha256, body FROM files"))


def test_export_csv_holds_the_same_rows_as_json_and_two_exports_are_identical(two_machines, capsys, tmp_path):
    store, _ = two_machines
    as_json = json.loads(history("export", "--format", "json", "--store", str(store), capsys=capsys)[1])
    out = tmp_path / "history.csv"
    assert history("export", "--store", str(store), "--format", "csv", "--out", str(out), capsys=capsys)[:2] == (0, "")
    as_csv = list(csv.DictReader(io.StringIO(out.read_text(), newline="")))
    assert as_csv == [{k: "" if v is None else str(v) for k, v in row.items()} for row in as_json]
    assert history("export", "--store", str(store), "--format", "csv", capsys=capsys)[1] == out.read_text()


def test_export_of_a_version_1_store_names_its_train_loss_column_clean_train_loss(two_machines, capsys):
    store, _ = two_machines
    before = history("export", "--format", "json", "--store", str(store), capsys=capsys)[1]
    with closing(sqlite3.connect(store)) as db, db:  # the store as version 1 wrote it
        db.execute("ALTER TABLE runs RENAME COLUMN clean_train_loss TO train_loss")
        db.execute("UPDATE meta SET value = '1' WHERE key = 'schema_version'")
    assert history("export", "--format", "json", "--store", str(store), capsys=capsys)[1] == before


@pytest.mark.parametrize(("args", "message"), [
    (["--format", "xml"], "--format xml: expected csv or json"),
    (["--format", "csv", "--store", "{tmp}/none.sqlite"], "no history store yet"),
])
def test_export_refuses_a_bad_format_or_a_missing_store_in_one_line(tmp_path, capsys, args, message):
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    code, out, err = history("export", *args, "--out", str(tmp_path / "x.csv"), capsys=capsys)
    assert code == 2 and out == "" and message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "x.csv").exists() and not (tmp_path / "none.sqlite").exists()


def page_data(page: Path) -> dict:
    """The JSON blob a cell page draws from."""
    blob = re.search(r'<script type="application/json" id="history-data">(.*?)</script>', page.read_text(), re.S)
    return json.loads(blob[1])


def test_site_has_an_index_of_cells_and_a_page_per_cell_loading_nothing(two_machines, tmp_path, capsys):
    store, _ = two_machines
    site = tmp_path / "site"
    code, out, _ = history("site", str(site), "--store", str(store), capsys=capsys)
    assert code == 0 and sorted(p.name for p in site.iterdir()) == ["fixed-dense.html", "fixed-moe.html", "index.html"]
    index = (site / "index.html").read_text()
    assert '<a href="fixed-dense.html">fixed/dense</a>' in index and '<a href="fixed-moe.html">fixed/moe</a>' in index
    for page in site.iterdir():
        text = page.read_text()
        assert "Content-Security-Policy" in text and "default-src 'none'" in text
        assert not re.search(r"<link|\ssrc=|@import|url\(", text)  # nothing to fetch, from the network or disk
        assert "<i>" not in text and "Xeon &quot;&lt;i&gt;&amp;&lt;/i&gt;&quot;" in text  # escaped, not markup


def test_each_mark_links_to_the_file_it_came_from(two_machines, tmp_path, capsys):
    store, records = two_machines
    site = tmp_path / "site"
    history("site", str(site), "--store", str(store), capsys=capsys)
    data = page_data(site / "fixed-dense.html")
    charts = {chart["key"]: chart for section in data["sections"] for chart in section["charts"]}
    linked = {(site / unquote(m["href"])).resolve() for chart in charts.values() for s in chart["series"]
              for m in s["marks"]}
    assert all(path.is_file() for path in linked)
    assert {p.name for p in linked} == {"record.json", "ci.json"}
    assert len([p for p in linked if p.name == "record.json"]) == 2 * 3  # two seeds, three (commit, machine)
    assert [s["label"] for s in charts["mfu"]["series"]] == [f"cpu: {MACHINE_A} · fp32"]  # only A's files have it
    assert [m["y"] for m in charts["mfu"]["series"][0]["marks"]] == [21.0, 20.0]


def test_a_store_without_mfu_says_so_on_the_page(tmp_path, capsys):
    root, _ = write_results(tmp_path / "a", COMMIT_A, TIME_A, {"fixed/dense": 2.0}, seeds=(0,))
    history("add", str(root), "--store", str(tmp_path / "h.sqlite"), capsys=capsys)
    history("site", str(tmp_path / "site"), "--store", str(tmp_path / "h.sqlite"), capsys=capsys)
    page = (tmp_path / "site" / "fixed-dense.html").read_text()
    assert "MFU: not in the store (this cell&#x27;s benchmark JSON records no extra_info.mfu)" in page
    assert "mfu" not in {c["key"] for s in page_data(tmp_path / "site" / "fixed-dense.html")["sections"]
                         for c in s["charts"]}


def test_site_of_a_missing_store_is_one_line_and_writes_nothing(tmp_path, capsys):
    code, _, err = history("site", str(tmp_path / "site"), "--store", str(tmp_path / "none.sqlite"), capsys=capsys)
    assert code == 2 and "no history store yet" in err and not (tmp_path / "site").exists()


# --- in a real browser -------------------------------------------------------------------------------------------

class _Series(HTMLParser):
    """(data-chart, data-series) of every element that has them, and every link inside a series."""

    def __init__(self) -> None:
        super().__init__()
        self.series: list[tuple[str, str]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        if "data-series" in found:
            self.series.append((found.get("data-chart"), found["data-series"]))


def browser() -> str:
    found = next((path for name in BROWSERS if (path := shutil.which(name))), None)
    if found is None:
        reason = f"no Chromium or Chrome executable on PATH ({', '.join(BROWSERS)}); apt-get install chromium"
        if os.environ.get("CHIMERA_REQUIRE_BROWSER") == "1":
            pytest.fail(f"{reason} (CHIMERA_REQUIRE_BROWSER=1)")
        pytest.skip(reason)
    return found


def render(page: Path, profile: Path) -> tuple[int, str, list[str]]:
    """(exit code, the DOM after its scripts ran, the console lines) of a page opened in headless Chromium."""
    done = subprocess.run([browser(), "--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run",
                           f"--user-data-dir={profile}", "--enable-logging=stderr", "--v=0", "--dump-dom",
                           page.resolve().as_uri()], capture_output=True, text=True, timeout=180)
    return done.returncode, done.stdout, [line for line in done.stderr.splitlines() if CONSOLE.search(line)]


def test_a_real_browser_draws_every_series_of_both_machines_without_a_console_error(two_machines, tmp_path, capsys):
    store, _ = two_machines
    site = tmp_path / "site"
    history("site", str(site), "--store", str(store), capsys=capsys)
    code, dom, console = render(site / "fixed-dense.html", tmp_path / "profile")
    assert code == 0 and console == []
    parser = _Series()
    parser.feed(dom)
    both = {f"cpu: {MACHINE_A} · fp32", f"cpu: {MACHINE_B} · fp32"}
    drawn: dict[str, set[str]] = {}
    for chart, series in parser.series:
        drawn.setdefault(chart, set()).add(series)
    assert drawn == {"step_norm": both, "mfu": {f"cpu: {MACHINE_A} · fp32"}, "test_acc": both,
                     "time_to_target:val_acc:0.75": both, "time_to_target:val_acc:0.8": both}
    assert len(parser.series) == sum(map(len, drawn.values()))  # one element per series of each chart
    assert dom.count("<circle") == 3 + 2 + 3 * 6  # a mark per file: 3 benchmark files (2 with MFU), 6 records


def test_the_console_check_catches_a_page_that_throws(two_machines, tmp_path, capsys):
    store, _ = two_machines
    site = tmp_path / "site"
    history("site", str(site), "--store", str(store), capsys=capsys)
    page = site / "fixed-dense.html"
    page.write_text(page.read_text().replace('"use strict";', '"use strict"; throw new Error("drawn nothing");', 1))
    code, dom, console = render(page, tmp_path / "profile")
    parser = _Series()
    parser.feed(dom)
    assert code == 0 and parser.series == []
    assert len(console) == 1 and "Uncaught Error: drawn nothing" in console[0]


REPO = Path(__file__).resolve().parents[2]
COMMITTED = ("docs/results/full", "docs/results/ci-seeds", "docs/results/bench/cpu.json",
             "docs/results/gpu-check/h200/bench.json")  # records of two machines, benchmarks of two


def test_a_site_of_the_committed_results_opens_in_a_browser_with_every_series_and_no_console_error(tmp_path, capsys):
    store, site = tmp_path / "history.sqlite", tmp_path / "site"
    assert history("add", *(str(REPO / path) for path in COMMITTED), "--store", str(store), capsys=capsys)[0] == 0
    rows = json.loads(history("export", "--format", "json", "--store", str(store), capsys=capsys)[1])
    expected = {f"{row['machine_label']} · {row['precision']}" for row in rows if row["cell"] == "fixed/dense"}
    assert len({label.partition(" · ")[0] for label in expected}) >= 2  # the committed results span two machines
    history("site", str(site), "--store", str(store), capsys=capsys)
    code, dom, console = render(site / "fixed-dense.html", tmp_path / "profile")
    assert code == 0 and console == []
    parser = _Series()
    parser.feed(dom)
    assert {series for _, series in parser.series} == expected  # every machine and precision drawn, no other
