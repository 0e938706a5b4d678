import datetime as dt

import pytest

from jobcast.generate.core import GenerateSpec, build
from jobcast.generate.vocab import PREFECTURES

pytestmark = pytest.mark.unit

SPEC = GenerateSpec(postings=800, days=10, seed=3, start_date=dt.date(2026, 9, 1))


def test_generator_is_deterministic_for_a_seed():
    a, b = build(SPEC), build(SPEC)
    for name in a:
        assert a[name].equals(b[name]), name
    other = build(GenerateSpec(800, 10, 4, SPEC.start_date))
    assert not other["app.job_postings"].equals(a["app.job_postings"])


def test_generated_postings_look_like_a_japanese_job_board():
    p = build(SPEC)["app.job_postings"].to_pandas()
    assert p.job_id.is_unique
    assert set(p.prefecture) <= {x for x, _ in PREFECTURES} and p.prefecture.nunique() > 30
    assert set(p.employment_type) == {"正社員", "契約社員", "派遣社員", "アルバイト・パート", "業務委託"}
    assert p.title.str.contains("【").all()
    disclosed = p.salary_min.notna()
    assert 0.5 < disclosed.mean() < 0.8
    assert (p.salary_min[disclosed] <= p.salary_max[disclosed]).all()
    assert p.category.isna().mean() > 0.05  # some postings are not filed


def test_truth_is_kept_apart_and_events_follow_postings():
    t = build(SPEC)
    truth = t["truth.job_salary"].to_pandas()
    assert "salary" not in t["app.job_postings"].column_names
    assert len(truth) == SPEC.postings and (truth.salary > 0).all()
    ev = t["app.events"].to_pandas()
    assert set(ev.event_type) == {"view", "apply"}
    rate = (ev.event_type == "apply").sum() / (ev.event_type == "view").sum()
    assert 0.01 < rate < 0.10
    posts = t["app.job_postings"].to_pandas().set_index("job_id")
    joined = ev.join(posts[["posted_at"]], on="job_id")
    assert (joined.occurred_at >= joined.posted_at).all()
