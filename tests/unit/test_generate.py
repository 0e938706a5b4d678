import datetime as dt
import unicodedata

import numpy as np
import pandas as pd
import pytest

from jobcast.generate.core import GenerateSpec, build, role_words, stream
from jobcast.generate.vocab import CATEGORIES, PREFECTURES

pytestmark = pytest.mark.unit

SPEC = GenerateSpec(postings=800, days=10, seed=3, start_date=dt.date(2026, 9, 1))


def test_generator_is_deterministic_for_a_seed():
    a, b = build(SPEC), build(SPEC)
    for name in a:
        assert a[name].equals(b[name]), name
    other = build(GenerateSpec(800, 10, 4, SPEC.start_date))
    assert not other["app.job_postings"].equals(a["app.job_postings"])


def test_a_big_board_streams_in_parts_with_ids_running_on_and_the_same_board_statistics():
    import pyarrow as pa

    assert [list(t) for t in stream(SPEC, chunk_postings=SPEC.postings)] == [list(build(SPEC))]  # one part: build itself
    one = next(stream(SPEC, chunk_postings=SPEC.postings))
    assert all(one[k].equals(v) for k, v in build(SPEC).items())
    parts = list(stream(SPEC, chunk_postings=300, truth=False))
    assert len(parts) == 3 and all(set(p) == {"app.job_postings", "app.events", "app.job_posting_tags"} for p in parts)
    posts = pa.concat_tables([p["app.job_postings"] for p in parts]).to_pandas()
    events = pa.concat_tables([p["app.events"] for p in parts]).to_pandas()
    assert posts.job_id.tolist() == list(range(1, SPEC.postings + 1))
    assert events.event_id.tolist() == list(range(1, len(events) + 1))  # one id sequence across parts
    assert events.job_id.between(1, SPEC.postings).all()
    whole = build(SPEC)
    assert len(events) == pytest.approx(whole["app.events"].num_rows, rel=0.1)  # same board, other draws
    assert posts.salary_min.notna().mean() == pytest.approx(whole["app.job_postings"].column("salary_min").is_valid().to_numpy().mean(), abs=0.06)
    assert posts.company_id.max() <= 2 * (SPEC.postings // 8) + 1  # companies are the board's, not the part's


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


# A bigger board for the statistical properties (still a fraction of a second to build).
BIG = GenerateSpec(postings=6000, days=20, seed=5, start_date=dt.date(2026, 9, 1))
AMBIGUOUS_TITLE = r"(?:】|\s)スタッフ(?:募集)?(?:（|$|／|｜|〜)"  # role word just "スタッフ" (or the generic "スタッフ募集")


@pytest.fixture(scope="module")
def big():
    t = build(BIG)
    return {name: table.to_pandas() for name, table in t.items()}


def role_in_description(desc: pd.Series) -> pd.Series:
    """The role word a description opens with ("<role>として、..."), NFKC-folded (some postings are full-width); NaN if none."""
    desc = desc.str.normalize("NFKC")
    return desc.str.split("として").str[0].where(desc.str.contains("として"))


def test_titles_have_a_long_tail_and_role_words_are_zipf_like(big):
    p = big["app.job_postings"]
    counts = p.title.value_counts()
    assert (counts == 1).mean() > 0.8  # most distinct titles are seen once (decorations, rare role words)
    roles = role_in_description(p.description).value_counts()
    assert len(roles) > 500  # hundreds of role words ...
    assert (roles <= 2).mean() > 0.25  # ... many of them rare ...
    assert roles.iloc[0] > 25 * roles.median()  # ... and a few common ones


def test_category_signal_survives_the_noise(big):
    """Every non-generic posting names its role word in the description, and that word belongs to its true category only."""
    p, tc = big["app.job_postings"], big["truth.job_category"]
    owner = {unicodedata.normalize("NFKC", w): c for c in CATEGORIES for w in role_words(c)}
    assert len(owner) == sum(len(role_words(c)) for c in CATEGORIES)  # no role word is shared by two categories
    m = p.merge(tc, on="job_id", suffixes=("_filed", ""))
    role = role_in_description(m.description)
    has_role = role.notna()
    assert (role[has_role].map(owner) == m.category[has_role]).all()
    assert (m.bayes_category[has_role] == m.category[has_role]).all()
    generic = ~has_role  # boilerplate only: the best guess is one category for all
    assert 0.01 < generic.mean() < 0.06 and m.bayes_category[generic].nunique() == 1
    assert m.salary_min[generic].isna().all()


def test_pay_is_hidden_more_for_some_kinds_of_posting(big):
    p = big["app.job_postings"]
    rate = p.salary_min.notna().groupby(p.employment_type).mean()
    assert 0.5 < p.salary_min.notna().mean() < 0.8
    assert rate["アルバイト・パート"] > rate["正社員"] + 0.15 > rate["業務委託"] + 0.3
    by_cat = p.salary_min.notna().groupby(big["truth.job_category"].category).mean()
    assert by_cat["販売・接客"] > by_cat["ITエンジニア"] + 0.1  # well-paid categories hide more
    # Disclosure depends on the kind of posting, not on its own pay draw: disclosed pay is centred on the truth.
    m = p.merge(big["truth.job_salary"], on="job_id")
    d = m.salary_min.notna()
    ratio = np.log((m.salary_min[d] + m.salary_max[d]) / 2 / m.salary[d])
    assert abs(ratio.median()) < 0.02


def test_ambiguous_titles_are_left_unfiled_more_often(big):
    p = big["app.job_postings"]
    amb = p.title.str.contains(AMBIGUOUS_TITLE)
    assert 0.12 < amb.mean() < 0.25
    unfiled = p.category.isna()
    assert unfiled[amb].mean() > 0.2 and unfiled[~amb].mean() < 0.12
    assert unfiled[amb].mean() > 2.5 * unfiled[~amb].mean()


def test_edits_are_recorded_and_the_row_holds_the_current_value(big):
    p, ed, tc = big["app.job_postings"].set_index("job_id"), big["truth.job_edits"], big["truth.job_category"].set_index("job_id")
    assert set(ed.field) == {"category", "salary_min", "salary_max"}
    assert 0.02 < ed.job_id.nunique() / len(p) < 0.10
    assert not ed.duplicated(["job_id", "field"]).any()
    assert (ed.old_value.fillna("") != ed.new_value).all()
    for field in ("category", "salary_min", "salary_max"):
        e = ed[ed.field == field].set_index("job_id")
        now = p.loc[e.index, field]
        assert (now.astype(object).map(lambda v: str(int(v)) if isinstance(v, (int, float, np.integer)) else v)
                == e.new_value).all(), field
    cat = ed[ed.field == "category"].set_index("job_id")
    assert (cat.new_value == tc.loc[cat.index, "category"]).all()  # a correction files the true category
    assert (cat.old_value.isna() | (cat.old_value != cat.new_value)).all()
    lo = ed[ed.field == "salary_min"].set_index("job_id")
    raised = lo.old_value.notna()
    assert raised.any() and (~raised).any()  # some disclosed later, some raised
    assert (lo.old_value[raised].astype(int) < lo.new_value[raised].astype(int)).all()
    # Edits come at least a day after posting, while the posting is open and before the window's end.
    j = p.loc[ed.job_id]
    assert (ed.edited_at.to_numpy() >= (j.posted_at + pd.Timedelta(days=1)).to_numpy()).all()
    assert (j.closed_at.isna().to_numpy() | (ed.edited_at.to_numpy() < j.closed_at.to_numpy())).all()
    end = pd.Timestamp(BIG.end_date + dt.timedelta(days=1), tz=BIG.timezone)
    assert (ed.edited_at < end).all()


def test_cvr_truth_matches_the_applies_across_salary_edits(big):
    """truth.job_cvr_daily stays the expected applies per view, including the days of and after a salary edit."""
    ev, daily = big["app.events"], big["truth.job_cvr_daily"].copy()
    ev["day"] = ev.occurred_at.dt.tz_convert(BIG.timezone).dt.date
    counts = ev.groupby(["job_id", "day", "event_type"]).size().unstack(fill_value=0)
    daily["day"] = pd.to_datetime(daily.day).dt.date
    m = daily.join(counts, on=["job_id", "day"]).fillna(0)
    expected = (m.view * m.cvr).sum()
    assert abs(m["apply"].sum() - expected) < 4 * np.sqrt(expected)
    edited = m[m.job_id.isin(big["truth.job_edits"].query("field == 'salary_min'").job_id)]
    assert edited.job_id.nunique() > 50
    expected = (edited.view * edited.cvr).sum()
    assert abs(edited["apply"].sum() - expected) < 4 * np.sqrt(expected) + 5


def test_tags_are_ticked_incompletely_never_falsely_and_the_text_carries_them():
    from jobcast.generate.core import TAG_TICK_RATE, TAG_TICKER_SHARE
    from jobcast.generate.vocab import TAGS

    b = build(GenerateSpec(postings=4000, days=10, seed=5, start_date=dt.date(2026, 9, 1)))
    truth = b["truth.job_tags"].to_pandas()
    assert len(truth) == 4000 * len(TAGS) and set(truth["tag"]) == set(TAGS)
    ticked = b["app.job_posting_tags"].to_pandas()
    merged = ticked.merge(truth, on=["job_id", "tag"])
    assert len(merged) == len(ticked) and merged["present"].all()  # a ticked tag is always true
    share = len(ticked) / truth["present"].sum()
    assert 0.6 * TAG_TICK_RATE * TAG_TICKER_SHARE < share < 1.4 * TAG_TICK_RATE * TAG_TICKER_SHARE  # incomplete
    posts = b["app.job_postings"].to_pandas().set_index("job_id")
    named = truth[truth["present"]].sample(300, random_state=0)
    said = ["【特徴】" in posts.at[j, "description"] and t in posts.at[j, "description"].split("【特徴】")[-1]
            for j, t in zip(named["job_id"], named["tag"])]
    assert 0.35 < np.mean(said) < 0.65  # about half of the true tags are named in the 【特徴】 line
    # The posterior is a probability that the truth agrees with: calibrated and sharper than the prior.
    p, y = truth["posterior"].to_numpy(), truth["present"].to_numpy()
    assert ((0 <= p) & (p <= 1)).all() and abs(p.mean() - y.mean()) < 0.02
    assert np.mean((p - y) ** 2) < np.mean((y.mean() - y) ** 2) * 0.6
