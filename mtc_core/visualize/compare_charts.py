"""Compare's scatter of configurations: aggregated rows from `services.run_tables.aggregate` -> a plotly figure in which
every configuration (a model and its distinguishing params, e.g. RTC-VAE with the Gaussian or the KDE penalty) has its
own colour, marker and legend entry, on log axes where the TCs span decades. Layout only: every number drawn is one
the rows carry; a TC at 0 (an estimate raised to 0, docs/design.md, "Reading a TC estimate") is drawn at the axis'
floor with an open marker and says so, never dropped."""

from __future__ import annotations

import math

import plotly.graph_objects as go

from mtc_core.models import FAMILY_COLOURS
from mtc_core.visualize.charts import extent, short_name, spread

SYMBOLS = ("circle", "diamond", "square", "triangle-up", "cross", "star", "pentagon", "hexagon")
SHADES = (0.0, 0.5, -0.4, 0.75, -0.6, 0.25, -0.2, 0.6)  # > 0 towards white, < 0 towards black
LOG_SPAN = 100.0  # log axes by default where the positive values span more than this factor (two decades)
OTHER_COLOUR = "#17becf"


def seeds_text(seeds: list) -> str:
    """"3 (0, 1, 2)": how many seeds and which (an unknown seed as "?")."""
    return f"{len(seeds)} ({', '.join('?' if s is None else str(s) for s in seeds)})"


def shade(colour: str, amount: float) -> str:
    """`colour` ("#rrggbb") mixed with white (amount > 0) or black (amount < 0) by |amount|."""
    rgb = [int(colour[i:i + 2], 16) for i in (1, 3, 5)]
    target = 255 if amount > 0 else 0
    return "#" + "".join(f"{round(c + (target - c) * abs(amount)):02x}" for c in rgb)


def configuration_styles(groups: list[dict]) -> dict[str, dict[str, str]]:
    """label -> {"colour", "symbol"}: the family's colour (MODELS metadata) for its first configuration, then lighter
    and darker shades of it, each with its own marker, in the order of `groups`."""
    seen: dict[str, int] = {}
    styles = {}
    for g in groups:
        k = seen.get(g["family"], 0)
        seen[g["family"]] = k + 1
        base = FAMILY_COLOURS.get(g["family"], OTHER_COLOUR)
        styles[g["label"]] = {"colour": shade(base, SHADES[k % len(SHADES)]), "symbol": SYMBOLS[k % len(SYMBOLS)]}
    return styles


def _values(groups: list[dict], estimator: str) -> list[float]:
    suffix = "" if estimator == "gaussian" else "_knn"
    return [v for g in groups for code in ("mean", "sampled") for v in (g[code + suffix]["mean"], *g[code + suffix]["per_seed"])
            if v is not None]


def log_advised(groups: list[dict], estimator: str = "gaussian") -> bool:
    """Whether the chart reads better on log axes: its positive values span more than LOG_SPAN."""
    positive = [v for v in _values(groups, estimator) if v > 0]
    return bool(positive) and max(positive) / min(positive) > LOG_SPAN


def floor_value(groups: list[dict], estimator: str = "gaussian") -> float:
    """Where a log axis draws a TC at 0: the power of ten at or below a third of the smallest positive value."""
    positive = [v for v in _values(groups, estimator) if v > 0] or [1.0]
    return 10.0 ** math.floor(math.log10(min(positive) / 3))


def at_zero(groups: list[dict], estimator: str = "gaussian") -> list[str]:
    """Labels of the configurations with a TC (mean over seeds, or a seed's) at or below 0: estimates raised to 0."""
    return [g["label"] for g in groups
            if any(v is not None and v <= 0 for code in ("mean", "sampled")
                   for v in (g[code + ("" if estimator == "gaussian" else "_knn")]["mean"],
                             *g[code + ("" if estimator == "gaussian" else "_knn")]["per_seed"]))]


def _error(value: dict, floor: float | None) -> dict:
    """The error bar of an aggregated value (`charts.extent`) around where the point is drawn; on a log axis its lower
    end stops at the floor."""
    ends = extent(value)
    if ends is None:
        return {"visible": False}
    at = _place(value["mean"], floor)
    low = ends[0] if floor is None else max(ends[0], floor)
    return {"type": "data", "symmetric": False, "array": [max(ends[1] - at, 0.0)], "arrayminus": [max(at - low, 0.0)], "visible": True}


def _place(v: float, floor: float | None) -> float:
    return v if floor is None or v > floor else floor


def _text(v: float) -> str:
    return "0 (estimate raised to 0: TC >= 0)" if v <= 0 else f"{v:.3f}"


def tc_scatter(groups: list[dict], estimator: str = "gaussian", per_seed: bool = False, log: bool | None = None) -> go.Figure:
    """Mean-code TC (y) against sampled-code TC (x), one point per configuration (mean over seeds, error bars sd over
    seeds, or one seed's 95% interval), each configuration its own colour, marker and legend entry, the family in the
    hover; per-seed points on request; the diagonal: no disparity. `log` (default `log_advised`): log axes, a TC at 0
    drawn at `floor_value` with an open marker."""
    suffix = "" if estimator == "gaussian" else "_knn"
    log = log_advised(groups, estimator) if log is None else log
    floor = floor_value(groups, estimator) if log else None
    styles = configuration_styles(groups)
    fig = go.Figure()
    top = 0.0
    for g in groups:
        x, y = g["sampled" + suffix], g["mean" + suffix]
        if x["mean"] is None or y["mean"] is None:
            continue
        name, style = short_name(g["label"], g["dataset"]), styles[g["label"]]
        zero = x["mean"] <= 0 or y["mean"] <= 0
        top = max(top, x["mean"], y["mean"], *x["per_seed"], *y["per_seed"])
        symbol = style["symbol"] + ("-open-dot" if zero and log else "")
        fig.add_trace(go.Scatter(
            x=[_place(x["mean"], floor)], y=[_place(y["mean"], floor)], mode="markers", name=name, legendgroup=g["label"],
            marker={"color": style["colour"], "symbol": symbol, "size": 12, "line": {"color": "white" if not zero else style["colour"], "width": 1}},
            error_x=_error(x, floor), error_y=_error(y, floor),
            hovertemplate=(f"<b>{g['label']}</b><br>{g['family']}<br>seeds: {seeds_text(g['seeds'])}<br>"
                           f"mean codes: {_text(y['mean'])}{spread(y)}<br>sampled codes: {_text(x['mean'])}{spread(x)}"
                           + (f"<br>drawn at the axis floor {floor:g}" if zero and log else "") + "<extra></extra>")))
        if per_seed and len(x["per_seed"]) > 1 and len(x["per_seed"]) == len(y["per_seed"]):
            fig.add_trace(go.Scatter(
                x=[_place(v, floor) for v in x["per_seed"]], y=[_place(v, floor) for v in y["per_seed"]], mode="markers",
                legendgroup=g["label"], showlegend=False, marker={"color": style["colour"], "size": 6, "symbol": "circle-open"},
                hovertemplate=[f"{g['label']}, seed {s}<br>mean {_text(b)}, sampled {_text(a)}<extra></extra>"
                               for s, a, b in zip(g["seeds"], x["per_seed"], y["per_seed"], strict=True)]))
    top = top * 1.08 or 1.0
    low = floor if log else 0.0
    fig.add_trace(go.Scatter(x=[low, top], y=[low, top], mode="lines", name="mean TC = sampled TC", line={"dash": "dot", "color": "gray"},
                             hoverinfo="skip"))
    label = "Gaussian" if estimator == "gaussian" else "kNN"
    axis = {"type": "log", "exponentformat": "power"} if log else {"rangemode": "tozero"}
    fig.update_layout(xaxis={**axis, "title": f"TC of the sampled codes ({label}, nats{', log scale' if log else ''})"},
                      yaxis={**axis, "title": f"TC of the mean codes ({label}, nats{', log scale' if log else ''})"},
                      height=560, margin={"t": 30, "b": 10}, legend={"title": "configuration (colour: model family)"})
    if floor is not None and at_zero(groups, estimator):
        fig.add_annotation(text=f"open dotted marker: a TC at 0 (estimate raised to 0), drawn at {floor:g}", xref="paper", yref="paper",
                           x=0, y=1.0, xanchor="left", yanchor="bottom", showarrow=False, font={"size": 11})
    return fig
