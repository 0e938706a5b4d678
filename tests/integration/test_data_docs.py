"""Data Docs: a real GX run renders an HTML page naming the suite, and the history stays capped."""

import pandas as pd
import pytest

from jobcast.validation.gx import validate_dataframe

from conftest import REPO

pytestmark = pytest.mark.integration


def test_data_docs_render_the_suite_and_keep_a_capped_history(tmp_path):
    df = pd.DataFrame({"job_id": [1, 2, 3], "salary_p10": [2e6, 3e6, 4e6], "salary_p50": [3e6, 4e6, 5e6],
                       "salary_p90": [4e6, 5e6, 6e6]})
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
