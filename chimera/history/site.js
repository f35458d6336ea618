// The history site's charts (chimera/history/site.py inlines this file): every chart in the page's JSON
// (<script id="history-data">) becomes an SVG in its <figure>, one group per series (its data-series
// attribute names the machine and precision): a line through the per-commit means and one linked circle
// per file. Text goes in through textContent and setAttribute only, never as markup.
"use strict";
(function () {
  const NS = "http://www.w3.org/2000/svg";
  const W = 760, H = 290, LEFT = 64, RIGHT = 80, TOP = 14, BOTTOM = 78, NUDGE = 5;

  function el(name, attrs, parent, text) {
    const node = document.createElementNS(NS, name);
    for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, String(value));
    if (text !== undefined) node.textContent = text;
    if (parent) parent.appendChild(node);
    return node;
  }

  function draw(chart, commits) {
    const values = chart.series.flatMap((s) => s.marks.map((m) => m.y));
    let lo = Math.min(...values), hi = Math.max(...values);
    const pad = hi > lo ? (hi - lo) * 0.08 : Math.abs(lo) * 0.1 || 1;
    lo -= pad;
    hi += pad;
    const span = commits.length > 1 ? (W - LEFT - RIGHT) / (commits.length - 1) : 0;
    const x = (i) => (commits.length > 1 ? LEFT + i * span : (W + LEFT - RIGHT) / 2);
    const y = (v) => TOP + ((hi - v) * (H - TOP - BOTTOM)) / (hi - lo);
    const svg = el("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": chart.title });
    const digits = Math.min(8, Math.max(0, Math.ceil(-Math.log10((hi - lo) / 4)) + 1));  // ticks that differ
    for (let k = 0; k <= 4; k++) {
      const v = lo + ((hi - lo) * k) / 4;
      el("line", { x1: LEFT, x2: W - RIGHT, y1: y(v), y2: y(v), class: "grid" }, svg);
      el("text", { x: LEFT - 6, y: y(v) + 4, class: "tick", "text-anchor": "end" }, svg, v.toFixed(digits));
    }
    commits.forEach((commit, i) => {
      const label = el("text", { x: x(i), y: H - BOTTOM + 16, class: "tick",
                                 transform: `rotate(30 ${x(i)} ${H - BOTTOM + 16})` }, svg, commit.label);
      el("title", {}, label, `${commit.id} ${commit.when || ""}`);
    });
    chart.series.forEach((series, n) => {
      const dx = (n - (chart.series.length - 1) / 2) * NUDGE;  // series side by side, not on top of each other
      const g = el("g", { class: "series", "data-series": series.label, "data-chart": chart.key,
                          stroke: series.colour, fill: series.colour }, svg);
      el("polyline", { points: series.line.map(([i, v]) => `${x(i) + dx},${y(v)}`).join(" "), fill: "none" }, g);
      for (const mark of series.marks) {
        const link = el("a", { href: mark.href }, g);
        el("title", {}, el("circle", { cx: x(mark.x) + dx, cy: y(mark.y), r: 4 }, link), mark.title);
      }
    });
    document.getElementById(chart.id).prepend(svg);
  }

  const data = JSON.parse(document.getElementById("history-data").textContent);
  for (const section of data.sections) {
    for (const chart of section.charts) draw(chart, section.commits);
  }
})();
