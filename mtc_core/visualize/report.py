"""A report to keep: one self-contained HTML file (inline CSS, inline SVG charts, PNG images as data: URIs), which opens
offline in any browser and loads nothing: no script, no stylesheet, font or image from anywhere, and a
Content-Security-Policy that forbids every fetch but data: images, so that nothing a run's files hold can reach out.

This module draws; what goes into a run's report (which numbers, formatted as the pages format them) is
`mtc_core.evaluation.run_report`. Every string that reaches the page passes through `html.escape` here: the helpers
below take plain text (a run's name, a message, a table cell) and escape it; only the fragments they return, and the
SVG they draw, are inserted as markup.
"""

from __future__ import annotations

import base64
import math
from dataclasses import dataclass
from html import escape

from mtc_core.visualize.figures import MEAN_COLOUR, SAMPLED_COLOUR
from mtc_core.visualize.svg_charts import ticks

CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"  # no fetch at all but data: images and this page's CSS
STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; max-width: 1100px; margin: 2em auto; padding: 0 1em;
       color: #222; line-height: 1.45; }
h1 { margin-bottom: 0.2em; } h2 { border-bottom: 1px solid #ddd; padding-bottom: 0.2em; margin-top: 1.8em; }
table { border-collapse: collapse; margin: 0.6em 0 1em; font-size: 0.92em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: left; vertical-align: top; }
th { background: #f3f3f3; } td.num { font-variant-numeric: tabular-nums; }
caption { caption-side: top; text-align: left; font-weight: 600; padding-bottom: 0.3em; }
.note { background: #fff8e1; border-left: 4px solid #f0b400; padding: 0.5em 0.8em; }
.muted { color: #666; font-size: 0.9em; } pre { white-space: pre-wrap; word-break: break-all; background: #f6f6f6; padding: 0.5em; }
figure { margin: 0.8em 0; } figcaption { color: #555; font-size: 0.9em; } svg { max-width: 100%; height: auto; }
img { max-width: 100%; image-rendering: pixelated; }
"""


@dataclass(frozen=True)
class Section:
    """One part of the report: a heading (plain text) and its body (markup built with this module's helpers)."""

    title: str
    body: str
    anchor: str


def paragraph(text: str, cls: str | None = None) -> str:
    return f"<p{f' class={_attr(cls)}' if cls else ''}>{escape(text)}</p>"


def preformatted(text: str) -> str:
    return f"<pre>{escape(text)}</pre>"


def table(columns: list[str], rows: list[list], *, caption: str | None = None, table_id: str | None = None) -> str:
    """A table of plain-text cells (numbers are written as given: format them first)."""
    head = "".join(f"<th>{escape(str(c))}</th>" for c in columns)
    body = "".join("<tr>" + "".join(_cell(v) for v in row) + "</tr>" for row in rows)
    ident = f" id={_attr(table_id)}" if table_id else ""
    title = f"<caption>{escape(caption)}</caption>" if caption else ""
    return f"<table{ident}>{title}<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _cell(value) -> str:
    number = isinstance(value, int | float) and not isinstance(value, bool)
    return f"<td class=\"num\">{escape(str(value))}</td>" if number else f"<td>{escape('' if value is None else str(value))}</td>"


def _attr(value: str) -> str:
    return '"' + escape(value, quote=True) + '"'


def png_figure(png: bytes, alt: str, caption: str | None = None) -> str:
    """A PNG embedded as a data: URI, with its caption."""
    uri = "data:image/png;base64," + base64.b64encode(png).decode("ascii")
    return f"<figure><img src={_attr(uri)} alt={_attr(alt)}>{_caption(caption)}</figure>"


def svg_figure(svg: str, caption: str | None = None) -> str:
    """An SVG drawn by this module (its text already escaped), inline."""
    return f"<figure>{svg}{_caption(caption)}</figure>"


def _caption(text: str | None) -> str:
    return f"<figcaption>{escape(text)}</figcaption>" if text else ""


def document(title: str, sections: list[Section], subtitle: str = "") -> str:
    """The whole HTML file: a title, a table of contents and the sections, with the style and the policy inline."""
    toc = "".join(f"<li><a href={_attr('#' + s.anchor)}>{escape(s.title)}</a></li>" for s in sections)
    parts = [f"<section id={_attr(s.anchor)}><h2>{escape(s.title)}</h2>{s.body}</section>" for s in sections]
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<meta http-equiv=\"Content-Security-Policy\" content={_attr(CSP)}>"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            f"<title>{escape(title)}</title><style>{STYLE}</style></head>\n<body>"
            f"<h1>{escape(title)}</h1>" + (paragraph(subtitle, "muted") if subtitle else "")
            + f"<nav><ul>{toc}</ul></nav>\n" + "\n".join(parts) + "\n</body></html>\n")


# ---- charts: small static SVGs, the numbers as given (no smoothing), each series' points as data- attributes ----

W, H, LEFT, RIGHT, TOP, BOTTOM = 350, 250, 58, 24, 28, 54


def _axis_ticks(low: float, high: float, log: bool) -> list[float]:
    if log:
        return [10.0**k for k in range(math.floor(math.log10(low)), math.ceil(math.log10(high)) + 1)]
    low = min(low, 0.0)  # a linear axis starts at 0 (or below it)
    return ticks(low, max(high, low + 1e-3, 1e-3))


def line_panel(title: str, series: list[tuple[str, str, list[float], list[float | None]]], *, log: bool = False,
               x_label: str = "step") -> str:
    """One chart of lines: series are (name, colour, xs, ys); a None y leaves a gap. A log scale drops values <= 0."""
    points = [(x, y) for _, _, xs, ys in series for x, y in zip(xs, ys, strict=True)
              if isinstance(y, int | float) and math.isfinite(y) and (y > 0 or not log)]
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" viewBox="0 0 {W} {H}" width="{W}" font-family="sans-serif" '
           f'font-size="11" role="img" aria-label={_attr(title)}>',
           f'<text x="{LEFT}" y="14" font-weight="bold" font-size="12">{escape(title)}</text>']
    if not points:
        out += ['<text x="60" y="120" fill="#666">no values recorded</text>', "</svg>"]
        return "".join(out)
    xs_all, ys_all = [p[0] for p in points], [p[1] for p in points]
    x_ticks = _axis_ticks(min(xs_all), max(xs_all), False)
    y_ticks = _axis_ticks(min(ys_all), max(ys_all), log)
    fx = _scale(x_ticks[0], x_ticks[-1], LEFT, W - RIGHT, False)
    fy = _scale(y_ticks[0], y_ticks[-1], H - BOTTOM, TOP, log)
    for t in y_ticks:
        out.append(f'<line x1="{LEFT}" x2="{W - RIGHT}" y1="{fy(t):.1f}" y2="{fy(t):.1f}" stroke="#000" stroke-opacity="0.12"/>'
                   f'<text x="{LEFT - 4}" y="{fy(t) + 4:.1f}" text-anchor="end">{t:g}</text>')
    for t in x_ticks:
        out.append(f'<text x="{fx(t):.1f}" y="{H - BOTTOM + 14}" text-anchor="middle">{t:g}</text>')
    out.append(f'<text x="{(LEFT + W - RIGHT) / 2}" y="{H - BOTTOM + 28}" text-anchor="middle">{escape(x_label)}</text>')
    for k, (name, colour, xs, ys) in enumerate(series):
        path, pen = [], "M"
        for x, y in zip(xs, ys, strict=True):
            if not (isinstance(y, int | float) and math.isfinite(y) and (y > 0 or not log)):
                pen = "M"
                continue
            path.append(f"{pen}{fx(x):.1f},{fy(y):.1f}")
            pen = "L"
        out.append(f'<path class="series" d="{"".join(path)}" fill="none" stroke={_attr(colour)} stroke-width="1.6" '
                   f'data-series={_attr(name)} data-points="{sum(1 for y in ys if y is not None)}"><title>{escape(name)}</title></path>')
        lx = LEFT + 4 + 160 * (k % 2)
        ly = H - 10 - 13 * (1 - k // 2) if len(series) > 2 else H - 10
        out.append(f'<rect x="{lx}" y="{ly - 8}" width="10" height="3" fill={_attr(colour)}/>'
                   f'<text x="{lx + 14}" y="{ly}">{escape(name)}</text>')
    out.append("</svg>")
    return "".join(out)


def _scale(low: float, high: float, a: float, b: float, log: bool):
    if log:
        low, high = math.log10(low), math.log10(high)
    span = (high - low) or 1.0
    return lambda v: a + ((math.log10(v) if log else v) - low) / span * (b - a)


def activity_chart(var_mu: list[float], sigma2: list[float], threshold: float, active: set[int]) -> str:
    """Per latent, Var(mu_j) and E[sigma_j^2] on a log scale, with the activity cut as a dashed line; active latents'
    labels in bold."""
    d = len(var_mu)
    values = [v for v in (*var_mu, *sigma2, threshold) if isinstance(v, int | float) and v > 0 and math.isfinite(v)]
    if not d or not values:
        return paragraph("No per-latent variances recorded.", "muted")
    width = max(460, LEFT + 30 * d + RIGHT)
    y_ticks = _axis_ticks(min(values), max(values), True)
    fy = _scale(y_ticks[0], y_ticks[-1], H - BOTTOM, TOP, True)
    base = H - BOTTOM
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" class="chart activity" viewBox="0 0 {width} {H}" width="{width}" '
           'font-family="sans-serif" font-size="11" role="img" aria-label="Var(mu_j) and E sigma_j^2 per latent">',
           f'<text x="{LEFT}" y="14" font-weight="bold" font-size="12">Var(mu_j) and E[sigma_j^2] per latent (log scale)</text>']
    for t in y_ticks:
        out.append(f'<line x1="{LEFT}" x2="{width - RIGHT}" y1="{fy(t):.1f}" y2="{fy(t):.1f}" stroke="#000" stroke-opacity="0.12"/>'
                   f'<text x="{LEFT - 4}" y="{fy(t) + 4:.1f}" text-anchor="end">{t:g}</text>')
    for j in range(d):
        x = LEFT + 8 + 30 * j
        for k, (name, colour, v) in enumerate((("Var(mu_j)", MEAN_COLOUR, var_mu[j]), ("E sigma_j^2", SAMPLED_COLOUR, sigma2[j]))):
            if isinstance(v, int | float) and v > 0 and math.isfinite(v):
                top = min(fy(v), base)
                out.append(f'<rect class="bar" x="{x + 11 * k}" y="{top:.1f}" width="10" height="{base - top:.1f}" fill="{colour}" '
                           f'data-latent="{j}" data-series="{name}" data-value="{v!r}"><title>z{j}: {name} = {v:.4g}</title></rect>')
        weight = "bold" if j in active else "normal"
        out.append(f'<text x="{x + 10}" y="{base + 14}" text-anchor="middle" font-weight="{weight}">z{j}</text>')
    y = fy(threshold)
    out.append(f'<line x1="{LEFT}" x2="{width - RIGHT}" y1="{y:.1f}" y2="{y:.1f}" stroke="#000" stroke-dasharray="5,3"/>'
               f'<text x="{width - RIGHT}" y="{y - 4:.1f}" text-anchor="end">cut {threshold:g}</text>')
    out.append(f'<rect x="{LEFT}" y="{H - 18}" width="10" height="10" fill="{MEAN_COLOUR}"/><text x="{LEFT + 14}" y="{H - 9}">'
               f'Var(mu_j) over the data</text><rect x="{LEFT + 170}" y="{H - 18}" width="10" height="10" fill="{SAMPLED_COLOUR}"/>'
               f'<text x="{LEFT + 184}" y="{H - 9}">E[sigma_j^2], the posterior variance</text></svg>')
    return "".join(out)
