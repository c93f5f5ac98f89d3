"""mtc_core.visualize.svg_charts: the static story chart's geometry matches its numbers."""

import re
import xml.etree.ElementTree as ET

import pytest

from mtc_core.visualize.charts import extent
from mtc_core.visualize.svg_charts import tc_story_svg, ticks, wrap

NS = {"s": "http://www.w3.org/2000/svg"}


def value(mean, sd=None, per_seed=(), ci=None) -> dict:
    return {"mean": mean, "sd": sd, "per_seed": list(per_seed), "ci": ci}


def group(label, mean, sampled, parts, seeds=(0, 1), mean_knn=None, sampled_knn=None) -> dict:
    between, active, passive = parts
    return {"label": f"{label}, Shapes2D", "dataset": "shapes2d", "seeds": list(seeds), "mean": mean, "sampled": sampled,
            "mean_knn": mean_knn or value(None), "sampled_knn": sampled_knn or value(None),
            "mean_between": value(between), "mean_active": value(active), "mean_passive": value(passive)}


GROUPS = [
    group("beta-TCVAE (beta 6)", value(1.2, 0.1, (1.1, 1.3)), value(0.03, 0.01, (0.02, 0.04)), (0.9, 0.1, 0.2),
          mean_knn=value(5.5, 0.5, (5.0, 6.0)), sampled_knn=value(-0.05, 0.02, (-0.07, -0.03))),
    group("RTC-VAE (ours, Gaussian mean-TC, lambda 2, warm-up 5k)", value(0.05, None, (0.05,), ci=(0.04, 0.07)),
          value(0.02, None, (0.02,), ci=(0.015, 0.03)), (0.03, 0.01, 0.01), seeds=(0,)),
]


def parse(svg: str):
    root = ET.fromstring(svg)
    panels = {p.get("data-panel"): p for p in root.iter("{http://www.w3.org/2000/svg}g")}
    return root, panels


def bars(panel) -> dict[tuple[str, str], ET.Element]:
    return {(r.get("data-row"), r.get("data-series")): r for r in panel.iterfind("s:rect[@class='bar']", NS)}


def test_ticks_are_round_and_cover_the_range():
    assert ticks(0.0, 2.3) == [0.0, 0.5, 1.0, 1.5, 2.0, 2.5]
    assert ticks(-0.05, 0.4) == [-0.1, 0.0, 0.1, 0.2, 0.3, 0.4]
    assert ticks(0.0, 7.6) == [0.0, 2.0, 4.0, 6.0, 8.0]
    assert ticks(0.0, 10.0) == [0.0, 2.0, 4.0, 6.0, 8.0, 10.0]


def test_long_labels_wrap_once_at_a_comma_or_bracket():
    assert wrap("beta-TCVAE (beta 6)") == ["beta-TCVAE (beta 6)"]
    assert wrap("RTC-VAE (ours, Gaussian mean-TC, lambda 2, warm-up 5k)") == ["RTC-VAE (ours, Gaussian mean-TC,",
                                                                             "lambda 2, warm-up 5k)"]


@pytest.mark.parametrize("estimator", ["gaussian", "knn"])
def test_every_bar_is_its_value_on_its_panels_scale(estimator):
    root, panels = parse(tc_story_svg(GROUPS, estimator))
    suffix = "" if estimator == "gaussian" else "_knn"
    left, right = panels["0"], panels["1"]
    zero, px = float(left.get("data-zero")), float(left.get("data-px"))
    drawn = bars(left)
    for g, name in zip(GROUPS, ("beta-TCVAE (beta 6)", "RTC-VAE (ours, Gaussian mean-TC, lambda 2, warm-up 5k)"), strict=True):
        for code in ("mean", "sampled"):
            v = g[code + suffix]
            if v["mean"] is None:
                assert (name, code) not in drawn
                continue
            rect = drawn[name, code]
            assert float(rect.get("data-value")) == v["mean"]
            # a bar runs from 0 to its value, also below 0 (kNN estimates can be)
            x0, width = float(rect.get("x")), float(rect.get("width"))
            assert (x0, x0 + width) == pytest.approx(sorted((zero, zero + v["mean"] * px)), abs=2e-3)
            whisker = left.find(f"s:path[@data-row='{name}'][@data-series='{code}']", NS)
            low, high = extent(v)
            a, b = (float(t) for t in re.match(r"M(-?[\d.]+),-?[\d.]+H(-?[\d.]+)", whisker.get("d")).groups())
            assert (a, b) == pytest.approx((zero + low * px, zero + high * px), abs=2e-3)
            seeds = left.findall(f"s:line[@class='seed'][@data-row='{name}'][@data-series='{code}']", NS)
            assert sorted(float(s.get("x1")) for s in seeds) == pytest.approx(
                sorted(zero + s * px for s in v["per_seed"]) if len(v["per_seed"]) > 1 else [], abs=2e-3)
            assert f"{v['mean']:.3f}" in rect.find("s:title", NS).text
    # right panel: the Gaussian split of the mean codes' TC, stacked end to end from 0 to the total
    zero, px = float(right.get("data-zero")), float(right.get("data-px"))
    stack = sorted((r for (row, _), r in bars(right).items() if row == "beta-TCVAE (beta 6)"), key=lambda r: float(r.get("x")))
    assert [r.get("data-series") for r in stack] == ["mean_between", "mean_active", "mean_passive"]
    assert float(stack[0].get("x")) == pytest.approx(zero, abs=2e-3)
    for first, second in zip(stack, stack[1:], strict=False):
        assert float(first.get("x")) + float(first.get("width")) == pytest.approx(float(second.get("x")), abs=2e-3)
    end = float(stack[-1].get("x")) + float(stack[-1].get("width"))
    assert end == pytest.approx(zero + 1.2 * px, abs=2e-3)


def test_labels_are_escaped():
    hostile = [dict(GROUPS[0], label="<script>alert(1)</script> & co, Shapes2D")]
    root, _ = parse(tc_story_svg(hostile))
    assert root.find(".//s:script", NS) is None
    assert any(t.text == "<script>alert(1)</script> & co" for t in root.iter("{http://www.w3.org/2000/svg}text"))
