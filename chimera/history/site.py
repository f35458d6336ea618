"""`chimera history site OUT/`: the store as a static HTML site that works offline (opened as file://, no network).

    chimera history site history-site/ --store results/history.sqlite

index.html lists the cells; one page per cell draws, per profile, its figures over commits (chimera/history/
site_data.py), one series per (machine, precision), each mark a link to the file it came from. The charts are
inline SVG drawn by site.js (inlined) from a JSON blob in the page; a table under them holds the same numbers for
a reader without JavaScript. Every text from the store is escaped; a Content-Security-Policy lets the page load
nothing at all, so an offline page cannot quietly depend on the network.
"""

from __future__ import annotations

import html
import json
import os
import re
from pathlib import Path
from urllib.parse import quote

from chimera.errors import ChimeraError
from chimera.fileio import atomic_write_text
from chimera.history.site_data import Chart, Section, line, sections
from chimera.history.store import History

SCRIPT = Path(__file__).with_name("site.js")
PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b", "#7f7f7f", "#e377c2", "#17becf")
POLICY = "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'"
STYLE = """
body { font: 14px/1.45 system-ui, sans-serif; margin: 2em auto; max-width: 62em; padding: 0 1em; color: #222; }
figure.chart { margin: 1.2em 0; } figure.chart svg { width: 100%; height: auto; }
.grid { stroke: #ddd; } .tick { font-size: 11px; fill: #555; stroke: none; }
g.series polyline { stroke-width: 1.6; } g.series circle { stroke: none; }
.absent { color: #666; font-style: italic; } .note { color: #666; font-size: 12px; }
.legend span { display: inline-block; width: 0.9em; height: 0.9em; margin: 0 0.3em 0 1em; vertical-align: -0.1em; }
table { border-collapse: collapse; font-size: 12px; } td, th { padding: 0.15em 0.6em; border-bottom: 1px solid #eee; }
"""


def write_site(history: History, out: Path) -> list[Path]:
    """index.html and one page per cell under `out`; the pages written, index first."""
    pages = sections(history)
    if not pages:
        raise ChimeraError("the history store holds no train-step benchmark or run record of any cell yet; add "
                           "some with chimera history add")
    names = page_names(list(pages))
    out.mkdir(parents=True, exist_ok=True)
    written = [out / "index.html"]
    atomic_write_text(written[0], index_page(pages, names))
    for cell, parts in pages.items():
        written.append(out / names[cell])
        atomic_write_text(written[-1], cell_page(cell, parts, out))
    return written


def page_names(cells: list[str]) -> dict[str, str]:
    """cell -> its page's file name: the cell's name made safe ("fixed/dense" -> "fixed-dense.html"), unique."""
    names: dict[str, str] = {}
    for cell in cells:
        stem = re.sub(r"[^A-Za-z0-9_.-]+", "-", cell).strip("-.") or "cell"
        name, n = f"{stem}.html", 1
        while name in names.values() or name == "index.html":
            n += 1
            name = f"{stem}-{n}.html"
        names[cell] = name
    return names


def _page(title: str, body: str) -> str:
    return (f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
            f'<meta http-equiv="Content-Security-Policy" content="{POLICY}">\n<title>{html.escape(title)}</title>\n'
            f"<style>{STYLE}</style>\n</head>\n<body>\n{body}\n</body>\n</html>\n")


def index_page(pages: dict[str, tuple[Section, ...]], names: dict[str, str]) -> str:
    items = []
    for cell, parts in pages.items():
        machines = sorted({s.machine for part in parts for chart in part.charts for s in chart.series})
        items.append(f'<li><a href="{html.escape(quote(names[cell]))}">{html.escape(cell)}</a>: profile '
                     f"{html.escape(', '.join(p.profile for p in parts))}; "
                     f"{max(len(p.commits) for p in parts)} commit(s); {html.escape('; '.join(machines) or '-')}</li>")
    return _page("Chimera Bench results history",
                 "<h1>Results history</h1>\n<p>Per cell: normalised step time, MFU, time to target and test accuracy "
                 "over commits, one series per machine and precision (<code>chimera history site</code>).</p>\n"
                 f"<ul>\n{chr(10).join(items)}\n</ul>")


def href(path: str, out: Path) -> str:
    """A link from a page in `out` to a file the store names (a relative one: from the current folder)."""
    target = Path(path).resolve()
    try:
        return quote(Path(os.path.relpath(target, out.resolve())).as_posix())
    except ValueError:  # another drive (Windows): no relative path exists
        return target.as_uri()


def cell_page(cell: str, parts: tuple[Section, ...], out: Path) -> str:
    body = ['<p><a href="index.html">all cells</a></p>', f"<h1>{html.escape(cell)}</h1>"]
    data = []
    for s, section in enumerate(parts):
        labels = sorted({series.label for chart in section.charts for series in chart.series})
        colour = {label: PALETTE[i % len(PALETTE)] for i, label in enumerate(labels)}
        body.append(f"<h2>profile {html.escape(section.profile)}</h2>")
        body.append('<p class="legend">' + "".join(f'<span style="background:{colour[label]}"></span>'
                                                   f"{html.escape(label)}" for label in labels) + "</p>")
        charts = []
        for c, chart in enumerate(section.charts):
            body.append(f"<h3>{html.escape(chart.title)}</h3>")
            if chart.absent:
                body.append(f'<p class="absent">{html.escape(chart.absent)}</p>')
                continue
            chart_id = f"chart-{s}-{c}"
            note = f'<p class="note">{html.escape(chart.note)}</p>' if chart.note else ""
            body.append(f'<figure class="chart" id="{chart_id}">{note}</figure>')
            charts.append(_chart_data(chart_id, chart, section, colour, out))
        body.append(_table(section, out))
        data.append({"commits": [{"id": c.id, "label": c.label, "when": c.when} for c in section.commits],
                     "charts": charts})
    blob = json.dumps({"sections": data}, ensure_ascii=False)
    # JSON inside <script>: no "<" may close the element early; \u003c reads back as the same string.
    blob = blob.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    body.append(f'<script type="application/json" id="history-data">{blob}</script>')
    body.append(f"<script>\n{SCRIPT.read_text(encoding='utf-8')}</script>")
    return _page(f"{cell}: results history", "\n".join(body))


def _chart_data(chart_id: str, chart: Chart, section: Section, colour: dict[str, str], out: Path) -> dict:
    rank = {c.id: i for i, c in enumerate(section.commits)}
    label = {c.id: c.label for c in section.commits}
    return {"id": chart_id, "key": chart.key, "title": chart.title, "series": [
        {"label": series.label, "colour": colour[series.label], "line": line(series, rank),
         "marks": [{"x": rank[m.commit], "y": m.value, "href": href(m.path, out),
                    "title": f"{label[m.commit]} · {series.label} · {m.note}: {m.value:.4g} ({m.path})"}
                   for m in series.marks]} for series in chart.series]}


def _table(section: Section, out: Path) -> str:
    """Every mark of the section as a row: the numbers without JavaScript."""
    label = {c.id: c.label for c in section.commits}
    rows = [f"<tr><td>{html.escape(label[m.commit])}</td><td>{html.escape(series.label)}</td>"
            f"<td>{html.escape(chart.title.split(' (')[0])}</td><td>{m.value:.4g}</td>"
            f'<td><a href="{html.escape(href(m.path, out))}">{html.escape(m.note)}</a></td></tr>'
            for chart in section.charts for series in chart.series for m in series.marks]
    return ("<details><summary>the numbers</summary><table><tr><th>commit</th><th>machine · precision</th>"
            f"<th>figure</th><th>value</th><th>file</th></tr>{''.join(rows)}</table></details>")
