"""Training curves as plotly figures: one run's history (the TC of the mean and of the sampled codes on one panel, by
one estimator), several runs overlaid with TensorBoard's smoothing, and TC against regularisation strength, one point
per run. Layout only: every number drawn is one that a history record (`mtc_core.training.history`) or the caller's
rows carry; axis titles, not subplot titles, name the panels, so nothing overlaps at any width."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from mtc_core.models import FAMILY_COLOURS
from mtc_core.training.history import history_tc, history_tc_estimator
from mtc_core.visualize.figures import MEAN_COLOUR, SAMPLED_COLOUR

RECON_COLOUR, KL_COLOUR, LOSS_COLOUR = "#2ca02c", "#9467bd", "#000000"
PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf")


def _number(value) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value) else None


QUANTITIES: dict[str, tuple[str, Callable[[dict], float | None]]] = {  # name -> (axis title, reader of one record)
    "TC mean codes": ("TC of the mean codes (nats)", lambda r: history_tc(r, "mean")),
    "TC sampled codes": ("TC of the sampled codes (nats)", lambda r: history_tc(r, "sampled")),
    "recon": ("reconstruction, training record (nats)", lambda r: _number(r.get("recon"))),
    "KL": ("KL to the prior (nats)", lambda r: _number(r.get("kl"))),
    "training loss": ("training loss (nats)", lambda r: _number(r.get("train_loss"))),
}
BOTH_TCS = "TC mean and sampled codes"  # the two TC quantities together: solid mean, dotted sampled, per run


def ema(values: Sequence[float | None], weight: float) -> list[float | None]:
    """TensorBoard's smoothing without its debiasing: s_0 = x_0, s_t = weight * s_(t-1) + (1 - weight) * x_t.
    A missing value (None) stays None and does not move the average; weight 0 returns the values unchanged.
    ValueError for a weight outside [0, 1)."""
    if not 0.0 <= weight < 1.0:
        raise ValueError(f"smoothing weight must be in [0, 1), got {weight}")
    out: list[float | None] = []
    last = None
    for x in values:
        if x is None:
            out.append(None)
            continue
        last = x if last is None else weight * last + (1.0 - weight) * x
        out.append(last)
    return out


def series(history: list[dict], quantity: str) -> tuple[list[int], list[float | None]]:
    """(steps, values) of one quantity of QUANTITIES over a history's records (None where a record has no value)."""
    if quantity not in QUANTITIES:
        raise ValueError(f"unknown quantity {quantity!r}; one of {list(QUANTITIES)}")
    read = QUANTITIES[quantity][1]
    return [r.get("step") for r in history], [read(r) for r in history]


def has_sampled_tc(history: list[dict]) -> bool:
    return any(history_tc(r, "sampled") is not None for r in history)


def run_figure(history: list[dict], final: dict[str, tuple[float, str]] | None = None) -> go.Figure:
    """One run against the step, three panels on one step axis: the TC of the mean and of the sampled codes (one
    estimator, `history_tc_estimator`), reconstruction and KL (log scale), the training loss. `final`: code ("mean" |
    "sampled") -> (value, hover text) from the run's TC report, drawn as a diamond at the last step."""
    steps = [r.get("step") for r in history]
    fig = make_subplots(rows=3, cols=1, shared_xaxes=True, vertical_spacing=0.06, row_heights=[0.45, 0.3, 0.25])
    estimator = history_tc_estimator(history)
    for code, colour in (("mean", MEAN_COLOUR), ("sampled", SAMPLED_COLOUR)):
        values = [history_tc(r, code) for r in history]
        if any(v is not None for v in values):
            fig.add_trace(go.Scatter(x=steps, y=values, mode="lines", name=f"TC {code} codes ({estimator})", legendgroup=code,
                                     line={"color": colour}, hovertemplate=f"step %{{x}}: %{{y:.3f}} nats<extra>TC {code}</extra>"),
                          row=1, col=1)
        if final and code in final and steps:
            value, text = final[code]
            fig.add_trace(go.Scatter(x=[steps[-1]], y=[value], mode="markers", name=f"TC {code} codes, final ({text})",
                                     legendgroup=code, marker={"color": colour, "symbol": "diamond", "size": 11,
                                                               "line": {"color": "white", "width": 1}},
                                     hovertemplate=f"final TC {code} codes: %{{y:.3f}} nats<br>{text}<extra></extra>"), row=1, col=1)
    for key, colour in (("recon", RECON_COLOUR), ("kl", KL_COLOUR)):
        fig.add_trace(go.Scatter(x=steps, y=[_number(r.get(key)) for r in history], mode="lines", line={"color": colour},
                                 name="recon (training record)" if key == "recon" else "KL"), row=2, col=1)
    fig.add_trace(go.Scatter(x=steps, y=[_number(r.get("train_loss")) for r in history], mode="lines", name="training loss",
                             line={"color": LOSS_COLOUR, "width": 1}), row=3, col=1)
    fig.update_yaxes(title_text="TC (nats)", rangemode="tozero", row=1, col=1)
    fig.update_yaxes(title_text="recon, KL", type="log", row=2, col=1)
    fig.update_yaxes(title_text="loss", row=3, col=1)
    fig.update_xaxes(title_text="step", row=3, col=1)
    fig.update_layout(height=560, margin={"t": 20, "b": 10, "l": 10, "r": 10},
                      legend={"orientation": "h", "yanchor": "top", "y": -0.12, "x": 0})
    return fig


def overlay(runs: list[dict], quantity: str, smoothing: float = 0.0, log_y: bool = False) -> go.Figure:
    """Several runs' curves on one step axis: `runs` = [{"label", "history"}, ...]; `quantity` one of QUANTITIES or
    BOTH_TCS (each run's mean-code TC solid, its sampled-code TC dotted, in the run's colour); each curve smoothed by
    `ema(values, smoothing)`, the raw value in the hover. A run without the quantity gets no trace."""
    codes = ("TC mean codes", "TC sampled codes") if quantity == BOTH_TCS else (quantity,)
    fig = go.Figure()
    for i, run in enumerate(runs):
        colour = PALETTE[i % len(PALETTE)]
        for name in codes:
            steps, raw = series(run["history"], name)
            if all(v is None for v in raw):
                continue
            dotted = name == "TC sampled codes" and quantity == BOTH_TCS
            fig.add_trace(go.Scatter(
                x=steps, y=ema(raw, smoothing), customdata=raw, mode="lines",
                name=run["label"] + (f", {name.removeprefix('TC ')}" if quantity == BOTH_TCS else ""), legendgroup=run["label"],
                line={"color": colour, "dash": "dot" if dotted else "solid"},
                hovertemplate=f"{run['label']}<br>{name}, step %{{x}}: %{{y:.4g}} (raw %{{customdata:.4g}})<extra></extra>"))
    title = "TC (nats; solid: mean codes, dotted: sampled codes)" if quantity == BOTH_TCS else QUANTITIES[quantity][0]
    fig.update_layout(xaxis_title="step", yaxis={"title": title, "type": "log" if log_y else "linear"}, height=480,
                      margin={"t": 20, "b": 10, "l": 10, "r": 10}, legend={"orientation": "h", "yanchor": "top", "y": -0.15, "x": 0})
    return fig


def strength_figure(points: list[dict]) -> go.Figure:
    """TC of the sampled (left) and of the mean codes (right) against regularisation strength, one point per run,
    one series per model family (Locatello et al. 2019, Sec. 5.1, per seed). `points`: {"family", "field" (the swept
    field or None), "strength", "seed", "run", "tc_mean", "tc_sampled"}. A family without a regulariser (the VAE) is a
    dotted line per run at its value. The strength axis is logarithmic (every swept strength is positive)."""
    fig = make_subplots(rows=1, cols=2, shared_yaxes=False, horizontal_spacing=0.08)
    families = sorted({p["family"] for p in points})
    swept = [p for p in points if p["field"] is not None and _number(p["strength"]) is not None and p["strength"] > 0]
    xs = [p["strength"] for p in swept]
    for col, code in ((1, "sampled"), (2, "mean")):
        for family in families:
            members = [p for p in swept if p["family"] == family and p[f"tc_{code}"] is not None]
            if not members:
                continue
            colour = FAMILY_COLOURS.get(family, "#17becf")
            fig.add_trace(go.Scatter(
                x=[p["strength"] for p in members], y=[p[f"tc_{code}"] for p in members], mode="markers", name=family,
                legendgroup=family, showlegend=col == 1, marker={"color": colour, "size": 9, "line": {"color": "white", "width": 1}},
                hovertemplate=[f"{p['run']}<br>{p['field']} = {p['strength']:g}, seed {p['seed']}<br>TC {code} codes: %{{y:.3f}} nats"
                               "<extra></extra>" for p in members]), row=1, col=col)
        baselines: set[str] = set()
        for p in points:
            if p["field"] is None and p[f"tc_{code}"] is not None and xs:
                fig.add_trace(go.Scatter(x=[min(xs) / 1.5, max(xs) * 1.5], y=[p[f"tc_{code}"]] * 2, mode="lines", name=p["family"],
                                         legendgroup=p["family"], showlegend=col == 1 and p["family"] not in baselines,
                                         line={"color": FAMILY_COLOURS.get(p["family"], "grey"), "dash": "dot", "width": 1},
                                         hovertemplate=f"{p['run']} (no regulariser), seed {p['seed']}: %{{y:.3f}} nats<extra></extra>"),
                              row=1, col=col)
                baselines.add(p["family"])
        ticks = sorted(set(xs))  # the strengths of the runs, not powers of 10
        fig.update_xaxes(type="log", title_text="regularisation strength", tickvals=ticks, ticktext=[f"{x:g}" for x in ticks],
                         row=1, col=col)
        fig.update_yaxes(title_text=f"TC of the {code} codes (nats)", rangemode="tozero", row=1, col=col)
    fig.update_layout(height=440, margin={"t": 30, "b": 10, "l": 10, "r": 10},
                      legend={"orientation": "h", "yanchor": "top", "y": -0.18, "x": 0, "title": "model family"})
    return fig
