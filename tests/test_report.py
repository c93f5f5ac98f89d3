"""The report to keep (mtc_core/evaluation/run_report.py, drawn by mtc_core/visualize/report.py): one self-contained HTML
file whose TC numbers are the run's stored TC report as the pages print it, which loads nothing from anywhere, and in
which nothing from a run's files becomes markup."""

from __future__ import annotations

import json
import re
import shutil
from html.parser import HTMLParser
from pathlib import Path

import pytest

from mtc_core import runs
from mtc_core.evaluation import run_report, tc_report
from mtc_core.visualize import report

ROOT = Path(__file__).resolve().parent.parent
ZOO_RUN = ROOT / "pretrained" / "shapes2d-beta_tcvae-seed0"
RESOURCE_ATTRIBUTES = {"src", "href", "srcset", "data", "action", "poster", "xlink:href", "background", "formaction"}


class Page(HTMLParser):
    """Every start tag with its attributes, every table as rows of cell texts (by id), the text of every element."""

    def __init__(self, text: str):
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict]] = []
        self.tables: dict[str, list[list[str]]] = {}
        self.texts: list[str] = []
        self._table: str | None = None
        self._cell: list[str] | None = None
        self.feed(text)
        self.close()

    def handle_starttag(self, tag, attrs):
        attributes = dict(attrs)
        self.tags.append((tag, attributes))
        if tag == "table":
            self._table = attributes.get("id", f"table{len(self.tables)}")
            self.tables[self._table] = []
        elif tag == "tr" and self._table is not None:
            self.tables[self._table].append([])
        elif tag in ("td", "th") and self._table is not None:
            self._cell = []

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None:
            self.tables[self._table][-1].append("".join(self._cell))
            self._cell = None
        elif tag == "table":
            self._table = None

    def handle_data(self, data):
        self.texts.append(data)
        if self._cell is not None:
            self._cell.append(data)

    def rows(self, table_id: str) -> dict[str, list[str]]:
        """A table as {first cell: the other cells}, the header row included."""
        return {row[0]: row[1:] for row in self.tables[table_id]}


def resources(page: Page) -> list[str]:
    """What the page would fetch: any resource attribute that is not an in-page anchor or a data: URI."""
    return [f"{tag} {name}={value}" for tag, attributes in page.tags for name, value in attributes.items()
            if name in RESOURCE_ATTRIBUTES and value is not None and not value.startswith(("#", "data:image/png;base64,"))]


@pytest.fixture(scope="module")
def zoo_report() -> tuple[str, dict]:
    evaluation = runs.read_json(ZOO_RUN / runs.METRICS)["evaluation"]
    return run_report.run_report_html(ZOO_RUN, traversal=False), evaluation


def test_the_tc_numbers_are_the_stored_report_as_the_pages_print_it(zoo_report):
    text, evaluation = zoo_report
    page, tc = Page(text), evaluation["tc"]
    table = page.rows("tc-table")
    assert table["estimator"] == ["mean codes", "sampled codes", "points", "95% interval"]
    gaussian, knn = table["Gaussian, -1/2 log det R, bias-corrected"], table["kNN (KSG, Gaussian-reference corrected)"]
    assert gaussian[:2] == [tc_report.describe(tc, "mean", "gaussian"), tc_report.describe(tc, "sampled", "gaussian")]
    assert knn[:2] == [tc_report.describe(tc, "mean", "knn"), tc_report.describe(tc, "sampled", "knn")]
    assert gaussian[0] == "1.151 [1.127, 1.176]"  # the zoo model's stored value, as RESULTS.md and the pages show it
    assert gaussian[2] == "10,000" and knn[2] == "5 batches of 1,986 distinct"
    split = page.rows("tc-split")
    for part, label in run_report.PART_LABELS.items():
        assert split[label] == [tc_report.describe(tc, code, "gaussian", part=part) for code in ("mean", "sampled")]
    # a clipped lower end is labelled, as describe labels it on every page
    assert split["among passive latents"][1].endswith("(lower end clipped at 0)")
    # the mixture estimate: never a row beside the peers, only its note with the warning
    assert not any("Monte-Carlo" in row[0] for row in page.tables["tc-table"])
    assert tc_report.mixture_note(tc) in page.texts and "Upper estimate, not a peer" in tc_report.mixture_note(tc)


def test_config_activity_metrics_and_curves_are_in_the_report(zoo_report):
    text, evaluation = zoo_report
    page = Page(text)
    config = page.rows("run-config")
    assert config["model"] == ["beta-TCVAE (beta_tcvae)"] and config["seed"] == ["0"] and config["steps trained"] == ["15000"]
    assert config["dataset"] == ['{"name": "shapes2d"}'] and config["train: lr"] == ["0.0001"]
    assert page.rows("hyperparameters")["beta"] == ["6"]
    activity = page.rows("activity-table")
    tc = evaluation["tc"]
    assert [activity[f"z{j}"][-1] for j in tc["active"]] == ["active"] * len(tc["active"])
    assert [activity[f"z{j}"][-1] for j in tc["passive"]] == ["passive"] * len(tc["passive"])
    assert float(activity["z0"][0]) == pytest.approx(evaluation["activity"]["var_mu"][0], rel=1e-3)
    assert any(f"exceeds the cut {tc['settings']['active_threshold']:g}" in t for t in page.texts)
    metrics = page.rows("metrics-table")
    assert metrics["MIG"] == [f"{evaluation['mean']['mig']:.3f}", f"{evaluation['sampled']['mig']:.3f}"]
    assert metrics["FactorVAE score (eval accuracy)"][0] == f"{evaluation['mean']['factor_vae']['eval_accuracy']:.3f}"
    assert page.rows("disintegration-table")["posX"][:2] == ["2", "2"]
    lines = [a for tag, a in page.tags if tag == "path" and a.get("class") == "series"]
    assert {a["data-series"] for a in lines} == {"train_loss", "recon", "kl", "mean codes"}
    assert all(a["data-points"] == "150" for a in lines)  # the 150 history records, none dropped
    assert any("the sampled codes' TC is not in this history" in t for t in page.texts)  # said, not drawn as zero


def test_the_report_loads_nothing(zoo_report):
    text, _ = zoo_report
    page = Page(text)
    assert not [t for t, _ in page.tags if t in ("script", "link", "iframe", "object", "embed", "base", "meta") and t != "meta"]
    assert resources(page) == []
    assert "<script" not in text.lower() and "@import" not in text and "url(" not in text
    # the only http:// is the SVG namespace, a name and not a fetch
    assert set(re.findall(r"https?://[^\s\"'<>]+", text)) == {"http://www.w3.org/2000/svg"}
    (policy,) = [a["content"] for t, a in page.tags if t == "meta" and a.get("http-equiv") == "Content-Security-Policy"]
    assert policy.startswith("default-src 'none'")


def test_a_hostile_run_cannot_inject_markup(tmp_path):
    name = "<script>alert(1)<"
    run = tmp_path / name
    shutil.copytree(ZOO_RUN, run)
    config = runs.read_json(run / runs.CONFIG)
    config["message"] = '<img src="https://evil.example/x.png" onerror="alert(2)">'
    config["command"] = "</pre><script src=https://evil.example/a.js></script>"
    runs.write_json(run / runs.CONFIG, config)
    metrics = runs.read_json(run / runs.METRICS)
    metrics["evaluation"]["mean"]["disintegration"]["factor_names"][0] = "<b onclick=alert(3)>shape</b>"
    metrics["evaluation"]["tc"]["settings"]["threshold_rule"] = "<style>body{background:url(https://evil.example/)}</style>"
    runs.write_json(run / runs.METRICS, metrics)
    text = run_report.run_report_html(run, traversal=False)
    page = Page(text)
    assert {t for t, _ in page.tags} <= {"html", "head", "meta", "title", "style", "body", "h1", "h2", "p", "nav", "ul", "li", "a",
                                         "section", "table", "caption", "thead", "tbody", "tr", "th", "td", "pre", "figure",
                                         "figcaption", "svg", "text", "line", "rect", "path", "g"}
    assert sum(t == "style" for t, _ in page.tags) == 1 and resources(page) == []
    assert not any(name.startswith("on") for _, a in page.tags for name in a)
    shown = "".join(page.texts)  # the hostile strings are there, as text
    assert f"MTC Explorer report: {name}" in shown and config["message"] in shown and config["command"] in shown
    assert page.rows("disintegration-table")["<b onclick=alert(3)>shape</b>"]


def test_a_run_without_evaluation_or_history_still_reports_and_says_so(tmp_path, tiny_run):
    run = tmp_path / "fresh"
    shutil.copytree(tiny_run, run)
    (run / runs.METRICS).unlink(missing_ok=True)
    page = Page(run_report.run_report_html(run))
    assert any(t.startswith("No stored evaluation: `mtc evaluate") for t in page.texts)
    assert "tc-table" not in page.tables
    (image,) = [a for t, a in page.tags if t == "img"]  # the tiny model's traversal, inline
    assert image["src"].startswith("data:image/png;base64,") and len(image["src"]) > 200
    (run / runs.HISTORY).write_text('{"step": 1, "recon": 5.0}\n{"not json\n')
    page = Page(run_report.run_report_html(run, traversal=False))
    assert any(t.startswith("The training history cannot be read") for t in page.texts)
    runs.write_json(run / runs.METRICS, {"evaluation": "not an object"})
    assert any("holds no TC report" in t for t in Page(run_report.run_report_html(run, traversal=False)).texts)


def test_a_folder_without_a_run_is_refused_in_one_line(tmp_path):
    with pytest.raises(ValueError, match="not a run folder"):
        run_report.run_report_html(tmp_path)
    with pytest.raises(ValueError, match="not a folder"):
        run_report.run_report_html(tmp_path / "missing")


def test_the_html_helpers_escape_and_draw_what_they_are_given():
    cell = report.table(["a<b"], [["<i>x</i>", 1.5, None]], caption="c&d", table_id='x" onload="y')
    assert "<i>" not in cell and "&lt;i&gt;x&lt;/i&gt;" in cell and "c&amp;d" in cell and 'id="x&quot; onload=&quot;y"' in cell
    svg = report.line_panel("t", [("s", "#000", [0, 10, 20], [1.0, None, 3.0])])
    (path,) = re.findall(r'd="([^"]*)"', svg)
    assert path.count("M") == 2 and "L" not in path  # a missing value breaks the line: two points, no segment across
    assert json.loads(re.search(r'data-points="(\d+)"', svg).group(1)) == 2


def test_the_models_page_offers_the_report_of_the_picked_run(tmp_path, tiny_run, monkeypatch):
    from streamlit.testing.v1 import AppTest

    from ui import report_button
    from ui.pages import PAGE_FILES

    (tmp_path / "zoo").mkdir()
    shutil.copytree(tiny_run, tmp_path / "runs" / "mine")
    monkeypatch.setenv("MTC_RUNS_DIR", str(tmp_path / "runs"))
    monkeypatch.setenv("MTC_ZOO_DIR", str(tmp_path / "zoo"))
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120).run()
    at.switch_page(PAGE_FILES["Models"]).run()
    assert not at.exception, [e.value for e in at.exception]
    picked = at.sidebar.selectbox(key="run_path").value
    assert Path(picked).name == "mine"
    (button,) = [b for b in at.get("download_button") if b.proto.label == report_button.LABEL]
    # what the button hands over when clicked: the report `mtc report` writes, of the picked run
    data = report_button.report_bytes(picked)
    assert Page(data.decode()).tables["run-config"][1] == ["run", "mine"]
    assert report_button.file_name(picked) == "mine.report.html"
    assert b"No report of" in report_button.report_bytes(tmp_path)  # a folder without a run: a page saying why
