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
- truth.job_edits(job_id, edited_at, field, old_value, new_value): every edit of a live posting (see below).
- truth.job_tags(job_id, tag, present, posterior): the posting's true job-characteristics tags (vocab.TAGS, all 12
  per posting) and the best possible probability of each from its content. A posting has a tag with a
  logistic probability of its category and employment type; the description names a true tag in its
  【特徴】 line (TAG_EXPLICIT), only implies it in a sentence (TAG_IMPLICIT) or says nothing; a false tag is
  implied by mistake now and then (TAG_FALSE_IMPLICIT), never named. posterior is P(tag | category,
  employment type, what the text says): the Bayes limit (it uses the true category, which the text shows
  except on generic postings). Employers tick tags incompletely (app.job_posting_tags): a company either
  ticks (TAG_TICKER_SHARE of companies, a hash of company_id) or never does, and a ticking company ticks
  each true tag with TAG_TICK_RATE, never a false one. Tags come from their own random stream, so every
  other table is as it was without them (only the descriptions gain the tag sentences).

The board is hard in the ways real boards are, without moving any of those truths:

- Long tail of titles. Role words are drawn Zipf-like (ROLE_ZIPF_EXPONENT) from a category's 5 plain role
  words followed by 50 specialised ones ("透析看護師", "法人営業（SaaS）"), so most are rare; pay depends on
  the plain role inside (as before), not on the specialisation. Titles also carry posting-specific
  decorations drawn independently of everything else (catch phrases with random numbers such as
  【駅徒歩7分】, branch names, product names) and company-specific wording (a company name, style and
  tagline derived from company_id): noise without signal, so the category signal is the one it was (the
  role word, in the title unless ambiguous and always in the description) and bayes_category is unchanged.
- Pay hidden more often for some kinds of posting (missing not at random): the disclosure probability is
  a logistic function of employment type (アルバイト・パート disclose most, 業務委託 least), seniority
  wording, the category's pay level (well-paid categories hide more) and a company habit. It depends on
  the posting's attributes only, never on its own pay draw, so the truth median is still the best
  estimate for disclosed and hidden postings alike; but the disclosed ones no longer look like the rest.
- Categories left unfiled more often when the title is ambiguous: UNFILED_SHARE normally,
  UNFILED_SHARE_AMBIGUOUS for the "スタッフ" titles and the generic postings (the filed category is not
  content, so bayes_category does not use it).
- Edits after going live. Some wrongly filed postings get their category corrected (CATEGORY_FIX_SHARE of
  them), some postings get their pay disclosed, or raised from a first lower range (SALARY_EDIT_SHARE),
  EDIT_DELAY days after posting; an edit that would fall after the posting closed or after the generated
  window never happens. app.job_postings holds the current (edited) row, as a web app's table would, and
  truth.job_edits records each change (salary edits as a salary_min and a salary_max row). The current
  disclosed range is always the posting's own pay draw (a raise goes from a lowball first range to it),
  so truth.job_salary is untouched by edits. The CVR follows the pay shown at the time of each view:
  truth.job_cvr_daily on the day of a salary edit is the mixture of before and after, weighted by the
  share of that day's open time on each side (views are uniform over it), and truth.job_cvr is the
  posting's first day, always before any edit (edits come at least a day after posting).
"""

from __future__ import annotations

import datetime as dt
import io
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator
from zoneinfo import ZoneInfo

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv

from jobcast.generate import vocab

log = logging.getLogger(__name__)

SALARY_NOISE_SIGMA = 0.20  # lognormal dispersion of actual pay around the expected value: same role, region and seniority still vary ~±25% between employers
# Pay disclosure (missing not at random): logit = DISCLOSE_BASE_LOGIT + vocab.DISCLOSE_EMPLOYMENT + vocab.DISCLOSE_SENIORITY
# - DISCLOSE_PAY_SLOPE x log(category base pay / DISCLOSE_PAY_REF) + company habit ~ N(0, DISCLOSE_COMPANY_SD).
DISCLOSE_BASE_LOGIT, DISCLOSE_PAY_SLOPE, DISCLOSE_PAY_REF, DISCLOSE_COMPANY_SD = 0.45, 2.0, 380.0, 0.6
UNFILED_SHARE, UNFILED_SHARE_AMBIGUOUS = 0.10, 0.35  # employers skip the category more when the title is vague
MISFILED_SHARE, AMBIGUOUS_SHARE, FULLWIDTH_SHARE = 0.05, 0.15, 0.20
GENERIC_SHARE = 0.03  # "スタッフ募集" with boilerplate only: no category signal, pay never disclosed
HOOK_SHARE, SECOND_HOOK_SHARE, BRANCH_SHARE, PRODUCT_SHARE = 0.35, 0.25, 0.25, 0.08  # title decorations (no signal)
# Edits after going live: share of wrongly filed postings whose category gets corrected, share of postings whose
# pay gets disclosed (if hidden) or raised (if shown); each comes 1 + Gamma(2, 2.5) days after posting.
CATEGORY_FIX_SHARE, SALARY_EDIT_SHARE, EDIT_DELAY_SHAPE, EDIT_DELAY_SCALE = 0.20, 0.03, 2.0, 2.5
SALARY_RAISE_RANGE = (0.85, 0.95)  # a raised range first showed this fraction of the posting's pay
MEAN_VIEWS_PER_DAY = 1.5
BASE_CVR = 0.04
CVR_AGE_SLOPE, CVR_AGE_CAP = 0.03, 28  # logit falls by 0.03 per day of posting age, for up to 28 days
# Search position of a view (1..10, more views at the top) and its multiplier on the apply probability;
# normalised so the expectation over positions is 1: the unobserved position adds noise, not bias.
POSITION_WEIGHTS = np.array([0.22, 0.16, 0.13, 0.11, 0.09, 0.08, 0.07, 0.05, 0.05, 0.04])
POSITION_MULT = np.linspace(1.6, 0.6, 10) / float(np.dot(POSITION_WEIGHTS, np.linspace(1.6, 0.6, 10)))
N_PLAIN_ROLES = 5  # each category's plain role words (vocab.CATEGORIES); their index moves pay
# Job-characteristics tags (see the module docstring): how a true tag shows in the text, how employers tick.
TAG_EXPLICIT, TAG_IMPLICIT, TAG_FALSE_IMPLICIT = 0.50, 0.30, 0.02
TAG_TICKER_SHARE, TAG_TICK_RATE = 0.60, 0.75


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


_FULLWIDTH = {c: c + 0xFEE0 for c in range(ord("!"), ord("~") + 1)}


def _fullwidth(text: str) -> str:
    return text.translate(_FULLWIDTH)


def _logit(p: float) -> float:
    return float(np.log(p / (1 - p)))


def role_words(category: str) -> list[str]:
    """A category's role words by rank: the plain ones, then each specialisation with each plain one."""
    plain = vocab.CATEGORIES[category][1]
    words = list(plain)
    for s, spec in enumerate(vocab.ROLE_SPECIALTIES[category]):
        for r, role in enumerate(plain):
            words.append(f"{spec}{role}" if (s + r) % 2 == 0 else f"{role}（{spec}）")
    return words


def _company_wording(company: np.ndarray) -> tuple[list[str], list[str], list[str]]:
    """Per posting: title prefix, title suffix and description line from its company (a hash of company_id, no draw)."""
    ids, inv = np.unique(company, return_inverse=True)
    h = (ids.astype(np.uint64) * np.uint64(2654435761)) % np.uint64(2**32)
    pre, suf, line = [], [], []
    for x in h.tolist():
        name = (vocab.COMPANY_ROOTS[x % len(vocab.COMPANY_ROOTS)] + vocab.COMPANY_MIDDLES[(x >> 5) % len(vocab.COMPANY_MIDDLES)]
                + vocab.COMPANY_SUFFIXES[(x >> 8) % len(vocab.COMPANY_SUFFIXES)])
        style = (x >> 11) % 6  # 0-2: no name in titles
        tag = ""
        if (x >> 14) % 4 == 0:
            tag = "〜" + vocab.COMPANY_TAGLINES[(x >> 16) % len(vocab.COMPANY_TAGLINES)].format(3 + (x >> 19) % 40) + "〜"
        pre.append(f"＜{name}＞" if style == 2 else "")
        suf.append((f"／{name}" if style == 3 else f"｜{name}" if style == 4 else "") + tag)
        line.append(f"{name}で一緒に働きませんか。" if style >= 2 else "")
    inv = inv.tolist()
    return [pre[i] for i in inv], [suf[i] for i in inv], [line[i] for i in inv]


def _texts(rng: np.random.Generator, n: int, cats: list[str], prefs: list[str], emps: list[str], cat, pref, emp, sen,
           rank, ambiguous, generic, fullwidth, company) -> tuple[list[str], list[str]]:
    """Titles and descriptions. Only the role word (and the description's phrases) depend on the category."""
    roles = [role_words(c) for c in cats]
    phrases = [vocab.CATEGORIES[c][2] for c in cats]
    n_phr, n_boil = len(phrases[0]), len(vocab.GENERIC_PHRASES)
    picked = np.argsort(rng.random((n, n_phr)), axis=1)[:, :3].tolist()  # 3 distinct phrases (1 if ambiguous)
    boiler = np.argsort(rng.random((n, n_boil)), axis=1)[:, :3].tolist()  # 2 distinct boilerplate lines (3 if generic)

    def hook_texts() -> list[str]:
        k = rng.integers(0, len(vocab.TITLE_HOOKS), n)
        lo = np.array([h[1] for h in vocab.TITLE_HOOKS])[k]
        hi = np.array([h[2] for h in vocab.TITLE_HOOKS])[k]
        num = (lo + np.floor(rng.random(n) * (hi - lo + 1))).astype(np.int64).tolist()
        fmt = rng.integers(0, len(vocab.HOOK_FORMATS), n).tolist()
        return [vocab.HOOK_FORMATS[f].format(vocab.TITLE_HOOKS[j][0].format(x)) for j, x, f in zip(k.tolist(), num, fmt)]

    hook1, hook2 = hook_texts(), hook_texts()
    has_hook = rng.random(n) < HOOK_SHARE
    has_hook2 = (has_hook & (rng.random(n) < SECOND_HOOK_SHARE)).tolist()
    has_hook = has_hook.tolist()
    area = rng.integers(0, len(vocab.BRANCH_AREAS), n).tolist()
    numbered = (rng.random(n) < 0.3).tolist()
    branch_no = rng.integers(1, 10, n).tolist()
    suffix = rng.integers(0, len(vocab.BRANCH_SUFFIXES), n).tolist()
    has_branch = (rng.random(n) < BRANCH_SHARE).tolist()
    kana = rng.integers(0, len(vocab.KANA) - 2, (n, 4))  # the first letter is never ン or ー
    kana[:, 1:] = rng.integers(0, len(vocab.KANA), (n, 3))
    kana_len = rng.integers(3, 5, n).tolist()
    product_fmt = rng.integers(0, len(vocab.PRODUCT_FORMATS), n).tolist()
    has_product = (rng.random(n) < PRODUCT_SHARE).tolist()
    kana = kana.tolist()
    co_pre, co_suf, co_line = _company_wording(company)

    titles, descs = [], []
    for i, (c, p, e, s, r, amb, gen, fw) in enumerate(zip(cat.tolist(), pref.tolist(), emp.tolist(), sen.tolist(), rank.tolist(),
                                                           ambiguous.tolist(), generic.tolist(), fullwidth.tolist())):
        role = roles[c][r]
        seniority = vocab.SENIORITY[s][0]
        title = (hook1[i] if has_hook[i] else "") + (hook2[i] if has_hook2[i] else "") + co_pre[i] + f"【{prefs[p]}】"
        if has_branch[i]:
            title += (f"第{branch_no[i]}" if numbered[i] else vocab.BRANCH_AREAS[area[i]]) + vocab.BRANCH_SUFFIXES[suffix[i]] + " "
        title += ("スタッフ募集" if gen else "スタッフ" if amb else role) + (f"（{seniority}）" if seniority else "") + co_suf[i]
        if has_product[i]:
            title += vocab.PRODUCT_FORMATS[product_fmt[i]].format("".join(vocab.KANA[k] for k in kana[i][:kana_len[i]]))
        boil = [vocab.GENERIC_PHRASES[j] for j in boiler[i][:3 if gen else 2]]
        if gen:
            desc = "。".join(boil) + f"。雇用形態：{emps[e]}。"
        else:
            ph = phrases[c]
            desc = (f"{role}として、" + "・".join(ph[j] for j in picked[i][:1 if amb else 3]) + "などをお任せします。"
                    + "。".join(boil) + f"。雇用形態：{emps[e]}。")
        desc += co_line[i]
        if fw:
            title, desc = _fullwidth(title), _fullwidth(desc)
        titles.append(title)
        descs.append(desc)
    return titles, descs


def build(spec: GenerateSpec) -> dict[str, pa.Table]:
    """All tables as Arrow, no database involved (so it is testable and fast)."""
    if spec.postings < 1 or spec.days < 1:
        raise ValueError("postings and days must be >= 1")
    return _part(spec, np.random.default_rng(spec.seed), first_job=1, n=spec.postings, first_event=1)


def stream(spec: GenerateSpec, chunk_postings: int = 100_000, truth: bool = True) -> Iterator[dict[str, pa.Table]]:
    """The board in parts of `chunk_postings` postings (and their events), so memory is bounded by the part, not
    by the board: a big board streams to COPY. A board of at most one part is exactly `build(spec)`. Larger
    ones draw part i from its own stream (seed, i) and a company's pay-disclosure habit from one board-wide
    draw, so job and event ids run on across parts and the truths keep their meaning. `truth=False` leaves out
    the truth.* tables (a benchmark board needs only app.*)."""
    if spec.postings < 1 or spec.days < 1 or chunk_postings < 1:
        raise ValueError("postings, days and chunk_postings must be >= 1")
    keep = (lambda t: t) if truth else (lambda t: {k: v for k, v in t.items() if k.startswith("app.")})
    if spec.postings <= chunk_postings:
        yield keep(build(spec))
        return
    habit = np.random.default_rng([spec.seed, 2**31]).normal(0.0, DISCLOSE_COMPANY_SD, 2 * max(spec.postings // 8, 1) + 2)
    first_event = 1
    for i, first in enumerate(range(1, spec.postings + 1, chunk_postings)):
        n = min(chunk_postings, spec.postings - first + 1)
        part = _part(spec, np.random.default_rng([spec.seed, i]), first_job=first, n=n, first_event=first_event,
                     board_postings=spec.postings, habit=habit, truth=truth)
        first_event += part["app.events"].num_rows
        yield keep(part)


def _part(spec: GenerateSpec, rng: np.random.Generator, *, first_job: int, n: int, first_event: int,
          board_postings: int | None = None, habit: np.ndarray | None = None, truth: bool = True) -> dict[str, pa.Table]:
    """n postings with ids from first_job, their events with ids from first_event, and their truths."""
    board = board_postings or n
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
    n_roles = N_PLAIN_ROLES * (1 + len(vocab.ROLE_SPECIALTIES[cats[0]]))
    rank_w = 1.0 / np.arange(1, n_roles + 1) ** vocab.ROLE_ZIPF_EXPONENT; rank_w /= rank_w.sum()

    cat = rng.choice(len(cats), n, p=cat_w)
    pref = rng.choice(len(prefs), n, p=pref_w)
    emp = rng.choice(len(emps), n, p=emp_w)
    sen = rng.choice(len(vocab.SENIORITY), n, p=vocab.SENIORITY_WEIGHTS)
    rank = rng.choice(n_roles, n, p=rank_w)  # role word rank in role_words(category): long tail
    role = np.where(rank < N_PLAIN_ROLES, rank, (rank - N_PLAIN_ROLES) % N_PLAIN_ROLES)  # the plain role inside
    role_mult = 0.92 + 0.04 * role  # within a category, the role in the title moves pay a little
    ambiguous = rng.random(n) < AMBIGUOUS_SHARE
    generic = rng.random(n) < GENERIC_SHARE
    fullwidth = rng.random(n) < FULLWIDTH_SHARE
    company = 1 + np.minimum(rng.zipf(1.6, n), max(board // 8, 1)) + rng.integers(0, max(board // 8, 1), n)

    base_10k = np.array([vocab.CATEGORIES[c][0] for c in cats], dtype=float)
    base = base_10k[cat] * 10_000.0
    truth_salary = base * pref_mult[pref] * emp_mult[emp] * sen_mult[sen] * role_mult
    actual = truth_salary * np.exp(rng.normal(0.0, SALARY_NOISE_SIGMA, n))
    # Disclosure depends on the kind of posting (and its company), never on its own pay draw.
    disc_logit = (DISCLOSE_BASE_LOGIT + np.array([vocab.DISCLOSE_EMPLOYMENT[e] for e in emps])[emp]
                  + np.array([vocab.DISCLOSE_SENIORITY[s[0]] for s in vocab.SENIORITY])[sen]
                  - DISCLOSE_PAY_SLOPE * np.log(base_10k / DISCLOSE_PAY_REF)[cat]
                  + (habit if habit is not None else rng.normal(0.0, DISCLOSE_COMPANY_SD, int(company.max()) + 1))[company])
    disclosed0 = (rng.random(n) < 1 / (1 + np.exp(-disc_logit))) & ~generic  # as first posted
    pay_min, pay_max = np.round(actual * 0.9, -4), np.round(actual * 1.1, -4)

    u = rng.random(n)
    p_unfiled = np.where(ambiguous | generic, UNFILED_SHARE_AMBIGUOUS, UNFILED_SHARE)
    filed0 = np.where(u < p_unfiled, -1, np.where(u < p_unfiled + MISFILED_SHARE, rng.integers(0, len(cats), n), cat))

    titles, descs = _texts(rng, n, cats, prefs, emps, cat, pref, emp, sen, rank, ambiguous, generic, fullwidth, company)
    tags = _tags(np.random.default_rng([spec.seed, 0x7A67, first_job]), cats, emps, cat, emp, company, descs)

    # Postings start up to 20 days before the window so the first day already has open postings.
    posted = rng.uniform(t0 - 20 * 86400, t_end - 3600, n)
    duration = rng.gamma(2.0, 12.0, n) * 86400 + 86400
    closed = np.where(posted + duration < t_end, posted + duration, np.nan)
    last_t = np.where(np.isnan(closed), t_end, closed)

    # Edits: planned ones happen only while the posting is open and before the end of the generated window.
    def edit_time(planned: np.ndarray) -> np.ndarray:
        t = posted + (1 + rng.gamma(EDIT_DELAY_SHAPE, EDIT_DELAY_SCALE, n)) * 86400
        return np.where(planned & (t < last_t), t, np.inf)

    cat_edit_t = edit_time((filed0 != cat) & (rng.random(n) < CATEGORY_FIX_SHARE))
    sal_edit_t = edit_time(~generic & (rng.random(n) < SALARY_EDIT_SHARE))
    cat_edited, sal_edited = np.isfinite(cat_edit_t), np.isfinite(sal_edit_t)
    filed = np.where(cat_edited, cat, filed0)
    disclosed = disclosed0 | sal_edited  # now
    raised = disclosed0 & sal_edited
    first_frac = rng.uniform(*SALARY_RAISE_RANGE, n)
    salary_min = np.where(disclosed, pay_min, np.nan)  # now: always the posting's own pay
    salary_max = np.where(disclosed, pay_max, np.nan)
    salary_min0 = np.where(disclosed0, np.where(raised, np.round(actual * first_frac * 0.9, -4), pay_min), np.nan)
    salary_max0 = np.where(disclosed0, np.where(raised, np.round(actual * first_frac * 1.1, -4), pay_max), np.nan)

    # CVR: employment type, seniority wording, disclosed pay (relative to the market) and a popularity draw;
    # logit0 with the pay shown when first posted, logit1 with the pay shown after a salary edit.
    market = base * pref_mult[pref] * emp_mult[emp]

    def cvr_logit(shown: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
        rel_pay = np.log(np.where(shown, (lo + hi) / 2, market) / market)
        return _logit(BASE_CVR) + emp_cvr[emp] + sen_cvr[sen] + 0.25 * shown + 1.2 * rel_pay

    logit0 = cvr_logit(disclosed0, salary_min0, salary_max0)
    logit1 = cvr_logit(disclosed, salary_min, salary_max)
    popularity = np.exp(rng.normal(0, 0.4, n))
    posted_day = np.floor((posted - t0) / 86400).astype(np.int64)  # may be negative: posted before the window

    # One row per posting-day in the window, then Poisson views, then Bernoulli applies per view.
    first_day = np.maximum(np.floor((posted - t0) / 86400), 0).astype(np.int64)
    last_day = np.minimum(np.floor((last_t - 1 - t0) / 86400), spec.days - 1).astype(np.int64)
    ndays = np.maximum(last_day - first_day + 1, 0)
    pd_job = np.repeat(np.arange(n), ndays)
    pd_day = np.repeat(first_day, ndays) + (np.arange(ndays.sum()) - np.repeat(np.cumsum(ndays) - ndays, ndays))
    pd_age = pd_day - posted_day[pd_job]
    pd_cvr0, pd_cvr1 = cvr_at_age(logit0[pd_job], pd_age), cvr_at_age(logit1[pd_job], pd_age)
    # Views of a posting-day are uniform over its open time [lo, hi]: the day's truth is the share-weighted mixture.
    pd_lo = np.maximum(t0 + pd_day * 86400.0, posted[pd_job])
    pd_hi = np.minimum(t0 + (pd_day + 1) * 86400.0, last_t[pd_job]) - 1
    pd_te = sal_edit_t[pd_job]
    span = pd_hi - pd_lo
    after = np.where(span > 0, np.clip((pd_hi - np.minimum(pd_te, pd_hi + 1)) / np.where(span > 0, span, 1), 0, 1),
                     (pd_lo >= pd_te).astype(float))
    pd_cvr = (1 - after) * pd_cvr0 + after * pd_cvr1
    views = rng.poisson(MEAN_VIEWS_PER_DAY * popularity[pd_job])
    v_job = np.repeat(pd_job, views)
    lo = np.repeat(pd_lo, views)
    hi = np.repeat(pd_hi, views)
    v_time = lo + rng.random(len(v_job)) * np.maximum(hi - lo, 0)
    v_cvr = np.where(v_time >= sal_edit_t[v_job], np.repeat(pd_cvr1, views), np.repeat(pd_cvr0, views))
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

    job_ids = np.arange(first_job, first_job + n, dtype=np.int64)
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
        "event_id": np.arange(first_event, first_event + len(order), dtype=np.int64),
        "job_id": job_ids[ev_job[order]],
        "session_id": ev_session[order].astype(np.int64),
        "event_type": ev_type[order],
        "occurred_at": ts(ev_time[order]),
    })
    tag_names = pa.array(list(vocab.TAGS), pa.string())
    ticked_job, ticked_tag = np.nonzero(tags["ticked"])
    tables = {"app.job_postings": postings, "app.events": events,
              "app.job_posting_tags": pa.table({"job_id": job_ids[ticked_job], "tag": tag_names.take(pa.array(ticked_tag))})}
    if not truth:
        return tables
    return {
        **tables,
        "truth.job_salary": pa.table({"job_id": job_ids, "salary": truth_salary}),
        "truth.job_category": pa.table({
            "job_id": job_ids,
            "category": pa.array(cats, pa.string()).take(pa.array(cat)),
            # Without category signal the best guess is the most common category.
            "bayes_category": pa.array(cats, pa.string()).take(pa.array(np.where(generic, int(np.argmax(cat_w)), cat))),
        }),
        "truth.job_cvr": pa.table({"job_id": job_ids, "cvr": cvr_at_age(logit0, np.zeros(n, dtype=np.int64))}),
        "truth.job_cvr_daily": pa.table({
            "job_id": job_ids[pd_job],
            "day": pa.array([spec.start_date + dt.timedelta(days=int(d)) for d in range(spec.days)], pa.date32()).take(pa.array(pd_day)),
            "cvr": pd_cvr,
        }),
        "truth.job_tags": pa.table({
            "job_id": np.repeat(job_ids, len(vocab.TAGS)),
            "tag": tag_names.take(pa.array(np.tile(np.arange(len(vocab.TAGS)), n))),
            "present": tags["present"].reshape(-1),
            "posterior": tags["posterior"].reshape(-1),
        }),
        "truth.job_edits": _edits(cats, filed0, cat, cat_edit_t, sal_edit_t, salary_min0, salary_max0, salary_min, salary_max, ts,
                                  first_job),
    }


def _tags(rng: np.random.Generator, cats: list[str], emps: list[str], cat: np.ndarray, emp: np.ndarray, company: np.ndarray,
          descs: list[str]) -> dict[str, np.ndarray]:
    """The true tags (n x tags), their posterior given the content, what employers ticked; appends each
    posting's tag sentences and 【特徴】 line to its description (in place)."""
    n, names = len(cat), list(vocab.TAGS)
    logit = np.empty((n, len(names)))
    for j, (_explicit, _implicit, base, by_cat, by_emp) in enumerate(vocab.TAGS.values()):
        logit[:, j] = (base + np.array([by_cat.get(c, 0.0) for c in cats])[cat]
                       + np.array([by_emp.get(e, 0.0) for e in emps])[emp])
    prior = 1 / (1 + np.exp(-logit))
    present = rng.random((n, len(names))) < prior
    u = rng.random((n, len(names)))
    explicit = present & (u < TAG_EXPLICIT)
    implicit = np.where(present, (u >= TAG_EXPLICIT) & (u < TAG_EXPLICIT + TAG_IMPLICIT), u < TAG_FALSE_IMPLICIT)
    which = rng.integers(0, 2, (n, len(names)))  # which of the tag's two implicit sentences
    # P(text cue | tag) and P(text cue | no tag): named, implied, nothing.
    like_true = np.where(explicit, TAG_EXPLICIT, np.where(implicit, TAG_IMPLICIT, 1 - TAG_EXPLICIT - TAG_IMPLICIT))
    like_false = np.where(explicit, 0.0, np.where(implicit, TAG_FALSE_IMPLICIT, 1 - TAG_FALSE_IMPLICIT))
    posterior = prior * like_true / (prior * like_true + (1 - prior) * like_false)
    h = (company.astype(np.uint64) * np.uint64(2246822519)) % np.uint64(2**32)
    ticker = (h % np.uint64(1000)).astype(np.int64) < int(TAG_TICKER_SHARE * 1000)
    ticked = present & ticker[:, None] & (rng.random((n, len(names))) < TAG_TICK_RATE)
    values = list(vocab.TAGS.values())
    for i in range(n):
        said = [values[j][1][which[i, j]] for j in np.flatnonzero(implicit[i])]
        named = [names[j] for j in np.flatnonzero(explicit[i])]
        descs[i] += ("".join(f"{x}。" for x in said)) + (f"【特徴】{'・'.join(named)}" if named else "")
    return {"present": present, "posterior": posterior, "ticked": ticked}


def _edits(cats, filed0, cat, cat_edit_t, sal_edit_t, min0, max0, min1, max1, ts, first_job: int = 1) -> pa.Table:
    """truth.job_edits: one row per changed field (a salary edit changes salary_min and salary_max), by time."""
    def text(x: np.ndarray) -> list[str | None]:
        return [None if v != v else str(int(v)) for v in x.tolist()]

    ci, si = np.flatnonzero(np.isfinite(cat_edit_t)), np.flatnonzero(np.isfinite(sal_edit_t))
    job = np.concatenate([ci, si, si])
    at = np.concatenate([cat_edit_t[ci], sal_edit_t[si], sal_edit_t[si]])
    field = ["category"] * len(ci) + ["salary_min"] * len(si) + ["salary_max"] * len(si)
    old = [cats[c] if c >= 0 else None for c in filed0[ci].tolist()] + text(min0[si]) + text(max0[si])
    new = [cats[c] for c in cat[ci].tolist()] + text(min1[si]) + text(max1[si])
    order = np.lexsort((np.array([0] * len(ci) + [1] * len(si) + [2] * len(si), dtype=np.int64), job, at))
    take = pa.array(order)
    return pa.table({
        "job_id": pa.array(job[order] + first_job, pa.int64()),
        "edited_at": ts(at[order]),
        "field": pa.array(field, pa.string()).take(take),
        "old_value": pa.array(old, pa.string()).take(take),
        "new_value": pa.array(new, pa.string()).take(take),
    })


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


TABLES = ("app.job_postings", "app.events", "app.job_posting_tags", "truth.job_salary", "truth.job_category",
          "truth.job_cvr", "truth.job_cvr_daily", "truth.job_edits", "truth.job_tags")


def load(conn, spec: GenerateSpec, ddl_path: Path, chunk_postings: int = 100_000, truth: bool = True) -> dict[str, int]:
    """Replace the demo app.* and truth.* contents with freshly generated data, in one transaction, streamed
    part by part (memory bounded by chunk_postings, whatever the board's size)."""
    counts = {name: 0 for name in TABLES if truth or name.startswith("app.")}
    with conn, conn.cursor() as cur:
        cur.execute(ddl_path.read_text(encoding="utf-8"))
        cur.execute("truncate " + ", ".join(TABLES))  # names are our own constants, not user input
        for part in stream(spec, chunk_postings, truth=truth):
            for name, table in part.items():
                copy_arrow(cur, name, table)
                counts[name] += table.num_rows
            del part
        cur.execute("analyze app.job_postings; analyze app.events")
    return counts
