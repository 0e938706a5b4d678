"""A board from elsewhere: English employment types and annual USD wages. It runs window -> train -> score ->
validate -> publish with nothing but a params override (JOBCAST_PARAMS_OVERRIDE); with the Japanese defaults
its raw gate refuses the vocabulary, naming it."""

import datetime as dt
import io
import random

import pytest

from jobcast.config import Settings
from jobcast.errors import ValidationFailed
from jobcast.tasks import get, names

from conftest import REPO, create_source_tables, make_ctx
from jobs import extract, publish, score, train, validate, window

TASKS = names()  # the declared prediction tasks

pytestmark = pytest.mark.e2e

DAY = dt.date(2026, 5, 12)
ROLES = {  # category -> (median annual USD, titles)
    "Engineering": (128_000, ["Software Engineer", "Backend Developer", "Site Reliability Engineer", "Data Engineer"]),
    "Nursing": (86_000, ["Registered Nurse", "ICU Nurse", "Nurse Practitioner"]),
    "Retail": (34_000, ["Cashier", "Store Associate", "Shift Supervisor"]),
    "Logistics": (45_000, ["Warehouse Associate", "Forklift Operator", "Delivery Driver"]),
}
STATES = {"CA": 1.25, "NY": 1.2, "TX": 1.0, "OH": 0.9}
EMPLOYMENT = {"full-time": 1.0, "part-time": 0.5}
OVERRIDE = """
train: {window_days: 6, holdout_days: 2}
board:
  currency: USD
  employment_types: [full-time, part-time]
clean: {salary_min_plausible: 10000, salary_max_plausible: 1000000}
validate:
  salary: {min: 8000, max: 1500000}
"""


def usd_board(conn, schema: str, postings: int = 1500, days: int = 14) -> None:
    rng = random.Random(3)
    start = dt.datetime.combine(DAY - dt.timedelta(days=days - 1), dt.time(), dt.timezone(dt.timedelta(hours=-5)))
    posts, events = io.StringIO(), io.StringIO()
    event_id = 0
    for job in range(1, postings + 1):
        label = rng.choice(list(ROLES))
        base, titles = ROLES[label]
        state, emp = rng.choice(list(STATES)), rng.choice(list(EMPLOYMENT))
        pay = base * STATES[state] * EMPLOYMENT[emp] * rng.lognormvariate(0, 0.12)
        shown = rng.random() < 0.7
        posted = start + dt.timedelta(seconds=rng.uniform(0, days * 86400 - 3600))
        lo, hi = (int(round(pay * 0.9, -3)), int(round(pay * 1.1, -3))) if shown else ("", "")
        posts.write(f"{job},{rng.randint(1, 60)},{rng.choice(titles)} - {state},Join our team in {state}. {emp}.,{state},{emp},"
                    f"{'' if rng.random() < 0.1 else label},{lo},{hi},{posted.isoformat()},\n")
        when = posted
        while when.date() <= DAY:
            for _ in range(rng.randint(0, 3)):
                event_id += 1
                t = when + dt.timedelta(seconds=rng.uniform(0, 3600))
                events.write(f"{event_id},{job},{event_id},{'apply' if rng.random() < 0.04 else 'view'},{t.isoformat()}\n")
            when = dt.datetime.combine(when.date() + dt.timedelta(days=1), dt.time(), when.tzinfo)
    with conn.cursor() as cur:
        create_source_tables(cur, schema)
        for table, buf in (("job_postings", posts), ("events", events)):
            buf.seek(0)
            cur.copy_expert(f"copy {schema}.{table} from stdin with (format csv)", buf)


def test_a_usd_board_with_english_employment_types_runs_to_publish_with_only_a_params_override(settings, conn, tmp_path, monkeypatch):
    usd_board(conn, "usboard")
    monkeypatch.setenv("JOBCAST_SOURCE_SCHEMA", "usboard")
    ctx = make_ctx(Settings.load(REPO), DAY.isoformat())  # the Japanese defaults
    extract.run(ctx)
    with pytest.raises(ValidationFailed, match="employment_type"):
        validate.run(ctx, layer="raw")

    (tmp_path / "usd.yaml").write_text(OVERRIDE, encoding="utf-8")
    monkeypatch.setenv("JOBCAST_PARAMS_OVERRIDE", str(tmp_path / "usd.yaml"))
    board = Settings.load(REPO)
    assert board.param("board.currency") == "USD"
    ctx = make_ctx(board, DAY.isoformat())
    window.run(ctx)
    validate.run(ctx, layer="raw")
    validate.run(ctx, layer="features")
    for task in [t for t in TASKS if get(t).trainable(ctx) is None]:  # no tags table on this board: not job_tags
        assert train.run(ctx, task=task).ids["promoted"]
        score.run(ctx, task=task)
        validate.run(ctx, task=task)
        publish.run(ctx, task=task)
    with conn.cursor() as cur:
        cur.execute("select count(*), percentile_cont(0.5) within group (order by salary_p50) from predictions.job_salary")
        rows, median = cur.fetchone()
        cur.execute("select count(distinct category) from predictions.job_category")
        categories = cur.fetchone()[0]
    assert rows > 500 and 20_000 < median < 200_000  # dollars, not yen
    assert categories >= 3
