"""Training and scoring on data that meets docs/source-contract.md but is not the generator's: another schema,
other categories, other wording (English and Japanese, half- and full-width), other rates. Nothing here comes
from jobcast.generate."""

import dataclasses
import datetime as dt
import random

import psycopg2
import pytest

from jobcast.errors import InputDataError
from jobcast.models import registry
from jobcast.tasks import get, names

from conftest import create_source_tables, make_ctx
from jobs import publish, score, train, validate, window

TASKS = names()  # the declared prediction tasks

pytestmark = pytest.mark.e2e

DAY = dt.date(2026, 3, 20)
CATEGORIES = {  # label -> (base annual pay, title words, description words)
    "Logistics": (3_600_000, ["Delivery driver", "配送ドライバー", "Warehouse picker"], ["route", "中型免許", "倉庫"]),
    "Engineering": (6_200_000, ["Backend engineer", "SRE", "ＡＩエンジニア"], ["Go", "Kubernetes", "リモート"]),
    "Healthcare": (4_700_000, ["Registered nurse", "看護師", "Care worker"], ["夜勤なし", "clinic", "介護"]),
    "Food service": (2_900_000, ["Barista", "キッチンスタッフ", "Cook"], ["cafe", "まかない", "シフト"]),
    "Sales": (4_400_000, ["Account executive", "法人営業", "Inside sales"], ["B2B", "インセンティブ", "quota"]),
}
PREFS = {"東京都": 1.2, "大阪府": 1.1, "北海道": 0.9, "福岡県": 0.95}
EMPLOYMENT = {"正社員": 1.0, "アルバイト・パート": 0.55}


def hand_made_board(conn, schema: str, postings: int = 1600, days: int = 20) -> None:
    rng = random.Random(5)
    with conn, conn.cursor() as cur:
        create_source_tables(cur, schema)
        start = dt.datetime.combine(DAY - dt.timedelta(days=days - 1), dt.time(), dt.timezone(dt.timedelta(hours=9)))
        event_id = 0
        for job in range(1, postings + 1):
            label = rng.choice(list(CATEGORIES))
            base, titles, words = CATEGORIES[label]
            pref, emp = rng.choice(list(PREFS)), rng.choice(list(EMPLOYMENT))
            pay = base * PREFS[pref] * EMPLOYMENT[emp] * rng.lognormvariate(0, 0.15)
            disclosed = rng.random() < 0.7
            posted = start + dt.timedelta(seconds=rng.uniform(0, days * 86400 - 3600))
            cur.execute(f"insert into {schema}.job_postings values (%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,null)", (
                job, rng.randint(1, 80), f"{rng.choice(titles)} ({pref})", " / ".join(rng.sample(words, 2)) + " 募集中",
                pref, emp, None if rng.random() < 0.1 else label,
                round(pay * 0.9, -4) if disclosed else None, round(pay * 1.1, -4) if disclosed else None, posted))
            cvr = 0.03 * (1.6 if emp == "アルバイト・パート" else 1.0) * (1.3 if disclosed else 1.0)
            day = posted
            while day.date() <= DAY:
                for _ in range(rng.randint(0, 4)):
                    when = max(day, posted) + dt.timedelta(seconds=rng.uniform(0, 3600))
                    event_id += 1
                    cur.execute(f"insert into {schema}.events values (%s,%s,%s,'view',%s)", (event_id, job, event_id, when))
                    if rng.random() < cvr:
                        event_id += 1
                        cur.execute(f"insert into {schema}.events values (%s,%s,%s,'apply',%s)",
                                    (event_id, job, event_id, when + dt.timedelta(seconds=60)))
                day = dt.datetime.combine(day.date() + dt.timedelta(days=1), dt.time(), day.tzinfo)


def test_models_train_and_score_on_a_hand_made_board_that_is_not_the_generators(settings, conn, db_url):
    hand_made_board(conn, "board")
    board = dataclasses.replace(settings, source_schema="board")  # JOBCAST_SOURCE_SCHEMA=board
    ctx = make_ctx(board, DAY.isoformat())
    window.run(ctx)
    validate.run(ctx, layer="features")
    # The board has no job_posting_tags table (optional in the contract): job_tags has nothing to learn from.
    assert "ticks no tags" in get("job_tags").trainable(ctx)
    # jobcast run and the DAGs skip all of its steps while it has no champion; a trainable task skips none
    assert all("job_tags: nothing to train it on" in get("job_tags").skipped(ctx, s) for s in ("train", "score", "publish"))
    assert get("salary").skipped(ctx, "train") is None
    with pytest.raises(InputDataError, match="job_tags.*nothing to learn from.*job_posting_tags is missing or empty"):
        train.run(ctx, task="job_tags")
    for task in [t for t in TASKS if get(t).trainable(ctx) is None]:
        res = train.run(ctx, task=task)
        assert res.ids["promoted"], res.metrics
        score.run(ctx, task=task)
        validate.run(ctx, task=task)
        publish.run(ctx, task=task)
    meta = {t: registry.read_metadata(registry.champion_dir(board, t))["metrics"] for t in ("salary", "category", "cvr")}
    assert meta["salary"]["mae"] < 0.7 * meta["salary"]["baseline_mae"] or meta["salary"]["mae"] < 700_000
    assert meta["category"]["accuracy"] > 0.8  # the category words are plain in these titles
    assert meta["cvr"]["logloss"] < meta["cvr"]["baseline_logloss"] * 1.02
    labels = registry.read_metadata(registry.champion_dir(board, "category"))["labels"]
    assert labels == sorted(CATEGORIES)  # the board's own labels, not the generator's

    app = psycopg2.connect(db_url)
    with app, app.cursor() as cur:
        cur.execute("select count(*) from board.job_postings")
        postings = cur.fetchone()[0]
        for view in ("job_salary", "job_category", "job_cvr"):
            cur.execute(f"select count(*), min(prediction_date)::text from predictions.{view}")
            assert cur.fetchone() == (postings, DAY.isoformat()), view
        cur.execute("select p.category, j.title from predictions.job_category p join board.job_postings j using (job_id) "
                    "where j.title like 'Backend engineer%%' or j.title like 'ＡＩエンジニア%%'")
        rows = cur.fetchall()
    app.close()
    assert rows and sum(c == "Engineering" for c, _ in rows) / len(rows) > 0.9
