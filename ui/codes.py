"""The Your codes page's caches and views: codes files from any VAE (uploaded or kept), their analysis, run imports.

Every number comes from `mtc_core.evaluation.codes_analysis.analyse` with the CLI's defaults (`mtc evaluate-codes` gives the same);
this module caches it and lays it out. Kept code sets live in `<runs dir>/codes/<name>.npz`.
"""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import streamlit as st

from mtc_core import runs
from mtc_core.evaluation import codes_file, tc_report
from mtc_core.evaluation.codes_analysis import analyse_validated_codes, code_points
from mtc_core.evaluation.codes_file import Codes
from mtc_core.runs import zip_import
from mtc_core.visualize import figures
from services import run_listing
from ui import guard, widgets

SEED = 0  # the CLI's default seed: the page shows what `mtc evaluate-codes FILE` prints
UPLOAD, KEEP_NAME = "codes_upload", "codes_keep_name"  # widget keys read by the callbacks below
ARCHIVE, RUN_NAME = "codes_import_zip", "codes_import_name"
MESSAGE = "codes_message"  # (kind, text) a callback leaves for the page to show once


def codes_dir() -> Path:
    return run_listing.runs_dir() / "codes"


def kept_sets() -> list[Path]:
    """Kept code sets, newest first."""
    folder = codes_dir()
    found = [p for p in folder.glob("*.npz") if p.is_file() and not p.name.startswith(".")] if folder.is_dir() else []
    return sorted(found, key=lambda p: p.stat().st_mtime, reverse=True)


@st.cache_resource(max_entries=4, show_spinner="Checking the codes file...")
def _load(key: str, _data: bytes) -> Codes:
    return codes_file.load_codes(_data)


def load(key: str, data: bytes) -> Codes:
    """Validated codes (read-only, shared); `key` names the upload or the kept file's version. ValueError when refused."""
    return _load(key, data)


@st.cache_data(max_entries=8, show_spinner="Analysing the codes: TC estimators with intervals, metrics (a few seconds per 10,000 points)...")
def _analysis(key: str, _codes: Codes) -> dict:
    return analyse_validated_codes(_codes, seed=SEED)


def analysed_codes(key: str, codes: Codes) -> dict:
    return _analysis(key, codes)


@st.cache_resource(max_entries=4, show_spinner=False)
def _points(key: str, _codes: Codes) -> dict[str, np.ndarray]:
    return code_points(_codes, SEED)[0]


def training_points(key: str, codes: Codes) -> dict[str, np.ndarray]:
    """The points the TCs were computed on (mean, logvar, sampled, factors): what the charts show."""
    return _points(key, codes)


def keep(data: bytes, name: str) -> Path:
    """Keep validated codes bytes as `<runs dir>/codes/<name>.npz`; an existing set is never replaced."""
    return codes_file.keep(data, codes_dir(), zip_import.check_run_name(name))


def suggest_name(uploader: str, name_key: str, suffix: str) -> None:
    """on_change of an uploader: the file's name, without its suffix, as the default name to save it under."""
    upload = st.session_state.get(uploader)
    if upload is not None:
        st.session_state[name_key] = Path(upload.name).name.removesuffix(suffix)


def keep_upload() -> None:
    """on_click of Keep (a callback: it runs once per click, before the page): keep the uploaded codes file."""
    upload = st.session_state.get(UPLOAD)
    if upload is None:
        return
    data = upload.getvalue()
    try:
        guard.check("store", len(data))
        path = keep(data, st.session_state.get(KEEP_NAME, ""))
    except (ValueError, OSError) as error:  # OSError: a full disk, an unwritable folder (nothing is left half-written)
        st.session_state[MESSAGE] = ("error", f"Not kept: {runs.error_text(error)}")
    else:
        guard.done("store", len(data))
        st.session_state[MESSAGE] = ("success", f"Kept as `{path}`; pick it again under **A kept code set**.")


def import_upload() -> None:
    """on_click of Import run: import the uploaded archive into the runs folder and select it in the sidebar."""
    archive = st.session_state.get(ARCHIVE)
    if archive is None:
        return
    data = archive.getvalue()
    try:
        guard.check("store", unpacked_bytes(data))
        target = zip_import.import_run(data, run_listing.runs_dir(), st.session_state.get(RUN_NAME, ""))
    except (ValueError, OSError) as error:  # OSError: a full disk, an unwritable folder (nothing is left half-written)
        st.session_state[MESSAGE] = ("error", f"Not imported: {runs.error_text(error)}")
    else:
        guard.done("store", sum(f.stat().st_size for f in target.iterdir() if f.is_file()))
        st.session_state[widgets.PENDING_KEY] = str(target.resolve())  # the sidebar picks it when drawn next
        st.session_state[MESSAGE] = ("success", f"Imported as `{target.name}`; it is picked in the sidebar.")


def unpacked_bytes(archive: bytes) -> int:
    """What an archive says it unpacks to (its members' sizes; zip_import checks the real ones), at least its size."""
    try:
        with zipfile.ZipFile(io.BytesIO(archive)) as members:
            return max(len(archive), sum(m.file_size for m in members.infolist()))
    except (zipfile.BadZipFile, OSError, ValueError):  # not a zip: import_run says why
        return len(archive)


def message() -> None:
    """The message a callback left, shown once."""
    if MESSAGE in st.session_state:
        kind, text = st.session_state.pop(MESSAGE)
        (st.success if kind == "success" else st.error)(text)


def read_kept(path: Path) -> bytes:
    size = path.stat().st_size
    if size > codes_file.MAX_BYTES:
        raise ValueError(f"{path.name}: {size:,} bytes, over the limit of {codes_file.MAX_BYTES:,}")
    return path.read_bytes()


def split_table(tc: dict, bound: dict) -> pd.DataFrame:
    parts = {"all": "all latents", "active": "among active latents", "passive": "among passive latents",
             "between": "between active and passive, I(A; P)"}
    rows = [{"part": label, **{f"{code} codes": tc_report.describe(tc, code, "gaussian", part=part) for code in ("mean", "sampled")},
             "bound on the sampled codes": f"{bound[part]['value']:.3f}" if part in ("all", "passive") else ""}
            for part, label in parts.items()]
    return pd.DataFrame(rows)


def metrics_table(result: dict) -> pd.DataFrame:
    def row(name: str, get) -> dict:
        return {"metric": name, **{f"{rep} codes": _cell(get(result[rep])) for rep in ("mean", "sampled")}}

    rows = [row("MIG", lambda r: r.get("mig")), row("SAP", lambda r: r.get("sap")),
            *(row(f"DCI {k}", lambda r, k=k: (r.get("dci") or {}).get(k)) for k in ("disentanglement", "completeness", "informativeness_test")),
            row("modularity", lambda r: r.get("modularity_score")), row("explicitness (test)", lambda r: r.get("explicitness_score_test")),
            row("Wasserstein correlation (normalised)", lambda r: r.get("gaussian_wasserstein_correlation_norm")),
            row("MI score", lambda r: r.get("mutual_info_score")),
            row("FactorVAE score", lambda r: "needs the encoder"), row("BetaVAE score", lambda r: "needs the encoder")]
    return pd.DataFrame([r for r in rows if any(v != "n/a" for k, v in r.items() if k != "metric")])


def _cell(value) -> str:
    return f"{value:.3f}" if isinstance(value, int | float) else ("n/a" if value is None else str(value))


def show(result: dict, points: dict[str, np.ndarray], factor_names: tuple[str, ...] | None, key: str) -> None:
    """The views of a trained model's pages, on the codes: correlations, TCs, where they live, activity, metrics."""
    settings, tc = result["settings"], result["tc"]
    st.caption(f"{settings['num_points']:,} points x {len(result['activity']['var_mu'])} latents. TCs and activity on "
               f"{settings['num_train']:,} points" + (f"; factor metrics fitted there and scored on {settings['num_test']:,} held-out "
               f"points ({settings['split']} split)" if settings["num_test"] else "") + "; sampled codes "
               + ("from the file." if settings["sampled"] == "file" else f"drawn as mu + sigma eps (seed {settings['seed']})."))
    if result["factors"]["dropped"]:
        st.warning(f"Constant factors left out (entropy 0, no metric can use them): {', '.join(result['factors']['dropped'])}")
    st.subheader("Correlation matrices")
    widgets.plotly_chart(figures.correlation_heatmaps(points["mean"], points["sampled"]), key=f"{key}_heatmaps")
    st.subheader("Total correlation (nats)")
    if len(tc["active"]) + len(tc["passive"]) < 2:
        st.warning("Fewer than two mean latents vary: total correlation is not defined for these codes.")
    else:
        widgets.table(widgets.tc_estimates(tc), key=f"{key}_tc", file_name="tc_estimates.csv")
        if (note := tc_report.mixture_note(tc)) is not None:
            st.caption(note)
        st.markdown(f"Active latents (Var mu_j > {tc['settings']['active_threshold']}): "
                    f"{', '.join(f'z{j}' for j in tc['active']) or 'none'}; passive: {', '.join(f'z{j}' for j in tc['passive']) or 'none'}.")
        widgets.table(split_table(tc, result["sampled_tc_bound"]), key=f"{key}_split", file_name="tc_split.csv")
        st.caption("The bound: the largest Gaussian TC the sampled codes can have for these variances, whatever the "
                   "correlations of the means (each latent's noise-to-signal ratio E[sigma_j²] / Var mu_j; docs/design.md: The theorem).")
    if tc["dropped"]:
        st.warning(f"Mean latents {', '.join(f'z{j}' for j in tc['dropped'])} are constant; every TC is computed over the others.")
    st.subheader("Active and passive latents")
    widgets.plotly_chart(figures.activity_bars(np.array(result["activity"]["var_mu"]), np.array(result["activity"]["mean_sigma2"])),
                         key=f"{key}_activity")
    dim = points["mean"].shape[1]
    if dim >= 2:
        st.subheader("A latent pair")
        i, j = widgets.latent_pair(dim, widgets.most_correlated_pair(points["mean"]), key=f"{key}_pair")
        colour = points["factors"][:, 0] if points["factors"] is not None else None
        widgets.plotly_chart(figures.latent_pair_scatter(points["mean"], points["sampled"], i, j, colour=colour,
                                                         colour_name=factor_names[0] if factor_names else None), key=f"{key}_scatter")
    if "mig" not in result["mean"]:
        st.info("No factors in the file: the disentanglement metrics and factor disintegration need ground-truth "
                "factors [N, K]. The FactorVAE and BetaVAE scores also need the encoder (they encode new images).")
        return
    st.subheader("Metrics")
    widgets.table(metrics_table(result), key=f"{key}_metrics", file_name="metrics.csv")
    st.subheader("Factor disintegration")
    names = result["mean"]["disintegration"]["factor_names"]
    widgets.plotly_chart(figures.mi_heatmaps({f"{rep} codes": result[rep]["disintegration"]["mi_matrix"] for rep in ("mean", "sampled")},
                                             names), key=f"{key}_mi")
    widgets.table(pd.DataFrame({"factor": names, **{f"latents ({rep})": result[rep]["disintegration"]["latents_per_factor"]
                                                    for rep in ("mean", "sampled")},
                                **{f"split ratio ({rep})": result[rep]["disintegration"]["split_ratio"] for rep in ("mean", "sampled")}}),
                  key=f"{key}_disintegration", file_name="disintegration.csv")
