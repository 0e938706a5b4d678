"""Data Docs: a real GX run renders an HTML page naming the suite, and the history stays capped."""

import pandas as pd
import pytest

from jobcast.validation.gx import validate_dataframe

from conftest import REPO

pytestmark = pytest.mark.integration


REASONS = ('{"scale": "log salary (p50)", "value": 15.0, "base": 14.8, "top": [{"name": "prefecture: 東京都", '
           '"effect": 0.2}], "rest": 0.0}')


def test_data_docs_render_the_suite_and_keep_a_capped_history(tmp_path):
    df = pd.DataFrame({"job_id": [1, 2, 3], "salary_p10": [2e6, 3e6, 4e6], "salary_p50": [3e6, 4e6, 5e6],
                       "salary_p90": [4e6, 5e6, 6e6], "reasons": [REASONS] * 3, "reasons_consistent": [True] * 3})
    params = {"salary_min": 5e5, "salary_max": 4e7, "expected_rows": 3}
    outcomes = [validate_dataframe(df, REPO / "expectations" / "predictions_salary.json", tmp_path,
                                   batch_name="salary/dt=2026-10-30", parameters=params, run_name=f"run{i}", keep_history=3)
                for i in range(5)]
    assert all(o.success for o in outcomes)
    page = outcomes[-1].report_path
    assert page.endswith(".html") and "predictions_salary" in open(page, encoding="utf-8").read()
    site = tmp_path / "gx" / "uncommitted" / "data_docs" / "local_site"
    runs = [p.name for p in (site / "validations" / "predictions_salary").iterdir()]
    assert sorted(runs) == ["run2__salary_dt=2026-10-30", "run3__salary_dt=2026-10-30", "run4__salary_dt=2026-10-30"]
    index = (site / "index.html").read_text(encoding="utf-8")
    assert "run4" in index and "run0" not in index


def test_every_suite_runs_through_its_checkpoint_file_and_the_file_is_what_runs(tmp_path):
    import json
    import shutil

    from jobcast.errors import ConfigError

    suites = sorted(p.stem for p in (REPO / "expectations").glob("*.json"))
    assert sorted(p.stem for p in (REPO / "expectations" / "checkpoints").glob("*.json")) == suites
    # A copy of the salary suite whose checkpoint has no Data Docs action: validated, no page rendered.
    exp = tmp_path / "expectations"
    (exp / "checkpoints").mkdir(parents=True)
    shutil.copy(REPO / "expectations" / "predictions_salary.json", exp)
    spec = json.loads((REPO / "expectations" / "checkpoints" / "predictions_salary.json").read_text())
    (exp / "checkpoints" / "predictions_salary.json").write_text(json.dumps({**spec, "actions": []}))
    df = pd.DataFrame({"job_id": [1], "salary_p10": [2e6], "salary_p50": [3e6], "salary_p90": [4e6], "reasons": [REASONS],
                       "reasons_consistent": [True]})
    params = {"salary_min": 5e5, "salary_max": 4e7, "expected_rows": 1}
    outcome = validate_dataframe(df, exp / "predictions_salary.json", tmp_path / "reports", batch_name="b",
                                 parameters=params, run_name="r")
    assert outcome.success and outcome.report_path is None
    assert not (tmp_path / "reports" / "gx" / "uncommitted" / "data_docs" / "local_site" / "validations").exists()
    # A checkpoint that names another suite is refused with the file's path.
    (exp / "checkpoints" / "predictions_salary.json").write_text(json.dumps({**spec, "validation_definitions": [{"name": "features", "id": None}]}))
    with pytest.raises(ConfigError, match=r"checkpoints/predictions_salary.json: expected checkpoint 'predictions_salary'"):
        validate_dataframe(df, exp / "predictions_salary.json", tmp_path / "reports", batch_name="b", parameters=params, run_name="r2")


def test_a_drift_page_renders_the_live_distribution_it_compares_against(tmp_path):
    """The KL expectation's reference distribution is a runtime value; GX's renderer cannot draw it from a
    parameter reference (it logged an exception and left the block out), so it is written into the config."""
    df = pd.DataFrame({"category": ["a"] * 60 + ["b"] * 40})
    params = {"live_partition": {"values": ["a", "b"], "weights": [0.5, 0.5]}, "max_kl": 0.1, "min_rows": 50,
              "max_rows": 200, "min_non_null": 1.0}
    outcome = validate_dataframe(df, REPO / "expectations" / "drift_category.json", tmp_path, batch_name="b",
                                 parameters=params, run_name="r")
    assert outcome.success
    page = open(outcome.report_path, encoding="utf-8").read()
    assert "unexpected Exception" not in page and "vega" in page  # the chart of the live shares is drawn
    assert "KL Divergence: \u22480.020" in page  # 0.6 ln(1.2) + 0.4 ln(0.8)


def test_a_failing_validation_page_shows_its_status_icons_offline(tmp_path):
    """Data Docs load every CSS, JS, font and image from the site folder: with the network blocked, a failing
    page is styled and its ✓/✗ status icons are drawn (GX's templates load them from CDNs; offline the Status
    column was empty, so a failure looked like a pass)."""
    import os
    import re
    from pathlib import Path

    from playwright.sync_api import sync_playwright

    from conftest import CHROMIUM_ARGS, chromium

    df = pd.DataFrame({"job_id": [1, 2, 3], "salary_p10": [2e6, 3e6, 4e6], "salary_p50": [3e6, 4e6, 5e6],
                       "salary_p90": [4e6, 5e6, 6e6], "reasons": [REASONS] * 3, "reasons_consistent": [True, False, True]})
    params = {"salary_min": 5e5, "salary_max": 4e7, "expected_rows": 3}
    outcome = validate_dataframe(df, REPO / "expectations" / "predictions_salary.json", tmp_path,
                                 batch_name="salary/dt=2026-10-30", parameters=params, run_name="offline")
    assert not outcome.success and [f["kwargs"]["column"] for f in outcome.failed] == ["reasons_consistent"]
    site = tmp_path / "gx" / "uncommitted" / "data_docs" / "local_site"
    for page in site.rglob("*.html"):  # no page loads anything from the network
        tags = re.findall(r"<(?:script|link|img)\b[^>]*>", page.read_text(encoding="utf-8"))
        remote = [t for t in tags if re.search(r"""(src|href)=["']https?://""", t)]
        assert not remote, (page, remote)

    requested_remote = []

    def offline(route):
        if route.request.url.startswith("file://"):
            route.continue_()
        else:
            requested_remote.append(route.request.url)
            route.abort("internetdisconnected")

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium(), args=CHROMIUM_ARGS)
        try:
            context = browser.new_context(viewport={"width": 1400, "height": 1000}, offline=True)
            context.route("**/*", offline)
            page = context.new_page()
            page.goto(Path(outcome.report_path).as_uri(), wait_until="load")
            page.evaluate("document.fonts.ready")
            icons = page.evaluate("""() => [...document.querySelectorAll('td i.fas')].map(i => ({
                cls: i.className, width: i.getBoundingClientRect().width,
                glyph: getComputedStyle(i, '::before').content, color: getComputedStyle(i).color}))""")
            font_loaded = page.evaluate("""() => [...document.fonts].some(f => f.family.includes('Font Awesome')
                && f.weight === '900' && f.status === 'loaded')""")
            loaded = page.evaluate("""() => ({
                css: [...document.querySelectorAll('link[rel=stylesheet]')].filter(l => l.href.includes('jobcast-vendor'))
                       .map(l => [l.href.split('jobcast-vendor/')[1], l.sheet !== null]),
                bootstrap: [getComputedStyle(document.body).color, getComputedStyle(document.querySelector('.btn')).borderTopLeftRadius],
                js: [typeof jQuery, typeof jQuery.fn.bootstrapTable, typeof jQuery.fn.tooltip, typeof vegaEmbed]})""")
            shots = Path(os.environ.get("JOBCAST_SCREENSHOTS_DIR") or tmp_path)
            page.screenshot(path=str(shots / "data-docs-validation.png"), full_page=True)
        finally:
            browser.close()
    assert requested_remote == []
    assert font_loaded  # Font Awesome's solid face, from the site folder
    assert len(loaded["css"]) == 6 and all(ok for _, ok in loaded["css"]), loaded  # Bootstrap, Font Awesome, ...
    assert loaded["bootstrap"] == ["rgb(33, 37, 41)", "4px"], loaded  # Bootstrap's text colour and .btn corners apply
    assert loaded["js"] == ["function"] * 4, loaded  # jQuery, bootstrap-table, Bootstrap, Vega
    passed = [i for i in icons if "fa-check-circle" in i["cls"]]
    failed = [i for i in icons if "fa-times" in i["cls"]]
    assert len(passed) >= 10 and len(failed) == 1
    for icon in passed + failed:  # a glyph, with a width, in green or red
        assert icon["glyph"] not in ("none", "normal", "") and icon["width"] > 8, icon
    assert passed[0]["color"] == "rgb(40, 167, 69)" and failed[0]["color"] == "rgb(220, 53, 69)"
