"""The story chart as a static SVG: the same numbers as `charts.tc_story`, drawn without plotly.js, so that the first
screen needs no chart library in the browser (Streamlit loads plotly.js, ~1.8 s on a 2-core machine, only when a page
first shows a plotly chart). Hover text is the SVG's own <title> per bar; the file downloads as it is, for a paper.

Each panel is a <g class="panel"> carrying its scale (data-zero: the x of 0 nats, data-px: pixels per nat) and each bar
its row, series and value as data- attributes, so a reader (or a test) can check the geometry against the numbers."""

from __future__ import annotations

import math
from html import escape

from mtc_core.visualize.charts import PART_COLOURS, extent, short_name, spread
from mtc_core.visualize.figures import MEAN_COLOUR, SAMPLED_COLOUR

WIDTH, ROW, TOP, FONT = 1000, 46, 40, 13
CODES = (("sampled", SAMPLED_COLOUR, "sampled codes z"), ("mean", MEAN_COLOUR, "mean codes mu(x)"))
PARTS = (("mean_between", "between active and passive, I(A; P)"), ("mean_active", "among active latents"),
         ("mean_passive", "among passive latents"))


def ticks(low: float, high: float) -> list[float]:
    """At most 6 round ticks (1, 2 or 5 x 10^k apart) covering [low, high], low <= 0 < high."""
    span = high - low
    step = next(s * 10 ** math.floor(math.log10(span / 5)) for s in (1, 2, 5, 10)
                if span / (s * 10 ** math.floor(math.log10(span / 5))) <= 5)
    first = math.floor(low / step + 1e-9) * step
    return [round(first + k * step, 12) for k in range(int(math.ceil((high - first) / step - 1e-9)) + 1)]


def wrap(label: str, width: int = 34) -> list[str]:
    """A row label on at most two lines: broken at the first ", " or " (" that leaves the first line <= width."""
    if len(label) <= width:
        return [label]
    cuts = [i for i in range(len(label)) if label.startswith((", ", " ("), i) and i <= width]
    cut = cuts[-1] if cuts else label.rfind(" ", 0, width + 1)
    if cut <= 0:
        return [label]
    return [label[:cut + (1 if label[cut] == "," else 0)], label[cut:].lstrip(", ").lstrip()]


class _Panel:
    def __init__(self, left: float, width: float, values: list[float]):
        self.ticks = ticks(min(0.0, *values), max(1e-3, *values))
        self.low, self.high = self.ticks[0], self.ticks[-1]
        self.left, self.width = left, width
        self.px = width / (self.high - self.low)

    def x(self, value: float) -> float:
        return self.left + (value - self.low) * self.px

    def open(self, index: int) -> str:
        return f'<g class="panel" data-panel="{index}" data-zero="{self.x(0.0):.3f}" data-px="{self.px:.6f}">'

    def axis(self, bottom: float) -> str:
        out = []
        for t in self.ticks:
            x = self.x(t)
            out.append(f'<line x1="{x:.2f}" x2="{x:.2f}" y1="{TOP}" y2="{bottom}" stroke="currentColor" stroke-opacity="0.15"/>')
            out.append(f'<text x="{x:.2f}" y="{bottom + 16}" text-anchor="middle" font-size="{FONT - 1}">{t:g}</text>')
        return "".join(out)


def _bar(panel: _Panel, y: float, height: float, start: float, value: float, colour: str, row: str, series: str,
         hover: str) -> str:
    x0, x1 = sorted((panel.x(start), panel.x(start + value)))
    return (f'<rect class="bar" x="{x0:.3f}" y="{y:.2f}" width="{x1 - x0:.3f}" height="{height}" fill="{colour}" '
            f'data-row="{escape(row)}" data-series="{escape(series)}" data-value="{value!r}"><title>{escape(hover)}</title></rect>')


def tc_story_svg(groups: list[dict], estimator: str = "gaussian") -> str:
    """Left: TC of the sampled and of the mean codes per configuration (bar: mean over seeds; whisker: sd over seeds, or
    one seed's 95% interval; ticks: the seeds). Right: the mean codes' Gaussian TC split into I(A; P), TC among the
    active and among the passive latents, stacked (they add up to the total exactly)."""
    suffix = "" if estimator == "gaussian" else "_knn"
    names = [short_name(g["label"], g["dataset"]) for g in groups]
    lines = [wrap(n) for n in names]
    label_w = 14 + 6.6 * max((len(line) for parts in lines for line in parts), default=10)
    plot_w = WIDTH - label_w - 40
    left_values = [v for g in groups for code, *_ in CODES for v in (*(extent(g[code + suffix]) or ()),
                                                                       *g[code + suffix]["per_seed"],
                                                                       g[code + suffix]["mean"] or 0.0)]
    right_values = [sum(max(g[key]["mean"] or 0.0, 0.0) for key, _ in PARTS) for g in groups]
    panels = (_Panel(label_w, plot_w * 0.55, left_values or [1.0]), _Panel(label_w + plot_w * 0.55 + 30, plot_w * 0.45 - 10,
                                                                            right_values or [1.0]))
    bottom = TOP + ROW * len(groups)
    legend_y = bottom + 44
    height = legend_y + 20
    estimate = "Gaussian" if estimator == "gaussian" else "kNN"
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" class="mtc-story" viewBox="0 0 {WIDTH} {height}" width="100%" '
           f'font-family="sans-serif" font-size="{FONT}" fill="currentColor" role="img" '
           f'aria-label="TC of the mean and of the sampled codes per model">',
           f'<text x="{panels[0].left}" y="18" font-weight="bold">TC of the codes ({estimate} estimate, nats)</text>',
           f'<text x="{panels[1].left}" y="18" font-weight="bold">Where the mean codes\' Gaussian TC lives (nats)</text>']
    for i, panel in enumerate(panels):
        out += [panel.open(i), panel.axis(bottom)]
        for row, (name, g) in enumerate(zip(names, groups, strict=True)):
            y = TOP + ROW * row
            if i == 0:
                for k, (code, colour, title) in enumerate(CODES):
                    value = g[code + suffix]
                    if value["mean"] is None:
                        continue
                    top = y + 6 + 16 * k
                    out.append(_bar(panel, top, 14, 0.0, value["mean"], colour, name, code,
                                    f"{g['label']}: {title}, {value['mean']:.3f}{spread(value)}"))
                    if (ends := extent(value)) is not None:
                        a, b = panel.x(ends[0]), panel.x(ends[1])
                        out.append(f'<path class="whisker" d="M{a:.3f},{top + 7}H{b:.3f}M{a:.3f},{top + 3}V{top + 11}'
                                   f'M{b:.3f},{top + 3}V{top + 11}" stroke="currentColor" fill="none" '
                                   f'data-row="{escape(name)}" data-series="{code}"/>')
                    if len(value["per_seed"]) > 1:
                        out += [f'<line class="seed" x1="{panel.x(s):.3f}" x2="{panel.x(s):.3f}" y1="{top}" y2="{top + 14}" '
                                f'stroke="black" stroke-width="1.5" data-row="{escape(name)}" data-series="{code}">'
                                f'<title>{escape(g["label"])}, seed {seed}: {title}, {s:.3f}</title></line>'
                                for seed, s in zip(g["seeds"], value["per_seed"], strict=True)]
            else:
                base = 0.0
                for key, title in PARTS:
                    value = g[key]
                    if value["mean"] is None:
                        continue
                    out.append(_bar(panel, y + 10, 22, base, value["mean"], PART_COLOURS[key], name, key,
                                    f"{g['label']}: mean codes, {title}, {value['mean']:.3f}{spread(value)}"))
                    base += value["mean"]
        out.append("</g>")
    for row, parts in enumerate(lines):
        first = TOP + ROW * row + 27 - 7.5 * (len(parts) - 1)
        out += [f'<text x="{label_w - 8}" y="{first + 15 * k}" text-anchor="end">{escape(line)}</text>' for k, line in enumerate(parts)]
    x = 10.0
    for colour, title in [(c, t) for _, c, t in CODES] + [(PART_COLOURS[k], t) for k, t in PARTS]:
        out.append(f'<rect x="{x}" y="{legend_y - 10}" width="12" height="12" fill="{colour}"/>'
                   f'<text x="{x + 17}" y="{legend_y}">{escape(title)}</text>')
        x += 17 + 7.0 * len(title) + 22
    out.append("</svg>")
    # one element per line, no blank line: Markdown reads it as one raw HTML block and leaves its text alone
    return "\n".join(out)

