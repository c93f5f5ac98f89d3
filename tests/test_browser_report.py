"""The report to keep, in a real browser with the network cut: Debian's Chromium through playwright opens a report
written by `mtc report` from a file:// URL, every request that is not file:// aborted, and finds the TC table with the
stored numbers, the charts and the traversal drawn, and nothing asked of the network.
Skipped when Chromium or playwright is missing, except under CI=true, where that is a failure."""

from __future__ import annotations

from pathlib import Path

import pytest
import support

from mtc_core import runs
from mtc_core.cli.commands import main
from mtc_core.evaluation import tc_report

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parent.parent
ZOO_RUN = ROOT / "pretrained" / "shapes2d-beta_tcvae-seed0"
CHROMIUM = support.CHROMIUM
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]


_playwright = support.sync_playwright_or_skip


def test_the_report_opens_offline_with_its_tc_table(tmp_path, capsys):
    sync_playwright = _playwright()
    out = tmp_path / "report.html"
    assert main(["report", str(ZOO_RUN), "--out", str(out)]) == 0
    tc = runs.read_json(ZOO_RUN / runs.METRICS)["evaluation"]["tc"]
    asked: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            context = browser.new_context(offline=True)

            def only_files(route):
                asked.append(route.request.url)
                return route.continue_() if route.request.url.startswith("file://") else route.abort()

            context.route("**/*", only_files)
            page = context.new_page()
            failed: list[str] = []
            page.on("requestfailed", lambda request: failed.append(request.url))
            page.goto(out.as_uri(), wait_until="load", timeout=30_000)
            rows = page.locator("#tc-table tbody tr")
            assert rows.count() == 2
            gaussian = rows.nth(0).locator("td").all_inner_texts()
            assert gaussian[1:3] == [tc_report.describe(tc, "mean", "gaussian"), tc_report.describe(tc, "sampled", "gaussian")]
            assert page.locator("#tc-split").is_visible() and page.locator("p.note").first.is_visible()
            assert page.locator("svg.chart").count() == 4  # the three training-curve panels and the activity bars
            image = page.locator("#traversal img")
            assert image.evaluate("img => img.complete && img.naturalWidth > 0")  # the inline PNG decoded
            assert page.locator("script").count() == 0
        finally:
            browser.close()
    assert failed == [] and all(url.startswith("file://") for url in asked) and len(asked) == 1  # the file, nothing else
