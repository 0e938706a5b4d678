"""A small read-only web app over jobcast's prediction views: the recommended way for a board's web app to read.

    JOBCAST_READER_URL=postgresql://webapp:secret@127.0.0.1:5432/jobcast \\
        .venv/bin/uvicorn --app-dir examples/webapp app:app --port 8000

It connects as a login in the `jobcast_reader` group (`jobcast db create-reader webapp --password-env`), which can
read the `predictions` views and `predictions.batches` and nothing else. What it shows:

- `/jobs/{job_id}` (and `/api/jobs/{job_id}`): one posting's predictions: salary range, category with its top 3,
  CVR, tags, the reasons behind each, and the batch, model and date each comes from;
- `/top-cvr` (and `/api/top-cvr`): the postings with the highest CVR;
- `/freshness` (and `/api/freshness`): the live batch of each task and its age.

How it reads, and why (docs/prediction-tables.md, "Reading from a web app"):
- one statement per page: a statement sees exactly one batch per view, so a page is consistent even while a
  publish swaps batches; two statements could straddle a swap;
- autocommit: the app never leaves a session idle in a transaction (that would hold back jobcast's retention);
- a connection pool with a bound on every wait: `connect_timeout`, a `statement_timeout` on the session, and a
  bounded wait for a free connection; a timeout or a lost connection is a 503 with a message, never a hang;
- a missing prediction (a posting newer than the live batch, or a task with no batch yet) is shown as missing,
  not as an error.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path

import psycopg2
import psycopg2.extras
from fastapi import FastAPI, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse
from fastapi.templating import Jinja2Templates

log = logging.getLogger("jobcast.webapp")

TASKS = ("salary", "category", "cvr", "job_tags")  # the views this app reads

# One posting's predictions from the four views, in one statement (one snapshot: one batch per view). The
# driving row keeps the job_id when a view has no row for it (a posting newer than that task's live batch).
POSTING_SQL = """
select k.job_id,
       s.salary_p10, s.salary_p50, s.salary_p90, s.reasons as salary_reasons,
       s.batch_id as salary_batch_id, s.model_version as salary_model_version, s.prediction_date as salary_date,
       c.category, c.probability as category_probability, c.top3, c.reasons as category_reasons,
       c.batch_id as category_batch_id, c.model_version as category_model_version, c.prediction_date as category_date,
       v.cvr, v.reasons as cvr_reasons,
       v.batch_id as cvr_batch_id, v.model_version as cvr_model_version, v.prediction_date as cvr_date,
       t.tags, t.reasons as job_tags_reasons,
       t.batch_id as job_tags_batch_id, t.model_version as job_tags_model_version, t.prediction_date as job_tags_date
from (select %(job_id)s::bigint as job_id) k
left join predictions.job_salary s on s.job_id = k.job_id
left join predictions.job_category c on c.job_id = k.job_id
left join predictions.job_cvr v on v.job_id = k.job_id
left join predictions.job_tags t on t.job_id = k.job_id
"""

# The highest CVRs of the live batch, with the category and salary estimate of the same postings (one
# statement; PostgreSQL keeps only the top N while it scans: a top-N heap sort, no full sort).
TOP_CVR_SQL = """
select v.job_id, v.cvr, v.batch_id, v.prediction_date, c.category, s.salary_p50
from predictions.job_cvr v
left join predictions.job_category c on c.job_id = v.job_id
left join predictions.job_salary s on s.job_id = v.job_id
order by v.cvr desc, v.job_id
limit %(limit)s
"""

# The live batch of each task and its age. Ages come from the server's clock, so the app's clock does not matter.
FRESHNESS_SQL = """
select t.task, b.batch_id, b.logical_date, b.model_version, b.row_count, b.published_at,
       extract(epoch from now() - b.published_at)::float as published_age_s,
       (now() at time zone 'Asia/Tokyo')::date - b.logical_date as days_behind
from unnest(%(tasks)s::text[]) as t(task)
left join predictions.batches b on b.task = t.task and b.status = 'published'
order by array_position(%(tasks)s::text[], t.task)
"""


class Unavailable(Exception):
    """The database did not answer within its bounds: the page says so (503), the app keeps running."""


class Pool:
    """psycopg2's ThreadedConnectionPool with bounded waits: at most `size` connections, a request waits at most
    `wait_s` for one, every statement at most `statement_timeout_ms`; a broken connection is dropped."""

    def __init__(self, dsn: str, *, size: int = 4, wait_s: float = 2.0, statement_timeout_ms: int = 2000,
                 connect_timeout_s: int = 3) -> None:
        from psycopg2.pool import ThreadedConnectionPool

        self.wait_s = wait_s
        self._slots = threading.BoundedSemaphore(size)
        options = (f"-c statement_timeout={int(statement_timeout_ms)} -c default_transaction_read_only=on "
                   f"-c idle_in_transaction_session_timeout=5000")
        self._pool = ThreadedConnectionPool(0, size, dsn, options=options, connect_timeout=connect_timeout_s,
                                            application_name="jobcast-example-webapp")

    @contextmanager
    def cursor(self):
        if not self._slots.acquire(timeout=self.wait_s):
            raise Unavailable(f"no free database connection within {self.wait_s:.0f} s")
        conn = None
        broken = False
        try:
            try:
                conn = self._pool.getconn()
                conn.autocommit = True  # one statement, no transaction left open
            except psycopg2.OperationalError as exc:
                broken = True
                raise Unavailable(f"cannot connect to the database: {str(exc).strip()}") from exc
            try:
                with conn.cursor(cursor_factory=psycopg2.extras.RealDictCursor) as cur:
                    yield cur
            except psycopg2.errors.QueryCanceled as exc:
                raise Unavailable("the database did not answer within the statement timeout") from exc
            except (psycopg2.OperationalError, psycopg2.InterfaceError) as exc:
                broken = True
                raise Unavailable(f"lost the database connection: {str(exc).strip()}") from exc
        finally:
            if conn is not None:
                self._pool.putconn(conn, close=broken or conn.closed != 0)
            self._slots.release()

    def close(self) -> None:
        self._pool.closeall()


def _json(value):
    """jsonb comes back parsed from psycopg2; text JSON (older batches) is parsed here."""
    return json.loads(value) if isinstance(value, str) else value


def posting(pool: Pool, job_id: int) -> dict:
    with pool.cursor() as cur:
        cur.execute(POSTING_SQL, {"job_id": job_id})
        row = cur.fetchone()
    out: dict = {"job_id": job_id, "predictions": {}}
    for task in TASKS:
        batch = row[f"{task}_batch_id"]
        if batch is None:
            out["predictions"][task] = None  # no prediction for this posting in the live batch (or no batch yet)
            continue
        p: dict = {"batch_id": batch, "model_version": row[f"{task}_model_version"],
                   "prediction_date": row[f"{task}_date"].isoformat(), "reasons": _json(row[f"{task}_reasons"])}
        if task == "salary":
            p.update(p10=row["salary_p10"], p50=row["salary_p50"], p90=row["salary_p90"])
        elif task == "category":
            p.update(category=row["category"], probability=row["category_probability"], top3=_json(row["top3"]))
        elif task == "cvr":
            p.update(cvr=row["cvr"])
        else:
            p.update(tags=_json(row["tags"]))
        out["predictions"][task] = p
    out["found"] = any(out["predictions"].values())
    return out


def top_cvr(pool: Pool, limit: int) -> list[dict]:
    with pool.cursor() as cur:
        cur.execute(TOP_CVR_SQL, {"limit": limit})
        rows = cur.fetchall()
    return [{**r, "prediction_date": r["prediction_date"].isoformat()} for r in rows]


def freshness(pool: Pool) -> list[dict]:
    with pool.cursor() as cur:
        cur.execute(FRESHNESS_SQL, {"tasks": list(TASKS)})
        rows = cur.fetchall()
    out = []
    for r in rows:
        live = r["batch_id"] is not None
        out.append({"task": r["task"], "live": live, "batch_id": r["batch_id"],
                    "logical_date": r["logical_date"].isoformat() if live else None,
                    "model_version": r["model_version"], "row_count": r["row_count"],
                    "published_at": r["published_at"].isoformat() if live else None,
                    "published_age_s": r["published_age_s"], "days_behind": r["days_behind"],
                    # the daily run publishes D-1 after 03:00 Tokyo: two days behind means a run was missed
                    "stale": (not live) or r["days_behind"] > 2})
    return out


def create_app(dsn: str | None = None, **pool_options) -> FastAPI:
    dsn = dsn or os.environ.get("JOBCAST_READER_URL")
    if not dsn:
        raise SystemExit("set JOBCAST_READER_URL to a jobcast_reader login, e.g. "
                         "postgresql://webapp:secret@127.0.0.1:5432/jobcast (jobcast db create-reader webapp)")
    pool = Pool(dsn, **pool_options)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        yield
        pool.close()

    app = FastAPI(title="jobcast example web app", docs_url="/api/docs", lifespan=lifespan)
    app.state.pool = pool
    templates = Jinja2Templates(directory=str(Path(__file__).with_name("templates")))
    templates.env.filters["yen"] = lambda v: "–" if v is None else f"¥{v / 10_000:,.0f}万"
    templates.env.filters["pct"] = lambda v, d=1: "–" if v is None else f"{v * 100:.{d}f}%"
    templates.env.filters["age"] = lambda s: "–" if s is None else (
        f"{s / 3600:.1f} h" if s >= 3600 else f"{s / 60:.0f} min" if s >= 60 else f"{s:.0f} s")

    @app.exception_handler(Unavailable)
    def _unavailable(request: Request, exc: Unavailable):
        log.warning("%s: %s", request.url.path, exc)
        if request.url.path.startswith("/api/"):
            return JSONResponse({"error": "database unavailable", "detail": str(exc)}, status_code=503,
                                headers={"Retry-After": "5"})
        return templates.TemplateResponse(request, "unavailable.html", {"detail": str(exc)}, status_code=503,
                                          headers={"Retry-After": "5"})

    def timed(fn, *args):
        t0 = time.perf_counter()
        out = fn(app.state.pool, *args)
        return out, (time.perf_counter() - t0) * 1000

    @app.get("/api/jobs/{job_id}")
    def api_posting(job_id: int):
        out, _ = timed(posting, job_id)
        if not out["found"]:
            raise HTTPException(404, f"no prediction for job_id {job_id} in any live batch")
        return out

    @app.get("/api/top-cvr")
    def api_top_cvr(limit: int = Query(20, ge=1, le=200)):
        return timed(top_cvr, limit)[0]

    @app.get("/api/freshness")
    def api_freshness():
        return timed(freshness)[0]

    @app.get("/", response_class=HTMLResponse)
    @app.get("/top-cvr", response_class=HTMLResponse)
    def page_top_cvr(request: Request, limit: int = Query(20, ge=1, le=200)):
        rows, ms = timed(top_cvr, limit)
        return templates.TemplateResponse(request, "top_cvr.html", {"rows": rows, "ms": ms, "limit": limit})

    @app.get("/jobs/{job_id}", response_class=HTMLResponse)
    def page_posting(request: Request, job_id: int):
        out, ms = timed(posting, job_id)
        return templates.TemplateResponse(request, "posting.html", {"p": out, "ms": ms},
                                          status_code=200 if out["found"] else 404)

    @app.get("/freshness", response_class=HTMLResponse)
    def page_freshness(request: Request):
        rows, ms = timed(freshness)
        return templates.TemplateResponse(request, "freshness.html", {"rows": rows, "ms": ms})

    return app


def __getattr__(name: str):  # `uvicorn app:app` builds the app from the environment on first use
    if name == "app":
        globals()["app"] = create_app()
        return globals()["app"]
    raise AttributeError(name)
