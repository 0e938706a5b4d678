"""Generate docs/prediction-tables.md from the database's own comments, so the doc cannot drift from SQL."""

from __future__ import annotations

from jobcast.tasks import all_tasks

LOOKUPS = "\n".join(t.example for t in all_tasks())

EXAMPLES = """## Example queries

```sql
-- Lookup by job_id: an index scan on the live batch's partition only.
""" + LOOKUPS + """

-- Postings that hide their salary, with the estimate and its 80% interval.
select p.job_id, p.title, s.salary_p10, s.salary_p50, s.salary_p90
from app.job_postings p join predictions.job_salary s using (job_id)
where p.salary_min is null;

-- One posting's four predictions, with their tags and reasons, in one round trip (each view holds its own
-- live batch).
select s.salary_p10, s.salary_p50, s.salary_p90, s.reasons as salary_reasons, c.category, c.top3,
       c.reasons as category_reasons, v.cvr, v.reasons as cvr_reasons, t.tags, t.reasons as tags_reasons
from predictions.job_salary s
left join predictions.job_category c using (job_id)
left join predictions.job_cvr v using (job_id)
left join predictions.job_tags t using (job_id)
where s.job_id = $1;

-- "Why this estimate?": the salary's reasons as rows, strongest first (a positive effect pushes it up, and on the
-- log scale, an effect e multiplies the estimate by exp(e)).
select r ->> 'name' as reason, round(exp((r ->> 'effect')::numeric), 3) as multiplies_salary_by
from predictions.job_salary, jsonb_array_elements(reasons -> 'top') r
where job_id = $1;

-- Postings tagged 未経験歓迎 with a probability of at least 0.8 (jsonb containment on the tag list).
select job_id, probabilities ->> '未経験歓迎' as p
from predictions.job_tags
where tags @> '[{"tag": "未経験歓迎"}]' and (probabilities ->> '未経験歓迎')::float >= 0.8;

-- Which batch is live, when it was published, and its validation report.
select batch_id, logical_date, model_version, row_count, published_at, report_path
from predictions.batches where status = 'published' order by task;
```

## Guarantees

- A statement sees exactly one batch per view: the view resolves the live batch once per statement, and a
  publish switches it in one short transaction. Never a mix, never an empty view during a publish.
- A publish never makes readers wait: the slow work happens on a table no reader sees, and the switch is
  a one-row update that takes no lock a reader needs.
- Freshness: `prediction_date` is the logical date (Asia/Tokyo) the batch predicts for; the daily run
  publishes after 03:00 for the previous day. A backfill of an older date never replaces a newer live batch.
- Connect with a login role in `jobcast_reader` (`jobcast db create-reader NAME`): it can read these views
  and `predictions.batches`, nothing else.

## Reading from a web app

[`examples/webapp/`](../examples/webapp/app.py) is a working read-only app (FastAPI, psycopg2) that shows one
posting's predictions, the highest CVRs and the freshness of each task; the README says how to start it. What
it does is what a board's own app should do:

- Connect as a login in `jobcast_reader`, through a pool with a bounded wait for a free connection, and bound
  every wait on the server too: `connect_timeout`, and on the session `statement_timeout` (2 s),
  `default_transaction_read_only=on` and `idle_in_transaction_session_timeout`. A timeout or a lost connection
  is a 503 with `Retry-After`, never a hang; a broken connection leaves the pool.
- Autocommit, and one statement per page. A statement sees one batch per view, so a page is consistent while a
  publish swaps batches; two statements could straddle a swap. Never leave a session idle in a transaction:
  it holds back the retention of old batches.
- Missing is not an error. A posting newer than a task's live batch has no row in that view (the query below
  keeps the posting and returns NULLs: show "not available yet"); a task with no published batch has no
  `published` row in `predictions.batches`.
- Freshness: a task's live batch is its `published` row in `predictions.batches`; `prediction_date` (=
  `logical_date`) more than two days old means a daily run was missed.

```sql
-- One posting's predictions, their reasons and lineage, in one statement (%(job_id)s: the posting).
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

-- The postings with the highest CVR, with their category and salary (a top-N heap sort over the live batch).
select v.job_id, v.cvr, v.batch_id, v.prediction_date, c.category, s.salary_p50
from predictions.job_cvr v
left join predictions.job_category c on c.job_id = v.job_id
left join predictions.job_salary s on s.job_id = v.job_id
order by v.cvr desc, v.job_id
limit %(limit)s

-- The live batch of each task and its age (%(tasks)s: text[] of the tasks the app shows).
select t.task, b.batch_id, b.logical_date, b.model_version, b.row_count, b.published_at,
       extract(epoch from now() - b.published_at)::float as published_age_s,
       (now() at time zone 'Asia/Tokyo')::date - b.logical_date as days_behind
from unnest(%(tasks)s::text[]) as t(task)
left join predictions.batches b on b.task = t.task and b.status = 'published'
order by array_position(%(tasks)s::text[], t.task)
```
"""


def render(conn) -> str:
    with conn.cursor() as cur:
        cur.execute(
            """select c.relname, c.relkind, coalesce(obj_description(c.oid, 'pg_class'), '')
               from pg_class c join pg_namespace n on n.oid = c.relnamespace
               where n.nspname = 'predictions' and c.relkind in ('v', 'r', 'p')
               order by c.relkind = 'r', c.relname""")
        relations = cur.fetchall()
        out = ["# Prediction tables for web-app developers", "",
               "Generated by `jobcast docs` from the comments in `sql/migrations/` — do not edit by hand.",
               "Read the views in schema `predictions`; everything in `jobcast_internal` is private and may change.", ""]
        for name, kind, comment in relations:
            out += [f"## `predictions.{name}` ({'view' if kind == 'v' else 'table'})", "", comment, "",
                    "| column | type | meaning |", "|---|---|---|"]
            cur.execute(
                """select a.attname, format_type(a.atttypid, a.atttypmod), coalesce(col_description(a.attrelid, a.attnum), '')
                   from pg_attribute a where a.attrelid = %s::regclass and a.attnum > 0 and not a.attisdropped
                   order by a.attnum""", (f"predictions.{name}",))
            for col, typ, desc in cur.fetchall():
                out.append(f"| `{col}` | {typ} | {desc.replace('|', '/')} |")
            out.append("")
    return "\n".join(out) + "\n" + EXAMPLES
