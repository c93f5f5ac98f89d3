"""Arrays -> PIL images and plotly figures, shared by the app and the CLI."""

from __future__ import annotations

import io

import numpy as np
import plotly.graph_objects as go
from PIL import Image
from plotly.subplots import make_subplots

from mtc_core.metrics.activity import ACTIVITY_THRESHOLD, is_active


def to_uint8(images: np.ndarray) -> np.ndarray:
    """[..., C, H, W] floats in [0, 1] -> [..., H, W, C] uint8."""
    arr = np.clip(np.asarray(images, dtype=np.float64), 0.0, 1.0)
    return np.moveaxis(np.rint(arr * 255).astype(np.uint8), -3, -1)


def image_grid(images: np.ndarray, pad: int = 2, scale: int = 1) -> Image.Image:
    """A grid picture of images [R, S, C, H, W] (rows x columns), white padding, upscaled by `scale`."""
    assert images.ndim == 5, f"expected [rows, cols, C, H, W], got shape {images.shape}"
    rows, cols, channels, h, w = images.shape
    tiles = to_uint8(images)  # [R, S, H, W, C]
    canvas = np.full((rows * (h + pad) + pad, cols * (w + pad) + pad, channels), 255, dtype=np.uint8)
    for r in range(rows):
        for c in range(cols):
            y, x = pad + r * (h + pad), pad + c * (w + pad)
            canvas[y : y + h, x : x + w] = tiles[r, c]
    picture = Image.fromarray(canvas[..., 0] if channels == 1 else canvas)
    if scale > 1:
        picture = picture.resize((picture.width * scale, picture.height * scale), Image.NEAREST)
    return picture


def traversal_gif(images: np.ndarray, scale: int = 2, duration_ms: int = 120) -> bytes:
    """Animated GIF of a traversal [L, S, C, H, W]: frame s shows every latent's column s, side by side,
    played forwards then backwards."""
    frames = [image_grid(images[:, s : s + 1].transpose(1, 0, 2, 3, 4), scale=scale) for s in range(images.shape[1])]
    frames = frames + frames[-2:0:-1]
    buf = io.BytesIO()
    frames[0].save(buf, format="GIF", save_all=True, append_images=frames[1:], duration=duration_ms, loop=0)
    return buf.getvalue()


def png_bytes(picture: Image.Image) -> bytes:
    buf = io.BytesIO()
    picture.save(buf, format="PNG")
    return buf.getvalue()


# ----------------------------------------------------------------------------- plotly figures (the app's charts)

MEAN_COLOUR, SAMPLED_COLOUR = "#1f77b4", "#d62728"


def correlations(codes: np.ndarray) -> np.ndarray:
    """Pearson correlation matrix [D, D] of codes [N, D]; a constant latent gets NaN (no correlation is defined)."""
    codes = np.asarray(codes, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.corrcoef(codes, rowvar=False).reshape(codes.shape[1], codes.shape[1])


def correlation_heatmaps(mean_codes: np.ndarray, sampled_codes: np.ndarray) -> go.Figure:
    """Correlation matrices of the mean codes and the sampled codes [N, D], side by side on one -1..1 colour scale."""
    labels = [f"z{j}" for j in range(mean_codes.shape[1])]
    fig = make_subplots(rows=1, cols=2, subplot_titles=("mean codes mu(x)", "sampled codes z = mu + sigma eps"),
                        horizontal_spacing=0.08)
    for col, codes in ((1, mean_codes), (2, sampled_codes)):
        corr = correlations(codes)
        fig.add_trace(go.Heatmap(z=corr, x=labels, y=labels, coloraxis="coloraxis", name="corr",
                                 text=np.round(corr, 2), texttemplate="%{text}" if len(labels) <= 12 else None,
                                 hovertemplate="%{y}, %{x}: %{z:.3f}<extra></extra>"), row=1, col=col)
        fig.update_yaxes(autorange="reversed", scaleanchor=f"x{'' if col == 1 else col}", row=1, col=col)
    fig.update_layout(coloraxis={"colorscale": "RdBu", "reversescale": True, "cmin": -1, "cmax": 1,
                                 "colorbar": {"title": "corr"}}, height=460, margin={"t": 70, "b": 20})
    return fig


def activity_bars(var_mu: np.ndarray, mean_sigma2: np.ndarray, threshold: float = ACTIVITY_THRESHOLD) -> go.Figure:
    """Per latent: Var_x(mu_j) against E_x[sigma_j^2] (log scale); active when Var(mu_j) > threshold (Burda et al. 2016)."""
    labels = [f"z{j} ({'active' if active else 'passive'})" for j, active in enumerate(is_active(np.asarray(var_mu), threshold))]
    fig = go.Figure([
        go.Bar(x=labels, y=var_mu, name="Var(mu_j): signal", marker_color=MEAN_COLOUR),
        go.Bar(x=labels, y=mean_sigma2, name="E[sigma_j^2]: posterior noise", marker_color=SAMPLED_COLOUR),
    ])
    # the threshold's name goes into the legend: an annotation on the line sits on top of some latent's bar
    fig.add_hline(y=threshold, line_dash="dot", line_color="grey")
    fig.add_trace(go.Scatter(x=[None], y=[None], mode="lines", line={"dash": "dot", "color": "grey"},
                             name=f"active threshold: Var(mu_j) > {threshold}"))
    fig.update_layout(barmode="group", yaxis={"type": "log", "title": "variance", "dtick": 1, "exponentformat": "power"},
                      height=380, margin={"t": 30, "b": 20},
                      legend={"orientation": "h", "y": 1.12})
    return fig


PART_STYLES = {"active": ("among active latents", "#7f7f7f"), "between": ("between active and passive, I(A; P)", "#ff7f0e"),
               "passive": ("among passive latents", "#c7c7c7")}


def _vertical(x: float, top: float, name: str, dash: str, colour: str = "grey") -> go.Scatter:
    # a vertical line as a trace, not a shape: a shape's x on a log axis would have to be given as log10(x)
    return go.Scatter(x=[x, x], y=[0, top], mode="lines", name=name, line={"dash": dash, "color": colour, "width": 1}, hoverinfo="skip")


def activity_curves(activity: dict, chosen: float | None = None) -> go.Figure:
    """One TC report's activity curve (`report["activity"]`): the mean codes' Gaussian TC among active latents, between
    active and passive and among passive latents, and the sampled codes' among active latents, against the cut
    Var(mu_j) > t on a log axis; the cut chosen from the data marked, the range of cuts that leave its active set in
    place shaded, and `chosen` (another cut) marked when given. Hover: the number of active latents."""
    curve, t0 = activity["curve"], activity["threshold"]
    x, counts = curve["thresholds"], curve["active_count"]
    hover = "Var(mu_j) > %{x:.3g}: %{y:.3f} nats, %{customdata} active latents<extra>%{fullData.name}</extra>"
    fig = go.Figure()
    top = max([*curve["mean"]["active"], *curve["mean"]["between"], *curve["mean"]["passive"], *curve["sampled"]["active"], 0.01]) * 1.08
    if activity.get("stable"):
        lo, hi = activity["stable"]
        fig.add_trace(go.Scatter(x=[lo, hi, hi, lo, lo], y=[0, 0, top, top, 0], fill="toself", mode="none", fillcolor="rgba(0,0,0,0.07)",
                                 name="cuts that leave the active set in place", hoverinfo="skip"))
    for part, (title, colour) in PART_STYLES.items():
        fig.add_trace(go.Scatter(x=x, y=curve["mean"][part], customdata=counts, mode="lines+markers", name=f"mean codes, {title}",
                                 line={"color": colour}, marker={"size": 5}, hovertemplate=hover))
    fig.add_trace(go.Scatter(x=x, y=curve["sampled"]["active"], customdata=counts, mode="lines", name="sampled codes, among active latents",
                             line={"color": SAMPLED_COLOUR, "dash": "dot"}, hovertemplate=hover))
    fig.add_trace(_vertical(t0, top, f"cut chosen from the data: {t0:.3g}", "dash"))
    if chosen is not None and not np.isclose(chosen, t0):
        fig.add_trace(_vertical(chosen, top, f"cut shown above: {chosen:.3g}", "dot", "black"))
    fig.update_layout(xaxis={"type": "log", "title": "activity cut t: a latent is active when Var(mu_j) > t", "exponentformat": "power"},
                      yaxis={"title": "Gaussian TC (nats, bias-corrected)", "rangemode": "tozero"},
                      height=400, margin={"t": 30, "b": 20}, legend={"orientation": "h", "y": -0.25})
    return fig


def active_tc_curves(curves: list[dict], colours: dict[str, str] | None = None) -> go.Figure:
    """The mean codes' Gaussian TC among active latents against the activity cut (log axis), one line per configuration
    (its mean over seeds; `thresholds.configuration_curves`: {"label", "thresholds", "mean", "per_seed", "defaults"}),
    each seed's own curve faint beside it and its chosen cut as a dot on the configuration's line. `colours`: label ->
    colour (else plotly's)."""
    fig = go.Figure()
    for c in curves:
        colour = (colours or {}).get(c["label"])
        line = {"color": colour} if colour else {}
        group = c["label"]
        fig.add_trace(go.Scatter(x=c["thresholds"], y=c["mean"], mode="lines", name=c["label"], legendgroup=group, line=line,
                                 hovertemplate=f"{c['label']}<br>Var(mu_j) > %{{x:.3g}}: %{{y:.3f}} nats (mean over seeds)<extra></extra>"))
        if len(c["per_seed"]) > 1:
            for seed, values in zip(c.get("seeds") or [None] * len(c["per_seed"]), c["per_seed"], strict=True):
                fig.add_trace(go.Scatter(x=c["thresholds"], y=values, mode="lines", legendgroup=group, showlegend=False, opacity=0.35,
                                         line={**line, "width": 1, "dash": "dot"},
                                         hovertemplate=f"{c['label']}, seed {seed}<br>Var(mu_j) > %{{x:.3g}}: %{{y:.3f}} nats<extra></extra>"))
        at = [int(np.argmin(np.abs(np.log(np.asarray(c["thresholds"]) / t)))) for t in c["defaults"]]
        fig.add_trace(go.Scatter(x=c["defaults"], y=[c["mean"][i] for i in at], mode="markers", legendgroup=group, showlegend=False,
                                 marker={**({"color": colour} if colour else {}), "size": 8, "symbol": "circle-open"},
                                 hovertemplate=f"{c['label']}: a seed's cut chosen from the data, %{{x:.3g}}<extra></extra>"))
    fig.update_layout(xaxis={"type": "log", "title": "activity cut t: a latent is active when Var(mu_j) > t", "exponentformat": "power"},
                      yaxis={"title": "TC of the mean codes among active latents (Gaussian, nats)", "rangemode": "tozero"},
                      height=420, margin={"t": 30, "b": 20}, legend={"orientation": "h", "y": -0.25})
    return fig


def latent_pair_scatter(mean_codes: np.ndarray, sampled_codes: np.ndarray, i: int, j: int,
                        colour: np.ndarray | None = None, colour_name: str = "", max_points: int = 2000,
                        classes: list[str] | None = None) -> go.Figure:
    """Latent z_i against z_j for the mean and the sampled codes [N, D], optionally coloured by a factor [N]: a colour
    bar for an ordered factor, or one discrete colour per class with a legend when `classes` names them (class k is
    factor value k, e.g. a shape)."""
    n = min(len(mean_codes), max_points)
    fig = make_subplots(rows=1, cols=2, subplot_titles=("mean codes", "sampled codes"), horizontal_spacing=0.08)
    marker = {"size": 4, "opacity": 0.6}
    if colour is not None and classes is not None:
        values = np.asarray(colour)[:n]
        palette = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"]
        for col, codes in ((1, mean_codes), (2, sampled_codes)):
            for k, name in enumerate(classes):
                rows = values == k
                fig.add_trace(go.Scattergl(x=codes[:n][rows, i], y=codes[:n][rows, j], mode="markers", name=f"{colour_name} = {name}",
                                           legendgroup=str(k), showlegend=col == 1,
                                           marker={**marker, "color": palette[k % len(palette)]}), row=1, col=col)
            fig.update_xaxes(title_text=f"z{i}", row=1, col=col)
            fig.update_yaxes(title_text=f"z{j}", row=1, col=col)
        fig.update_layout(height=420, margin={"t": 70, "b": 20}, legend={"orientation": "h", "y": -0.2})
        return fig
    if colour is not None:
        marker.update(color=np.asarray(colour)[:n], colorscale="Viridis", showscale=True, colorbar={"title": colour_name})
    for col, codes, default in ((1, mean_codes, MEAN_COLOUR), (2, sampled_codes, SAMPLED_COLOUR)):
        fig.add_trace(go.Scattergl(x=codes[:n, i], y=codes[:n, j], mode="markers", showlegend=False,
                                   marker=marker if colour is not None else {**marker, "color": default}), row=1, col=col)
        fig.update_xaxes(title_text=f"z{i}", row=1, col=col)
        fig.update_yaxes(title_text=f"z{j}", row=1, col=col)
    fig.update_layout(height=420, margin={"t": 70, "b": 20})
    return fig


def theorem_curves(rho: np.ndarray, mean_tc: np.ndarray, sampled_tc: np.ndarray, bound: float, marker_rho: float) -> go.Figure:
    """TC of the equicorrelated means and of the sampled codes against rho, with the bound B(d, s) (docs/design.md, "The theorem")."""
    fig = go.Figure([
        go.Scatter(x=rho, y=mean_tc, name="TC of means", line={"color": MEAN_COLOUR}),
        go.Scatter(x=rho, y=sampled_tc, name="TC of samples", line={"color": SAMPLED_COLOUR}),
        go.Scatter(x=rho, y=np.full_like(rho, bound), name="bound B(d, s)", line={"color": "black", "dash": "dash"}),
    ])
    fig.add_vline(x=marker_rho, line_dash="dot", line_color="grey")
    fig.update_layout(xaxis_title="rho (correlation of the means)", yaxis_title="total correlation (nats)",
                      height=420, margin={"t": 30, "b": 20}, legend={"orientation": "h", "y": 1.1})
    return fig


def mi_heatmaps(panels: dict[str, np.ndarray], factor_names: list[str]) -> go.Figure:
    """Normalised MI matrices M[k, j] = I(z_j; v_k) / H(v_k), [K, D], one panel per title, on one 0..1 colour scale."""
    fig = make_subplots(rows=1, cols=len(panels), subplot_titles=list(panels), horizontal_spacing=0.04, shared_yaxes=True)
    for col, m in enumerate(panels.values(), start=1):
        m = np.asarray(m, dtype=np.float64)
        fig.add_trace(go.Heatmap(z=m, x=[f"z{j}" for j in range(m.shape[1])], y=list(factor_names), coloraxis="coloraxis",
                                 text=np.round(m, 2), texttemplate="%{text}", hovertemplate="%{y} / %{x}: %{z:.3f}<extra></extra>"),
                      row=1, col=col)
        fig.update_yaxes(autorange="reversed", row=1, col=col)
    fig.update_yaxes(automargin=True)
    fig.update_layout(coloraxis={"colorscale": "Blues", "cmin": 0, "cmax": 1, "colorbar": {"title": "I / H"}},
                      height=140 + 45 * len(factor_names), margin={"t": 70, "b": 20})
    return fig


def tc_against_bound(values: dict[str, dict], bound: float) -> go.Figure:
    """A model's Gaussian TCs against the bound its measured variances put on the sampled codes' TC (docs/design.md,
    "The theorem"): one row per code, {"value", "ci" ([lo, hi] or None)} in nats, the bound a dashed vertical line."""
    names = list(values)
    colours = {name: MEAN_COLOUR if name.startswith("mean") else SAMPLED_COLOUR for name in names}
    fig = go.Figure()
    for name, v in values.items():
        error = ({"type": "data", "symmetric": False, "array": [max(v["ci"][1] - v["value"], 0.0)],
                  "arrayminus": [max(v["value"] - v["ci"][0], 0.0)]} if v.get("ci") else {"visible": False})
        fig.add_trace(go.Scatter(x=[v["value"]], y=[name], mode="markers", name=name, error_x=error,
                                 marker={"color": colours[name], "size": 13},
                                 hovertemplate=f"{name}: %{{x:.3f}} nats<extra></extra>"))
    fig.add_trace(go.Scatter(x=[bound, bound], y=[names[0], names[-1]], mode="lines", name=f"bound on the sampled TC: {bound:.3f} nats",
                             line={"color": "black", "dash": "dash"}, hovertemplate=f"bound: {bound:.3f} nats<extra></extra>"))
    top = max(bound, *(v["value"] for v in values.values()), *(v["ci"][1] for v in values.values() if v.get("ci"))) * 1.1 or 1.0
    fig.update_layout(xaxis={"title": "Gaussian total correlation (nats)", "range": [0, top]}, yaxis={"range": [-0.6, len(names) - 0.4]},
                      height=120 + 60 * len(names), margin={"t": 30, "b": 20}, legend={"orientation": "h", "y": -0.45})
    return fig


def latent_histograms(mean_codes: np.ndarray, logvar: np.ndarray, var_mu: np.ndarray, threshold: float = ACTIVITY_THRESHOLD,
                      bins: int = 30, per_row: int = 5) -> go.Figure:
    """Small multiples, one panel per latent j: the histogram of its mean codes mu_j (top) and of its posterior variances
    sigma_j^2 = exp(logvar_j) (below) over the points [N, D]; the panel's title says whether the latent is active,
    Var(mu_j) [D] > `threshold` (`metrics.activity.is_active`), and a passive latent's bars are pale. Latents wrap
    after `per_row`."""
    mean_codes, sigma2 = np.asarray(mean_codes, dtype=np.float64), np.exp(np.asarray(logvar, dtype=np.float64))
    d = mean_codes.shape[1]
    active = is_active(np.asarray(var_mu, dtype=np.float64), threshold)
    cols = min(d, per_row)
    blocks = -(-d // cols)
    titles = [""] * (2 * blocks * cols)
    for j in range(d):
        block, col = divmod(j, cols)
        titles[2 * block * cols + col] = f"z{j} · {'active' if active[j] else 'passive'} · Var {var_mu[j]:.2g}"
    fig = make_subplots(rows=2 * blocks, cols=cols, subplot_titles=titles, vertical_spacing=0.5 / (2 * blocks + 1),
                        horizontal_spacing=0.03)
    for j in range(d):
        block, col = divmod(j, cols)
        for offset, values, colour, name in ((1, mean_codes[:, j], MEAN_COLOUR, "mean code mu_j"),
                                             (2, sigma2[:, j], SAMPLED_COLOUR, "posterior variance sigma_j^2")):
            counts, edges = np.histogram(values, bins=bins)
            fig.add_trace(go.Bar(x=(edges[:-1] + edges[1:]) / 2, y=counts, width=np.diff(edges), name=name, legendgroup=name,
                                 showlegend=j == 0, marker={"color": colour, "opacity": 1.0 if active[j] else 0.35},
                                 meta={"latent": j, "active": bool(active[j])},
                                 hovertemplate=f"z{j}, {name}: %{{x:.3g}}: %{{y}} points<extra></extra>"),
                          row=2 * block + offset, col=col + 1)
    fig.update_layout(height=250 * blocks + 80, bargap=0, margin={"t": 50, "b": 20}, legend={"orientation": "h", "y": 1.04, "yanchor": "bottom"})
    fig.update_yaxes(showticklabels=False)
    fig.update_xaxes(nticks=4)
    return fig
