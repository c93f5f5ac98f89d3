"""The Your codes page through AppTest: an uploaded codes file shows the numbers `analyse` (and the CLI) give, kept sets
can be picked again, a zipped run is imported into the picker, and hostile files are refused with a message."""

from __future__ import annotations

import io
import json
import pickle
import threading
import zipfile
from pathlib import Path

import numpy as np
import pytest
import support
import tomllib
from streamlit.testing.v1 import AppTest

from mtc_core import runs as run_io
from mtc_core.cli import launcher
from mtc_core.evaluation import codes_file
from mtc_core.evaluation.codes_analysis import analyse_validated_codes
from mtc_core.evaluation.codes_file import load_codes
from mtc_core.evaluation.tc_report import describe
from mtc_core.runs import zip_import
from ui import codes as ui_codes
from ui.pages import PAGE_FILES

ROOT = Path(__file__).resolve().parent.parent
APP = str(ROOT / "app.py")
PAGE = PAGE_FILES["Your codes"]
TIMEOUT = 120


def npz_bytes(**arrays) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


@pytest.fixture
def dirs(tmp_path, monkeypatch) -> dict[str, Path]:
    dirs = {"runs": tmp_path / "runs", "zoo": tmp_path / "zoo"}
    dirs["zoo"].mkdir()
    monkeypatch.setenv("MTC_RUNS_DIR", str(dirs["runs"]))
    monkeypatch.setenv("MTC_ZOO_DIR", str(dirs["zoo"]))
    return dirs


@pytest.fixture
def good_codes() -> bytes:
    rng = np.random.default_rng(0)
    n = 300
    active = rng.normal(size=(n, 2))
    # a passive copy of latent 0 (docs/design.md, "Why mean and sampled codes differ")
    mean = np.column_stack([active, 0.001 * active[:, 0] + 1e-4 * rng.normal(size=n)])
    logvar = np.column_stack([np.full((n, 2), -4.0), np.zeros(n)])
    factors = np.column_stack([np.digitize(active[:, 0], [-1, 0, 1]), np.digitize(active[:, 1], [-1, 0, 1])])
    return npz_bytes(mean=mean, logvar=logvar, factors=factors, factor_names=np.array(["left", "right"]))


def open_page() -> AppTest:
    at = AppTest.from_file(APP, default_timeout=TIMEOUT).run()
    at.switch_page(PAGE).run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def settle(at: AppTest) -> AppTest:
    return support.settle(at, TIMEOUT)


def upload(at: AppTest, key: str, name: str, data: bytes) -> AppTest:
    at.file_uploader(key=key).set_value((name, data, "application/octet-stream"))
    return settle(at)


def table(at: AppTest, first_column: str):
    """The page's table whose first column is `first_column` (estimator, part, metric, factor)."""
    (frame,) = [d.value for d in at.dataframe if d.value.columns[0] == first_column]
    return frame


def cell_values(at: AppTest, first_column: str) -> list:
    return table(at, first_column).to_numpy().ravel().tolist()


def test_an_uploaded_codes_file_shows_the_numbers_of_analyse(dirs, good_codes):
    at = upload(open_page(), "codes_upload", "mine.npz", good_codes)
    assert not at.error, [e.value for e in at.error]
    expected = analyse_validated_codes(load_codes(good_codes), seed=0)
    tc_cells = cell_values(at, "estimator")
    for code in ("mean", "sampled"):
        assert describe(expected["tc"], code, "gaussian") in tc_cells
    assert describe(expected["tc"], "mean", "gaussian", part="between") in cell_values(at, "part")
    metrics = table(at, "metric").set_index("metric")
    assert metrics.loc["MIG", "mean codes"] == f"{expected['mean']['mig']:.3f}"
    assert metrics.loc["FactorVAE score", "mean codes"] == "needs the encoder"
    assert len(at.get("plotly_chart")) >= 4  # heatmaps, activity, pair, MI


def test_a_kept_code_set_is_written_once_and_picked_again(dirs, good_codes):
    at = upload(open_page(), "codes_upload", "mine.npz", good_codes)
    at.text_input(key="codes_keep_name").set_value("my-vae").run()
    at.button(key="codes_keep").click().run()
    kept = dirs["runs"] / "codes" / "my-vae.npz"
    assert kept.read_bytes() == good_codes and any("Kept as" in s.value for s in at.success)
    at.button(key="codes_keep").click().run()  # the same name again: refused, the file untouched
    assert any("already kept" in e.value for e in at.error)
    first = cell_values(at, "estimator")
    at.radio(key="codes_source").set_value("A kept code set")
    settle(at)  # a kept file is analysed as a new code set
    assert at.selectbox(key="codes_kept").value == kept and cell_values(at, "estimator") == first


def hostile_codes() -> dict[str, tuple[bytes, str]]:
    m, lv = np.zeros((50, 3)) + np.arange(50)[:, None], np.zeros((50, 3))
    objects = np.empty(2, dtype=object)
    objects[:] = [{"code": "os.system"}, 1]
    nan = m.copy()
    nan[7, 1] = np.nan
    return {
        "pickled object array": (npz_bytes(mean=m, logvar=lv, factors=objects), "holds Python objects"),
        "plain pickle": (pickle.dumps({"mean": m}), "a pickle"),
        "NaN": (npz_bytes(mean=nan, logvar=lv), "mean holds 1 NaN or inf value(s), the first at point 7, latent 1"),
        "wrong shape": (npz_bytes(mean=m, logvar=lv[:, :2]), "logvar has shape (50, 2)"),
        "unknown key": (npz_bytes(mu=m, logvar=lv), "did you mean 'mean'"),
    }


@pytest.mark.parametrize("case", ["pickled object array", "plain pickle", "NaN", "wrong shape", "unknown key"])
def test_hostile_codes_files_are_refused_with_the_reason(dirs, case):
    data, message = hostile_codes()[case]
    at = upload(open_page(), "codes_upload", "evil.npz", data)
    errors = [e.value for e in at.error]
    assert len(errors) == 1 and errors[0].startswith("Not read:") and message in errors[0]
    assert not at.get("plotly_chart")


def zip_run(folder: Path, members: dict[str, bytes] | None = None) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in (members or {f.name: f.read_bytes() for f in folder.iterdir() if f.name in zip_import.LIMITS}).items():
            archive.writestr(name, data)
    return buffer.getvalue()


def test_a_zipped_run_is_imported_into_the_picker(dirs, tiny_run):
    at = upload(open_page(), "codes_import_zip", "tiny-run.zip", zip_run(tiny_run))
    assert at.text_input(key="codes_import_name").value == "tiny-run"
    at.button(key="codes_import").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    target = (dirs["runs"] / "tiny-run").resolve()
    assert at.sidebar.selectbox(key="run_path").value == str(target)
    assert any("Imported as `tiny-run`" in s.value for s in at.success)
    run_io.load_run(target)


def hostile_archives(tiny_run: Path) -> dict[str, tuple[dict[str, bytes], str]]:
    config = (tiny_run / run_io.CONFIG).read_bytes()
    weights = (tiny_run / run_io.WEIGHTS).read_bytes()
    return {
        "zip slip": ({"../../outside/config.json": config, run_io.WEIGHTS: weights}, "could leave the run folder"),
        "pickle weights": ({run_io.CONFIG: config, run_io.WEIGHTS: pickle.dumps([1.0, 2.0], protocol=4)}, "looks like a pickle"),
        "unknown file": ({run_io.CONFIG: config, run_io.WEIGHTS: weights, "evil.py": b"import os"}, "unknown file 'evil.py'"),
        "oversized member": ({run_io.CONFIG: config, run_io.WEIGHTS: weights, run_io.HISTORY: b"\n" * 5000}, "over the limit of 1,000"),
    }


@pytest.mark.parametrize("case", ["zip slip", "pickle weights", "unknown file", "oversized member"])
def test_hostile_run_archives_are_refused_and_leave_nothing(dirs, tiny_run, monkeypatch, case):
    monkeypatch.setitem(zip_import.LIMITS, run_io.HISTORY, 1000)
    members, message = hostile_archives(tiny_run)[case]
    at = upload(open_page(), "codes_import_zip", "evil.zip", zip_run(tiny_run, members))
    at.button(key="codes_import").click().run()
    errors = [e.value for e in at.error]
    assert len(errors) == 1 and errors[0].startswith("Not imported:") and message in errors[0]
    assert not dirs["runs"].exists() or not any(dirs["runs"].iterdir())
    assert not (dirs["runs"].parent / "outside").exists()


def test_the_page_without_a_file_says_what_to_do(dirs):
    at = open_page()
    assert any("Upload a codes file" in i.value for i in at.info) and not at.error
    assert json.loads(json.dumps(at.radio(key="codes_source").options)) == ["Upload a file"]


def test_a_full_disk_is_a_message_for_keep_and_import_and_leaves_nothing(dirs, good_codes, tiny_run, monkeypatch, disk_full):
    # both showed an OSError [Errno 28] traceback
    at = upload(open_page(), "codes_upload", "mine.npz", good_codes)
    at.text_input(key="codes_keep_name").set_value("my-vae").run()
    disk_full()
    at.button(key="codes_keep").click().run()
    disk_full.off()
    assert not at.exception
    assert [e.value for e in at.error] == [f"Not kept: {dirs['runs'] / 'codes' / 'my-vae.npz'}: No space left on device"]
    assert list((dirs["runs"] / "codes").iterdir()) == []

    def full_open(path, mode="r", *args, **kwargs):
        if "w" in mode:
            raise OSError(28, "No space left on device")
        return open(path, mode, *args, **kwargs)

    monkeypatch.setattr(zip_import, "open", full_open, raising=False)
    at = upload(open_page(), "codes_import_zip", "tiny-run.zip", zip_run(tiny_run))
    at.button(key="codes_import").click().run()
    assert not at.exception
    [error] = [e.value for e in at.error]
    member = error.removeprefix("Not imported: ").removesuffix(": No space left on device")
    assert error.startswith("Not imported: ") and member in zip_import.LIMITS, error  # the run's file that did not fit
    assert sorted(p.name for p in dirs["runs"].iterdir()) == ["codes"]  # no run, no hidden temporary folder


def test_the_page_draws_the_finished_stages_while_the_analysis_runs(dirs, good_codes, monkeypatch):
    """The TC report shows as soon as its stage is done (it comes first), the metrics computed so far with it; the rest
    when it ends. Held after the mean codes' MIG: the TCs and that one metric are on the page."""
    expected = analyse_validated_codes(load_codes(good_codes), seed=0)
    reached, release = threading.Event(), threading.Event()
    real = ui_codes.analyse_validated_codes

    def held_after_the_tc_stage(codes, *, seed, progress):
        def progress_then_hold(stage, partial):
            progress(stage, partial)
            if stage == "mean: mig":
                reached.set()
                release.wait(TIMEOUT)
        return real(codes, seed=seed, progress=progress_then_hold)

    monkeypatch.setattr(ui_codes, "analyse_validated_codes", held_after_the_tc_stage)
    at = open_page()
    try:
        at.file_uploader(key="codes_upload").set_value(("held.npz", good_codes, "application/octet-stream")).run()
        assert reached.wait(TIMEOUT)
        at.run()
        assert not at.exception, [e.value for e in at.exception]
        (bar,) = at.get("progress")
        assert bar.proto.text.startswith("Analysing the codes: mean: mig done")
        tc_cells = cell_values(at, "estimator")
        for code in ("mean", "sampled"):  # the stored numbers, as the finished page and the CLI show them
            assert describe(expected["tc"], code, "gaussian") in tc_cells and describe(expected["tc"], code, "knn") in tc_cells
        assert describe(expected["tc"], "mean", "gaussian", part="between") in cell_values(at, "part")
        so_far = table(at, "metric").set_index("metric")
        assert so_far.loc["MIG", "mean codes"] == f"{expected['mean']['mig']:.3f}"
        assert "SAP" not in so_far.index and "FactorVAE score" not in so_far.index
        assert not at.get("plotly_chart")  # the finished page is not drawn yet
    finally:
        release.set()
    settle(at)
    assert not at.get("progress") and table(at, "metric").set_index("metric").loc["FactorVAE score", "mean codes"] == "needs the encoder"


def test_the_upload_limit_is_one_number():
    """Streamlit's server limit (`mtc app`'s flag, .streamlit/config.toml), the uploaders and their labels: one number,
    within what the codes reader and the run import accept."""
    assert launcher.UPLOAD_MB == codes_file.MAX_BYTES // 2**20 and launcher.UPLOAD_MB * 2**20 >= zip_import.MAX_ARCHIVE_BYTES
    assert tomllib.loads((ROOT / ".streamlit" / "config.toml").read_text())["server"]["maxUploadSize"] == launcher.UPLOAD_MB
    command = launcher.app_command([])[1]
    assert command[command.index("--server.maxUploadSize") + 1] == str(launcher.UPLOAD_MB)
    assert launcher.app_command(["--server.maxUploadSize", "50"])[1].count("--server.maxUploadSize") == 1  # the user's own wins
    from streamlit import config

    before = config.get_option("server.maxUploadSize")
    try:
        for server, shown in ((launcher.UPLOAD_MB, launcher.UPLOAD_MB), (100, 100)):  # a lower server limit is what is said
            config.set_option("server.maxUploadSize", server)
            at = open_page()
            uploaders = at.get("file_uploader")
            assert [u.proto.max_upload_size_mb for u in uploaders] == [shown, shown]
            assert all(f"at most {shown} MB" in u.proto.label for u in uploaders)
    finally:
        config.set_option("server.maxUploadSize", before)
