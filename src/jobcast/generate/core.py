"""Generate postings, view/apply events and their ground truth, deterministically from a seed.

The salary, category and CVR of every posting come from known functions of its attributes; those
expected values go to schema `truth`, so model quality can be put next to the best achievable:

- truth.job_salary.salary: the median of the posting's salary distribution (actual pay = salary x
  lognormal noise with sigma SALARY_NOISE_SIGMA), i.e. the best possible estimate under absolute error;
- truth.job_category: the true category, and bayes_category, the best possible guess from the posting's
  content (title, description, attributes; not the filed category, which is what we correct). It differs
  from the truth only for the GENERIC_SHARE of postings whose text carries no category signal at all;
- truth.job_cvr_daily(job_id, day, cvr): the probability that a view on that day becomes an application.
  It depends on the posting (employment type, title wording, disclosed pay against the market for its
  category, prefecture and employment type) and its age; the search position of each view moves it too,
  but positions are not observed, so the expectation over positions is the best possible prediction.
  truth.job_cvr(job_id, cvr) is the same on the posting's first day.
"""

from __future__ import annotations

import datetime as dt
import io
import logging
from dataclasses import dataclass
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv

from jobcast.generate import vocab

log = logging.getLogger(__name__)

DISCLOSED_SHARE = 0.65
SALARY_NOISE_SIGMA = 0.20  # lognormal dispersion of actual pay around the expected value: same role, region and seniority still vary ~±25% between employers
UNFILED_SHARE, MISFILED_SHARE, AMBIGUOUS_SHARE, FULLWIDTH_SHARE = 0.10, 0.05, 0.15, 0.20
GENERIC_SHARE = 0.03  # "スタッフ募集" with boilerplate only: no category signal, pay never disclosed
MEAN_VIEWS_PER_DAY = 1.5
BASE_CVR = 0.04
CVR_AGE_SLOPE, CVR_AGE_CAP = 0.03, 28  # logit falls by 0.03 per day of posting age, for up to 28 days
# Search position of a view (1..10, more views at the top) and its multiplier on the apply probability;
# normalised so the expectation over positions is 1: the unobserved position adds noise, not bias.
POSITION_WEIGHTS = np.array([0.22, 0.16, 0.13, 0.11, 0.09, 0.08, 0.07, 0.05, 0.05, 0.04])
POSITION_MULT = np.linspace(1.6, 0.6, 10) / float(np.dot(POSITION_WEIGHTS, np.linspace(1.6, 0.6, 10)))


@dataclass(frozen=True)
class GenerateSpec:
    postings: int
    days: int
    seed: int
    start_date: dt.date
    timezone: str = "Asia/Tokyo"

    @property
    def end_date(self) -> dt.date:
        """The last generated day (inclusive)."""
        return self.start_date + dt.timedelta(days=self.days - 1)


def _fullwidth(text: str) -> str:
    return "".join(chr(ord(c) + 0xFEE0) if "!" <= c <= "~" else c for c in text)


def _logit(p: float) -> float:
    return float(np.log(p / (1 - p)))


def build(spec: GenerateSpec) -> dict[str, pa.Table]:
    """All tables as Arrow, no database involved (so it is testable and fast)."""
    if spec.postings < 1 or spec.days < 1:
        raise ValueError("postings and days must be >= 1")
    rng = np.random.default_rng(spec.seed)
    n = spec.postings
    tz = ZoneInfo(spec.timezone)
    t0 = dt.datetime.combine(spec.start_date, dt.time(), tz).timestamp()
    t_end = t0 + spec.days * 86400

    cats = list(vocab.CATEGORIES)
    cat_w = np.linspace(1.6, 0.6, len(cats)); cat_w /= cat_w.sum()
    prefs = [p for p, _ in vocab.PREFECTURES]
    pref_mult = np.array([m for _, m in vocab.PREFECTURES])
    pref_w = np.array([vocab.PREFECTURE_WEIGHTS.get(p, 1.0) for p in prefs]); pref_w /= pref_w.sum()
    emps = [e[0] for e in vocab.EMPLOYMENT_TYPES]
    emp_mult = np.array([e[1] for e in vocab.EMPLOYMENT_TYPES])
    emp_cvr = np.array([e[2] for e in vocab.EMPLOYMENT_TYPES])
    emp_w = np.array([e[3] for e in vocab.EMPLOYMENT_TYPES]); emp_w /= emp_w.sum()
    sen_mult = np.array([s[1] for s in vocab.SENIORITY])
    sen_cvr = np.array([s[2] for s in vocab.SENIORITY])

    cat = rng.choice(len(cats), n, p=cat_w)
    pref = rng.choice(len(prefs), n, p=pref_w)
    emp = rng.choice(len(emps), n, p=emp_w)
    sen = rng.choice(len(vocab.SENIORITY), n, p=vocab.SENIORITY_WEIGHTS)
    role = rng.integers(0, 5, n)
    role_mult = 0.92 + 0.04 * role  # within a category, the role in the title moves pay a little
    ambiguous = rng.random(n) < AMBIGUOUS_SHARE
    generic = rng.random(n) < GENERIC_SHARE
    fullwidth = rng.random(n) < FULLWIDTH_SHARE
    company = 1 + np.minimum(rng.zipf(1.6, n), max(n // 8, 1)) + rng.integers(0, max(n // 8, 1), n)

    base = np.array([vocab.CATEGORIES[c][0] for c in cats])[cat] * 10_000.0
    truth_salary = base * pref_mult[pref] * emp_mult[emp] * sen_mult[sen] * role_mult
    actual = truth_salary * np.exp(rng.normal(0.0, SALARY_NOISE_SIGMA, n))
    disclosed = (rng.random(n) < DISCLOSED_SHARE) & ~generic
    salary_min = np.where(disclosed, np.round(actual * 0.9, -4), np.nan)
    salary_max = np.where(disclosed, np.round(actual * 1.1, -4), np.nan)

    u = rng.random(n)
    filed = np.where(u < UNFILED_SHARE, -1, np.where(u < UNFILED_SHARE + MISFILED_SHARE, rng.integers(0, len(cats), n), cat))

    titles, descs = [], []
    for i in range(n):
        cname = cats[cat[i]]
        _, roles, phrases = vocab.CATEGORIES[cname]
        seniority = vocab.SENIORITY[sen[i]][0]
        role_word = "スタッフ募集" if generic[i] else "スタッフ" if ambiguous[i] else roles[role[i]]
        title = f"【{prefs[pref[i]]}】{role_word}" + (f"（{seniority}）" if seniority else "")
        k = 1 if ambiguous[i] else 3
        picked = [phrases[j] for j in rng.choice(len(phrases), k, replace=False)]
        boiler = [vocab.GENERIC_PHRASES[j] for j in rng.choice(len(vocab.GENERIC_PHRASES), 3 if generic[i] else 2, replace=False)]
        if generic[i]:
            desc = "。".join(boiler) + f"。雇用形態：{emps[emp[i]]}。"
        else:
            desc = f"{roles[role[i]]}として、" + "・".join(picked) + "などをお任せします。" + "。".join(boiler) + f"。雇用形態：{emps[emp[i]]}。"
        if fullwidth[i]:
            title, desc = _fullwidth(title), _fullwidth(desc)
        titles.append(title)
        descs.append(desc)

    # Postings start up to 20 days before the window so the first day already has open postings.
    posted = rng.uniform(t0 - 20 * 86400, t_end - 3600, n)
    duration = rng.gamma(2.0, 12.0, n) * 86400 + 86400
    closed = np.where(posted + duration < t_end, posted + duration, np.nan)

    # CVR: employment type, seniority wording, disclosed pay (relative to the market) and a popularity draw.
    market = base * pref_mult[pref] * emp_mult[emp]
    rel_pay = np.log(np.where(disclosed, (salary_min + salary_max) / 2, market) / market)
    logit = _logit(BASE_CVR) + emp_cvr[emp] + sen_cvr[sen] + 0.25 * disclosed + 1.2 * rel_pay
    popularity = np.exp(rng.normal(0, 0.4, n))
    posted_day = np.floor((posted - t0) / 86400).astype(np.int64)  # may be negative: posted before the window

    # One row per posting-day in the window, then Poisson views, then Bernoulli applies per view.
    first_day = np.maximum(np.floor((posted - t0) / 86400), 0).astype(np.int64)
    last_t = np.where(np.isnan(closed), t_end, closed)
    last_day = np.minimum(np.floor((last_t - 1 - t0) / 86400), spec.days - 1).astype(np.int64)
    ndays = np.maximum(last_day - first_day + 1, 0)
    pd_job = np.repeat(np.arange(n), ndays)
    pd_day = np.repeat(first_day, ndays) + (np.arange(ndays.sum()) - np.repeat(np.cumsum(ndays) - ndays, ndays))
    pd_cvr = cvr_at_age(logit[pd_job], pd_day - posted_day[pd_job])
    views = rng.poisson(MEAN_VIEWS_PER_DAY * popularity[pd_job])
    v_job = np.repeat(pd_job, views)
    v_day = np.repeat(pd_day, views)
    v_cvr = np.repeat(pd_cvr, views)
    lo = np.maximum(t0 + v_day * 86400.0, posted[v_job])
    hi = np.minimum(t0 + (v_day + 1) * 86400.0, last_t[v_job]) - 1
    v_time = lo + rng.random(len(v_job)) * np.maximum(hi - lo, 0)
    v_session = rng.integers(1, 2**40, len(v_job))
    position = rng.choice(len(POSITION_WEIGHTS), len(v_job), p=POSITION_WEIGHTS)
    applied = rng.random(len(v_job)) < v_cvr * POSITION_MULT[position]
    a_job, a_session = v_job[applied], v_session[applied]
    a_time = np.minimum(v_time[applied] + rng.uniform(30, 1800, applied.sum()), hi[applied])
    ev_job = np.concatenate([v_job, a_job])
    ev_time = np.concatenate([v_time, a_time])
    ev_session = np.concatenate([v_session, a_session])
    ev_type = np.array(["view"] * len(v_job) + ["apply"] * len(a_job))
    order = np.lexsort((ev_job, ev_time))

    def ts(seconds: np.ndarray) -> pa.Array:
        us = np.round(seconds * 1e6)
        return pa.array(np.where(np.isnan(us), 0, us).astype("int64"), type=pa.timestamp("us", tz="UTC"),
                        mask=np.isnan(us))

    job_ids = np.arange(1, n + 1, dtype=np.int64)
    postings = pa.table({
        "job_id": job_ids,
        "company_id": company.astype(np.int64),
        "title": titles,
        "description": descs,
        "prefecture": pa.array(prefs, pa.string()).take(pa.array(pref)),
        "employment_type": pa.array(emps, pa.string()).take(pa.array(emp)),
        "category": pa.array([cats[c] if c >= 0 else None for c in filed], pa.string()),
        "salary_min": pa.array(salary_min, pa.int64(), from_pandas=True),
        "salary_max": pa.array(salary_max, pa.int64(), from_pandas=True),
        "posted_at": ts(posted),
        "closed_at": ts(closed),
    })
    events = pa.table({
        "event_id": np.arange(1, len(order) + 1, dtype=np.int64),
        "job_id": job_ids[ev_job[order]],
        "session_id": ev_session[order].astype(np.int64),
        "event_type": ev_type[order],
        "occurred_at": ts(ev_time[order]),
    })
    return {
        "app.job_postings": postings,
        "app.events": events,
        "truth.job_salary": pa.table({"job_id": job_ids, "salary": truth_salary}),
        "truth.job_category": pa.table({
            "job_id": job_ids,
            "category": pa.array(cats, pa.string()).take(pa.array(cat)),
            # Without category signal the best guess is the most common category.
            "bayes_category": pa.array(cats, pa.string()).take(pa.array(np.where(generic, int(np.argmax(cat_w)), cat))),
        }),
        "truth.job_cvr": pa.table({"job_id": job_ids, "cvr": cvr_at_age(logit, np.zeros(n, dtype=np.int64))}),
        "truth.job_cvr_daily": pa.table({
            "job_id": job_ids[pd_job],
            "day": pa.array([spec.start_date + dt.timedelta(days=int(d)) for d in range(spec.days)], pa.date32()).take(pa.array(pd_day)),
            "cvr": pd_cvr,
        }),
    }


def cvr_at_age(logit: np.ndarray, age_days: np.ndarray) -> np.ndarray:
    """Expected applies per view of a posting `age_days` calendar days after it was posted."""
    return 1 / (1 + np.exp(-(logit - CVR_AGE_SLOPE * np.clip(age_days, 0, CVR_AGE_CAP))))


def copy_arrow(cur, table_name: str, table: pa.Table, chunk_rows: int = 200_000) -> None:
    """COPY an Arrow table into schema.table in CSV chunks (pyarrow serialises far faster than pandas)."""
    from psycopg2 import sql

    schema, name = table_name.split(".")
    cols = sql.SQL(", ").join(map(sql.Identifier, table.column_names))
    stmt = sql.SQL("copy {} ({}) from stdin with (format csv, header true)").format(sql.Identifier(schema, name), cols)
    for batch in table.to_batches(max_chunksize=chunk_rows):
        buf = io.BytesIO()
        pacsv.write_csv(pa.Table.from_batches([batch]), buf)
        buf.seek(0)
        cur.copy_expert(stmt.as_string(cur), buf)


def load(conn, spec: GenerateSpec, ddl_path: Path) -> dict[str, int]:
    """Replace the demo app.* and truth.* contents with freshly generated data, in one transaction."""
    tables = build(spec)
    with conn, conn.cursor() as cur:
        cur.execute(ddl_path.read_text(encoding="utf-8"))
        cur.execute("truncate " + ", ".join(tables))  # names are our own constants, not user input
        for name, table in tables.items():
            copy_arrow(cur, name, table)
        cur.execute("analyze app.job_postings; analyze app.events")
    return {name: t.num_rows for name, t in tables.items()}
