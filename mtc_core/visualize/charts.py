"""The app's charts over many models (the overview and Compare): aggregated rows from `services.run_tables.aggregate` -> plotly
figures. Layout only: every number drawn is one the rows carry. Labels live in legends and hover text, never as
text on the plot, so that many models do not overlap into an unreadable block."""

from __future__ import annotations

import re

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from mtc_core.data import DATASETS
from mtc_core.models import FAMILY_COLOURS
from mtc_core.visualize.figures import MEAN_COLOUR, SAMPLED_COLOUR, correlations

PART_COLOURS = {"mean_between": "#ff7f0e", "mean_active": "#7f7f7f", "mean_passive": "#c7c7c7"}  # not the codes' colours


def extent(value: dict) -> tuple[float, float] | None:
    """(low, high) of an aggregated value's error bar: mean ± sd over seeds, or for one seed its estimate's 95% interval
    (widened to hold the estimate: a percentile interval can sit beside it); None when there is neither."""
    if value["mean"] is None:
        return None
    if value["sd"] is not None:
        return value["mean"] - value["sd"], value["mean"] + value["sd"]
    if value["ci"] is not None:
        return min(value["ci"][0], value["mean"]), max(value["ci"][1], value["mean"])
    return None


def _error(value: dict) -> dict:
    """The plotly error bar of an aggregated value: its `extent` around the mean."""
    ends = extent(value)
    if ends is None:
        return {"visible": False}
    return {"type": "data", "symmetric": False, "array": [ends[1] - value["mean"]], "arrayminus": [value["mean"] - ends[0]],
            "visible": True}


def spread(value: dict) -> str:
    """The spread of an aggregated value for hover text: sd over seeds, or one seed's 95% interval."""
    if value["sd"] is not None:
        return f" ± {value['sd']:.3f} (sd over {len(value['per_seed'])} seeds)"
    if value["ci"] is not None:
        return f" [{value['ci'][0]:.3f}, {value['ci'][1]:.3f}] (one seed: 95% interval)"
    return ""


def short_name(label: str, dataset: str | None) -> str:
    """A configuration label without its dataset (the chart is about one dataset)."""
    for name in {dataset or "", *DATASETS} - {""}:
        label = re.sub(rf",\s*{re.escape(name)}(?=,|$)", "", label, flags=re.IGNORECASE)  # "..., Shapes3D" for shapes3d
    return label


def tc_story(groups: list[dict], estimator: str = "gaussian") -> go.Figure:
    """Left: TC of the mean codes against TC of the sampled codes per configuration (mean over seeds, error bars sd, a
    dot per seed). Right: where the mean codes' Gaussian TC lives: between active and passive latents, among the active,
    among the passive (stacked; they add up to the total exactly)."""
    suffix = "" if estimator == "gaussian" else "_knn"
    names = [short_name(g["label"], g["dataset"]) for g in groups]
    fig = make_subplots(rows=1, cols=2, shared_yaxes=True, column_widths=[0.55, 0.45], horizontal_spacing=0.03,
                        subplot_titles=(f"TC of the codes ({'Gaussian' if estimator == 'gaussian' else 'kNN'} estimate, nats)",
                                        "Where the mean codes' Gaussian TC lives (nats)"))
    for code, colour, title in (("sampled", SAMPLED_COLOUR, "sampled codes z"), ("mean", MEAN_COLOUR, "mean codes mu(x)")):
        for name, g in zip(names, groups, strict=True):
            value = g[code + suffix]
            if value["mean"] is None:
                continue
            fig.add_trace(go.Bar(y=[name], x=[value["mean"]], orientation="h", name=title, legendgroup=code, marker_color=colour,
                                 showlegend=name == names[0], error_x=_error(value), offsetgroup=code,
                                 hovertemplate=f"{g['label']}<br>{title}: {value['mean']:.3f}{spread(value)}<extra></extra>"),
                          row=1, col=1)
            if len(value["per_seed"]) > 1:
                fig.add_trace(go.Scatter(y=[name] * len(value["per_seed"]), x=value["per_seed"], mode="markers", legendgroup=code,
                                         marker={"color": "black", "size": 5, "symbol": "line-ns-open"}, showlegend=False,
                                         hovertemplate=[f"{g['label']}, seed {s}: %{{x:.3f}}<extra>{title}</extra>" for s in g["seeds"]]),
                              row=1, col=1)
    parts = (("mean_between", "between active and passive, I(A; P)"), ("mean_active", "among active latents"),
             ("mean_passive", "among passive latents"))
    for key, title in parts:
        for name, g in zip(names, groups, strict=True):
            value = g[key]
            if value["mean"] is None:
                continue
            fig.add_trace(go.Bar(y=[name], x=[value["mean"]], orientation="h", name=title, legendgroup=key, marker_color=PART_COLOURS[key],
                                 showlegend=name == names[0],
                                 hovertemplate=f"{g['label']}<br>mean codes, {title}: {value['mean']:.3f}{spread(value)}<extra></extra>"),
                          row=1, col=2)
    fig.update_layout(barmode="group", height=110 + 46 * len(groups), margin={"t": 60, "b": 10, "l": 10, "r": 10},
                      legend={"orientation": "h", "yanchor": "top", "y": -0.08, "x": 0}, bargap=0.25)
    fig.update_yaxes(autorange="reversed")
    return _stack_right(fig)


def _stack_right(fig: go.Figure) -> go.Figure:
    # plotly has one barmode per figure: the right panel's bars get their own offset group and a base, so they stack
    bases: dict[str, float] = {}
    for trace in fig.data:
        if trace.xaxis == "x2" and isinstance(trace, go.Bar):
            y = trace.y[0]
            trace.base = [bases.get(y, 0.0)]
            bases[y] = bases.get(y, 0.0) + trace.x[0]
            trace.offsetgroup = "parts"
    return fig


def tc_scatter(groups: list[dict], estimator: str = "gaussian", per_seed: bool = False) -> go.Figure:
    """Mean-code TC (y) against sampled-code TC (x), one point per configuration (mean over seeds, error bars sd), coloured
    by model family (the legend names them), the configuration in the hover; per-seed points on request. The diagonal:
    no disparity."""
    suffix = "" if estimator == "gaussian" else "_knn"
    fig = go.Figure()
    top = 0.0
    shown: set[str] = set()
    for g in groups:
        x, y = g["sampled" + suffix], g["mean" + suffix]
        if x["mean"] is None or y["mean"] is None:
            continue
        colour = FAMILY_COLOURS.get(g["family"], "#17becf")
        top = max(top, x["mean"], y["mean"], *x["per_seed"], *y["per_seed"])
        fig.add_trace(go.Scatter(
            x=[x["mean"]], y=[y["mean"]], mode="markers", name=g["family"], legendgroup=g["family"], showlegend=g["family"] not in shown,
            marker={"color": colour, "size": 12, "line": {"color": "white", "width": 1}}, error_x=_error(x), error_y=_error(y),
            hovertemplate=(f"<b>{g['label']}</b><br>seeds: {', '.join(str(s) for s in g['seeds'])}<br>"
                           f"mean codes: {y['mean']:.3f}{spread(y)}<br>sampled codes: {x['mean']:.3f}{spread(x)}<extra></extra>")))
        shown.add(g["family"])
        if per_seed and len(x["per_seed"]) > 1 and len(x["per_seed"]) == len(y["per_seed"]):
            fig.add_trace(go.Scatter(x=x["per_seed"], y=y["per_seed"], mode="markers", legendgroup=g["family"], showlegend=False,
                                     marker={"color": colour, "size": 6, "symbol": "circle-open"},
                                     hovertemplate=[f"{g['label']}, seed {s}<br>mean %{{y:.3f}}, sampled %{{x:.3f}}<extra></extra>"
                                                    for s in g["seeds"]]))
    top = top * 1.08 or 1.0
    fig.add_trace(go.Scatter(x=[0, top], y=[0, top], mode="lines", name="mean TC = sampled TC", line={"dash": "dot", "color": "gray"},
                             hoverinfo="skip"))
    label = "Gaussian" if estimator == "gaussian" else "kNN"
    fig.update_layout(xaxis_title=f"TC of the sampled codes ({label}, nats)", yaxis_title=f"TC of the mean codes ({label}, nats)",
                      height=520, margin={"t": 30, "b": 10}, legend={"title": "model family"})
    return fig


def correlation_row(panels: dict[str, np.ndarray]) -> go.Figure:
    """Correlation matrices of several sets of codes [N, D] (title -> codes) in one row, on one -1..1 colour scale with
    one colour bar: two models' mean and sampled codes side by side."""
    fig = make_subplots(rows=1, cols=len(panels), subplot_titles=list(panels), horizontal_spacing=0.03)
    for col, codes in enumerate(panels.values(), start=1):
        corr = correlations(codes)
        labels = [f"z{j}" for j in range(corr.shape[0])]
        fig.add_trace(go.Heatmap(z=corr, x=labels, y=labels, coloraxis="coloraxis", hovertemplate="%{y}, %{x}: %{z:.3f}<extra></extra>"),
                      row=1, col=col)
        fig.update_yaxes(autorange="reversed", scaleanchor=f"x{'' if col == 1 else col}", showticklabels=col == 1, row=1, col=col)
    fig.update_layout(coloraxis={"colorscale": "RdBu", "reversescale": True, "cmin": -1, "cmax": 1, "colorbar": {"title": "corr"}},
                      height=360, margin={"t": 50, "b": 10, "l": 10, "r": 10})
    return fig
