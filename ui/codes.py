"""The Your codes page's caches and views: codes files from any VAE (uploaded or kept), their analysis, run imports.

Every number comes from `mtc_core.evaluation.codes_analysis.analyse` with the CLI's defaults (`mtc evaluate-codes` gives the same);
this module runs it in the background (`services.background`, once per code set for every session) and lays it out. While
it runs, the page draws what its stages have finished (`progress(stage, partial)`), so the first numbers show within
seconds. Kept code sets live in `<runs dir>/codes/<name>.npz`.
"""

from __future__ import annotations

import io
import threading
import time
import zipfile
from collections.abc import Hashable
from pathlib import Path

import numpy as np
import pandas as pd
import streamlit as st

from mtc_core import runs
from mtc_core.cli.launcher import UPLOAD_MB
from mtc_core.evaluation import codes_file, tc_report
from mtc_core.evaluation.codes_analysis import analyse_validated_codes, code_points
from mtc_core.evaluation.codes_file import Codes
from mtc_core.runs import zip_import
from mtc_core.visualize import figures
from services import background, run_listing
from ui import guard, pages, widgets

SEED = 0  # the CLI's default seed: the page shows what `mtc evaluate-codes FILE` prints
UPLOAD, KEEP_NAME = "codes_upload", "codes_keep_name"  # widget keys read by the callbacks below
ARCHIVE, RUN_NAME = "codes_import_zip", "codes_import_name"
MESSAGE = "codes_message"  # (kind, text) a callback leaves for the page to show once


def upload_limit_mb() -> int:
    """The upload limit in MB (Streamlit's, MiB): `mtc app`'s UPLOAD_MB, or the server's own setting when it is lower (a
    plain `streamlit run` with another --server.maxUploadSize); what the labels say and the uploaders enforce."""
    return min(UPLOAD_MB, int(st.get_option("server.maxUploadSize")))


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


_partial: dict[Hashable, tuple[str, dict]] = {}  # a running analysis's task key -> (its last stage, the results so far)
_partial_lock = threading.Lock()


def _analyse(task: background.Task, codes: Codes) -> dict:
    def progress(stage: str, partial: dict) -> None:
        task.report(None, stage)
        with _partial_lock:
            _partial[task.key] = (stage, partial)

    try:
        return analyse_validated_codes(codes, seed=SEED, progress=progress)
    finally:
        with _partial_lock:
            _partial.pop(task.key, None)


def analysis(key: str, codes: Codes) -> background.Task:
    """The analysis of a code set (`key` names the upload or the kept file's version), computed once in the background."""
    return background.submit(("codes_analysis", key), "Analysing the codes", _analyse, codes)


def partial_result(task: background.Task) -> tuple[str, dict] | None:
    """(the last finished stage, the results so far) of a running analysis; None before its first stage ends."""
    with _partial_lock:
        return _partial.get(task.key)


def analysed_codes(key: str, codes: Codes, wait_s: float | None = None) -> dict | None:
    """The analysis when it is done (waiting up to `wait_s`, by default what is left of the page run's budget); else
    None, after drawing what its finished stages hold, redrawn every POLL_S until it is done and the page reruns. A
    failed analysis shows its reason (None)."""
    task = analysis(key, codes)
    try:
        return task.value(wait=pages.wait_left(0.3) if wait_s is None else wait_s)
    except TimeoutError:
        st.fragment(_partial_view, run_every=widgets.POLL_S)(task.key)
        return None
    except Exception as error:  # the analysis's own error, e.g. a factor whose classes cannot be split
        st.error(f"Not analysed: {runs.error_text(error)}")
        return None


def _partial_view(task_key: Hashable) -> None:
    task = background.get(task_key)
    if task is None or task.done:
        st.rerun(scope="app")
    elapsed = time.time() - (task.started or task.created)
    state = task.stage or ("queued behind another computation" if not task.started else "starting")
    st.progress(min(0.95, elapsed / (elapsed + 20)), text=f"Analysing the codes: {state} done · {elapsed:.0f} s")
    found = partial_result(task)
    if found is not None:
        show_partial(*found, key="codes_partial")


def show_partial(stage: str, partial: dict, key: str) -> None:
    """What the finished stages of an analysis hold: the TC report once its stage is done, the metrics so far."""
    st.caption(f"Partial results (up to {stage}); the rest follows as it is computed.")
    tc = partial.get("tc")
    if isinstance(tc, dict) and len(tc.get("active", [])) + len(tc.get("passive", [])) >= 2:
        st.subheader("Total correlation (nats)")
        widgets.table(widgets.tc_estimates(tc), key=f"{key}_tc", file_name="tc_estimates.csv")
        if (note := tc_report.mixture_note(tc)) is not None:
            st.caption(note)
        widgets.table(split_table(tc, None), key=f"{key}_split", file_name="tc_split.csv")
    elif "tc" not in partial:
        st.caption("Total correlations: not yet computed.")
    if any(isinstance(partial.get(rep), dict) for rep in ("mean", "sampled")):
        st.subheader("Metrics so far")
        widgets.table(metrics_table(partial, encoder_rows=False), key=f"{key}_metrics", file_name="metrics.csv")


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


def split_table(tc: dict, bound: dict | None) -> pd.DataFrame:
    parts = {"all": "all latents", "active": "among active latents", "passive": "among passive latents",
             "between": "between active and passive, I(A; P)"}
    rows = [{"part": label, **{f"{code} codes": tc_report.describe(tc, code, "gaussian", part=part) for code in ("mean", "sampled")},
             "bound on the sampled codes": f"{bound[part]['value']:.3f}" if bound and part in ("all", "passive") else ""}
            for part, label in parts.items()]
    return pd.DataFrame(rows)


def metrics_table(result: dict, encoder_rows: bool = True) -> pd.DataFrame:
    """The metrics of the mean and the sampled codes (rows none of them has are left out; a partial result may hold the
    mean codes' only, "n/a" for the sampled ones)."""
    def row(name: str, get) -> dict:
        return {"metric": name, **{f"{rep} codes": _cell(get(result.get(rep) or {})) for rep in ("mean", "sampled")}}

    rows = [row("MIG", lambda r: r.get("mig")), row("SAP", lambda r: r.get("sap")),
            *(row(f"DCI {k}", lambda r, k=k: (r.get("dci") or {}).get(k)) for k in ("disentanglement", "completeness", "informativeness_test")),
            row("modularity", lambda r: r.get("modularity_score")), row("explicitness (test)", lambda r: r.get("explicitness_score_test")),
            row("Wasserstein correlation (normalised)", lambda r: r.get("gaussian_wasserstein_correlation_norm")),
            row("MI score", lambda r: r.get("mutual_info_score")),
            *([row("FactorVAE score", lambda r: "needs the encoder"), row("BetaVAE score", lambda r: "needs the encoder")]
              if encoder_rows else [])]
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
                                **{f"split ratio ({rep})": ["carried by no latent" if v is None else f"{v:.3f}"  # None: no latent carries it
                                                            for v in result[rep]["disintegration"]["split_ratio"]]
                                   for rep in ("mean", "sampled")}}),
                  key=f"{key}_disintegration", file_name="disintegration.csv")
