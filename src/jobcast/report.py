"""Human-readable views of the shared database: the live batches and the batch registry."""

from __future__ import annotations

from jobcast.config import Settings
from jobcast.db.conn import connect
from jobcast.tasks import spec

# Quality of the live batch against the generator's truth (schema truth exists only in the demo):
# task -> (label, SQL over the view aliased p, truth tables it needs, format).
QUALITY = {
    "salary": ("salary_mae_vs_truth",
               "select avg(abs(p.salary_p50 - t.salary)) from {view} p join truth.job_salary t using (job_id)",
               ("truth.job_salary",), "{:,.0f} JPY"),
    "category": ("category_accuracy_vs_truth",
                 "select avg((p.category = t.category)::int) from {view} p join truth.job_category t using (job_id)",
                 ("truth.job_category",), "{:.3f}"),
    # The truth is per posting and day (the CVR changes as a posting ages): compare the batch's own day.
    "cvr": ("cvr_mae_vs_truth",
            "select avg(abs(p.cvr - t.cvr)) from {view} p "
            "join truth.job_cvr_daily t on t.job_id = p.job_id and t.day = p.prediction_date",
            ("truth.job_cvr_daily",), "{:.4f}"),
}


def live_summary(settings: Settings, tasks: tuple[str, ...]) -> list[str]:
    """One line per task: view, rows, live batch and, when the generator's truth exists, quality against it."""
    lines = []
    conn = connect(settings)
    try:
        with conn.cursor() as cur:
            for task in tasks:
                view = spec(task).qualified_view
                cur.execute(f"select count(*), min(batch_id), max(batch_id), min(prediction_date)::text from {view}")
                rows, bmin, bmax, pdate = cur.fetchone()
                line = f"{view}: rows={rows} batch_id={bmax} prediction_date={pdate}"
                if bmin != bmax:
                    line += f" (MIXED batches {bmin}..{bmax}!)"
                label, query, needs, fmt = QUALITY[task]
                cur.execute("select bool_and(to_regclass(t) is not null) from unnest(%s::text[]) t", (list(needs),))
                if rows and cur.fetchone()[0]:
                    cur.execute(query.format(view=view))
                    value = cur.fetchone()[0]
                    line += f" {label}={fmt.format(value) if value is not None else 'n/a (no matching truth rows)'}"
                lines.append(line)
    finally:
        conn.close()
    return lines


def batches_table(settings: Settings, task: str | None, limit: int) -> str:
    conn = connect(settings)
    try:
        with conn.cursor() as cur:
            cur.execute(
                """select b.batch_id, b.task, b.logical_date::text, b.status, coalesce(b.row_count, 0), b.model_version,
                          to_char(b.created_at, 'YYYY-MM-DD HH24:MI:SS'), c.batch_id is not null, coalesce(b.message, '')
                   from predictions.batches b left join jobcast_internal.current_batch c using (batch_id)
                   where %(task)s::text is null or b.task = %(task)s
                   order by b.batch_id desc limit %(limit)s""", {"task": task, "limit": limit})
            rows = cur.fetchall()
    finally:
        conn.close()
    head = f"{'batch':>6} {'task':<8} {'date':<10} {'status':<11} {'rows':>8} {'model':<18} {'created':<19} live"
    out = [head]
    for r in rows:
        out.append(f"{r[0]:>6} {r[1]:<8} {r[2]:<10} {r[3]:<11} {r[4]:>8} {r[5]:<18} {r[6]:<19} {'*' if r[7] else ''} {r[8]}".rstrip())
    return "\n".join(out)
