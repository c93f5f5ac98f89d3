"""RESULTS.md's figures from the zoo's aggregated table (`claims.aggregate`): mean against sampled TC, the metrics,
and the activity curves, one panel per dataset, as PNGs (matplotlib)."""

from __future__ import annotations

from pathlib import Path

from mtc_core.evaluation.claims import configuration_curves


def figures(table: list[dict], folder: str | Path) -> list[Path]:
    """Mean TC against sampled TC per model (with the no-disparity diagonal), and metric bars, as PNGs: one
    panel per dataset, since models are only compared within one."""
    from matplotlib.figure import Figure

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    datasets = list(dict.fromkeys(r.get("dataset") for r in table)) or [None]
    fig = Figure(figsize=(6.5 * len(datasets), 5.5))
    for ax, dataset in zip(fig.subplots(1, len(datasets), squeeze=False)[0], datasets, strict=True):
        top = 0.0
        for r in (r for r in table if r.get("dataset") == dataset):
            (m, m_sd), (s, s_sd) = r["TC mean codes (Gaussian)"], r["TC sampled codes (Gaussian)"]
            if m is None or s is None:
                continue
            ax.errorbar(s, m, xerr=s_sd, yerr=m_sd, fmt="o", capsize=3, label=r["label"])
            top = max(top, m, s)
        ax.plot([0, top * 1.1 or 1], [0, top * 1.1 or 1], "k--", lw=1, label="no disparity")
        ax.set(xlabel="TC of sampled codes (Gaussian, nats)", ylabel="TC of mean codes (Gaussian, nats)",
               title=f"Mean vs sampled TC, {dataset}")
        ax.legend(fontsize=7)
    fig.tight_layout()
    paths = [folder / "tc_mean_vs_sampled.png"]
    fig.savefig(paths[0], dpi=120)
    names = ["MIG mean", "MIG sampled", "DCI dis. mean", "SAP mean", "FactorVAE mean", "BetaVAE mean"]
    fig = Figure(figsize=(10, 4.5 * len(datasets)))
    for ax, dataset in zip(fig.subplots(len(datasets), 1, squeeze=False)[:, 0], datasets, strict=True):
        rows = [r for r in table if r.get("dataset") == dataset]
        width = 0.8 / max(len(rows), 1)
        for i, r in enumerate(rows):
            ax.bar([j + i * width for j in range(len(names))], [r[n][0] or 0.0 for n in names], width,
                   yerr=[r[n][1] or 0.0 for n in names], label=r["label"], capsize=2)
        ax.set_xticks([j + 0.4 - width / 2 for j in range(len(names))], labels=names)
        ax.set(ylabel="score", title=f"Disentanglement metrics, {dataset} (mean over seeds, error bars: sd)")
        ax.legend(fontsize=7)
    fig.tight_layout()
    paths.append(folder / "metrics.png")
    fig.savefig(paths[1], dpi=120)
    if any(configuration_curves(r)["active"] for r in table):
        paths.append(_activity_png(table, datasets, folder / "activity_curves.png"))
    return paths


def _activity_png(table: list[dict], datasets: list, path: Path) -> Path:
    """Per dataset: each configuration's mean-code Gaussian TC among active latents against the cut (mean over seeds,
    log x), each seed's chosen cut marked on its line."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.5 * len(datasets), 5.0))
    for ax, dataset in zip(fig.subplots(1, len(datasets), squeeze=False)[0], datasets, strict=True):
        for r in (r for r in table if r.get("dataset") == dataset):
            curve = configuration_curves(r)["active"]
            if curve is None:
                continue
            (line,) = ax.plot(curve["thresholds"], curve["mean"], "-", lw=1.5, label=r["label"])
            marks = [(t, curve["mean"][min(range(len(curve["thresholds"])), key=lambda i: abs(curve["thresholds"][i] - t))])
                     for t in curve["defaults"]]
            ax.plot(*zip(*marks, strict=True), "o", color=line.get_color(), ms=5)
        ax.set(xscale="log", xlabel="activity cut: Var(mu_j) > t", ylabel="TC of mean codes among active latents (Gaussian, nats)",
               title=f"Over the activity cut, {dataset} (dots: each seed's chosen cut)")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    return path
